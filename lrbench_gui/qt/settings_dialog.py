"""Settings: database, plugins folder, workers and GPUs, default backend, theme.

Stored with ``QSettings`` (organization and application ``lrbench``; tests pass their own
``QSettings`` on a temporary file). :class:`AppSettings` reads and writes the values with their
defaults; :class:`SettingsDialog` edits them and emits ``settingsApplied`` on OK, which the main
window applies at once (see ``MainWindow.apply_settings``). :func:`apply_theme` switches the
palette, the style sheet additions and every pyqtgraph plot between light and dark.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

__all__ = ["AppSettings", "SettingsDialog", "apply_theme", "parse_gpus", "detected_gpus", "THEMES"]

THEMES = ("light", "dark")


def parse_gpus(text: str) -> list[str]:
    """``"0, 1,3"`` -> ``["0", "1", "3"]``; ``ValueError`` naming a bad id."""
    out = []
    for token in text.replace(";", ",").replace(" ", ",").split(","):
        token = token.strip()
        if not token:
            continue
        if not token.isdigit():
            raise ValueError(f"{token!r} is not a GPU number (use CUDA ids such as 0,1)")
        if token not in out:
            out.append(token)
    return out


def detected_gpus() -> list[str]:
    """The GPU ids this machine has (nvidia-smi, or LRBENCH_GPUS); [] when none or unreadable."""
    from lrbench_gui.core.runs.gpus import GpuError, detect_gpus

    try:
        return detect_gpus().ids
    except GpuError:
        return []


@dataclass
class AppSettings:
    """The values the dialog edits; ``""``/empty means "the default"."""

    db_path: str = ""
    plugins_dir: str = ""
    cpu_workers: int = field(default_factory=lambda: max(1, min(4, (os.cpu_count() or 2) // 2)))
    #: the GPUs trials may use; default: every GPU found (an empty list saved: CPU workers only)
    gpus: list[str] = field(default_factory=detected_gpus)
    #: run a study's trials on warm workers (one trainer process per slot) where the task allows
    warm: bool = True
    backend: str = "local"  # local | ray
    ray_address: str = ""
    theme: str = "light"

    @classmethod
    def load(cls, settings: QSettings) -> "AppSettings":
        d = cls()

        def get(key: str, default: Any) -> Any:
            value = settings.value(key, default)
            return default if value is None else value

        try:
            workers = int(get("workers/cpu", d.cpu_workers))
        except (TypeError, ValueError):
            workers = d.cpu_workers
        if settings.contains("workers/gpus"):
            try:
                gpus = parse_gpus(str(get("workers/gpus", "")))
            except ValueError:
                gpus = []
        else:
            gpus = d.gpus
        backend = str(get("backend/default", "local"))
        theme = str(get("ui/theme", "light"))
        warm = str(get("workers/warm", "true")).strip().lower() not in ("false", "0", "no", "off")
        return cls(
            db_path=str(get("paths/database", "")),
            plugins_dir=str(get("paths/plugins", "")),
            cpu_workers=max(1, workers),
            gpus=gpus,
            warm=warm,
            backend=backend if backend in ("local", "ray") else "local",
            ray_address=str(get("backend/ray_address", "")),
            theme=theme if theme in THEMES else "light",
        )

    def save(self, settings: QSettings) -> None:
        settings.setValue("paths/database", self.db_path)
        settings.setValue("paths/plugins", self.plugins_dir)
        settings.setValue("workers/cpu", int(self.cpu_workers))
        settings.setValue("workers/gpus", ",".join(self.gpus))
        settings.setValue("workers/warm", "true" if self.warm else "false")
        settings.setValue("backend/default", self.backend)
        settings.setValue("backend/ray_address", self.ray_address)
        settings.setValue("ui/theme", self.theme)
        settings.sync()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SettingsDialog(QDialog):
    """Edit :class:`AppSettings`; OK validates, saves to ``settings`` and emits ``settingsApplied``."""

    # OK was pressed and the values were saved: (AppSettings)
    settingsApplied = Signal(object)

    def __init__(self, settings: QSettings, parent: QWidget | None = None, *, current_db: Path | None = None,
                 current_plugins: Path | None = None, db_override: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("lrbench settings")
        self.setMinimumWidth(560)
        self.settings = settings
        values = AppSettings.load(settings)

        self.db_edit = QLineEdit(values.db_path)
        self.db_edit.setPlaceholderText(str(current_db) if current_db else "default: in the data folder")
        self.db_edit.setToolTip("The policy database file (a TinyDB JSON file). Empty: $LRBENCH_DB or the data folder.")
        #: why the database cannot be chosen here ($LRBENCH_DB, or a path given at start), or None
        self.db_override = db_override
        self._stored_db = values.db_path
        self.db_note = QLabel()
        self.db_note.setWordWrap(True)
        self.db_note.setStyleSheet("color: #b45309;")
        self.db_note.setVisible(bool(db_override))
        if db_override:
            # the environment wins over this setting at every start: show what is open, read-only
            self.db_edit.setText(str(current_db) if current_db else "")
            self.db_edit.setReadOnly(True)
            self.db_note.setText(f"{db_override} This setting ({values.db_path or 'empty: the data folder'}) is "
                                 "kept, and used once that is gone.")
        self.plugins_edit = QLineEdit(values.plugins_dir)
        self.plugins_edit.setPlaceholderText(str(current_plugins) if current_plugins else "default: in the data folder")
        self.plugins_edit.setToolTip("A folder of single-file plugins (*.py) loaded at start-up and on Reload plugins.")
        self.workers = QSpinBox()
        self.workers.setRange(1, 512)
        self.workers.setValue(values.cpu_workers)
        self.workers.setToolTip("How many trials run side by side on the CPU (the Study panel's default).")
        self.gpus_edit = QLineEdit(",".join(values.gpus))
        self.gpus_edit.setPlaceholderText("none: CPU workers; e.g. 0,1 for two GPUs")
        found = detected_gpus()
        self.gpus_edit.setToolTip("GPU ids (as nvidia-smi numbers them) that trials may use: each trial gets its "
                                  "own (GPUs per trial in the Run and Study panels) as CUDA_VISIBLE_DEVICES. "
                                  + (f"Found here: {','.join(found)}." if found else "No GPU was found here."))
        self.warm = QCheckBox("Reuse trial processes (warm workers)")
        self.warm.setChecked(values.warm)
        self.warm.setToolTip("A study's trials run one after another in one process per slot, which keeps the "
                             "imports, a LoRA base model and the tokenized data loaded; the results are the same "
                             "as in a fresh process. Off: every trial starts its own process.")
        self.backend = QComboBox()
        self.backend.addItem("Local processes", "local")
        self.backend.addItem("Ray cluster", "ray")
        self.backend.setCurrentIndex(max(0, self.backend.findData(values.backend)))
        self.ray_edit = QLineEdit(values.ray_address)
        self.ray_edit.setPlaceholderText("empty: start a local Ray")
        self.theme = QComboBox()
        self.theme.addItems(list(THEMES))
        self.theme.setCurrentText(values.theme)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c62828;")
        self.error.setWordWrap(True)
        self.error.hide()

        form = QFormLayout()
        form.addRow("Database file", self._with_browse(self.db_edit, folder=False))
        form.addRow("", self.db_note)
        if db_override:
            for button in form.itemAt(form.rowCount() - 2, QFormLayout.ItemRole.FieldRole).widget().findChildren(QPushButton):
                button.setEnabled(False)
        form.addRow("Plugins folder", self._with_browse(self.plugins_edit, folder=True))
        form.addRow("CPU workers", self.workers)
        form.addRow("GPUs", self.gpus_edit)
        form.addRow("", self.warm)
        form.addRow("Default backend", self.backend)
        form.addRow("Ray address", self.ray_edit)
        form.addRow("Theme", self.theme)
        note = QLabel("Changes apply when you press OK. A new database or plugins folder is used at once "
                      "when no trial is running.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #6b7280;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.backend.currentIndexChanged.connect(lambda _: self.ray_edit.setEnabled(self.backend.currentData() == "ray"))
        self.ray_edit.setEnabled(values.backend == "ray")

    def _with_browse(self, edit: QLineEdit, folder: bool) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        browse = QPushButton("Browse…")

        def pick() -> None:
            if folder:
                path = QFileDialog.getExistingDirectory(self, "Plugins folder", edit.text() or str(Path.home()))
            else:
                path, _ = QFileDialog.getSaveFileName(self, "Database file", edit.text() or "policies.json",
                                                      "lrbench database (*.json)",
                                                      options=QFileDialog.Option.DontConfirmOverwrite)
            if path:
                edit.setText(path)

        browse.clicked.connect(pick)
        row.addWidget(browse)
        return box

    def values(self) -> AppSettings:
        """The edited values; ``ValueError`` in words for a bad GPU list or path."""
        gpus = parse_gpus(self.gpus_edit.text())
        db = self._stored_db if self.db_override else self.db_edit.text().strip()
        if db and Path(db).expanduser().is_dir():
            raise ValueError(f"database file: {db} is a folder; name a .json file")
        plugins = self.plugins_edit.text().strip()
        if plugins and Path(plugins).expanduser().exists() and not Path(plugins).expanduser().is_dir():
            raise ValueError(f"plugins folder: {plugins} is a file, not a folder")
        return AppSettings(
            db_path=db, plugins_dir=plugins, cpu_workers=self.workers.value(), gpus=gpus,
            warm=self.warm.isChecked(), backend=self.backend.currentData(), ray_address=self.ray_edit.text().strip(),
            theme=self.theme.currentText(),
        )

    def accept(self) -> None:
        try:
            values = self.values()
        except ValueError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        values.save(self.settings)
        self.settingsApplied.emit(values)
        super().accept()


_DARK_QSS = """
QListWidget#panelNav { background: #1f2329; border-right: 1px solid #30353d; }
QListWidget#panelNav::item { color: #d1d5db; }
QListWidget#panelNav::item:hover { background: #2b3038; }
QListWidget#panelNav::item:selected { background: #1e3a5f; color: #dbeafe; }
QGroupBox { border: 1px solid #3a3f47; }
QGroupBox::title { color: #e5e7eb; }
"""


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor("#1b1e23"), QColor("#25292f"), QColor("#e5e7eb")
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Window, window)
        p.setColor(group, QPalette.ColorRole.WindowText, text)
        p.setColor(group, QPalette.ColorRole.Base, base)
        p.setColor(group, QPalette.ColorRole.AlternateBase, QColor("#2a2e35"))
        p.setColor(group, QPalette.ColorRole.ToolTipBase, QColor("#2f343b"))
        p.setColor(group, QPalette.ColorRole.ToolTipText, text)
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor("#8b9099"))
        p.setColor(group, QPalette.ColorRole.Text, text)
        p.setColor(group, QPalette.ColorRole.Button, QColor("#30353d"))
        p.setColor(group, QPalette.ColorRole.ButtonText, text)
        p.setColor(group, QPalette.ColorRole.BrightText, QColor("#ff6b6b"))
        p.setColor(group, QPalette.ColorRole.Highlight, QColor("#2f6fb5"))
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
        p.setColor(group, QPalette.ColorRole.Link, QColor("#7ab7ff"))
    for role, color in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.Base, base),
                        (QPalette.ColorRole.Button, QColor("#2a2e35")), (QPalette.ColorRole.Highlight, QColor("#3a3f47"))):
        p.setColor(QPalette.ColorGroup.Disabled, role, color)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6b7280"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#6b7280"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6b7280"))
    return p


def apply_theme(theme: str, root: QWidget | None = None) -> None:
    """Switch the application to ``theme`` (light or dark), including every plot under ``root``."""
    import pyqtgraph as pg

    from lrbench_gui.qt._resources import style_sheet

    app = QApplication.instance()
    if app is None:
        return
    dark = theme == "dark"
    hints = app.styleHints()
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(Qt.ColorScheme.Dark if dark else Qt.ColorScheme.Light)
    app.setPalette(_dark_palette() if dark else app.style().standardPalette())
    app.setStyleSheet(style_sheet() + (_DARK_QSS if dark else ""))
    from lrbench_gui.qt import plot_style

    plot_style.set_dark(dark)
    c = plot_style.colours(dark)
    # plots made later follow the theme (pyqtgraph's options, and plot_style.new_plot)
    pg.setConfigOptions(background=c["background"], foreground=c["foreground"])
    if root is None:
        return
    # widgets with colours of their own (banners, the demo box) follow through ``theme_changed``
    for widget in [root, *root.findChildren(QWidget)]:
        hook = getattr(widget, "theme_changed", None)
        if callable(hook):
            hook(dark)
    for plot in root.findChildren(pg.PlotWidget):
        plot_style.style_plot(plot, dark)
    # text coloured by a style sheet for the light theme (hints, status lines) gets its dark twin
    plot_style.theme_style_sheets(root, dark)
