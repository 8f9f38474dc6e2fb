"""The Study panel's budget and backend boxes: how long each trial runs, how many, how many at a
time, with which optimizer, where (local processes or a Ray cluster) and how (trainer, precision,
GPUs per trial)."""

from __future__ import annotations

from typing import Any, get_args

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QLineEdit,
                               QSpinBox, QWidget)

from lrbench_gui.core.runs.command import CommandError, check_template, split_command

from lrbench_gui.core.tuning.study import StudyConfig

TRAINERS: tuple[str, ...] = get_args(StudyConfig.model_fields["trial_backend"].annotation)
PRECISIONS: tuple[str, ...] = get_args(StudyConfig.model_fields["precision"].annotation)

__all__ = ["BudgetBox", "BackendBox", "CommandBox"]


def _spin(low: int, high: int, value: int, tip: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    if tip:
        spin.setToolTip(tip)
    return spin


class BudgetBox(QGroupBox):
    """Steps per trial, trials, parallel workers, batch size, optimizer, evaluation, checkpoints, seed."""

    #: Fires when the steps, trials or parallelism changed (the preview is stale).
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Budget", parent)
        self.budget_steps = _spin(1, 100_000_000, 300, "Optimizer steps of one full-length trial")
        self.budget_steps.setSingleStep(50)
        self.budget_steps.setSuffix(" steps")
        self.trials = _spin(1, 100_000, 16, "Trials the tuner may use (full-length equivalents for halving)")
        self.parallel = _spin(1, 256, 1, "Trials side by side: CPU workers, or GPUs (Settings)")
        self.batch = _spin(1, 65536, 32)
        self.optimizer = QComboBox()
        self.optimizer.addItems(["adamw", "adam", "sgd"])
        self.eval_every = _spin(0, 10_000_000, 0)
        self.eval_every.setSpecialValueText("auto (a tenth)")
        #: resumable trials: a trainer checkpoint with the optimizer state every N steps (0: none)
        self.checkpoint_every = _spin(0, 10_000_000, 0, "Save each trial's model (step-N.safetensors, with the optimizer "
                                      "state) every N steps: resuming the study continues an interrupted trial from its "
                                      "last one, and Results can merge two of them (right-click a trial)")
        self.checkpoint_every.setSpecialValueText("none")
        self.checkpoint_every.setSuffix(" steps")
        self.seed = _spin(0, 2**31 - 1, 0)
        form = QFormLayout(self)
        for label, widget in (("Steps per trial", self.budget_steps), ("Trials", self.trials),
                              ("Parallel workers", self.parallel), ("Batch size", self.batch),
                              ("Optimizer", self.optimizer), ("Evaluate every", self.eval_every),
                              ("Checkpoint every", self.checkpoint_every), ("Seed", self.seed)):
            form.addRow(label, widget)
        for w in (self.budget_steps, self.trials, self.parallel):
            w.valueChanged.connect(lambda _value: self.changed.emit())

    def values(self) -> dict[str, Any]:
        """These fields of a :class:`StudyConfig`."""
        return {
            "budget_steps": self.budget_steps.value(),
            "trials": self.trials.value(),
            "parallel": self.parallel.value(),
            "batch_size": self.batch.value(),
            "optimizer": {"name": self.optimizer.currentText()},
            "eval_every": self.eval_every.value(),
            "checkpoint_every": self.checkpoint_every.value(),
            "seed": self.seed.value(),
        }

    def load(self, cfg: StudyConfig) -> None:
        self.budget_steps.setValue(cfg.budget_steps)
        self.trials.setValue(cfg.trials)
        self.parallel.setValue(cfg.parallel)
        self.batch.setValue(cfg.batch_size)
        self.optimizer.setCurrentText(str(cfg.optimizer.get("name", "adamw")))
        self.eval_every.setValue(cfg.eval_every)
        self.checkpoint_every.setValue(cfg.checkpoint_every)
        self.seed.setValue(cfg.seed)


class BackendBox(QGroupBox):
    """Where the trials run (local processes or a Ray cluster, at an address), how each trains
    (trainer, precision, GPUs per trial; the GPUs found are shown under them) and the study's name."""

    #: Fires when the backend, the Ray address or a training choice changed (the preview is stale).
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Backend", parent)
        self.backend_combo = QComboBox()
        self.backend_combo.addItem("Local processes", "local")
        self.backend_combo.addItem("Ray cluster", "ray")
        self.ray_address = QLineEdit()
        self.ray_address.setPlaceholderText("ray://host:10001 or host:6379; empty: a local Ray")
        self.backend_note = QLabel()
        self.backend_note.setWordWrap(True)
        self.backend_note.setStyleSheet("color: #6b7280;")
        self.trainer_combo = QComboBox()
        self.trainer_combo.addItems(list(TRAINERS))
        self.trainer_combo.setToolTip("torch: one process on one GPU (or the CPU); deepspeed: DeepSpeed's engine, "
                                      "over several GPUs per trial when you give it several")
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISIONS))
        self.precision_combo.setToolTip("fp32; bf16-/fp16-mixed: fp32 master weights with autocast; "
                                        "bf16-true: weights and optimizer in bfloat16")
        self.gpus_spin = QDoubleSpinBox()
        self.gpus_spin.setRange(0, 1024)
        self.gpus_spin.setDecimals(0)
        self.gpus_spin.setSpecialValueText("auto")
        self.gpus_spin.setToolTip("GPUs of one trial. auto: 1 when the machine has GPUs. More than 1 needs the "
                                  "deepspeed trainer; a fraction of a GPU, the Ray cluster.")
        #: the GPUs found and where the trials go, in one line (the panel keeps it current)
        self.gpus_label = QLabel()
        self.gpus_label.setWordWrap(True)
        self.gpus_label.setStyleSheet("color: #6b7280;")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional; default: method, tuner and task")
        form = QFormLayout(self)
        form.addRow("Run on", self.backend_combo)
        form.addRow("Ray address", self.ray_address)
        form.addRow(self.backend_note)
        # one row each: side by side they set the form's least width past a 1024-px window's share
        form.addRow("Trainer", self.trainer_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("GPUs per trial", self.gpus_spin)
        form.addRow(self.gpus_label)
        form.addRow("Study name", self.name_edit)
        self.backend_combo.currentIndexChanged.connect(self._backend_changed)
        self.ray_address.textChanged.connect(lambda _text: self.changed.emit())
        self.trainer_combo.currentIndexChanged.connect(self._backend_changed)
        self.precision_combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.gpus_spin.valueChanged.connect(lambda _v: self.changed.emit())
        self._backend_changed()

    def _backend_changed(self, *_: Any) -> None:
        ray = self.backend_combo.currentData() == "ray"
        self.ray_address.setEnabled(ray)
        self.backend_note.setText(
            "Each trial runs the same trainer on a Ray worker (Ray Tune); the study is driven from a "
            "background thread and its events stream back here. Needs `pip install ray[tune]`."
            if ray else
            "Trials run as local processes: one per CPU worker, or on their own GPUs (Settings lists them).")
        # the choices a trainer or scheduler would ignore are not offered: a torch trial takes one
        # GPU, local trials whole GPUs
        with QSignalBlocker(self.gpus_spin):
            self.gpus_spin.setDecimals(2 if ray else 0)
            self.gpus_spin.setSingleStep(0.25 if ray else 1)
            self.gpus_spin.setMaximum(1024 if self.trainer_combo.currentText() == "deepspeed" else 1)
            if not ray:
                self.gpus_spin.setValue(round(self.gpus_spin.value()))
        self.changed.emit()

    def set_backend(self, backend: str, address: str | None) -> None:
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(backend)))
        self.ray_address.setText(address or "")

    def values(self) -> dict[str, Any]:
        """These fields of a :class:`StudyConfig`."""
        backend = self.backend_combo.currentData()
        return {
            "name": self.name_edit.text().strip(),
            "backend": backend,
            "ray_address": (self.ray_address.text().strip() or None) if backend == "ray" else None,
            "trial_backend": self.trainer_combo.currentText(),
            "precision": self.precision_combo.currentText(),
            "gpus_per_trial": float(self.gpus_spin.value()),
        }

    def load(self, cfg: StudyConfig) -> None:
        """The training choices of ``cfg`` (the backend and address: :meth:`set_backend`)."""
        self.trainer_combo.setCurrentText(cfg.trial_backend)
        self.precision_combo.setCurrentText(cfg.precision)
        self._backend_changed()
        self.gpus_spin.setValue(float(cfg.gpus_per_trial))


