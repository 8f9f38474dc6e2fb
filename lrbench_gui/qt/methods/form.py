"""The "New..." form of a study kind, generated from its tuner: the study settings (their defaults
from the kind's ``study_defaults``), a :class:`~lrbench_gui.qt.param_form.ParamForm` over the
tuner's ``Params`` and the task's, and the equivalent ``lrbench study KIND ...`` command line.

The study and the command line come from :mod:`lrbench_gui.core.tuning.kinds`, the same mapping
the CLI parses with, so the line starts the study the form would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning import kinds
from lrbench_gui.qt.param_form import ParamForm

__all__ = ["NewStudyForm", "NewMethodStudyForm"]


def _registered(items: dict[str, Any], name: str) -> Any:
    """The class registered as ``name`` (a registry's ``tasks``/``tuners`` hold Registered entries)."""
    entry = items.get(name)
    return getattr(entry, "obj", None)


def _spin(parent: QWidget, lo: int, hi: int, value: int, tip: str = "") -> QSpinBox:
    box = QSpinBox(parent)
    box.setRange(lo, hi)
    box.setValue(int(value))
    box.setToolTip(tip)
    return box


class NewStudyForm(QWidget):
    """The "New..." form of one study kind (a registered tuner's name)."""

    # the user pressed Start: (kind)
    startRequested = Signal(str)
    # the user pressed Cancel
    cancelled = Signal()

    def __init__(self, kind: str, registry: Registry, db_path: Callable[[], Path | None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.registry = registry
        self._db_path = db_path or (lambda: None)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 4, 8, 4)
        self.title = QLabel(body)
        layout.addWidget(self.title)
        self.hint = QLabel(body)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #6b7280;")
        layout.addWidget(self.hint)

        study_box = QGroupBox("Study", body)
        form = QFormLayout(study_box)
        self.name_edit = QLineEdit(study_box)
        self.name_edit.setPlaceholderText(f"{kind} on <task>")
        self.task_combo = QComboBox(study_box)
        self.parallel = _spin(study_box, 1, 64, 1, "Trials side by side (CPU workers or GPUs)")
        self.batch = _spin(study_box, 1, 1 << 16, 32)
        self.seed = _spin(study_box, 0, 2**31 - 1, 0)
        self.steps = _spin(study_box, 1, 10**9, 300, "Steps of one full trial")
        form.addRow("Name", self.name_edit)
        form.addRow("Task", self.task_combo)
        form.addRow("Parallel", self.parallel)
        form.addRow("Batch size", self.batch)
        form.addRow("Seed", self.seed)
        form.addRow("Steps", self.steps)
        layout.addWidget(study_box)

        self.tuner_box = QGroupBox(f"{kind} parameters", body)
        QVBoxLayout(self.tuner_box).setContentsMargins(8, 4, 8, 4)
        self.tuner_form = ParamForm(self.tuner_box)
        self.tuner_box.layout().addWidget(self.tuner_form)
        layout.addWidget(self.tuner_box)
        task_box = QGroupBox("Task parameters", body)
        QVBoxLayout(task_box).setContentsMargins(8, 4, 8, 4)
        self.task_form = ParamForm(task_box)
        task_box.layout().addWidget(self.task_form)
        layout.addWidget(task_box)
        layout.addStretch(1)
        body.setMaximumWidth(820)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)
        outer.addLayout(self._command_row())
        self.error_label = QLabel(self)
        self.error_label.setStyleSheet("color: #c62828;")
        self.error_label.setWordWrap(True)
        self.error_label.setContentsMargins(8, 0, 8, 0)
        outer.addWidget(self.error_label)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(8, 0, 8, 6)
        buttons.addStretch(1)
        self.cancel_btn = QPushButton("Cancel", self)
        self.start_btn = QPushButton("Start study", self)
        self.start_btn.setDefault(True)
        buttons.addWidget(self.cancel_btn)
        buttons.addWidget(self.start_btn)
        outer.addLayout(buttons)
        self.start_btn.clicked.connect(lambda: self.startRequested.emit(self.kind))
        self.cancel_btn.clicked.connect(self.cancelled.emit)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(80)
        self._timer.timeout.connect(self.update_command)
        for signal in (self.name_edit.textEdited, self.task_combo.currentTextChanged, self.parallel.valueChanged,
                       self.batch.valueChanged, self.seed.valueChanged, self.steps.valueChanged,
                       self.tuner_form.paramsChanged, self.tuner_form.paramsRejected, self.task_form.paramsChanged,
                       self.task_form.paramsRejected):
            signal.connect(lambda *_: self._timer.start())
        self.tuner_form.paramsChanged.connect(lambda *_: self._update_steps())
        self.task_combo.currentTextChanged.connect(self._task_changed)
        self.set_registry(registry)

    def _command_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setContentsMargins(8, 0, 8, 0)
        row.addWidget(QLabel("Command line:", self), 0, Qt.AlignmentFlag.AlignTop)
        self.command_edit = QPlainTextEdit(self)
        self.command_edit.setReadOnly(True)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.command_edit.setFont(mono)
        self.command_edit.setFixedHeight(self.command_edit.fontMetrics().lineSpacing() * 3 + 12)
        self.command_edit.setToolTip("The same study from a terminal")
        copy = QToolButton(self)
        copy.setText("Copy")
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.command_edit.toPlainText()))
        row.addWidget(self.command_edit, 1)
        row.addWidget(copy, 0, Qt.AlignmentFlag.AlignTop)
        return row

    @property
    def tuner(self) -> Any:
        """The kind's tuner class (None when its plugin did not load)."""
        return _registered(self.registry.tuners, self.kind)

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry
        tuner = self.tuner
        defaults = kinds.kind_defaults(tuner) if tuner is not None else {}
        self.title.setText(f"<b>{tuner.display_title() if tuner is not None else self.kind}</b>")
        self.hint.setText(getattr(tuner, "hint", "") or getattr(tuner, "summary", ""))
        current = self.task_combo.currentText() or defaults.get("task") or ""
        self.task_combo.blockSignals(True)
        self.task_combo.clear()
        self.task_combo.addItems(sorted(registry.tasks))
        self.task_combo.setCurrentIndex(max(0, self.task_combo.findText(current)))
        self.task_combo.blockSignals(False)
        for box, key in ((self.parallel, "parallel"), (self.batch, "batch_size"), (self.steps, "budget_steps")):
            if key in defaults:
                box.blockSignals(True)
                box.setValue(int(defaults[key]))
                box.blockSignals(False)
        self._task_changed(self.task_combo.currentText())
        self.tuner_form.set_schema(getattr(tuner, "Params", None))
        self.start_btn.setEnabled(tuner is not None)
        self._update_steps()
        self.update_command()

    def _task_changed(self, name: str) -> None:
        task = _registered(self.registry.tasks, name)
        self.task_form.set_schema(getattr(task, "Params", None))

    def _derived_steps(self) -> int | None:
        """The run length the kind derives from the form's parameters (None: the Steps field's)."""
        tuner = self.tuner
        if tuner is None:
            return None
        try:
            return tuner.budget_steps(tuner.Params.model_validate(self.tuner_form.last_valid_values()))
        except ValueError:
            return None

    def _update_steps(self) -> None:
        derived = self._derived_steps()
        self.steps.setEnabled(derived is None)
        if derived is not None:
            self.steps.blockSignals(True)
            self.steps.setValue(max(1, int(derived)))
            self.steps.blockSignals(False)
        self.steps.setToolTip("Steps of one full trial" if derived is None else
                              f"{self.kind} derives the run length from its parameters")

    def set_values(self, tuner_params: dict[str, Any] | None = None, *, task: str | None = None,
                   task_params: dict[str, Any] | None = None, name: str | None = None) -> None:
        """Fill the form (e.g. from a stored study's configuration)."""
        if task:
            self.task_combo.setCurrentText(task)
        if task_params:
            self.task_form.set_values(task_params)
        if tuner_params:
            self.tuner_form.set_values(tuner_params)
        if name is not None:
            self.name_edit.setText(name)
        self._update_steps()
        self.update_command()

    def _changed_task_params(self) -> dict[str, Any]:
        task = _registered(self.registry.tasks, self.task_combo.currentText())
        values = self.task_form.last_valid_values()
        if task is None:
            return values
        defaults = task.Params().model_dump(mode="json")
        return {k: v for k, v in values.items() if defaults.get(k) != v}

    def study_fields(self) -> dict[str, Any]:
        """The study settings of the form, as :func:`kinds.study_config` takes them."""
        return {"task": self.task_combo.currentText() or None, "task_params": self._changed_task_params(),
                "parallel": self.parallel.value(), "batch_size": self.batch.value(), "seed": self.seed.value(),
                "name": self.name_edit.text().strip() or None,
                "budget_steps": self.steps.value() if self._derived_steps() is None else None}

    def config(self) -> Any:
        """The study the form describes, as the CLI would build it; ``ValueError`` in words."""
        for form, what in ((self.tuner_form, f"{self.kind} parameters"), (self.task_form, "task parameters")):
            form.flush()
            if not form.is_valid():
                raise ValueError(f"{what}: {form.error_text()}")
        tuner = self.tuner
        if tuner is None:
            raise ValueError(f"the {self.kind} tuner is not installed (its plugin did not load)")
        tuner_params = self.tuner_form.last_valid_values()
        missing = kinds.missing_files(tuner, tuner_params)
        if missing:
            raise ValueError("; ".join(missing))
        try:
            config = kinds.study_config(tuner, tuner_params, self.study_fields())
        except ValueError as exc:  # pydantic names the field
            lines = str(exc).splitlines()
            raise ValueError(" ".join(lines[1:3]) if len(lines) > 2 else str(exc)) from None
        self._check_tuner(tuner, config)
        return config

    def _check_tuner(self, tuner: Any, config: Any) -> None:
        """The tuner's own rules (lr_min below lr_max, two checkpoints...), said before the start."""
        from lrbench_gui.core.tuner import Objective, StudyBudget

        if tuner.uses_space:
            return  # its rules need the study's search space: the study says them when it starts
        try:
            tuner(config.tuner_params, None, Objective("val_loss", "min"), StudyBudget(config.budget_steps, 1), 0)
        except ValueError as exc:
            raise ValueError(str(exc).splitlines()[0]) from None

    def command_line(self) -> str:
        """The ``lrbench study KIND ...`` command that starts the same study."""
        tuner = self.tuner
        if tuner is None:
            return f"lrbench study {self.kind}"
        fields = {**self.study_fields(), "db": self._db_path()}
        try:
            return kinds.command_line(tuner, self.tuner_form.last_valid_values(), fields)
        except ValueError:
            return kinds.command_line(tuner, {}, fields)

    def update_command(self) -> None:
        self._timer.stop()
        self.command_edit.setPlainText(self.command_line())
        try:
            self.config()
            self.error_label.clear()
        except ValueError as exc:
            self.error_label.setText(str(exc))


#: the name this form had when it served the three built-in kinds only
NewMethodStudyForm = NewStudyForm
