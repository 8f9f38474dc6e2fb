"""A parameter form generated from a plugin's schema.

:class:`ParamForm` reads a :class:`~lrbench_gui.core.params.Params` model through
:func:`~lrbench_gui.core.params.describe` and builds one editor per field: a scientific-notation
line edit for floats (``1e-3`` and ``0.001`` both work; Up/Down step through 1-2-5 on log-scale
fields), a spin box for ints, a check box for bools, a combo box for choices and a line edit
taking ``10, 20, 30`` for int lists. Tooltips come from the schema's descriptions and bounds.

As the user types, the form waits ~50 ms, parses every field, validates the whole set against
the model (cross-field rules included) and either emits :attr:`ParamForm.paramsChanged` with the
validated values or marks the bad fields (red border and a message under the field) and emits
:attr:`ParamForm.paramsRejected`. Bad input is never an exception.
"""

from __future__ import annotations

import math
import re
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import ParamError, ParamInfo, Params, describe, validate_params

__all__ = ["ParamForm", "FloatEdit", "format_float", "parse_int_list", "parse_float_list"]

_INT_LIMIT = 2**31 - 1
ERROR_COLOR = "#c62828"
_STYLE = f"""
QLineEdit[invalid="true"], QSpinBox[invalid="true"], QComboBox[invalid="true"] {{
    border: 1px solid {ERROR_COLOR};
    border-radius: 3px;
    padding: 2px 3px;
    background: #fff6f6;
}}
QLabel[role="field-error"], QLabel[role="form-error"] {{ color: {ERROR_COLOR}; }}
QLabel[role="unit"] {{ color: #6b7280; }}
"""


