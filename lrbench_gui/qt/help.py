"""Help > Documentation and Help > Keyboard shortcuts.

:class:`DocsViewer` shows the local docs (README.md and docs/*.md of the source tree the app runs
from) with Qt's own Markdown renderer (``QTextBrowser.setMarkdown``): links between the pages
open in the viewer, web links and pictures' folders in the system's browser. Nothing is fetched
from the network. :func:`shortcut_rows` lists every shortcut the window's menus define, so the
list cannot fall behind the menus.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenuBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

__all__ = ["docs_pages", "DocsViewer", "shortcut_rows", "ShortcutsDialog"]


def docs_root() -> Path:
    """The folder holding README.md and docs/ (the source tree or the unpacked app)."""
    return Path(__file__).resolve().parents[2]


def docs_pages(root: Path | None = None) -> list[Path]:
    """README.md, then docs/*.md in order of name (gui.md first: the page about this window)."""
    root = root or docs_root()
    pages = [root / "README.md"] if (root / "README.md").is_file() else []
    docs = sorted((root / "docs").glob("*.md"), key=lambda p: (p.name != "gui.md", p.name))
    return pages + docs


class DocsViewer(QDialog):
    """The local Markdown docs in a page list and a reader; see the module docstring."""

    def __init__(self, parent: QWidget | None = None, root: Path | None = None, page: str = "gui.md") -> None:
        super().__init__(parent)
        self.setWindowTitle("lrbench documentation")
        self.resize(1000, 720)
        self.root = root or docs_root()
        self.pages = docs_pages(self.root)
        self.current: Path | None = None
        self.page_list = QListWidget()
        for path in self.pages:
            item = QListWidgetItem(path.name if path.parent == self.root else f"docs/{path.name}")
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            self.page_list.addItem(item)
        self.page_list.setMaximumWidth(200)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.anchorClicked.connect(self._link)
        self.open_btn = QPushButton("Open in the browser")
        self.open_btn.setToolTip("Open this page with the system's viewer for Markdown files")
        self.open_btn.clicked.connect(lambda: self.current and QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.current))))
        self.where = QLabel()
        self.where.setStyleSheet("color: #6b7280;")
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        split = QSplitter()
        split.addWidget(self.page_list)
        split.addWidget(self.browser)
        split.setStretchFactor(1, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.where, 1)
        bottom.addWidget(self.open_btn)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        bottom.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)
        self.page_list.currentRowChanged.connect(lambda row: row >= 0 and self.show_page(self.pages[row]))
        if not self.pages:
            self.browser.setMarkdown(f"No documentation was found next to the app (looked in {self.root}). "
                                     "The docs are in the source repository: README.md and docs/.")
            self.open_btn.setEnabled(False)
            return
        names = [p.name for p in self.pages]
        self.page_list.setCurrentRow(names.index(page) if page in names else 0)

    def show_page(self, path: Path, anchor: str = "") -> None:
        """Render ``path`` (Markdown) and select it in the list."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.browser.setMarkdown(f"Cannot read {path}: {exc.strerror or exc}")
            return
        self.current = path
        self.browser.document().setBaseUrl(QUrl.fromLocalFile(str(path)))
        self.browser.setSearchPaths([str(path.parent)])  # its pictures, relative to the page
        self.browser.setMarkdown(text)
        self.where.setText(str(path))
        if anchor:
            self.browser.scrollToAnchor(anchor)
        if path in self.pages:
            row = self.pages.index(path)
            if self.page_list.currentRow() != row:
                self.page_list.setCurrentRow(row)

    def _link(self, url: QUrl) -> None:
        if url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)
            return
        if self.current is not None and url.isRelative():
            url = QUrl.fromLocalFile(str(self.current)).resolved(url)
        target = Path(url.toLocalFile()) if url.isLocalFile() else None
        if target is not None and target.suffix == ".md" and target.is_file():
            self.show_page(target.resolve(), url.fragment())
        elif target is not None and target.exists():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))
        elif url.fragment():
            self.browser.scrollToAnchor(url.fragment())


def shortcut_rows(menu_bar: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, action, shortcut) for every menu action that has a shortcut, in menu order."""
    rows = []

    def walk(menu, path: str) -> None:  # noqa: ANN001 - a QMenu
        for action in menu.actions():
            if action.menu() is not None:
                walk(action.menu(), f"{path} > {action.text().replace('&', '')}")
                continue
            keys = action.shortcut()
            if not keys.isEmpty():
                rows.append((path, action.text().replace("&", "").rstrip("…."),
                             keys.toString(QKeySequence.SequenceFormat.NativeText)))

    for top in menu_bar.actions():
        if top.menu() is not None:
            walk(top.menu(), top.text().replace("&", ""))
    return rows


class ShortcutsDialog(QDialog):
    """The window's keyboard shortcuts, read from its menus."""

    def __init__(self, menu_bar: QMenuBar, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(menu_bar)
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Menu", "Action", "Shortcut"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The shortcuts of the menus; Ctrl+1 … Ctrl+9 show the panels in sidebar order."))
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(520, 480)
