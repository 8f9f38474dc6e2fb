"""The policy code dialog: a chosen policy as a DeepSpeed ``scheduler`` block, Hugging Face
``TrainingArguments`` fields, torch code, or its lrbench spec, with a Copy button.

The text is what ``lrbench policy export`` prints for the same spec and run length
(:func:`lrbench_gui.core.export.export_policy`, the one exporter), and the note under it says
whether the framework's scheduler follows the lrbench schedule exactly. When a target has no
equivalent, the note says what to use instead (lrbench's adapter), as the CLI does.
Opened from the Results panel (a trial's policy), the Policies panel (the curve on screen) and
the Recipes panel.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.export import TARGETS, ExportResult, export_policy
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.records import spec_label
from lrbench_gui.core.spec import ScheduleError, SpecError, build_schedule, parse_spec

__all__ = ["PolicyCodeDialog", "FORMATS", "policy_code", "export_command", "open_policy_code", "add_code_button",
           "insert_beside"]

#: the dialog's formats: key -> title (the first three are ``lrbench policy export --to`` targets)
FORMATS: dict[str, str] = {
    "deepspeed": "DeepSpeed scheduler block",
    "hf": "HF TrainingArguments fields",
    "torch": "torch code",
    "spec": "lrbench spec (JSON)",
}
_EXACT = "#2e7d32"
_INEXACT = "#b45309"
_ERROR = "#c62828"


def policy_code(spec: Any, target: str, total_steps: int, registry: Registry) -> ExportResult:
    """``spec`` for a run of ``total_steps`` as ``target`` (a :data:`FORMATS` key): what
    ``lrbench policy export --to TARGET`` prints (the spec target: its JSON). ``ValueError`` in
    one line for a spec that is invalid or breaks at some step (the CLI refuses the same)."""
    try:
        parsed = parse_spec(spec, registry)
    except SpecError as exc:
        raise ValueError(f"invalid spec: {exc}") from None
    if target == "spec":
        return ExportResult("spec", json.dumps(parsed.to_json(), indent=2), True, False,
                            "the policy itself: lrbench run --spec FILE, or lrbench_gui.integrations.as_lr_scheduler")
    if target not in TARGETS:
        raise ValueError(f"unknown format {target!r}; choose one of {', '.join(FORMATS)}")
    try:
        build_schedule(parsed, min(total_steps, 100_000), registry).checked_lrs()
        return export_policy(parsed, target, total_steps, registry)
    except (ScheduleError, SpecError, ValueError) as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def export_command(spec: Any, target: str, total_steps: int) -> str:
    """The ``lrbench policy export`` line that prints the same text."""
    obj = spec.to_json() if hasattr(spec, "to_json") else spec
    return shlex.join(["lrbench", "policy", "export", json.dumps(obj, separators=(",", ":")), "--to", target,
                       "--steps", str(total_steps)])


class PolicyCodeDialog(QDialog):
    """The policy ``spec`` (a spec dict) as code for a run of ``total_steps`` steps; see the module
    docstring. :meth:`set_format` and :meth:`set_steps` change what is shown, :meth:`code` is the
    text the Copy button copies."""

    #: the text was copied to the clipboard: (format key)
    copied = Signal(str)

    def __init__(self, spec: dict[str, Any], total_steps: int, registry: Registry, parent: QWidget | None = None, *,
                 title: str = "", target: str = "deepspeed") -> None:
        super().__init__(parent)
        self.spec = spec
        self.registry = registry
        self.result: ExportResult | None = None
        try:
            label = spec_label(spec, registry, full=True)
        except Exception:  # noqa: BLE001 - a spec of a plugin no longer installed: its name is enough
            label = str(spec.get("name", "policy")) if isinstance(spec, dict) else "policy"
        self.setWindowTitle(f"Policy code: {title or label}")
        self.resize(720, 520)
        layout = QVBoxLayout(self)
        self.label = QLabel(f"<b>{_escape(label)}</b>", self)
        self.label.setWordWrap(True)
        self.label.setToolTip(label)
        layout.addWidget(self.label)
        row = QHBoxLayout()
        self.format_combo = QComboBox(self)
        for key, text in FORMATS.items():
            self.format_combo.addItem(text, key)
        row.addWidget(QLabel("As", self))
        row.addWidget(self.format_combo, 1)
        row.addWidget(QLabel("Run length", self))
        self.steps_spin = QSpinBox(self)
        self.steps_spin.setRange(1, 10_000_000)
        self.steps_spin.setGroupSeparatorShown(True)
        self.steps_spin.setSuffix(" steps")
        self.steps_spin.setValue(max(1, int(total_steps)))
        self.steps_spin.setToolTip("Total optimizer steps of the run you train with: schedules such as cosine depend on it")
        row.addWidget(self.steps_spin)
        layout.addLayout(row)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        layout.addWidget(self.text, 1)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.command = QLabel(self)
        self.command.setWordWrap(True)
        self.command.setStyleSheet("color: #6b7280;")
        self.command.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.command)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the text above to the clipboard")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.copy_button.clicked.connect(self.copy)
        self.format_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.steps_spin.valueChanged.connect(lambda _v: self.refresh())
        self.set_format(target)
        self.refresh()

    def target(self) -> str:
        return str(self.format_combo.currentData())

    def set_format(self, target: str) -> None:
        i = self.format_combo.findData(target)
        if i < 0:
            raise ValueError(f"unknown format {target!r}; choose one of {', '.join(FORMATS)}")
        self.format_combo.setCurrentIndex(i)

    def set_steps(self, steps: int) -> None:
        self.steps_spin.setValue(int(steps))

    def code(self) -> str:
        """The text shown (empty when the target has no equivalent: the note says what to use)."""
        return self.result.text if self.result is not None else ""

    def refresh(self) -> None:
        target, steps = self.target(), self.steps_spin.value()
        try:
            self.result = policy_code(self.spec, target, steps, self.registry)
        except ValueError as exc:
            self.result = None
            self.text.setPlainText("")
            self._note(f"Cannot export: {exc}", _ERROR)
            self.copy_button.setEnabled(False)
            return
        r = self.result
        self.text.setPlainText(r.text)
        self.text.setPlaceholderText("" if r.text else f"No {FORMATS[target]} reproduces this policy: the note below says "
                                     "what to use instead.")
        self.copy_button.setEnabled(bool(r.text))
        if not r.text:
            self._note(r.note, _INEXACT)
        elif target == "spec":
            self._note(f"Exact: {r.note}.", _EXACT)
        elif r.exact:
            self._note("Exact: follows the lrbench schedule at every step" + (f" ({r.note})." if r.note else "."), _EXACT)
        else:
            self._note("Not exact: the framework's scheduler differs from the policy" + (f": {r.note}." if r.note else "."), _INEXACT)
        self.command.setText("" if target == "spec" else f"Same from a terminal: {export_command(self.spec, target, steps)}")

    def _note(self, text: str, color: str) -> None:
        self.note.setStyleSheet(f"color: {color};")
        self.note.setText(text)

    def note_text(self) -> str:
        return self.note.text()

    def copy(self) -> None:
        if self.code():
            QGuiApplication.clipboard().setText(self.code())
            self.copied.emit(self.target())


def open_policy_code(parent: QWidget, spec: dict[str, Any] | None, total_steps: int, registry: Registry | None, *,
                     title: str = "", on_problem: Callable[[str], None] | None = None) -> PolicyCodeDialog | None:
    """Open the dialog (not blocking) for ``spec``; without a spec, ``on_problem`` hears why."""
    if not spec:
        if on_problem is not None:
            on_problem("There is no valid policy to export.")
        return None
    if registry is None:
        from lrbench_gui.plugins import get_registry

        registry = get_registry()
    dialog = PolicyCodeDialog(spec, total_steps, registry, parent, title=title)
    dialog.finished.connect(dialog.deleteLater)
    dialog.open()
    return dialog


def insert_beside(anchor: QWidget | None, widget: QWidget, fallback: QWidget) -> None:
    """Put ``widget`` right after ``anchor`` in whichever layout of ``anchor``'s parent holds it
    (else at the end of ``fallback``'s layout)."""
    def find(layout: Any) -> Any:
        if layout is None:
            return None
        if anchor is not None and layout.indexOf(anchor) >= 0:
            return layout
        for i in range(layout.count()):
            found = find(layout.itemAt(i).layout())
            if found is not None:
                return found
        return None

    parent = anchor.parentWidget() if anchor is not None else None
    row = find(parent.layout()) if parent is not None else None
    if row is not None and hasattr(row, "insertWidget"):
        row.insertWidget(row.indexOf(anchor) + 1, widget)
    else:
        fallback.layout().addWidget(widget)


def add_code_button(spec_box: QWidget, spec: Callable[[], dict[str, Any] | None], steps: Callable[[], int],
                    registry: Callable[[], Registry | None]) -> QPushButton:
    """Put a *Policy code…* button beside the Copy button of the Policies panel's spec box: it
    opens the dialog for the curve on screen (``spec()``) and its run length (``steps()``)."""
    button = QPushButton("Policy code…", spec_box)
    button.setToolTip("This curve as a DeepSpeed scheduler block, HF TrainingArguments fields or torch code")
    insert_beside(getattr(spec_box, "copy_button", None), button, spec_box)
    banner = getattr(spec_box, "_banner", None)
    button.clicked.connect(lambda: open_policy_code(
        spec_box, spec(), steps(), registry(),
        on_problem=(lambda m: banner.show_message(m, "warning")) if banner is not None else None))
    spec_box.code_button = button  # type: ignore[attr-defined]
    return button


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
