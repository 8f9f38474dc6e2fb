"""The Study panel: design a study (task, method, tuner, policies and their LR ranges, budget,
parallelism, backend) and start it, or run the ready-made demo study with one click.

On opening, the panel lists the database's recent studies and, in a banner, offers to resume the
unfinished ones (stopped, interrupted or failed). The form builds a
:class:`~lrbench_gui.core.study.StudyConfig`; the
:class:`~lrbench_gui.qt.study_controller.StudyController` runs it and the Live panel shows it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QTreeWidgetItemIterator,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import describe
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.study import METHODS, StudyConfig
from lrbench_gui.qt.param_form import ParamForm, format_float
from lrbench_gui.qt.study_controller import DatabaseJobs, StudyController
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["StudyPanel", "DEMO_STUDY", "demo_config", "lr_params"]

#: The demo: four classic shapes of LR schedule on the digits MLP, random search, two at a time.
#: About a minute on a laptop CPU (most of it is each trial's start-up).
DEMO_STUDY: dict[str, Any] = {
    "name": "demo: random search over four policy shapes on digits",
    "task": "digits-mlp",
    "method": "single",
    "tuner": "random",
    "policies": ["fixed", "step", "cosine", "triangle2"],
    "lr_range": (3e-4, 0.1),  # AdamW on the digits MLP: from too timid to nearly too bold
    "budget_steps": 200,
    "trials": 8,
    "parallel": 2,
    "seed": 0,
    "threads": 1,
}

_METHOD_TEXT = {
    "single": "Search policy families and their parameters; rank by the final metric.",
    "compose": "Also search compositions of the chosen families (e.g. warmup then cosine); "
               "compares the best composition with the best single policy.",
    "cost": "Rank by the cost (steps) to reach a target value of the metric.",
}
_UNFINISHED = ("created", "running", "stopped", "failed")
_FAMILY_ORDER = ("classic", "cyclic", "restart", "llm", "deepspeed")
_EDITED = Qt.ItemDataRole.UserRole + 1  # on an LR column: the user typed this range
_STUDY_STATUS_COLORS = {"finished": "#2e7d32", "running": "#1d4ed8", "stopped": "#6b7280", "failed": "#c62828",
                        "created": "#6b7280"}


def demo_config(**overrides: Any) -> StudyConfig:
    """The demo study; ``overrides`` change its size (tests use 2 short trials)."""
    return StudyConfig(**{**DEMO_STUDY, **overrides})


def lr_params(policy_cls: Any) -> list[Any]:
    """The learning-rate parameters of a policy, as the search space sees them (log-scale floats
    named ``lr``, ``max_lr``, ``min_lr``...: ``lrbench_gui.core.space.LR_NAME``)."""
    from lrbench_gui.core.tuning.space import LR_NAME

    return [i for i in describe(policy_cls.Params) if i.kind == "float" and i.log and LR_NAME.search(i.name)]


def _parse_float(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    value = float(text)  # ValueError names the text
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a positive number")
    return value


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
        self.studies: list[dict[str, Any]] = []
        self._build()
        self.set_registry(registry)
        self.apply_defaults()
        controller.studyStarted.connect(lambda *_: self._running_changed())
        controller.studyFinished.connect(lambda *_: self.refresh_studies())
        controller.idle.connect(self._running_changed)
        controller.problem.connect(lambda text: self.banner.show_message(text, "error"))
        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(80)
        self._summary_timer.timeout.connect(self._update_summary)
        self._running_changed()

    # Building.

    def _build(self) -> None:
        self.banner = MessageBanner(self)
        self.resume_banner = QFrame(self)
        self.resume_banner.setObjectName("resumeBanner")
        rb = QHBoxLayout(self.resume_banner)
        rb.setContentsMargins(10, 6, 6, 6)
        self.resume_label = QLabel(self.resume_banner)
        self.resume_label.setWordWrap(True)
        self.resume_btn = QPushButton("Resume", self.resume_banner)
        self.resume_btn.setToolTip("Replay the finished trials from the database and run the rest")
        self.resume_btn.clicked.connect(lambda: self.resume(self.resume_btn.property("study_id")))
        dismiss = QPushButton("Not now", self.resume_banner)
        dismiss.setFlat(True)
        dismiss.clicked.connect(self.resume_banner.hide)
        rb.addWidget(self.resume_label, 1)
        rb.addWidget(self.resume_btn)
        rb.addWidget(dismiss)
        self.resume_banner.hide()

        # The demo.
        demo_box = self.demo_box = QFrame()
        demo_box.setObjectName("demoBox")
        dl = QVBoxLayout(demo_box)
        dl.setContentsMargins(10, 8, 10, 8)
        self.demo_btn = QPushButton("▶  Run the demo study")
        self.demo_btn.setObjectName("demoButton")
        self.demo_btn.setMinimumHeight(38)
        self.demo_btn.setStyleSheet(
            "QPushButton#demoButton { background: #16a34a; color: white; font-weight: bold; font-size: 11pt;"
            " border: none; border-radius: 5px; padding: 6px 16px; }"
            "QPushButton#demoButton:hover { background: #15803d; }"
            "QPushButton#demoButton:disabled { background: #a7d7b5; }")
        self.demo_btn.clicked.connect(self.run_demo)
        self.demo_text = QLabel()
        self.demo_text.setWordWrap(True)
        dl.addWidget(self.demo_btn)
        dl.addWidget(self.demo_text)

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
        method_box = QGroupBox("Method")
        ml = QFormLayout(method_box)
        ml.addRow("Method", self.method_combo)
        ml.addRow(self.method_text)
        metric_row = QHBoxLayout()
        metric_row.addWidget(self.metric_combo, 1)
        metric_row.addWidget(self.mode_combo)
        ml.addRow("Metric", metric_row)
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

        # Policies.
        self.policy_tree = QTreeWidget()
        self.policy_tree.setColumnCount(3)
        self.policy_tree.setHeaderLabels(["Policy family", "LR from", "LR to"])
        self.policy_tree.setRootIsDecorated(True)
        self.policy_tree.setUniformRowHeights(True)
        self.policy_tree.setMinimumHeight(230)
        self.policy_tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.policy_tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        self.policy_tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        self.policy_tree.header().resizeSection(1, 72)
        self.policy_tree.header().resizeSection(2, 72)
        self.policy_tree.header().setStretchLastSection(False)
        self.policy_tree.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                         | QAbstractItemView.EditTrigger.EditKeyPressed
                                         | QAbstractItemView.EditTrigger.SelectedClicked)
        self.policy_tree.setToolTip("Tick the policies to search. Double-click LR from/to to narrow a policy's "
                                    "learning-rate range (empty: the policy's own search range, shown in grey).")
        self.lr_low = QLineEdit()
        self.lr_high = QLineEdit()
        for edit, tip in ((self.lr_low, "lowest"), (self.lr_high, "highest")):
            edit.setPlaceholderText("policy default")
            edit.setToolTip(f"The {tip} learning rate of every LR dimension of the search (all policies); "
                            "empty: each policy's own range")
        lr_row = QHBoxLayout()
        lr_row.addWidget(QLabel("All LRs from"))
        lr_row.addWidget(self.lr_low)
        lr_row.addWidget(QLabel("to"))
        lr_row.addWidget(self.lr_high)
        self.policy_count = QLabel()
        self.policy_count.setStyleSheet("color: #6b7280;")
        policy_box = QGroupBox("Policies")
        pl = QVBoxLayout(policy_box)
        pl.addWidget(self.policy_tree)
        pl.addLayout(lr_row)
        pl.addWidget(self.policy_count)

        # Budget and parallelism.
        self.budget_steps = QSpinBox()
        self.budget_steps.setRange(1, 100_000_000)
        self.budget_steps.setSingleStep(50)
        self.budget_steps.setValue(300)
        self.budget_steps.setSuffix(" steps")
        self.budget_steps.setToolTip("Optimizer steps of one full-length trial")
        self.trials = QSpinBox()
        self.trials.setRange(1, 100_000)
        self.trials.setValue(16)
        self.trials.setToolTip("Trials the tuner may use (full-length equivalents for halving)")
        self.parallel = QSpinBox()
        self.parallel.setRange(1, 256)
        self.parallel.setToolTip("Trials side by side: CPU workers, or GPUs (Settings)")
        self.batch = QSpinBox()
        self.batch.setRange(1, 65536)
        self.batch.setValue(32)
        self.optimizer = QComboBox()
        self.optimizer.addItems(["adamw", "adam", "sgd"])
        self.eval_every = QSpinBox()
        self.eval_every.setRange(0, 10_000_000)
        self.eval_every.setSpecialValueText("auto (a tenth)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        budget_box = QGroupBox("Budget")
        bl = QFormLayout(budget_box)
        bl.addRow("Steps per trial", self.budget_steps)
        bl.addRow("Trials", self.trials)
        bl.addRow("Parallel workers", self.parallel)
        bl.addRow("Batch size", self.batch)
        bl.addRow("Optimizer", self.optimizer)
        bl.addRow("Evaluate every", self.eval_every)
        bl.addRow("Seed", self.seed)

        # Backend.
        self.backend_combo = QComboBox()
        self.backend_combo.addItem("Local processes", "local")
        self.backend_combo.addItem("Ray cluster", "ray")
        self.ray_address = QLineEdit()
        self.ray_address.setPlaceholderText("ray://host:10001 or host:6379; empty: a local Ray")
        self.backend_note = QLabel()
        self.backend_note.setWordWrap(True)
        self.backend_note.setStyleSheet("color: #6b7280;")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional; default: method, tuner and task")
        backend_box = QGroupBox("Backend")
        kl = QFormLayout(backend_box)
        kl.addRow("Run on", self.backend_combo)
        kl.addRow("Ray address", self.ray_address)
        kl.addRow(self.backend_note)
        kl.addRow("Study name", self.name_edit)

        form = QWidget()
        fl = QVBoxLayout(form)
        fl.setContentsMargins(4, 4, 8, 4)
        for w in (demo_box, task_box, method_box, tuner_box, policy_box, budget_box, backend_box):
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
        rl.addWidget(self.summary, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn, 1)
        buttons.addWidget(self.stop_btn)
        rl.addLayout(buttons)

        self.studies_table = QTableWidget(0, 6)
        self.studies_table.setHorizontalHeaderLabels(["Study", "Task", "Method", "Status", "Trials", "Best"])
        self.studies_table.verticalHeader().setVisible(False)
        self.studies_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.studies_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.studies_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.studies_table.horizontalHeader().setStretchLastSection(True)
        self.studies_table.setWordWrap(False)
        self.studies_table.verticalHeader().setDefaultSectionSize(24)
        self.studies_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.studies_table.itemSelectionChanged.connect(self._study_selected)
        self.studies_table.itemDoubleClicked.connect(lambda *_: self._resume_selected())
        self.resume_selected_btn = QPushButton("Resume selected")
        self.resume_selected_btn.setEnabled(False)
        self.resume_selected_btn.clicked.connect(self._resume_selected)
        self.load_selected_btn = QPushButton("Load into the form")
        self.load_selected_btn.setToolTip("Fill the form with the selected study's settings, to run it again or vary it")
        self.load_selected_btn.setEnabled(False)
        self.load_selected_btn.clicked.connect(self._load_selected)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_studies)
        recent_box = QGroupBox("Recent studies")
        sl = QVBoxLayout(recent_box)
        sl.addWidget(self.studies_table, 1)
        sb = QHBoxLayout()
        sb.addWidget(self.resume_selected_btn)
        sb.addWidget(self.load_selected_btn)
        sb.addStretch(1)
        sb.addWidget(refresh)
        sl.addLayout(sb)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(run_box)
        right.addWidget(recent_box)
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
        self.theme_changed(False)

        self.task_combo.currentTextChanged.connect(self._task_changed)
        self.method_combo.currentTextChanged.connect(self._method_changed)
        self.tuner_combo.currentTextChanged.connect(self._tuner_changed)
        self.metric_combo.currentTextChanged.connect(self._metric_changed)
        self.backend_combo.currentIndexChanged.connect(self._backend_changed)
        self.policy_tree.itemChanged.connect(self._tree_changed)
        for w in (self.budget_steps, self.trials, self.parallel):
            w.valueChanged.connect(self._schedule_summary)
        for e in (self.lr_low, self.lr_high, self.target_edit, self.ray_address):
            e.textChanged.connect(self._schedule_summary)
        for e in (self.lr_low, self.lr_high):
            e.textChanged.connect(lambda _: self._show_default_ranges())
        for f in (self.task_form, self.tuner_form):
            f.paramsChanged.connect(self._schedule_summary)
            f.paramsRejected.connect(self._schedule_summary)

    def theme_changed(self, dark: bool) -> None:
        """Colours of the demo box and the resume banner for the light or dark theme."""
        demo = ("#14291c", "#2f6b43", "#bbf7d0") if dark else ("#f0fdf4", "#bbe5c8", "#14532d")
        banner = ("#1b2a3d", "#35557d", "#cfe1f7") if dark else ("#e8f1fb", "#b9d2ef", "#1d3f6e")
        self.demo_box.setStyleSheet(
            f"QFrame#demoBox {{ background: {demo[0]}; border: 1px solid {demo[1]}; border-radius: 6px; }}")
        self.demo_text.setStyleSheet(f"color: {demo[2]};")
        self.resume_banner.setStyleSheet(
            f"QFrame#resumeBanner {{ background: {banner[0]}; border: 1px solid {banner[1]}; border-radius: 4px; }}"
            f"QFrame#resumeBanner QLabel {{ color: {banner[2]}; }}")

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
        self._fill_policies(self.checked_policies() or ["cosine"])
        self._task_changed(self.task_combo.currentText())
        self._tuner_changed(self.tuner_combo.currentText())
        self._method_changed(self.method_combo.currentText())
        self._backend_changed()
        demo = {**DEMO_STUDY, **self.demo_size}
        missing = [p for p in demo["policies"] if p not in registry.policies]
        have = demo["task"] in registry.tasks and demo["tuner"] in registry.tuners and not missing
        self.demo_btn.setEnabled(have and not self.controller.is_busy())
        self.demo_text.setText(
            f"{demo['tuner'].capitalize()} search over {', '.join(demo['policies'])} on {demo['task']}: "
            f"{demo['trials']} trials of {demo['budget_steps']} steps, {demo['parallel']} at a time. "
            "About a minute on a laptop CPU; watch it in the Live panel."
            if have else
            f"The demo needs the task {demo['task']!r}, the tuner {demo['tuner']!r} and the policies "
            f"{', '.join(demo['policies'])}; {'the tuner plugins are not loaded' if demo['tuner'] not in registry.tuners else 'some are missing'} "
            "(see the Plugins panel).")

    def apply_defaults(self) -> None:
        """Take parallelism and backend defaults from the settings (see the Settings dialog)."""
        d = self.defaults()
        workers = int(d.get("cpu_workers") or 2)
        gpus = d.get("gpus") or []
        self.parallel.setValue(max(1, len(gpus) if gpus else workers))
        backend = d.get("backend") or "local"
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(backend)))
        self.ray_address.setText(d.get("ray_address") or "")

    def _fill_policies(self, checked: list[str]) -> None:
        tree = self.policy_tree
        with QSignalBlocker(tree):
            tree.clear()
            families: dict[str, QTreeWidgetItem] = {}
            order = {f: i for i, f in enumerate(_FAMILY_ORDER)}

            def key(name: str) -> tuple:
                family = getattr(self._registry.policies[name].obj, "family", "other") or "other"
                return (order.get(family, len(order)), family, name)

            for name in sorted(self._registry.policies, key=key):
                cls = self._registry.policies[name].obj
                family = getattr(cls, "family", "other") or "other"
                parent = families.get(family)
                if parent is None:
                    parent = QTreeWidgetItem(tree, [family])
                    parent.setFlags(parent.flags() | Qt.ItemFlag.ItemIsAutoTristate | Qt.ItemFlag.ItemIsUserCheckable)
                    parent.setCheckState(0, Qt.CheckState.Unchecked)
                    font = parent.font(0)
                    font.setBold(True)
                    parent.setFont(0, font)
                    families[family] = parent
                item = QTreeWidgetItem(parent, [name, "", ""])
                item.setData(0, Qt.ItemDataRole.UserRole, name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEditable)
                item.setCheckState(0, Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked)
                item.setToolTip(0, self._registry.policies[name].summary)
                infos = lr_params(cls)
                searched = [i.search for i in infos if i.search]
                lo = min((s[0] for s in searched if s[0] > 0), default=None)
                hi = max((s[1] for s in searched), default=None)
                item.setData(1, Qt.ItemDataRole.UserRole, lo)
                item.setData(2, Qt.ItemDataRole.UserRole, hi)
                grey = QBrush(QColor("#9ca3af"))
                for col, value in ((1, lo), (2, hi)):
                    item.setText(col, format_float(value) if value else "")
                    item.setForeground(col, grey)
                    item.setToolTip(col, "the policy's own search range; double-click to narrow it"
                                    if infos else "this policy has no learning-rate parameter to search")
                if not infos:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            for parent in families.values():
                parent.setExpanded(any(parent.child(i).checkState(0) == Qt.CheckState.Checked
                                       for i in range(parent.childCount())))
        self._update_policy_count()

    def _tree_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column in (1, 2) and item.data(0, Qt.ItemDataRole.UserRole):
            text = item.text(column).strip()
            with QSignalBlocker(self.policy_tree):
                item.setData(column, _EDITED, bool(text))
                if text:
                    item.setForeground(column, QBrush(QColor("#111827")))
                    if item.checkState(0) != Qt.CheckState.Checked:
                        item.setCheckState(0, Qt.CheckState.Checked)
            self._show_default_ranges()
        self._update_policy_count()
        self._schedule_summary()

    def _global_range(self) -> tuple[float, float] | None:
        try:
            lo, hi = _parse_float(self.lr_low.text()), _parse_float(self.lr_high.text())
        except ValueError:
            return None
        return (lo, hi) if lo is not None and hi is not None and lo <= hi else None

    def _show_default_ranges(self) -> None:
        """Grey text in the LR columns the user did not edit: the range the search will use
        (the "All LRs" range when set, else the policy's own)."""
        rng = self._global_range()
        grey = QBrush(QColor("#9ca3af"))
        with QSignalBlocker(self.policy_tree):
            for item in self._policy_items():
                if not lr_params(self._registry.policy(item.data(0, Qt.ItemDataRole.UserRole))):
                    continue
                for col in (1, 2):
                    if item.data(col, _EDITED):
                        continue
                    value = rng[col - 1] if rng else item.data(col, Qt.ItemDataRole.UserRole)
                    item.setText(col, format_float(value) if value else "")
                    item.setForeground(col, grey)

    def _policy_items(self) -> list[QTreeWidgetItem]:
        out = []
        it = QTreeWidgetItemIterator(self.policy_tree)
        while it.value() is not None:
            item = it.value()
            if item.data(0, Qt.ItemDataRole.UserRole):
                out.append(item)
            it += 1
        return out

    def checked_policies(self) -> list[str]:
        return [i.data(0, Qt.ItemDataRole.UserRole) for i in self._policy_items() if i.checkState(0) == Qt.CheckState.Checked]

    def set_policies(self, names: list[str], ranges: dict[str, tuple[float, float]] | None = None) -> None:
        """Tick exactly ``names``; ``ranges`` narrows some of their LR ranges."""
        ranges = ranges or {}
        with QSignalBlocker(self.policy_tree):
            for item in self._policy_items():
                name = item.data(0, Qt.ItemDataRole.UserRole)
                item.setCheckState(0, Qt.CheckState.Checked if name in names else Qt.CheckState.Unchecked)
                for col in (1, 2):
                    item.setData(col, _EDITED, name in ranges)
                if name in ranges:
                    for col, value in zip((1, 2), ranges[name]):
                        item.setText(col, format_float(value))
                        item.setForeground(col, QBrush(QColor("#111827")))
                if name in names:
                    item.parent().setExpanded(True)
        self._show_default_ranges()
        self._update_policy_count()
        self._schedule_summary()

    def policy_ranges(self) -> dict[str, tuple[float, float]]:
        """The LR ranges the user narrowed, per policy (ValueError for text that is not a number)."""
        out = {}
        for item in self._policy_items():
            if item.checkState(0) != Qt.CheckState.Checked:
                continue
            name = item.data(0, Qt.ItemDataRole.UserRole)
            if not (item.data(1, _EDITED) or item.data(2, _EDITED)):
                continue
            try:
                lo = _parse_float(item.text(1))
                hi = _parse_float(item.text(2))
            except ValueError as exc:
                raise ValueError(f"policy {name}: LR range: {exc}") from None
            if lo is None or hi is None:
                continue
            if lo > hi:
                raise ValueError(f"policy {name}: LR from {lo:g} is above LR to {hi:g}")
            out[name] = (lo, hi)
        return out

    def _update_policy_count(self) -> None:
        names = self.checked_policies()
        self.policy_count.setText(f"{len(names)} selected: {', '.join(names)}" if names else "Tick at least one policy.")

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
        self._schedule_summary()

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
        self._schedule_summary()

    def _backend_changed(self, *_: Any) -> None:
        ray = self.backend_combo.currentData() == "ray"
        self.ray_address.setEnabled(ray)
        self.backend_note.setText(
            "Each trial runs the same trainer on a Ray worker (Ray Tune); the study is driven from a "
            "background thread and its events stream back here. Needs `pip install ray[tune]`."
            if ray else
            "Trials run as local processes: one per CPU worker, or one per GPU listed in Settings.")
        self._schedule_summary()

    # Building the config.

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
        ranges = self.policy_ranges()
        lr_range = None
        try:
            lo, hi = _parse_float(self.lr_low.text()), _parse_float(self.lr_high.text())
        except ValueError as exc:
            raise ValueError(f"LR range: {exc}") from None
        if lo is not None or hi is not None:
            if lo is None or hi is None:
                raise ValueError("LR range: give both ends, or neither")
            if lo > hi:
                raise ValueError(f"LR range: {lo:g} is above {hi:g}")
            lr_range = (lo, hi)
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
        backend = self.backend_combo.currentData()
        obj: dict[str, Any] = {
            "name": self.name_edit.text().strip(),
            "task": self.task_combo.currentText(),
            "task_params": self.task_form.last_valid_values(),
            "method": method,
            "tuner": self.tuner_combo.currentText(),
            "tuner_params": self.tuner_form.last_valid_values(),
            "policies": policies,
            "overrides": self._overrides(ranges),
            "lr_range": lr_range,
            "metric": metric,
            "mode": self.mode_combo.currentText(),
            "target": target,
            "budget_steps": self.budget_steps.value(),
            "trials": self.trials.value(),
            "parallel": self.parallel.value(),
            "backend": backend,
            "ray_address": self.ray_address.text().strip() or None if backend == "ray" else None,
            "batch_size": self.batch.value(),
            "optimizer": {"name": self.optimizer.currentText()},
            "eval_every": self.eval_every.value(),
            "seed": self.seed.value(),
        }
        try:
            return StudyConfig.model_validate(obj)
        except Exception as exc:  # pydantic names the field
            lines = str(exc).splitlines()
            raise ValueError(" ".join(lines[1:3]) if len(lines) > 2 else str(exc)) from None

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
        self.tuner_combo.setCurrentText(cfg.tuner)
        self.tuner_form.set_values(cfg.tuner_params)
        self.lr_low.setText(format_float(cfg.lr_range[0]) if cfg.lr_range else "")
        self.lr_high.setText(format_float(cfg.lr_range[1]) if cfg.lr_range else "")
        self.set_policies(cfg.policies, _ranges_from_overrides(cfg.overrides, cfg.policies))
        self.budget_steps.setValue(cfg.budget_steps)
        self.trials.setValue(cfg.trials)
        self.parallel.setValue(cfg.parallel)
        self.batch.setValue(cfg.batch_size)
        self.optimizer.setCurrentText(str(cfg.optimizer.get("name", "adamw")))
        self.eval_every.setValue(cfg.eval_every)
        self.seed.setValue(cfg.seed)
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(cfg.backend)))
        self.ray_address.setText(cfg.ray_address or "")
        self.name_edit.setText(cfg.name)
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
            self.controller.resume(study_id)
        except RuntimeError as exc:
            self.banner.show_message(str(exc), "warning")
            return
        self._running_changed()
        self.resume_banner.hide()
        self.studyRequested.emit(study_id)

    def _running_changed(self) -> None:
        busy = self.controller.is_busy()
        self.start_btn.setEnabled(not busy)
        self.stop_btn.setEnabled(busy)
        self.resume_btn.setEnabled(not busy)
        demo = {**DEMO_STUDY, **self.demo_size}
        self.demo_btn.setEnabled(not busy and demo["tuner"] in self._registry.tuners)
        self._study_selected()

    # Recent studies.

    def refresh_studies(self) -> None:
        """Read the recent studies on the jobs thread; fills the table and the resume banner."""
        def load(db: Any) -> list[dict[str, Any]]:
            studies = list(reversed(db.studies()))  # replaced records go to the end: newest first
            out = []
            for s in studies[:50]:
                done = len([t for t in db.trials(study=s["id"])
                            if t.get("status") in ("completed", "diverged", "failed", "stopped")])
                out.append({**s, "_done": done})
            return out

        self.jobs.submit(load, self._show_studies,
                         lambda msg: self.banner.show_message(f"Could not read the studies: {msg}", "error"))

    def _show_studies(self, studies: list[dict[str, Any]]) -> None:
        self.studies = studies
        table = self.studies_table
        table.setRowCount(len(studies))
        for i, s in enumerate(studies):
            extra = s.get("extra") or {}
            cfg = extra.get("config") or {}
            summary = extra.get("summary") or {}
            best = summary.get("best") or {}
            value = best.get("value")
            metric = (s.get("objective") or {}).get("metric") or ""
            cells = [
                s.get("name") or s["id"],
                s.get("task") or "",
                f"{cfg.get('method', '?')} · {(s.get('tuner') or {}).get('name', '?')}",
                s.get("status", ""),
                f"{s['_done']} / {cfg.get('trials', '?')}",
                f"{metric} {value:.4g}" if isinstance(value, (int, float)) else "",
            ]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(Qt.ItemDataRole.UserRole, s["id"])
                if j == 0:
                    item.setToolTip(s["id"])
                if j == 3:
                    item.setForeground(QBrush(QColor(_STUDY_STATUS_COLORS.get(s.get("status", ""), "#111827"))))
                    font = QFont()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(i, j, item)
        table.resizeColumnToContents(3)
        self._offer_resume()
        self.studiesLoaded.emit(studies)

    def unfinished_studies(self) -> list[dict[str, Any]]:
        running = self.controller.study_id if self.controller.is_busy() else None
        return [s for s in self.studies if s.get("status") in _UNFINISHED and s["id"] != running
                and (s.get("extra") or {}).get("config")]

    def _offer_resume(self) -> None:
        unfinished = self.unfinished_studies()
        if not unfinished:
            self.resume_banner.hide()
            return
        first = unfinished[0]
        cfg = (first.get("extra") or {}).get("config") or {}
        more = len(unfinished) - 1
        self.resume_label.setText(
            f"<b>Unfinished study:</b> {first.get('name') or first['id']} ({first.get('status')}, "
            f"{first['_done']} of {cfg.get('trials', '?')} trials done)."
            + (f" {more} more unfinished in Recent studies." if more > 0 else "")
            + " Resume it where it stopped?")
        self.resume_btn.setProperty("study_id", first["id"])
        self.resume_btn.setEnabled(not self.controller.is_busy())
        self.resume_banner.show()

    def _selected_study(self) -> dict[str, Any] | None:
        items = self.studies_table.selectedItems()
        if not items:
            return None
        sid = items[0].data(Qt.ItemDataRole.UserRole)
        return next((s for s in self.studies if s["id"] == sid), None)

    def _study_selected(self) -> None:
        s = self._selected_study()
        busy = self.controller.is_busy()
        self.resume_selected_btn.setEnabled(bool(s) and not busy and s in self.unfinished_studies())
        self.load_selected_btn.setEnabled(bool(s) and bool((s.get("extra") or {}).get("config")))

    def _resume_selected(self) -> None:
        s = self._selected_study()
        if s is not None and s in self.unfinished_studies() and not self.controller.is_busy():
            self.resume(s["id"])

    def _load_selected(self) -> None:
        s = self._selected_study()
        if s is None:
            return
        try:
            self.load_config(s["extra"]["config"])
        except Exception as exc:  # noqa: BLE001 - a study of a plugin no longer installed
            self.banner.show_message(f"Cannot load study {s['id']}: {exc}", "error")
            return
        self.name_edit.clear()

    # The summary.

    def _schedule_summary(self, *_: Any) -> None:
        if hasattr(self, "_summary_timer"):
            self._summary_timer.start()

    def _update_summary(self) -> None:
        try:
            cfg = self.config()
        except ValueError as exc:
            self.summary.setText(f"<span style='color:#c62828'>{exc}</span>")
            self.start_btn.setEnabled(False)
            return
        self.start_btn.setEnabled(not self.controller.is_busy())
        parts = []
        try:
            from lrbench_gui.core.tuning import space as spaces

            make = spaces.compose_space if cfg.method == "compose" else spaces.policy_space
            space = make(cfg.policies, registry=self._registry, overrides=cfg.overrides, lr_range=cfg.lr_range)
        except Exception as exc:  # noqa: BLE001 - SpaceError and a plugin's own errors, in words
            self.summary.setText(f"<span style='color:#c62828'>search space: {exc}</span>")
            self.start_btn.setEnabled(False)
            return
        for family in space.families[:12]:
            dims = ", ".join(
                f"{d.name} {d.low:.2g}–{d.high:.2g}{' (log)' if d.log else ''}" if d.kind != "choice"
                else f"{d.name} in {list(d.choices)}" for d in family.dims) or "nothing searched"
            parts.append(f"&nbsp;&nbsp;• <b>{family.name}</b>: {dims}")
        if len(space.families) > 12:
            parts.append(f"&nbsp;&nbsp;• … and {len(space.families) - 12} more")
        total = cfg.trials * cfg.budget_steps
        where = "a Ray cluster" if cfg.backend == "ray" else (
            f"{cfg.parallel} local worker{'s' if cfg.parallel > 1 else ''}")
        lines = [
            f"<b>{cfg.method}</b> study of <b>{cfg.task}</b> with the <b>{cfg.tuner}</b> tuner",
            "Searched:<br>" + "<br>".join(parts),
            f"Up to {cfg.trials} trials × {cfg.budget_steps:,} steps = {total:,} steps of compute, "
            f"{cfg.parallel} at a time on {where}.",
            f"Ranked by {'the steps to reach ' + (cfg.metric or 'the metric') + ' ' + format(cfg.target, 'g') if cfg.method == 'cost' else (cfg.metric or 'the task metric') + ' (' + (cfg.mode or 'min') + ')'}.",
            "Recorded in the database as it runs; a stopped study can be resumed.",
        ]
        self.summary.setText("<br><br>".join(lines))


    def _overrides(self, ranges: dict[str, tuple[float, float]]) -> dict[str, Any]:
        """Per-policy LR ranges as the study's ``overrides``: ``{"cosine.lr": [lo, hi],
        "triangle2.min_lr": [lo, hi], "triangle2.max_lr": [lo, hi]}`` (see
        ``lrbench_gui.core.space.policy_space``; a pair such as min_lr <= max_lr is kept in order
        by the space)."""
        out: dict[str, Any] = {}
        for name, (lo, hi) in ranges.items():
            for info in lr_params(self._registry.policy(name)):
                out[f"{name}.{info.name}"] = [lo, hi]
        return out


def _ranges_from_overrides(overrides: dict[str, Any], policies: list[str]) -> dict[str, tuple[float, float]]:
    """The per-policy LR ranges of a study's ``overrides`` (the widest of each policy's LR keys)."""
    out: dict[str, tuple[float, float]] = {}
    for key, value in (overrides or {}).items():
        policy, dot, pname = key.rpartition(".")
        if not dot or policy not in policies or not pname.endswith("lr"):
            continue
        if isinstance(value, (list, tuple)) and len(value) == 2:
            lo, hi = float(value[0]), float(value[1])
            if policy in out:
                lo, hi = min(lo, out[policy][0]), max(hi, out[policy][1])
            out[policy] = (lo, hi)
    return out
