"""The Run panel: start one trial of any task with any policy, watch its LR and loss live.

The trial runs in a subprocess through :class:`~lrbench_gui.qt.trial_runner.TrialRunner`; its
record comes out as ``trialRecorded``, and the window stores it with
:meth:`~lrbench_gui.qt.db_jobs.DatabaseJobs.write_trial`, off the GUI thread. A failed trial
shows its message, and its log tail is one click away.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.records import TrialStatus, spec_label
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import SpecError, parse_spec
from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial
from lrbench_gui.qt.live_plot import LivePlot
from lrbench_gui.qt.param_form import ParamForm
from lrbench_gui.qt.trial_runner import TrialRunner
from lrbench_gui.qt.widgets import STATUS_COLORS

__all__ = ["RunPanel"]


class RunPanel(QWidget):
    """Design one trial, run it, watch it."""

    # a trial finished and its record is ready (the app stores it): (record)
    trialRecorded = Signal(dict)

    def __init__(self, registry: Registry, runner: TrialRunner | None = None,
                 spec_provider: Callable[[], dict | None] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._registry = registry
        self.runner = runner or TrialRunner(1, parent=self)
        self.spec_provider = spec_provider
        self.trial_id: str | None = None
        self.total_steps = 0
        self.t_start = 0.0
        self.last_record: dict[str, Any] | None = None

        self.task_combo = QComboBox()
        self.task_form = ParamForm()
        self.policy_combo = QComboBox()
        self.policy_form = ParamForm()
        self.use_spec = QPushButton("Use the curve from Policies")
        self.use_spec.setToolTip("Run the policy or composition currently drawn in the Policies panel")
        self.use_spec.clicked.connect(self._take_spec)
        self.composed: dict | None = None
        self.composed_label = QLabel("")
        self.composed_label.setWordWrap(True)
        self.steps = QSpinBox()
        self.steps.setRange(1, 10_000_000)
        self.steps.setValue(300)
        self.batch = QSpinBox()
        self.batch.setRange(1, 65536)
        self.batch.setValue(32)
        self.optimizer = QComboBox()
        self.optimizer.addItems(["adamw", "adam", "sgd"])
        self.backend = QComboBox()
        self.backend.addItems(["torch", "deepspeed"])
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)

        self.start_btn = QPushButton("Start")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m steps")
        self.status = QLabel("Pick a task and a policy, then Start.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_btn = QPushButton("Show log")
        self.log_btn.setCheckable(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setVisible(False)
        self.log_btn.toggled.connect(self.log.setVisible)
        self.plot = LivePlot()

        self._build()
        self.set_registry(registry)
        self.task_combo.currentTextChanged.connect(self._task_changed)
        self.policy_combo.currentTextChanged.connect(self._policy_changed)
        self.runner.trialEvent.connect(self._event)
        self.runner.trialLog.connect(self._log)
        self.runner.trialFinished.connect(self._finished)

    def _build(self) -> None:
        task_box = QGroupBox("Task")
        tl = QVBoxLayout(task_box)
        tl.addWidget(self.task_combo)
        tl.addWidget(self.task_form)
        policy_box = QGroupBox("Policy")
        pl = QVBoxLayout(policy_box)
        pl.addWidget(self.policy_combo)
        pl.addWidget(self.policy_form)
        pl.addWidget(self.use_spec)
        pl.addWidget(self.composed_label)
        run_box = QGroupBox("Run")
        form = QFormLayout(run_box)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Backend", self.backend)
        form.addRow("Seed", self.seed)
        left = QWidget()
        ll = QVBoxLayout(left)
        for w in (task_box, policy_box, run_box):
            ll.addWidget(w)
        ll.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        scroll.setMinimumWidth(320)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.cancel_btn)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.log_btn)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addLayout(buttons)
        rl.addWidget(self.status)
        rl.addWidget(self.plot, 1)
        rl.addWidget(self.log)
        split = QSplitter()
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([340, 900])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.addWidget(split)

    def set_registry(self, registry: Registry) -> None:
        self._registry = registry
        for combo, names, default in (
            (self.task_combo, sorted(registry.tasks), "digits-mlp"),
            (self.policy_combo, sorted(registry.policies), "cosine"),
        ):
            current = combo.currentText() or default
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._task_changed(self.task_combo.currentText())
        self._policy_changed(self.policy_combo.currentText())

    def _task_changed(self, name: str) -> None:
        self.task_form.set_schema(self._registry.tasks[name].obj.Params if name in self._registry.tasks else None)

    def _policy_changed(self, name: str) -> None:
        self.composed = None
        self.composed_label.setText("")
        self.policy_form.setEnabled(True)
        defaults = {"lr": 0.05} if name in ("cosine", "fixed", "linear", "step", "exp") else None
        self.policy_form.set_schema(
            self._registry.policies[name].obj.Params if name in self._registry.policies else None, defaults
        )

    def _take_spec(self) -> None:
        spec = self.spec_provider() if self.spec_provider else None
        if not spec:
            self.status.setText("The Policies panel has no valid curve to run.")
            return
        self.composed = spec
        self.policy_form.setEnabled(False)
        self.composed_label.setText(f"Running the Policies panel's spec:\n{spec_label(spec, self._registry)}")

    def policy_spec(self) -> dict:
        if self.composed is not None:
            return self.composed
        self.policy_form.flush()
        return {"name": self.policy_combo.currentText(), "params": self.policy_form.last_valid_values()}

    def build_trial(self) -> Any:
        self.task_form.flush()
        self.policy_form.flush()
        if not self.task_form.is_valid() or (self.composed is None and not self.policy_form.is_valid()):
            raise TrialError(self.task_form.error_text() or self.policy_form.error_text())
        spec = self.policy_spec()
        try:
            parse_spec(spec, self._registry)
        except SpecError as exc:
            raise TrialError(f"policy: {exc}") from None
        return validate_trial(
            load_trial({
                "task": self.task_combo.currentText(),
                "task_params": self.task_form.last_valid_values(),
                "policy": spec,
                "budget": {"steps": self.steps.value()},
                "batch_size": self.batch.value(),
                "optimizer": {"name": self.optimizer.currentText()},
                "backend": self.backend.currentText(),
                "seed": self.seed.value(),
                "eval_every": max(1, self.steps.value() // 10),
            }),
            self._registry,
        )

    def start(self) -> None:
        if self.trial_id is not None:
            return
        try:
            cfg = self.build_trial()
        except TrialError as exc:
            self._set_status(f"Cannot start: {exc}", "failed")
            return
        self.trial_id = cfg.trial_id
        self.total_steps = cfg.budget.steps or 0
        self.t_start = time.monotonic()
        self.plot.clear()
        self.plot.add_trial(cfg.trial_id, f"{spec_label(cfg.policy, self._registry)} on {cfg.task}")
        self.log.clear()
        self.progress.setRange(0, self.total_steps)
        self.progress.setValue(0)
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self._set_status(f"Starting trial {cfg.trial_id}...", None)
        self.runner.submit(cfg)

    def cancel(self) -> None:
        if self.trial_id is not None:
            self._set_status("Stopping at the next step...", None)
            self.runner.cancel(self.trial_id)

    def _event(self, trial_id: str, event: Any) -> None:
        if trial_id != self.trial_id:
            return
        if event.type == "step":
            self.plot.append(trial_id, event["step"], event["lr"], event["loss"])
            done = int(event["step"]) + 1
            self.progress.setValue(done)
            elapsed = time.monotonic() - self.t_start
            eta = elapsed / done * (self.total_steps - done) if done else 0
            self._set_status(
                f"Step {done}/{self.total_steps}   loss {float(event['loss']):.4g}   lr {float(event['lr']):.3g}"
                f"   ETA {eta:.0f} s", None)
        elif event.type == "hello":
            self.total_steps = int(event.get("steps", self.total_steps))
            self.progress.setRange(0, self.total_steps)
            self._set_status(f"Running on {event.get('device')} ({event.get('params', 0):,} parameters)", None)

    def _log(self, trial_id: str, line: str) -> None:
        if trial_id == self.trial_id:
            self.log.appendPlainText(line)

    def _finished(self, trial_id: str, record: dict) -> None:
        if trial_id != self.trial_id:
            return
        self.trial_id = None
        self.last_record = record
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        status = record["status"]
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(record.get("metrics", {}).items())
                            if isinstance(v, (int, float)))
        cost = record.get("cost", {})
        text = f"{status.capitalize()} after {cost.get('steps', 0)} steps, {cost.get('seconds', 0):.1f} s. {metrics}"
        if status == TrialStatus.FAILED:
            text += f"\n{record.get('notes', '').splitlines()[0] if record.get('notes') else ''}  (Show log for details)"
        self._set_status(text, status)
        self.trialRecorded.emit(record)

    def _set_status(self, text: str, status: str | None) -> None:
        color = STATUS_COLORS.get(status, "#111827") if status else "#111827"
        self.status.setStyleSheet(f"color: {color};")
        self.status.setText(text)

    def shutdown(self, grace: float = 5.0) -> None:
        self.runner.cancel_all(grace)