def format_float(value: float) -> str:
    """The shortest readable text for a float: ``0.001``, ``1e-5``, ``25``."""
    text = format(float(value), ".10g")
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def parse_float_list(text: str) -> list[float]:
    """``"0.25, 0.5"`` or ``"[0.25 0.5]"`` -> ``[0.25, 0.5]``; ``ValueError`` naming the bad item."""
    out = []
    for token in re.split(r"[,;\s]+", text.strip().strip("[]()")):
        if not token:
            continue
        try:
            value = float(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{token!r} is not a finite number")
        out.append(value)
    return out


def parse_int_list(text: str) -> list[int]:
    """``"10, 20 30"`` or ``"[10, 20]"`` -> ``[10, 20, 30]``; ``ValueError`` naming the bad item."""
    body = text.strip().strip("[]()")
    out = []
    for token in re.split(r"[,;\s]+", body):
        if not token:
            continue
        try:
            value = float(token)
        except ValueError:
            raise ValueError(f"{token!r} is not a whole number") from None
        if not math.isfinite(value) or int(value) != value:
            raise ValueError(f"{token!r} is not a whole number")
        out.append(int(value))
    return out


def _nice_step(value: float, up: bool) -> float:
    """The next value on the 1-2-5 ladder (..., 1e-3, 2e-3, 5e-3, 1e-2, ...)."""
    if value <= 0 or not math.isfinite(value):
        return 1e-3 if up else value
    exponent = math.floor(math.log10(value))
    mantissa = value / 10**exponent
    if up:
        nxt = next(g for g in (1, 2, 5, 10, 20) if g > mantissa * (1 + 1e-9))
    else:
        nxt = next(g for g in (5, 2, 1, 0.5, 0.2) if g < mantissa * (1 - 1e-9))
    return float(f"{nxt}e{exponent}")


def _tidy(message: str) -> str:
    """A whole-model message without pydantic's prefix and the echo of every value."""
    message = re.sub(r"^Value error, ", "", message)
    return re.sub(r" \(got \{.*\}\)$", "", message)


class FloatEdit(QLineEdit):
    """A line edit for floats that accepts any Python float syntax (``1e-3``, ``.5``, ``2E4``).

    Up/Down (and the mouse wheel while focused) step the value: multiplicatively through the
    1-2-5 ladder for log-scale fields, by ``linear_step`` otherwise, never past an inclusive
    bound. The text is never rewritten while the user types.
    """

    def __init__(self, info: ParamInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._info = info
        span = None
        if info.search is not None and info.search[1] > info.search[0]:
            span = info.search[1] - info.search[0]
        elif info.minimum is not None and info.maximum is not None:
            span = info.maximum - info.minimum
        self.linear_step = 10 ** (math.floor(math.log10(span)) - 2) if span else 0.1
        self.setPlaceholderText("e.g. 1e-3" if info.log else "a number")

    def step(self, direction: int) -> None:
        try:
            value = float(self.text())
        except ValueError:
            return
        if self._info.log:
            new = _nice_step(value, direction > 0)
        else:
            new = round(value + direction * self.linear_step, 12)
        lo, hi = self._info.minimum, self._info.maximum
        if lo is not None and new < lo or hi is not None and new > hi:
            return
        self.setText(format_float(new))
        self.textEdited.emit(self.text())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.step(1 if event.key() == Qt.Key.Key_Up else -1)
            event.accept()
            return
        super().keyPressEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.hasFocus() and event.angleDelta().y():
            self.step(1 if event.angleDelta().y() > 0 else -1)
            event.accept()
            return
        super().wheelEvent(event)


class _Field:
    """One schema field: its editor, how to read and write it, and its error label."""

    def __init__(self, info: ParamInfo, editor: QWidget, error: QLabel) -> None:
        self.info = info
        self.editor = editor
        self.error = error

    def read(self) -> Any:
        """The editor's value as Python; ``ValueError`` with a message for text that does not parse."""
        info, w = self.info, self.editor
        if info.kind == "float":
            text = w.text().strip()
            if not text:
                raise ValueError("required: enter a number")
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number (try 0.001 or 1e-3)") from None
        if info.kind == "int":
            if not w.hasAcceptableInput():
                text = w.cleanText().strip()
                if not text:
                    raise ValueError("required: enter a whole number")
                raise ValueError(f"{text!r} is out of range: must be {info.bounds_text()}")
            return int(w.value())
        if info.kind == "bool":
            return bool(w.isChecked())
        if info.kind == "choice":
            return w.currentText()
        if info.kind == "int_list":
            return parse_int_list(w.text())
        if info.kind == "float_list":
            return parse_float_list(w.text())
        return w.text()

    def write(self, value: Any) -> None:
        info, w = self.info, self.editor
        w.blockSignals(True)
        try:
            if info.kind == "float":
                w.setText(format_float(value) if isinstance(value, (int, float)) else str(value))
            elif info.kind == "int":
                w.setValue(max(-_INT_LIMIT, min(_INT_LIMIT, int(value))))
            elif info.kind == "bool":
                w.setChecked(bool(value))
            elif info.kind == "choice":
                i = w.findText(str(value))
                w.setCurrentIndex(max(i, 0))
            elif info.kind == "int_list":
                w.setText(", ".join(str(int(v)) for v in (value or [])))
            elif info.kind == "float_list":
                w.setText(", ".join(format_float(v) for v in (value or [])))
            else:
                w.setText("" if value is None else str(value))
        finally:
            w.blockSignals(False)

    def set_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.setVisible(bool(message))
        if bool(self.editor.property("invalid")) != bool(message):
            self.editor.setProperty("invalid", bool(message))
            self.editor.style().unpolish(self.editor)
            self.editor.style().polish(self.editor)


def _tooltip(info: ParamInfo) -> str:
    lines = [f"<b>{info.name}</b>"]
    if info.description:
        lines.append(info.description)
    facts = []
    if info.bounds_text():
        facts.append(f"valid: {info.bounds_text()}")
    if info.unit:
        facts.append(f"unit: {info.unit}")
    if info.log:
        facts.append("log scale (Up/Down step 1-2-5)")
    default = info.default
    if info.kind == "float" and isinstance(default, (int, float)):
        default = format_float(default)
    elif info.kind in ("int_list", "float_list"):
        default = ", ".join(format(v, "g") for v in default)
    facts.append(f"default: {default}")
    lines.append("<span style='color:#6b7280'>" + " · ".join(facts) + "</span>")
    return "<br>".join(lines)


class ParamForm(QWidget):
    """Editors for one parameter model; see the module docstring."""

    #: Fires ~50 ms after the user's last edit (or at once after :meth:`flush`) when every field
    #: parses and the model accepts the set; carries the validated values as JSON-ready Python.
    paramsChanged = Signal(dict)
    #: Fires instead of ``paramsChanged`` when the edited values are invalid; carries the
    #: problems in words (the same text the form shows).
    paramsRejected = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, debounce_ms: int = 50) -> None:
        super().__init__(parent)
        self.setStyleSheet(_STYLE)
        self._model: type[Params] | None = None
        self._fields: dict[str, _Field] = {}
        self._problems: list[tuple[str, str]] = []
        self._last_good: dict[str, Any] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)
        self._timer.timeout.connect(self.flush)

        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self._body = QWidget(self)
        self._layout.addWidget(self._body)
        self._empty = QLabel("This policy has no parameters.", self)
        self._empty.setProperty("role", "unit")
        self._empty.setVisible(False)
        self._layout.addWidget(self._empty)
        self._form_error = QLabel(self)
        self._form_error.setProperty("role", "form-error")
        self._form_error.setWordWrap(True)
        self._form_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._form_error.setVisible(False)
        self._layout.addWidget(self._form_error)

    # building

    def set_schema(self, model: type[Params] | None, values: dict[str, Any] | None = None) -> None:
        """Show ``model``'s fields, filled with ``values`` over the defaults. Emits nothing."""
        self._timer.stop()
        self._model = model
        self._fields = {}
        old = self._body
        self._body = QWidget(self)
        self._layout.replaceWidget(old, self._body)
        old.hide()
        old.deleteLater()
        grid = QGridLayout(self._body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(1, 1)
        infos = describe(model) if model is not None else []
        values = values or {}
        row = 0
        for info in infos:
            editor = self._make_editor(info)
            tip = _tooltip(info)
            label = QLabel(info.name, self._body)
            label.setToolTip(tip)
            label.setBuddy(editor)
            editor.setToolTip(tip)
            editor.setObjectName(f"param_{info.name}")
            error = QLabel(self._body)
            error.setProperty("role", "field-error")
            error.setWordWrap(True)
            error.setVisible(False)
            font = error.font()
            font.setPointSizeF(font.pointSizeF() * 0.9)
            error.setFont(font)
            field = _Field(info, editor, error)
            field.write(values.get(info.name, info.default))
            self._fields[info.name] = field
            grid.addWidget(label, row, 0, Qt.AlignmentFlag.AlignVCenter)
            if info.kind == "bool":
                grid.addWidget(editor, row, 1, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            else:
                grid.addWidget(editor, row, 1)
            unit = QLabel(info.unit, self._body)
            unit.setProperty("role", "unit")
            grid.addWidget(unit, row, 2)
            grid.addWidget(error, row + 1, 1, 1, 2)
            grid.setRowMinimumHeight(row + 1, 4)
            row += 2
        self._body.show()
        self._empty.setVisible(model is not None and not infos)
        self._problems = []
        self._form_error.setVisible(False)
        self._last_good = self._current_valid() or {}

    def _make_editor(self, info: ParamInfo) -> QWidget:
        if info.kind == "float":
            editor: QWidget = FloatEdit(info, self._body)
            editor.textEdited.connect(self._edited)
        elif info.kind == "int":
            editor = QSpinBox(self._body)
            lo = -_INT_LIMIT if info.minimum is None else math.ceil(info.minimum + (1 if info.exclusive_minimum else 0))
            hi = _INT_LIMIT if info.maximum is None else math.floor(info.maximum - (1 if info.exclusive_maximum else 0))
            editor.setRange(int(max(lo, -_INT_LIMIT)), int(min(hi, _INT_LIMIT)))
            editor.setAccelerated(True)
            editor.setGroupSeparatorShown(False)
            editor.valueChanged.connect(self._edited)
            editor.lineEdit().textEdited.connect(self._edited)
        elif info.kind == "bool":
            editor = QCheckBox(self._body)
            editor.toggled.connect(self._edited)
        elif info.kind == "choice":
            editor = QComboBox(self._body)
            editor.addItems(list(info.choices))
            editor.currentIndexChanged.connect(self._edited)
        elif info.kind in ("int_list", "float_list"):
            editor = QLineEdit(self._body)
            editor.setPlaceholderText("e.g. 10, 20, 30" if info.kind == "int_list" else "e.g. 0.25, 0.5")
            editor.textEdited.connect(self._edited)
        else:
            editor = QLineEdit(self._body)
            editor.textEdited.connect(self._edited)
        if info.kind != "bool":
            editor.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            editor.setMinimumWidth(90)
        return editor

    # reading and writing

    @property
    def model(self) -> type[Params] | None:
        return self._model

    def names(self) -> list[str]:
        return list(self._fields)

    def editor(self, name: str) -> QWidget:
        """The editor widget of field ``name`` (a QLineEdit, QSpinBox, QCheckBox or QComboBox)."""
        return self._fields[name].editor

    def set_values(self, values: dict[str, Any]) -> None:
        """Write ``values`` into the editors (unknown names are ignored). Emits nothing."""
        for name, value in values.items():
            if name in self._fields:
                self._fields[name].write(value)
        self._last_good = self._current_valid() or self._last_good

    def reset_defaults(self) -> None:
        """Put every field back to its default and emit as if the user typed it."""
        for field in self._fields.values():
            field.write(field.info.default)
        self.flush()

    def raw_values(self) -> dict[str, Any]:
        """What parses now, field by field (fields that do not parse are left out)."""
        out = {}
        for name, field in self._fields.items():
            try:
                out[name] = field.read()
            except ValueError:
                pass
        return out

    def last_valid_values(self) -> dict[str, Any]:
        """The last values the model accepted (the defaults until the user edits)."""
        return dict(self._last_good)

    def problems(self) -> list[tuple[str, str]]:
        """The current (field, message) problems; an empty field name is a whole-form problem."""
        return list(self._problems)

    def error_text(self) -> str:
        return "; ".join(f"{p}: {m}" if p else m for p, m in self._problems)

    def is_valid(self) -> bool:
        return not self._problems

    # validation

    def _edited(self, *_: Any) -> None:
        self._timer.start()

    def _current_valid(self) -> dict[str, Any] | None:
        if self._model is None:
            return None
        try:
            values = {name: f.read() for name, f in self._fields.items()}
            return validate_params(self._model, values).model_dump(mode="json")
        except (ValueError, ParamError):
            return None

    def flush(self) -> None:
        """Validate the editors now and emit ``paramsChanged`` or ``paramsRejected``."""
        self._timer.stop()
        if self._model is None:
            return
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for name, field in self._fields.items():
            try:
                values[name] = field.read()
            except ValueError as exc:
                problems.append((name, str(exc)))
        # Fields that do not parse are validated with their last good value, so that the other
        # fields' problems (a bound, a cross-field rule) show at the same time.
        unparsed = {name for name, _ in problems}
        candidate = {**{k: v for k, v in self._last_good.items() if k in unparsed}, **values}
        validated: dict[str, Any] = {}
        try:
            validated = validate_params(self._model, candidate).model_dump(mode="json")
        except ParamError as exc:
            problems += [(p.split(".")[0], m) for p, m in exc.problems if p.split(".")[0] not in unparsed]
        except Exception as exc:  # noqa: BLE001 - a plugin's validator may raise anything
            problems.append(("", f"{type(exc).__name__}: {exc}"))
        self._show_problems(problems)
        if problems:
            self.paramsRejected.emit(self.error_text())
        else:
            self._last_good = validated
            self.paramsChanged.emit(dict(validated))

    def _show_problems(self, problems: list[tuple[str, str]]) -> None:
        self._problems = problems
        by_field: dict[str, list[str]] = {}
        general = []
        for path, msg in problems:
            if path in self._fields:
                by_field.setdefault(path, []).append(msg)
            else:
                general.append(f"{path}: {msg}" if path else _tidy(msg))
        for name, field in self._fields.items():
            field.set_error("; ".join(by_field.get(name, [])))
        self._form_error.setText("\n".join(general))
        self._form_error.setVisible(bool(general))
