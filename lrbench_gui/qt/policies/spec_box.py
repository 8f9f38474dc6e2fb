"""The spec of the curve on screen as JSON, with Copy, Open and Save (a spec file is JSON, written
atomically); what is wrong with a spec file is said in the panel's banner, in words."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QSettings, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.spec import SpecError
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["SpecBox", "write_text_atomic"]


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class SpecBox(QGroupBox):
    """A read-only JSON view of the spec on screen (:meth:`show_spec`) and its buttons.

    ``load(obj)`` puts an opened spec into the editor (raising :class:`SpecError` when it is
    invalid); problems go to ``banner``; ``settings`` remembers the last folder used.
    """

    #: Fires when a spec was saved, opened or copied; carries one line for a status bar.
    statusMessage = Signal(str)

    def __init__(self, load: Callable[[Any], None], banner: MessageBanner, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Spec (JSON)", parent)
        self._load = load
        self._banner = banner
        self._settings = settings
        self.spec: dict[str, Any] | None = None
        self.label = ""
        layout = QVBoxLayout(self)
        self.spec_view = QPlainTextEdit(self)
        self.spec_view.setReadOnly(True)
        self.spec_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.spec_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        layout.addWidget(self.spec_view, 1)
        row = QHBoxLayout()
        self.copy_button = QPushButton("Copy", self)
        self.open_button = QPushButton("Open…", self)  # the box says "Spec": short labels keep 1024 px wide windows whole
        self.save_button = QPushButton("Save…", self)
        row.addWidget(self.copy_button)
        row.addStretch(1)
        files = QHBoxLayout()  # a second row: the box stays narrow enough for a 1024 px window
        files.addStretch(1)
        files.addWidget(self.open_button)
        files.addWidget(self.save_button)
        layout.addLayout(row)
        layout.addLayout(files)
        self.copy_button.clicked.connect(self.copy)
        self.open_button.clicked.connect(self.open_dialog)
        self.save_button.clicked.connect(self.save_dialog)

    def show_spec(self, spec: dict[str, Any], label: str) -> None:
        """The spec of the curve on screen now, and its label (the suggested file name)."""
        self.spec, self.label = spec, label
        self.spec_view.setPlainText(json.dumps(spec, indent=2))

    def open_file(self, path: str | os.PathLike[str]) -> bool:
        """Load a spec from a JSON file. A bad file shows a message and changes nothing."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            obj = json.loads(text)
            self._load(obj)
        except OSError as exc:
            self._banner.show_message(f"Could not read {path}: {exc.strerror or exc}")
            return False
        except UnicodeDecodeError:
            self._banner.show_message(f"Could not open {path.name}: it is not a text (UTF-8) file.")
            return False
        except json.JSONDecodeError as exc:
            self._banner.show_message(
                f"Could not open {path.name}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
            )
            return False
        except SpecError as exc:
            where = f" at {exc.path}" if exc.path else ""
            self._banner.show_message(f"Could not open {path.name}: invalid spec{where}: {exc.message}")
            return False
        self._banner.dismiss()
        self._remember_dir(path)
        self.statusMessage.emit(f"Opened spec {path}")
        return True

    def save_file(self, path: str | os.PathLike[str]) -> bool:
        """Write the current spec as JSON, atomically (a temporary file, then a rename)."""
        path = Path(path)
        if self.spec is None:
            self._banner.show_message("There is no valid curve to save yet.")
            return False
        try:
            write_text_atomic(path, json.dumps(self.spec, indent=2) + "\n")
        except OSError as exc:
            self._banner.show_message(f"Could not save {path}: {exc.strerror or exc}")
            return False
        self._remember_dir(path)
        self.statusMessage.emit(f"Saved spec to {path}")
        return True

    def copy(self) -> None:
        if self.spec is not None:
            QGuiApplication.clipboard().setText(json.dumps(self.spec, indent=2))
            self.statusMessage.emit("Copied the spec JSON")

    def _start_dir(self) -> str:
        if self._settings is not None:
            value = self._settings.value("policies/spec_dir", "")
            if value and Path(str(value)).is_dir():
                return str(value)
        return str(Path.home())

    def _remember_dir(self, path: Path) -> None:
        if self._settings is not None:
            self._settings.setValue("policies/spec_dir", str(path.resolve().parent))

    def open_dialog(self) -> None:
        """Ask for a spec file and open it."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Open policy spec", self._start_dir(), "Policy spec (*.json);;All files (*)"
        )
        if path:
            self.open_file(path)

    def save_dialog(self) -> None:
        """Ask where to save the current spec and save it."""
        if self.spec is None:
            self._banner.show_message("There is no valid curve to save yet.")
            return
        suggested = str(Path(self._start_dir()) / f"{self.label.split('(')[0].split(' ')[0] or 'policy'}.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save policy spec", suggested, "Policy spec (*.json)")
        if path:
            if not Path(path).suffix:
                path += ".json"
            self.save_file(path)
