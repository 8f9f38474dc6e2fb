"""The Study panel: design a study (task, method, tuner, policies and their LR ranges, budget,
parallelism, backend) and start it, or run the ready-made demo study with one click.

On opening, the panel lists the database's recent studies
(:class:`~lrbench_gui.qt.study.recent.RecentStudies`) and, in a banner, offers to resume the
unfinished ones. The form builds a :class:`~lrbench_gui.core.tuning.study.StudyConfig`; *What
will run* shows the search space built by the same function as the study's
(:mod:`lrbench_gui.qt.study.preview`); the
:class:`~lrbench_gui.qt.study_controller.StudyController` runs it and the Live panel shows it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import describe
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.study import METHODS, StudyConfig
from lrbench_gui.qt.db_jobs import DatabaseJobs
from lrbench_gui.qt.param_form import ParamForm, format_float
from lrbench_gui.qt.study.demo import DEMO_STUDY, DemoBox, demo_config
from lrbench_gui.qt.study.policy_choice import PolicyChoice, ranges_from_overrides
from lrbench_gui.qt.study.preview import default_lr_range, preview_html, preview_space
from lrbench_gui.qt.study.recent import RecentStudies, ResumeBanner, load_recent
from lrbench_gui.qt.study.run_options import BackendBox, BudgetBox, CommandBox
from lrbench_gui.qt.study_controller import StudyController
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["StudyPanel"]

_METHOD_TEXT = {
    "single": "Search policy families and their parameters; rank by the final metric.",
    "compose": "Also search compositions of the chosen families (e.g. warmup then cosine); "
               "compares the best composition with the best single policy.",
    "cost": "Rank by the cost (steps) to reach a target value of the metric.",
}


class StudyPanel(QWidget):
    """The study designer; see the module docstring."""

    # the recent studies were read from the database: (list of study records, newest first)
    studiesLoaded = Signal(list)
    # a study was started from this panel (fresh or demo): (study_id)
    studyRequested = Signal(str)

    def __init__(self, registry: Registry, controller: StudyController, jobs: DatabaseJobs,
                 parent: QWidget | None = None, *, defaults: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__(parent)
        self._registry = registry
        self.controller = controller
        self.jobs = jobs
        self.defaults = defaults or (lambda: {})
        #: changes to the demo study's size (tests: {"trials": 2, "budget_steps": 60})
        self.demo_size: dict[str, Any] = {}
        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(80)
        self._summary_timer.timeout.connect(self._update_summary)
        #: the LR range the form filled in by itself (the task's or the optimizer's usual range);
        #: replaced when the task or optimizer changes, unless the user typed another
        self._auto_lr: tuple[float, float] | None = None
        self._build()
        self.set_registry(registry)
        self.apply_defaults()
        self._suggest_lr_range()
        self._update_summary()  # "What will run" is filled on first open, not after a first edit
        controller.studyStarted.connect(lambda *_: self._running_changed())
        controller.studyFinished.connect(lambda *_: self.refresh_studies())
        controller.idle.connect(self._running_changed)
        controller.problem.connect(lambda text: self.banner.show_message(text, "error"))
        self._running_changed()

    @property
    def studies(self) -> list[dict[str, Any]]:
        """The recent studies as last read, newest first."""
        return self.recent.studies

    # Building.

    def _build(self) -> None:
        self.banner = MessageBanner(self)
        self.resume_banner = ResumeBanner(self)
        self.resume_label, self.resume_btn = self.resume_banner.resume_label, self.resume_banner.resume_btn
        self.resume_banner.resumeRequested.connect(self.resume)

        self.demo_box = DemoBox()
        self.demo_btn = self.demo_box.demo_btn
        self.demo_btn.clicked.connect(self.run_demo)

        # Task.
        self.task_combo = QComboBox()
        self.task_form = ParamForm()
        self.task_summary = QLabel()
        self.task_summary.setWordWrap(True)
        self.task_summary.setStyleSheet("color: #6b7280;")
        task_box = QGroupBox("Task")
        tl = QVBoxLayout(task_box)
        tl.addWidget(self.task_combo)
        tl.addWidget(self.task_summary)
        tl.addWidget(self.task_form)

        # Method and objective.
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.method_text = QLabel()
        self.method_text.setWordWrap(True)
        self.method_text.setStyleSheet("color: #6b7280;")
        self.metric_combo = QComboBox()
        self.metric_combo.setEditable(True)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["min", "max"])
        self.mode_combo.setToolTip("min: lower is better (losses); max: higher is better (accuracy)")
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("e.g. 0.95 for val_acc")
        self.target_label = QLabel("Target")
        #: the evaluators every trial runs, as the CLI's --evaluator takes them, separated by ";"
        self.evaluators_edit = QLineEdit()
        self.evaluators_edit.setPlaceholderText("none; e.g. multiple-choice:path=builtin:tinylm-mc; heldout-loss")
        self.evaluators_edit.setToolTip("NAME[:key=value,...]; another after a ';'. Their metrics (mc_acc...) can be "
                                        "the Metric; the Plugins panel lists the evaluators.")
        method_box = QGroupBox("Method")
        ml = QFormLayout(method_box)
        ml.addRow("Method", self.method_combo)
        ml.addRow(self.method_text)
        metric_row = QHBoxLayout()
        metric_row.addWidget(self.metric_combo, 1)
        metric_row.addWidget(self.mode_combo)
        ml.addRow("Metric", metric_row)
        ml.addRow("Evaluators", self.evaluators_edit)
        ml.addRow(self.target_label, self.target_edit)

        # Tuner.
        self.tuner_combo = QComboBox()
        self.tuner_text = QLabel()
        self.tuner_text.setWordWrap(True)
        self.tuner_text.setStyleSheet("color: #6b7280;")
        self.tuner_form = ParamForm()
        tuner_box = QGroupBox("Tuner")
        ul = QVBoxLayout(tuner_box)
        ul.addWidget(self.tuner_combo)
        ul.addWidget(self.tuner_text)
        ul.addWidget(self.tuner_form)

        self.policy_choice = policy_box = PolicyChoice()
        self.policy_tree, self.lr_low, self.lr_high = policy_box.policy_tree, policy_box.lr_low, policy_box.lr_high

        self.budget_box = budget_box = BudgetBox()
        self.budget_steps, self.trials, self.parallel = budget_box.budget_steps, budget_box.trials, budget_box.parallel
        self.backend_box = backend_box = BackendBox()
        self.backend_combo, self.ray_address = backend_box.backend_combo, backend_box.ray_address
        self.name_edit = backend_box.name_edit
        self.command_box = command_box = CommandBox()

        form = QWidget()
        fl = QVBoxLayout(form)
        fl.setContentsMargins(4, 4, 8, 4)
        for w in (self.demo_box, task_box, method_box, tuner_box, policy_box, budget_box, command_box, backend_box):
            fl.addWidget(w)
        fl.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form)
        scroll.setMinimumWidth(440)
        scroll.setFrameShape(QFrame.Shape.NoFrame)

        # Right: what will run, start, recent studies.
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.start_btn = QPushButton("Start study")
        self.start_btn.setDefault(True)
        self.start_btn.setMinimumHeight(34)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.clicked.connect(self.controller.stop)
        run_box = QGroupBox("What will run")
        rl = QVBoxLayout(run_box)
        summary_scroll = QScrollArea()  # a long preview scrolls rather than hide under the buttons
        summary_scroll.setWidgetResizable(True)
        summary_scroll.setFrameShape(QFrame.Shape.NoFrame)
        summary_scroll.setWidget(self.summary)
        rl.addWidget(summary_scroll, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn, 1)
        buttons.addWidget(self.stop_btn)
        rl.addLayout(buttons)
        # the running study: completed / planned trials (the tuner's plan) and the time left
        self.study_progress = QProgressBar()
        self.study_progress.setFormat("%v / %m trials")
        self.study_progress.setVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.progress_label.setStyleSheet("color: #6b7280;")
        self.progress_label.setVisible(False)
        rl.addWidget(self.study_progress)
        rl.addWidget(self.progress_label)
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(1000)
        self._progress_timer.timeout.connect(self.update_progress)

        self.recent = RecentStudies()
        self.recent.running = lambda: (self.controller.study_id or "") if self.controller.is_busy() else None
        self.studies_table = self.recent.studies_table
        self.recent.resumeRequested.connect(lambda s: self.resume(s["id"]))
        self.recent.loadRequested.connect(self._load_study)
        self.recent.refreshRequested.connect(self.refresh_studies)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(run_box)
        right.addWidget(self.recent)
        right.setSizes([260, 470])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([520, 640])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.addWidget(self.resume_banner)
        outer.addWidget(self.banner)
        outer.addWidget(split, 1)
        from lrbench_gui.qt.command_line import attach_study

        #: the equivalent ``lrbench tune ...`` line, and what it cannot carry
        self.command_line = attach_study(self)
        outer.addWidget(self.command_line)
        self.demo_box.theme_changed(False)  # the theme switch calls each box's own theme_changed
        self.resume_banner.theme_changed(False)

        self.task_combo.currentTextChanged.connect(self._task_changed)
        self.method_combo.currentTextChanged.connect(self._method_changed)
        self.tuner_combo.currentTextChanged.connect(self._tuner_changed)
        self.metric_combo.currentTextChanged.connect(self._metric_changed)
        for box in (policy_box, budget_box, command_box, backend_box):
            box.changed.connect(self._schedule_summary)
        budget_box.optimizer.currentTextChanged.connect(lambda _t: (self._suggest_lr_range(), self._schedule_summary()))
        backend_box.gpus_spin.valueChanged.connect(lambda _v: self._gpus_per_trial_changed())
        self.target_edit.textChanged.connect(self._schedule_summary)
        self.evaluators_edit.textChanged.connect(self._schedule_summary)
        for f in (self.task_form, self.tuner_form):
            f.paramsChanged.connect(self._schedule_summary)
            f.paramsRejected.connect(self._schedule_summary)

    # Registry and defaults.

    def set_registry(self, registry: Registry) -> None:
        self._registry = registry
        with QSignalBlocker(self.task_combo):
            current = self.task_combo.currentText() or "digits-mlp"
            self.task_combo.clear()
            self.task_combo.addItems(sorted(registry.tasks))
            if current in registry.tasks:
                self.task_combo.setCurrentText(current)
        with QSignalBlocker(self.tuner_combo):
            current = self.tuner_combo.currentText() or "random"
            self.tuner_combo.clear()
            self.tuner_combo.addItems(sorted(registry.tuners))
            if current in registry.tuners:
                self.tuner_combo.setCurrentText(current)
        self.policy_choice.set_registry(registry, self.checked_policies() or ["cosine"])
        self._task_changed(self.task_combo.currentText())
        self._tuner_changed(self.tuner_combo.currentText())
        self._method_changed(self.method_combo.currentText())
        self.demo_box.update_for(registry, {**DEMO_STUDY, **self.demo_size}, self.controller.is_busy())

    def apply_defaults(self) -> None:
        """Take parallelism and backend defaults from the settings (see the Settings dialog)."""
        d = self.defaults()
        workers = int(d.get("cpu_workers") or 2)
        gpus = d.get("gpus") if "gpus" in d else self.controller.gpus
        self.parallel.setValue(max(1, len(gpus) if gpus else workers))
        self.backend_box.set_backend(d.get("backend") or "local", d.get("ray_address"))
        self._update_gpus()

    def _gpus_per_trial_changed(self) -> None:
        """One trial per GPU group by default: parallel follows the GPUs per trial."""
        per_trial = self.backend_box.gpus_spin.value() or 1
        gpus = self.controller.gpus
        if gpus and per_trial == int(per_trial) and per_trial <= len(gpus):
            self.parallel.setValue(len(gpus) // int(per_trial))

    def _update_gpus(self) -> None:
        """The Backend box's line: the GPUs found and where this study's trials would go."""
        box = self.backend_box
        runner = self.controller.runner
        inventory = runner.gpu_inventory()
        if runner.inventory_problem:
            text = f"{runner.inventory_problem}; trials run on the CPU"
        elif box.backend_combo.currentData() == "ray":
            text = inventory.describe(self.parallel.value()) + "; Ray places the trials"
        else:
            try:
                plan = runner.plan(box.gpus_spin.value() or None, self.parallel.value(), cpu_workers=self.parallel.value())
                text = plan.text + (f". {plan.warning[:1].upper()}{plan.warning[1:]}" if plan.warning else "")
                if inventory.ids and not inventory.simulated:
                    text = f"{inventory.describe()}. {text}"
            except ValueError as exc:
                text = f"{inventory.describe()}: {exc}"
        box.gpus_label.setText(text)
        self._placement = text

    def checked_policies(self) -> list[str]:
        return self.policy_choice.checked_policies()

    def set_policies(self, names: list[str], ranges: dict[str, tuple[float, float]] | None = None) -> None:
        """Tick exactly ``names``; ``ranges`` narrows some of their LR ranges."""
        self.policy_choice.set_policies(names, ranges)

    def policy_ranges(self) -> dict[str, tuple[float, float]]:
        return self.policy_choice.policy_ranges()

    def _task_changed(self, name: str) -> None:
        reg = self._registry.tasks.get(name)
        self.task_form.set_schema(reg.obj.Params if reg is not None else None)
        self.task_form.setVisible(reg is not None and bool(describe(reg.obj.Params)))
        self.task_summary.setText(reg.summary if reg is not None else "")
        metric = getattr(reg.obj, "metric", "val_loss") if reg is not None else "val_loss"
        with QSignalBlocker(self.metric_combo):
            self.metric_combo.clear()
            for m in dict.fromkeys([metric, "val_loss", "val_acc", "final_loss"]):
                self.metric_combo.addItem(m)
            self.metric_combo.setCurrentText(metric)
        mode = getattr(reg.obj, "metric_mode", "min") if reg is not None else "min"
        self.mode_combo.setCurrentText(mode)
        self._suggest_lr_range()
        self._schedule_summary()

    def _suggest_lr_range(self) -> None:
        """Fill "All LRs from/to" with the usual range of the task and optimizer (the task's
        ``lr_range`` when it declares one, else the optimizer's: 1e-4..1 for SGD, 1e-5..0.1 for
        Adam/AdamW) when the fields are empty or still hold the previous suggestion."""
        if not hasattr(self, "policy_choice"):
            return
        reg = self._registry.tasks.get(self.task_combo.currentText())
        suggested = default_lr_range(reg.obj if reg is not None else None, self.budget_box.optimizer.currentText())
        shown = (self.lr_low.text().strip(), self.lr_high.text().strip())
        auto = self._auto_lr and (format_float(self._auto_lr[0]), format_float(self._auto_lr[1]))
        if shown == ("", "") or shown == auto:
            self.policy_choice.set_lr_range(suggested)
            self._auto_lr = suggested

    def _metric_changed(self, metric: str) -> None:
        self.mode_combo.setCurrentText("max" if "acc" in metric or "f1" in metric or "score" in metric else "min")
        self._schedule_summary()

    def _method_changed(self, method: str) -> None:
        self.method_text.setText(_METHOD_TEXT.get(method, ""))
        cost = method == "cost"
        self.target_label.setVisible(cost)
        self.target_edit.setVisible(cost)
        self._schedule_summary()

    def _tuner_changed(self, name: str) -> None:
        reg = self._registry.tuners.get(name)
        self.tuner_form.set_schema(reg.obj.Params if reg is not None else None)
        self.tuner_form.setVisible(reg is not None and bool(describe(reg.obj.Params)))
        self.tuner_text.setText(reg.summary if reg is not None else
                                "No tuner is registered: the tuner plugins did not load (see the Plugins panel).")
        self._merge_trials_fields(reg.obj if reg is not None else None)
        self._schedule_summary()

    def _merge_trials_fields(self, tuner: Any) -> None:
        """One trials field: a tuner's own ``trials`` parameter (0: the study's budget) is the
        Budget box's Trials, so the form shows only that one; the Trials field says what it
        counts for this tuner, and is off for a kind that plans its own trials."""
        if "trials" in self.tuner_form.names():
            editor = self.tuner_form.editor("trials")
            editor.hide()
            for label in self.tuner_form.findChildren(QLabel):
                if label.buddy() is editor:
                    label.hide()
            if self.tuner_form.names() == ["trials"]:
                self.tuner_form.setVisible(False)
        fields = getattr(getattr(tuner, "Params", None), "model_fields", {}) or {}
        own = tuner is not None and not getattr(tuner, "uses_space", True)
        if own:
            tip = "this kind plans its own trials (What will run says how many); the budget is not used"
        elif "n" in fields:
            tip = "full-length trials the study may spend: many short runs on the bottom rung cost as much"
        elif "points" in fields:
            tip = "not used by a grid: it runs every point (What will run says how many)"
        else:
            tip = "trials to run, each at the full budget"
        self.trials.setEnabled(not own and "points" not in fields or "n" in fields)
        self.trials.setToolTip(f"Trials: {tip}.")

    def config(self) -> StudyConfig:
        """The study the form describes; ``ValueError`` in plain words when it is incomplete."""
        for form, what in ((self.task_form, "task"), (self.tuner_form, "tuner")):
            form.flush()
            if not form.is_valid():
                raise ValueError(f"{what} parameters: {form.error_text()}")
        if not self.task_combo.currentText():
            raise ValueError("choose a task")
        if not self.tuner_combo.currentText():
            raise ValueError("no tuner is available (the tuner plugins did not load)")
        policies = self.checked_policies()
        if not policies:
            raise ValueError("tick at least one policy to search")
        lr_range = self.policy_choice.lr_range()
        overrides = self.policy_choice.overrides()
        method = self.method_combo.currentText()
        metric = self.metric_combo.currentText().strip() or None
        target = None
        if method == "cost":
            text = self.target_edit.text().strip()
            try:
                target = float(text)
            except ValueError:
                raise ValueError(f"the cost method needs a target value of {metric}, e.g. 0.95 for val_acc"
                                 if not text else f"target: {text!r} is not a number") from None
            if not math.isfinite(target):
                raise ValueError(f"target: {text!r} is not a finite number")
        obj: dict[str, Any] = {
            "evaluators": self.evaluators(),
            **self.backend_box.values(),
            **self.budget_box.values(),
            **self.command_box.values(),
            "task": self.task_combo.currentText(),
            "task_params": self.task_form.last_valid_values(),
            "method": method,
            "tuner": self.tuner_combo.currentText(),
            "tuner_params": {k: v for k, v in self.tuner_form.last_valid_values().items() if k != "trials"},
            "policies": policies,
            "overrides": overrides,
            "lr_range": lr_range,
            "metric": metric,
            "mode": self.mode_combo.currentText(),
            "target": target,
        }
        if obj["backend"] == "ray" and not obj["gpus_per_trial"] and not obj["ray_address"] and self.controller.gpus:
            obj["gpus_per_trial"] = 1.0  # auto on a local Ray with GPUs: one each, as local trials get
        try:
            return StudyConfig.model_validate(obj)
        except Exception as exc:  # pydantic names the field
            lines = str(exc).splitlines()
            raise ValueError(" ".join(lines[1:3]) if len(lines) > 2 else str(exc)) from None

    def evaluators(self) -> list[dict[str, Any]]:
        """The Evaluators line as ``StudyConfig.evaluators`` (read as ``lrbench study --evaluator``
        reads each), names and parameters checked; ``ValueError`` in one line."""
        from lrbench_gui.core.tuning.kinds import parse_evaluators
        from lrbench_gui.core.tuning.study import evaluator_classes

        try:
            specs = parse_evaluators(self.evaluators_edit.text())
            evaluator_classes(specs, self._registry)
        except ValueError as exc:
            text = str(exc).splitlines()[0]
            raise ValueError(text if text.startswith("evaluator") else f"evaluators: {text}") from None
        return specs

    def load_config(self, config: StudyConfig | dict) -> None:
        """Fill the form from a study's configuration."""
        cfg = config if isinstance(config, StudyConfig) else StudyConfig.model_validate(config)
        self.task_combo.setCurrentText(cfg.task)
        self.task_form.set_values(cfg.task_params)
        self.method_combo.setCurrentText(cfg.method)
        if cfg.metric:
            self.metric_combo.setCurrentText(cfg.metric)
        if cfg.mode:
            self.mode_combo.setCurrentText(cfg.mode)
        self.target_edit.setText("" if cfg.target is None else format_float(cfg.target))
        from lrbench_gui.core.tuning.kinds import format_evaluator

        self.evaluators_edit.setText("; ".join(format_evaluator(e) for e in cfg.evaluators))
        self.tuner_combo.setCurrentText(cfg.tuner)
        self.tuner_form.set_values(cfg.tuner_params)
        self.policy_choice.set_lr_range(cfg.lr_range)
        self.set_policies(cfg.policies, ranges_from_overrides(cfg.overrides, cfg.policies, self._registry))
        self.budget_box.load(cfg)
        self.command_box.load(cfg)
        self.backend_box.set_backend(cfg.backend, cfg.ray_address)
        self.backend_box.load(cfg)
        self.budget_box.load(cfg)  # after the GPUs per trial, which move the parallelism
        self.name_edit.setText(cfg.name)
        if int(cfg.tuner_params.get("trials") or 0) > 0:
            self.trials.setValue(int(cfg.tuner_params["trials"]))  # the one trials field
        self._auto_lr = None  # the loaded study's own range stays what it was
        self._update_summary()

    # Actions.

    def start(self) -> bool:
        """Start the study the form describes; problems show in the banner. True when it started."""
        try:
            cfg = self.config()
        except ValueError as exc:
            self.banner.show_message(f"Cannot start the study: {exc}", "error")
            return False
        return self._start(cfg)

    def run_demo(self) -> bool:
        """Start the demo study (``demo_size`` changes its size)."""
        cfg = demo_config(**self.demo_size)
        self.load_config(cfg)
        return self._start(cfg)

    def _start(self, cfg: StudyConfig) -> bool:
        try:
            self.controller.start(cfg)
        except Exception as exc:  # noqa: BLE001 - unknown names, bad params, busy: all said in words
            self.banner.show_message(f"Cannot start the study: {exc}", "error")
            return False
        self.banner.dismiss()
        self.resume_banner.hide()
        self.studyRequested.emit(cfg.study_id)
        return True

    def resume(self, study_id: str | None) -> None:
        if not study_id:
            return
        try:
            # a stored study never chooses what this machine runs: a command study resumes with
            # the command in the form (issue 12's rule), the rest of its settings are its own
            here = self.command_box.values() if self.command_box.command_edit.text().strip() else {}
            self.controller.resume(study_id, **here)
        except (RuntimeError, ValueError) as exc:
            self.banner.show_message(str(exc), "warning")
            return
        self._running_changed()
        self.resume_banner.hide()
        self.studyRequested.emit(study_id)

    def update_progress(self) -> None:
        """The running study's progress line: completed / planned trials, the ETA from the trials
        so far, and each running trial's own time left; hidden when no study runs."""
        from lrbench_gui.core.tuning.study import format_duration

        study = self.controller.study if self.controller.is_busy() else None
        self.study_progress.setVisible(study is not None)
        self.progress_label.setVisible(study is not None)
        if study is None:
            self._progress_timer.stop()
            return
        if not self._progress_timer.isActive():
            self._progress_timer.start()
        p = study.progress()
        self.study_progress.setRange(0, max(1, p["planned"]))
        self.study_progress.setValue(min(p["completed"], p["planned"]))
        planned = f"{'about ' if p['estimate'] else ''}{p['planned']}"
        text = (f"Study {study.config.study_id}: {p['completed']} of {planned} trials done, {p['running']} running"
                f" · ETA {format_duration(p['eta_seconds'])}")
        each = [f"{tid.rsplit('-', 1)[-1]} {format_duration(t['eta_seconds'])}"
                for tid, t in p["trials"].items() if t["eta_seconds"] is not None]
        if each:
            text += " · left per trial: " + ", ".join(each[:6]) + (" …" if len(each) > 6 else "")
        self.progress_label.setText(text)

    def _running_changed(self) -> None:
        self.update_progress()
        busy = self.controller.is_busy()
        self.start_btn.setEnabled(not busy)
        self.stop_btn.setEnabled(busy)
        self.resume_btn.setEnabled(not busy)
        self.demo_box.set_busy(busy)
        self.recent.update_buttons()

    # Recent studies.

    def refresh_studies(self) -> None:
        """Read the recent studies on the jobs thread; fills the table and the resume banner."""
        self.jobs.submit(load_recent, self._show_studies,
                         lambda msg: self.banner.show_message(f"Could not read the studies: {msg}", "error"))

    def _show_studies(self, studies: list[dict[str, Any]]) -> None:
        self.recent.show_studies(studies)
        self.resume_banner.offer(self.unfinished_studies(), self.controller.is_busy())
        self.studiesLoaded.emit(studies)

    def unfinished_studies(self) -> list[dict[str, Any]]:
        """The recent studies that can be resumed (not the running one), newest first."""
        return self.recent.resumable()

    def _load_study(self, study: dict[str, Any]) -> None:
        try:
            self.load_config(study["extra"]["config"])
        except Exception as exc:  # noqa: BLE001 - a study of a plugin no longer installed
            self.banner.show_message(f"Cannot load study {study['id']}: {exc}", "error")
            return
        self.name_edit.clear()

    # What will run.

    def _schedule_summary(self, *_: Any) -> None:
        self._summary_timer.start()

    def preview_families(self) -> list[str]:
        """The names of the families the study the form describes would search ([] for none)."""
        space = preview_space(self.config(), self._registry)
        return list(space.names) if space is not None else []

    def _update_summary(self) -> None:
        self._update_gpus()
        try:
            cfg = self.config()
        except ValueError as exc:
            self.summary.setText(f"<span style='color:#c62828'>{exc}</span>")
            self.start_btn.setEnabled(False)
            return
        try:
            text = preview_html(cfg, self._registry, getattr(self, "_placement", None))
        except Exception as exc:  # noqa: BLE001 - SpaceError and a plugin's own errors, in words
            self.summary.setText(f"<span style='color:#c62828'>search space: {exc}</span>")
            self.start_btn.setEnabled(False)
            return
        self.start_btn.setEnabled(not self.controller.is_busy())
        self.summary.setText(text)
        self._offer_metrics(cfg)

    def _offer_metrics(self, cfg: StudyConfig) -> None:
        """The evaluators' metrics join the Metric choices (the text typed stays)."""
        from lrbench_gui.core.tuning.study import evaluator_classes

        with QSignalBlocker(self.metric_combo):
            for cls in evaluator_classes(cfg.evaluators, self._registry):
                for metric in getattr(cls, "metrics", {}) or {}:
                    if self.metric_combo.findText(metric) < 0:
                        self.metric_combo.addItem(metric)
