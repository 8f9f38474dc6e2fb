"""The Plugins panel: what loaded, from where, what it provides, and what failed and why.

"Reload plugins" runs :func:`~lrbench_gui.plugins.load_plugins` again (so a plugin file just
dropped into the plugins folder appears without restarting), installs the new registry as the
process-wide one, and announces it through :attr:`PluginPanel.registryReloaded`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui import __version__
from lrbench_gui.core.paths import plugins_dir
from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.plot_style import themed
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["PluginPanel", "plugin_rows"]

_RED = QColor("#c62828")
_AMBER = QColor("#b45309")
_GREEN = QColor("#2e7d32")
COLUMNS = ["Plugin", "Status", "Provides", "Items", "Version", "Source"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s" if not word.endswith("y") else f"{n} {word[:-1]}ies"


def _version(name: str, source: str, item_versions: set[str]) -> str:
    """A plugin's version: its distribution's, its module's ``__version__``, else its items'."""
    if source.startswith("builtin"):
        return __version__
    head = source.split(" (")[0].split()
    if len(head) == 2 and "(" in source:  # "dist-name 1.2.3 (module:attr)"
        return head[1]
    if name.startswith("user:"):
        module = sys.modules.get(f"lrbench_user_plugins.{name[5:]}")
        version = getattr(module, "__version__", None)
        if isinstance(version, str):
            return version
    return ", ".join(sorted(item_versions)) if item_versions else "—"


def plugin_rows(registry: Registry) -> list[dict]:
    """One row per plugin (loaded or failed): name, status, kinds, items, version, source, problems."""
    rows: dict[str, dict] = {}
    for name, source in registry.plugins.items():
        rows[name] = {"name": name, "source": source, "kinds": {}, "items": [], "versions": set(), "problems": []}
    for kind, items in registry.items.items():
        for item in items.values():
            row = rows.setdefault(
                item.plugin,
                {"name": item.plugin, "source": item.source, "kinds": {}, "items": [], "versions": set(), "problems": []},
            )
            row["kinds"][kind] = row["kinds"].get(kind, 0) + 1
            row["items"].append(f"{kind} {item.name}")
            row["versions"].add(item.version)
    for problem in registry.problems:
        row = rows.setdefault(
            problem.plugin,
            {"name": problem.plugin, "source": problem.source, "kinds": {}, "items": [], "versions": set(), "problems": []},
        )
        row["problems"].append(problem.message)
    out = []
    for row in rows.values():
        loaded = row["name"] in registry.plugins
        if not loaded:
            status = "failed"
        elif row["problems"]:
            status = "loaded, with problems"
        else:
            status = "loaded"
        kinds = ", ".join(_plural(n, k) for k, n in sorted(row["kinds"].items())) or "nothing"
        out.append(
            {
                "name": row["name"],
                "status": status,
                "provides": kinds,
                "items": len(row["items"]),
                "item_names": sorted(row["items"]),
                "version": _version(row["name"], row["source"], row["versions"]),
                "source": row["source"],
                "problems": row["problems"],
            }
        )
    builtin = [r for r in out if r["source"].startswith("builtin")]
    others = [r for r in out if not r["source"].startswith("builtin")]
    return sorted(others, key=lambda r: r["name"]) + sorted(builtin, key=lambda r: r["name"])


class PluginPanel(QWidget):
    """A table of plugins, the list of load errors, the plugins folder and a Reload button."""

    #: Fires after "Reload plugins" loaded every plugin again; carries the new Registry (already
    #: installed as the process-wide one).
    registryReloaded = Signal(object)

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if registry is None:
            from lrbench_gui.plugins import get_registry

            registry = get_registry()
        self._registry = registry
        root = QVBoxLayout(self)
        root.setContentsMargins(8, 8, 8, 8)
        root.setSpacing(8)
        self.banner = MessageBanner(self)
        root.addWidget(self.banner)

        folder_box = QGroupBox("Plugins folder", self)
        fl = QVBoxLayout(folder_box)
        row = QHBoxLayout()
        self.folder_label = QLabel(folder_box)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.folder_label.setFont(mono)
        row.addWidget(self.folder_label, 1)
        self.open_folder_button = QPushButton("Open folder", folder_box)
        self.open_folder_button.setToolTip("Create the folder if needed and open it in the file manager")
        self.open_folder_button.clicked.connect(self.open_folder)
        row.addWidget(self.open_folder_button)
        self.reload_button = QPushButton("Reload plugins", folder_box)
        self.reload_button.setToolTip("Load every plugin again (picks up files added to the folder)")
        self.reload_button.clicked.connect(self.reload)
        row.addWidget(self.reload_button)
        fl.addLayout(row)
        hint = QLabel(
            "Drop a <code>.py</code> file or a package here that implements "
            "<code>register_policies(register)</code> (see <code>lrbench_gui.hookspecs</code>), then press "
            "<i>Reload plugins</i>. Installed packages register through the <code>lrbench</code> entry-point "
            "group; <code>LRBENCH_LOAD_PLUGINS</code> picks which load.",
            folder_box,
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #4b5563;")
        fl.addWidget(hint)
        root.addWidget(folder_box)

        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.setChildrenCollapsible(False)
        root.addWidget(splitter, 1)

        table_box = QGroupBox("Loaded plugins", splitter)
        tl = QVBoxLayout(table_box)
        self.table = QTableWidget(0, len(COLUMNS), table_box)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        tl.addWidget(self.table)
        self.table_box = table_box

        errors_box = QGroupBox("Load errors", splitter)
        el = QVBoxLayout(errors_box)
        self.errors = QTreeWidget(errors_box)
        self.errors.setColumnCount(2)
        self.errors.setHeaderLabels(["Plugin", "Problem"])
        self.errors.setRootIsDecorated(False)
        self.errors.setWordWrap(True)
        self.errors.setUniformRowHeights(False)
        self.errors.setAlternatingRowColors(True)
        self.errors.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.errors.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        el.addWidget(self.errors)
        self.no_errors = QLabel("✓ Every plugin loaded without problems.", errors_box)
        self.no_errors.setStyleSheet(f"color: {_GREEN.name()};")
        el.addWidget(self.no_errors)
        self.errors_box = errors_box
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        self.set_registry(registry)

    @property
    def registry(self) -> Registry:
        return self._registry

    def folder(self) -> Path:
        return plugins_dir()

    def set_registry(self, registry: Registry) -> None:
        """Show ``registry``'s plugins and problems."""
        self._registry = registry
        folder = self.folder()
        self.folder_label.setText(str(folder) + ("" if folder.is_dir() else "   (does not exist yet)"))
        rows = plugin_rows(registry)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = [row["name"], row["status"], row["provides"], str(row["items"]), row["version"], row["source"]]
            for c, value in enumerate(values):
                cell = QTableWidgetItem(value)
                if c == 3:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    cell.setToolTip("\n".join(row["item_names"]) or "no items")
                elif c == 5:
                    cell.setToolTip(row["source"])
                if c == 1:
                    color = _RED if row["status"] == "failed" else _AMBER if row["problems"] else _GREEN
                    color = QColor(themed(color.name()))  # the dark theme's lighter twin
                    cell.setForeground(QBrush(color))
                if row["problems"]:
                    cell.setToolTip("\n".join(row["problems"]))
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()
        loaded = len(registry.plugins)
        self.table_box.setTitle(f"Plugins ({loaded} loaded, {len(rows) - loaded} failed)")

        self.errors.clear()
        for problem in registry.problems:
            item = QTreeWidgetItem([problem.plugin, problem.message])
            item.setForeground(0, QBrush(QColor(themed(_RED.name()))))
            item.setForeground(1, QBrush(QColor(themed(_RED.name()))))
            item.setToolTip(0, problem.source)
            item.setToolTip(1, f"{problem.message}\n\nsource: {problem.source}")
            self.errors.addTopLevelItem(item)
        n = len(registry.problems)
        self.errors_box.setTitle(f"Load errors ({n})" if n else "Load errors")
        self.errors.setVisible(bool(n))
        self.no_errors.setVisible(not n)

    def theme_changed(self, dark: bool) -> None:
        """Colour the statuses for the new theme (``apply_theme`` calls it)."""
        self.set_registry(self._registry)

    def error_messages(self) -> list[str]:
        """The text of every load error shown (for tests and bug reports)."""
        return [self.errors.topLevelItem(i).text(1) for i in range(self.errors.topLevelItemCount())]

    def reload(self) -> Registry:
        """Load every plugin again, install the result and emit :attr:`registryReloaded`."""
        from lrbench_gui.plugins import load_plugins, reset_registry

        registry = load_plugins()
        reset_registry(registry)
        self.set_registry(registry)
        n = len(registry.problems)
        self.banner.show_message(
            f"Reloaded: {_plural(len(registry.policies), 'policy')} from {_plural(len(registry.plugins), 'plugin')}"
            + (f", {_plural(n, 'problem')}." if n else "."),
            "warning" if n else "info",
        )
        self.registryReloaded.emit(registry)
        return registry

    def open_folder(self) -> None:
        folder = self.folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.banner.show_message(f"Could not create {folder}: {exc.strerror or exc}")
            return
        self.folder_label.setText(str(folder))
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.banner.show_message(f"No file manager could open {folder}; its path is above.", "warning")