class CommandBox(QGroupBox):
    """Train with your own script: a command template run once per trial (docs/own-script.md).

    Empty: the task's built-in trainer. With a command, each trial runs it in ``folder`` with its
    placeholders filled (``{lr}``, ``{steps}``, ``{seed}``, ``{out}``, ``{spec}``...), and its
    ``lrbench_gui.report`` calls stream into Live like any trial's."""

    #: Fires when the command or the folder changed (the preview is stale).
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Your own script (optional)", parent)
        self.command_edit = QLineEdit()
        self.command_edit.setPlaceholderText("python train.py --lr {lr} --steps {steps} --out {out}")
        self.cwd_edit = QLineEdit()
        self.cwd_edit.setPlaceholderText("the folder to run it in (default: the app's)")
        self.note = QLabel("Empty: the task's own trainer. Placeholders: {lr} {steps} {seed} {out} {spec} {trial} "
                           "{policy.NAME} {task.NAME}; the script reports with lrbench_gui.report "
                           "(docs/own-script.md).")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #6b7280;")
        form = QFormLayout(self)
        form.addRow("Command", self.command_edit)
        form.addRow("Folder", self.cwd_edit)
        form.addRow(self.note)
        for edit in (self.command_edit, self.cwd_edit):
            edit.textChanged.connect(lambda _text: self.changed.emit())

    def values(self) -> dict[str, Any]:
        """These fields of a :class:`StudyConfig`; ``ValueError`` (one line) for a bad template."""
        text = self.command_edit.text().strip()
        if not text:
            return {"command": None, "cwd": None}
        try:
            argv = split_command(text)
            check_template(argv)
        except CommandError as exc:
            raise ValueError(f"command: {exc}") from None
        return {"command": argv, "cwd": self.cwd_edit.text().strip() or None}

    def load(self, cfg: StudyConfig) -> None:
        from lrbench_gui.core.runs.command import join_command

        command = getattr(cfg, "command", None)
        self.command_edit.setText(join_command(command) if command else "")
        self.cwd_edit.setText(getattr(cfg, "cwd", None) or "")
