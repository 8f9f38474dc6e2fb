"""The Run panel: start one trial of any task with any policy, watch its LR and loss live.

The trial runs in a subprocess through :class:`~lrbench_gui.qt.trial_runner.TrialRunner`; its
record comes out as ``trialRecorded``, and the window stores it with
:meth:`~lrbench_gui.qt.db_jobs.DatabaseJobs.write_trial`, off the GUI thread. A failed trial
shows its message, and its log tail is one click away.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, get_args

from PySide6.QtCore import QSignalBlocker, Qt, Signal
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
from lrbench_gui.core.runs.trial import TrialConfig, TrialError, load_trial, validate_trial

#: the trainer's precisions, as the trial file declares them
PRECISIONS: tuple[str, ...] = get_args(TrialConfig.model_fields["precision"].annotation)
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
                 spec_provider: Callable[[], dict | None] | None = None, parent: QWidget | None = None,
                 *, steps_provider: Callable[[], int] | None = None) -> None:
        super().__init__(parent)
        self._registry = registry
        self.runner = runner or TrialRunner(1, parent=self)
        self.spec_provider = spec_provider
        #: the run length the Policies panel previews its curve for: taking its curve takes it too
        self.steps_provider = steps_provider
        self.composed_steps: int | None = None
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
        #: where the trial trains (torch or deepspeed); ``backend`` is its old name
        self.trainer = self.backend = QComboBox()
        self.backend.addItems(["torch", "deepspeed"])
        self.backend.setToolTip("torch: one process on one GPU (or the CPU); deepspeed: DeepSpeed's engine, "
                                "over several GPUs when you give it several")
        self.precision = QComboBox()
        self.precision.addItems(list(PRECISIONS))
        self.precision.setToolTip("fp32; bf16-/fp16-mixed: fp32 master weights with autocast (a GradScaler for "
                                  "fp16); bf16-true: weights and optimizer in bfloat16")
        self.gpus_per_trial = QSpinBox()
        self.gpus_per_trial.setRange(1, 1024)
        self.gpus_label = QLabel()
        self.gpus_label.setWordWrap(True)
        self.gpus_label.setStyleSheet("color: #6b7280;")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        #: a trainer checkpoint every N steps (0: none): what a merge started from Results takes
        self.checkpoint_every = QSpinBox()
        self.checkpoint_every.setRange(0, 10_000_000)
        self.checkpoint_every.setSpecialValueText("none")
        self.checkpoint_every.setSuffix(" steps")
        self.checkpoint_every.setToolTip("Save the model (step-N.safetensors, with the optimizer state to resume) every N "
                                         "steps; Results lists them, and two can be merged (right-click a trial)")

        self.start_btn = QPushButton("Start")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(lambda: self.start())
        self.command_btn = QPushButton("Run a command...")
        self.command_btn.setToolTip("Run your own training script as a trial with this policy and length: it sees "
                                    "LRBENCH_TRIAL, and its lrbench_gui.report calls stream in (docs/own-script.md)")
        self.command_btn.clicked.connect(self._command_clicked)
        self.last_command = ""
        self.last_cwd = ""
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
        self.backend.currentTextChanged.connect(lambda _text: self.update_gpus())
        self.gpus_per_trial.valueChanged.connect(lambda _value: self.update_gpus())
        self.steps.valueChanged.connect(lambda _value: self._describe_composed())
        self.update_gpus()
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
        form.addRow("Trainer", self.backend)
        form.addRow("Precision", self.precision)
        form.addRow("GPUs per trial", self.gpus_per_trial)
        form.addRow(self.gpus_label)
        form.addRow("Seed", self.seed)
        form.addRow("Checkpoint every", self.checkpoint_every)
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
        buttons.addWidget(self.command_btn)
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
        outer.addWidget(split, 1)  # the plots take the height; the command line stays one row
        from lrbench_gui.qt.command_line import attach_run

        #: the equivalent ``lrbench run ...`` line (``command_line_db``: the app's database, set by the window)
        self.command_line = attach_run(self)
        outer.addWidget(self.command_line)

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

    def update_gpus(self) -> None:
        """Show the GPUs found (or "no GPU") and where the trial would go; a torch trial takes one GPU."""
        deepspeed = self.backend.currentText() == "deepspeed"
        inventory = self.runner.gpu_inventory()
        with QSignalBlocker(self.gpus_per_trial):
            if not deepspeed:
                self.gpus_per_trial.setValue(1)
            self.gpus_per_trial.setMaximum(max(1, len(inventory)) if inventory.ids else 1024)
        self.gpus_per_trial.setEnabled(deepspeed)
        self.gpus_per_trial.setToolTip(
            "GPUs of the trial: DeepSpeed's ranks (over gloo on a machine without GPUs)" if deepspeed else
            "a torch trial trains on one GPU; choose the deepspeed trainer to spread it over several")
        text = inventory.describe(cpu_workers=1)
        if self.runner.inventory_problem:
            text = f"{self.runner.inventory_problem}; no GPU used"
        elif inventory.ids:
            try:
                plan = self.runner.plan(self._per_trial(), None)
                text += f"; the trial gets GPU {plan.slots[0]}" if isinstance(plan.slots, list) else ""
            except ValueError as exc:
                text += f"; {exc}"
        self.gpus_label.setText(text)

    def _per_trial(self) -> int:
        return self.gpus_per_trial.value() if self.backend.currentText() == "deepspeed" else 1

    def _task_changed(self, name: str) -> None:
        self.task_form.set_schema(self._registry.tasks[name].obj.Params if name in self._registry.tasks else None)

    def _policy_changed(self, name: str) -> None:
        self.composed = None
        self.composed_steps = None
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
        steps = int(self.steps_provider()) if self.steps_provider else None
        self.composed_steps = steps
        before = self.steps.value()
        if steps and steps != before:
            with QSignalBlocker(self.steps):
                self.steps.setValue(steps)
        self._describe_composed(f"Steps set to {steps:,} (from {before:,}): the length the Policies panel draws it "
                                "for." if steps and steps != before else "")

    def _describe_composed(self, note: str = "") -> None:
        """The taken spec in words, and whether this run's length is the one it was drawn for."""
        if self.composed is None:
            return
        text = f"Running the Policies panel's spec:\n{spec_label(self.composed, self._registry)}"
        if note:
            text += f"\n{note}"
        elif self.composed_steps and self.composed_steps != self.steps.value():
            text += (f"\nThe Policies panel draws it over {self.composed_steps:,} steps; this run has "
                     f"{self.steps.value():,}, and a schedule's steps scale with the run.")
        self.composed_label.setText(text)

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
        obj = {
            "task": self.task_combo.currentText(),
            "task_params": self.task_form.last_valid_values(),
            "policy": spec,
            "budget": {"steps": self.steps.value()},
            "batch_size": self.batch.value(),
            "optimizer": {"name": self.optimizer.currentText()},
            "backend": self.backend.currentText(),
            "precision": self.precision.currentText(),
            "seed": self.seed.value(),
            "eval_every": max(1, self.steps.value() // 10),
            "checkpoint_every": self.checkpoint_every.value(),
        }
        if obj["backend"] == "deepspeed":
            obj["deepspeed"] = {"num_gpus": self._per_trial()}
        return validate_trial(load_trial(obj), self._registry)

    def _place(self) -> None:
        """Give the trial the first free group of its GPUs (raises TrialError in words when the
        GPUs cannot take it): the runner's slots become those groups when nothing runs."""
        if self.runner.inventory_problem:
            raise TrialError(self.runner.inventory_problem)
        try:
            plan = self.runner.plan(self._per_trial(), None)
        except ValueError as exc:
            raise TrialError(str(exc)) from None
        if not isinstance(plan.slots, list):
            return  # CPU workers: the runner's slots as they are
        if not self.runner.is_busy():
            self.runner.set_slots(plan.slots)
            return
        sizes = {len(str(g).split(",")) for g in self.runner.slot_ids if g}
        if sizes and sizes != {plan.per_trial}:
            raise TrialError(f"the running study uses the GPUs in groups of {min(sizes)}: "
                             f"wait for it, or run this trial with {min(sizes)} GPU(s)")

    def build_command_trial(self, command: str, cwd: str = "") -> Any:
        """A command trial: the user's ``command`` (placeholders such as ``{lr}`` and ``{steps}``
        filled from this panel's policy and length) run in ``cwd``, recorded like any trial."""
        from lrbench_gui.core.runs.command import COMMAND_TASK

        self.policy_form.flush()
        if self.composed is None and not self.policy_form.is_valid():
            raise TrialError(self.policy_form.error_text())
        if not command.strip():
            raise TrialError("give the command to run, e.g. python train.py --lr {lr} --steps {steps}")
        if cwd and not Path(cwd).expanduser().is_dir():
            raise TrialError(f"the working folder {cwd} does not exist")
        obj = {"task": COMMAND_TASK, "policy": self.policy_spec(), "budget": {"steps": self.steps.value()},
               "seed": self.seed.value(), "command": command,
               "cwd": str(Path(cwd).expanduser().resolve()) if cwd else str(Path.home())}
        return validate_trial(load_trial(obj), self._registry)

    def _command_clicked(self) -> None:
        from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLineEdit

        dialog = QDialog(self)
        dialog.setWindowTitle("Run a command")
        command = QLineEdit(self.last_command or "python train.py --lr {lr} --steps {steps}")
        command.setMinimumWidth(520)
        cwd = QLineEdit(self.last_cwd or str(Path.home()))
        form = QFormLayout(dialog)
        form.addRow(QLabel("The command runs as one trial with this panel's policy and steps: {lr}, {steps}, "
                           "{seed}, {spec} and {out} are filled in; lrbench_gui.report calls stream into the plot."))
        form.addRow("Command", command)
        form.addRow("Working folder", cwd)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.start_command(command.text(), cwd.text())

    def start_command(self, command: str, cwd: str = "") -> None:
        """Run ``command`` as a trial (the "Run a command..." button)."""
        self.last_command, self.last_cwd = command, cwd
        if self.trial_id is not None:
            return
        try:
            cfg = self.build_command_trial(command, cwd)
        except TrialError as exc:
            self._set_status(f"Cannot start: {exc}", "failed")
            return
        self.start(cfg)

    def start(self, cfg: Any = None) -> None:
        if self.trial_id is not None:
            return
        try:
            cfg = cfg if cfg is not None else self.build_trial()
            self._place()
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
        self.command_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        note = ""
        if self.composed is not None and self.composed_steps and self.composed_steps != self.total_steps:
            # the spec runs fitted to this trial's length: say so rather than stretch it silently
            note = (f" The Policies panel draws this curve over {self.composed_steps:,} steps; it runs over "
                    f"{self.total_steps:,}, so its steps scale with the run.")
        self._set_status(f"Starting trial {cfg.trial_id}...{note}", None)
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
            if isinstance(event.get("switch"), str):  # a reactive policy changed the LR here (a plateau)
                self.plot.mark_switch(trial_id, event["step"], event["lr"], event["switch"])
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
            gpus = self.runner.gpus_of(trial_id)
            where = f"GPU {gpus} ({event.get('device')})" if gpus else str(event.get("device"))
            self._set_status(f"Running on {where} ({event.get('params', 0):,} parameters)", None)

    def _log(self, trial_id: str, line: str) -> None:
        if trial_id == self.trial_id:
            self.log.appendPlainText(line)

    def _finished(self, trial_id: str, record: dict) -> None:
        if trial_id != self.trial_id:
            return
        self.trial_id = None
        self.last_record = record
        self.start_btn.setEnabled(True)
        self.command_btn.setEnabled(True)
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
        color = STATUS_COLORS.get(status) if status else None  # none: the theme's own text colour
        self.status.setStyleSheet(f"color: {color};" if color else "")
        self.status.setText(text)

    def shutdown(self, grace: float = 5.0) -> None:
        self.runner.cancel_all(grace)

