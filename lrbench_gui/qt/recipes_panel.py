"""The Recipes panel: the published fine-tuning recipes, the rules of thumb and the recipes saved
from studies (the database's ``policies`` table, :mod:`lrbench_gui.core.db.recipes`), searchable,
each one click from the Run or Study form.

*Use in Run* fills the Run panel with the recipe's policy (its warmup ratio turned into steps for
the run's length by :func:`~lrbench_gui.core.db.recipes.resolve_recipe_spec`), its task when it is
a task here, and its optimizer; *Use in Study* ticks the recipe's policy family in the Study panel
and searches the recipe's LR range (a recipe of one LR: a decade either side of it). *Policy
code…* shows the recipe as DeepSpeed, HF or torch code. The records are read on the window's
database thread (:class:`~lrbench_gui.qt.db_jobs.DatabaseJobs`).
"""

from __future__ import annotations

import html
import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["RecipesPanel", "origin", "fill_run", "fill_study", "study_lr_range", "add_to_window"]

_COLUMNS = ["Name", "Kind", "LR", "Scheduler", "Model", "Task", "Source"]
_ID = Qt.ItemDataRole.UserRole
_KINDS = {"all": "All recipes", "published": "Published", "rule": "Rules of thumb", "saved": "Saved from studies"}


def origin(record: dict[str, Any]) -> str:
    """``published`` (a seed recipe), ``rule`` (a rule of thumb) or ``saved`` (the user's own)."""
    from lrbench_gui.core.db.recipes import SEED_POLICIES

    if record.get("kind") == "rule_of_thumb":
        return "rule"
    if record.get("id") in {s["id"] for s in SEED_POLICIES}:
        return "published"
    return "saved"


def _lr_text(record: dict[str, Any]) -> str:
    if record.get("lr") is not None:
        return f"{record['lr']:g}"
    if record.get("lr_range"):
        lo, hi = record["lr_range"]
        return f"{lo:g} to {hi:g}"
    return ""


def _model(record: dict[str, Any]) -> str:
    m = record.get("model") or {}
    return " ".join(str(x) for x in (m.get("family"), m.get("size")) if x)


def _search_text(record: dict[str, Any]) -> str:
    src = record.get("source") or {}
    parts = [record.get("name"), record.get("id"), record.get("kind"), record.get("scheduler"), record.get("task"),
             record.get("optimizer"), _model(record), record.get("notes"), src.get("title"), src.get("url"),
             " ".join(record.get("tags") or []), (record.get("spec") or {}).get("name") if isinstance(record.get("spec"), dict) else ""]
    return " ".join(str(p) for p in parts if p).casefold()


def _steps(record: dict[str, Any], default: int) -> int:
    steps = (record.get("extra") or {}).get("budget_steps")
    return int(steps) if isinstance(steps, int) and steps > 0 else default


def study_lr_range(record: dict[str, Any]) -> tuple[float, float] | None:
    """The LR range a study of this recipe searches: its own range, else a decade either side of
    its LR (None when it has neither)."""
    if record.get("lr_range"):
        lo, hi = record["lr_range"]
        return float(lo), float(hi)
    if record.get("lr"):
        return float(record["lr"]) / 10, float(record["lr"]) * 10
    return None


def fill_run(panel: Any, record: dict[str, Any], registry: Registry) -> str:
    """Fill the Run panel ``panel`` from ``record``; returns what was done, in one line.
    ``ValueError`` for a recipe without a policy (a bare LR range: use it in a study)."""
    from lrbench_gui.core.db.recipes import resolve_recipe_spec
    from lrbench_gui.core.records import spec_label

    steps = _steps(record, panel.steps.value())
    spec = resolve_recipe_spec(record, steps, registry)
    if spec is None:
        raise ValueError(f"{record.get('name')} gives an LR range, not one policy: use it in a study")
    said = []
    task = record.get("task")
    if task in registry.tasks:
        panel.task_combo.setCurrentText(task)
        params = (record.get("extra") or {}).get("task_params") or {}
        if params:
            panel.task_form.set_values(params)
    elif task:
        said.append(f"its task {task!r} is not a task here, so the task is yours to pick")
    panel.steps.setValue(steps)
    if "sequence" not in spec and spec.get("name") in registry.policies:
        panel.policy_combo.setCurrentText(spec["name"])
        panel.policy_form.set_values(spec.get("params") or {})
    else:
        panel.composed = spec
        if hasattr(panel, "composed_steps"):
            panel.composed_steps = None  # resolved for this run's length already
        panel.policy_form.setEnabled(False)
        panel.composed_label.setText(f"Running the recipe's spec:\n{spec_label(spec, registry)}")
    optimizer = record.get("optimizer")
    if optimizer and panel.optimizer.findText(optimizer) >= 0:
        panel.optimizer.setCurrentText(optimizer)
    return f"Run: {record.get('name')} as {spec_label(spec, registry)} for {steps} steps" + (
        f"; {'; '.join(said)}" if said else "") + "."


def fill_study(panel: Any, record: dict[str, Any], registry: Registry) -> str:
    """Tick the recipe's policy families in the Study panel ``panel`` and search its LR range;
    returns what was done, in one line."""
    spec = record.get("spec")
    names: list[str] = []
    if isinstance(spec, dict):
        stages = spec.get("sequence") or [spec]
        names = [str(s.get("name")) for s in stages if isinstance(s, dict) and s.get("name") in registry.policies]
    said = []
    if names:
        panel.set_policies(list(dict.fromkeys(names)))
    else:
        said.append("no policy of its own, so the ticked families stay")
    rng = study_lr_range(record)
    if rng is not None:
        panel.policy_choice.set_lr_range(rng)
    task = record.get("task")
    if task in registry.tasks:
        panel.task_combo.setCurrentText(task)
    elif task:
        said.append(f"its task {task!r} is not a task here")
    steps = (record.get("extra") or {}).get("budget_steps")
    if isinstance(steps, int) and steps > 0:
        panel.budget_steps.setValue(steps)
    optimizer = record.get("optimizer")
    box = getattr(panel.budget_box, "optimizer", None)
    if optimizer and box is not None and box.findText(optimizer) >= 0:
        box.setCurrentText(optimizer)
    where = f"LR {rng[0]:g} to {rng[1]:g}" if rng else "the default LR range"
    return f"Study: {', '.join(dict.fromkeys(names)) or 'the ticked families'} over {where}" + (
        f"; {'; '.join(said)}" if said else "") + "."


class RecipesPanel(QWidget):
    """The recipes of the database of ``jobs``; see the module docstring."""

    #: the recipes were read: (number of records)
    loaded = Signal(int)
    #: Use in Run / Use in Study was pressed: (the recipe's record)
    useInRun = Signal(dict)
    useInStudy = Signal(dict)

    def __init__(self, jobs: Any, registry: Registry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.registry = registry
        self.records: list[dict[str, Any]] = []
        self._loaded = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        self.banner = MessageBanner(self)
        layout.addWidget(self.banner)
        bar = QHBoxLayout()
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search recipes: name, model, task, scheduler, tag, source…")
        self.search.setClearButtonEnabled(True)
        self.kind_combo = QComboBox(self)
        for key, text in _KINDS.items():
            self.kind_combo.addItem(text, key)
        self.refresh_button = QPushButton("Refresh", self)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.kind_combo)
        bar.addWidget(self.refresh_button)
        layout.addLayout(bar)
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.table = QTableWidget(0, len(_COLUMNS), split)
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSortingEnabled(True)
        self.details = QTextBrowser(split)
        self.details.setOpenExternalLinks(True)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setSizes([420, 220])
        layout.addWidget(split, 1)
        buttons = QHBoxLayout()
        self.count_label = QLabel(self)
        self.count_label.setStyleSheet("color: #6b7280;")
        buttons.addWidget(self.count_label, 1)
        self.code_button = QPushButton("Policy code…", self)
        self.code_button.setToolTip("The recipe's schedule as a DeepSpeed block, HF TrainingArguments fields or torch code")
        self.run_button = QPushButton("Use in Run", self)
        self.run_button.setToolTip("Fill the Run panel with this recipe's policy, task and optimizer")
        self.study_button = QPushButton("Use in Study", self)
        self.study_button.setToolTip("Tick this recipe's policy in the Study panel and search around its LR")
        for b in (self.code_button, self.run_button, self.study_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)

        self.search.textChanged.connect(lambda _t: self.apply_filter())
        self.kind_combo.currentIndexChanged.connect(lambda _i: self.apply_filter())
        self.refresh_button.clicked.connect(self.refresh)
        self.table.itemSelectionChanged.connect(self._show_details)
        self.run_button.clicked.connect(lambda: self._emit(self.useInRun))
        self.study_button.clicked.connect(lambda: self._emit(self.useInStudy))
        self.code_button.clicked.connect(self.open_code)
        self._show_details()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._loaded:
            self.refresh()

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry

    def refresh(self) -> None:
        """Read the recipes on the database thread."""
        self._loaded = True

        def load(db: Any) -> list[dict[str, Any]]:
            return [json.loads(json.dumps(p)) for p in db.policies()]

        self.jobs.submit(load, self.show_records,
                         lambda msg: self.banner.show_message(f"Could not read the recipes: {msg}", "error"))

    def show_records(self, records: list[dict[str, Any]]) -> None:
        order = {"published": 0, "rule": 1, "saved": 2}
        self.records = sorted(records, key=lambda r: (order[origin(r)], str(r.get("name")).casefold()))
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.records))
        for i, r in enumerate(self.records):
            src = r.get("source") or {}
            kind = {"published": "published", "rule": "rule of thumb", "saved": "saved"}[origin(r)]
            cells = [r.get("name") or r["id"], kind, _lr_text(r), r.get("scheduler") or "", _model(r), r.get("task") or "",
                     src.get("title") or ""]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(_ID, r["id"])
                if j == 0:
                    item.setToolTip(f"{r['id']}\n{r.get('notes') or ''}".strip())
                self.table.setItem(i, j, item)
        # by kind, a stable sort of the rows as ordered above: published, rules, saved, each by name
        self.table.horizontalHeader().setSortIndicator(1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.apply_filter()
        self.loaded.emit(len(self.records))

    def apply_filter(self) -> None:
        words = self.search.text().casefold().split()
        kind = self.kind_combo.currentData()
        by_id = {r["id"]: r for r in self.records}
        shown = 0
        for i in range(self.table.rowCount()):
            r = by_id.get(self.table.item(i, 0).data(_ID), {})
            text = _search_text(r)
            visible = (kind == "all" or origin(r) == kind) and all(w in text for w in words)
            self.table.setRowHidden(i, not visible)
            shown += visible
        self.count_label.setText(f"{shown} of {len(self.records)} recipes")

    def visible_ids(self) -> list[str]:
        return [self.table.item(i, 0).data(_ID) for i in range(self.table.rowCount()) if not self.table.isRowHidden(i)]

    def select(self, recipe_id: str) -> bool:
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).data(_ID) == recipe_id:
                self.table.selectRow(i)
                return True
        return False

    def selected(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        rid = self.table.item(rows[0].row(), 0).data(_ID)
        return next((r for r in self.records if r["id"] == rid), None)

    def _show_details(self) -> None:
        r = self.selected()
        for b in (self.run_button, self.study_button, self.code_button):
            b.setEnabled(r is not None)
        if r is None:
            self.details.setHtml("<p style='color:#6b7280'>Select a recipe to see where it comes from and what it runs.</p>")
            return
        self.code_button.setEnabled(r.get("spec") is not None)
        self.run_button.setEnabled(r.get("spec") is not None)
        src = r.get("source") or {}
        e = html.escape
        link = f" <a href='{e(src['url'])}'>{e(src['url'])}</a>" if src.get("url") else ""
        facts = [("LR", _lr_text(r)), ("Scheduler", r.get("scheduler")), ("Optimizer", r.get("optimizer")),
                 ("Epochs", r.get("epochs")), ("Warmup", f"{r['warmup_ratio']:.0%} of the run" if r.get("warmup_ratio")
                                                    else r.get("warmup_steps") and f"{r['warmup_steps']} steps"),
                 ("Model", _model(r)), ("Task", r.get("task")), ("Tags", ", ".join(r.get("tags") or []))]
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{e(str(v))}</td></tr>" for k, v in facts if v)
        spec = f"<pre>{e(json.dumps(r['spec'], indent=2))}</pre>" if r.get("spec") else "<p>No policy: a range of LRs to search.</p>"
        self.details.setHtml(f"<h3>{e(str(r.get('name')))}</h3><p>{e(src.get('title') or '')}{link}</p>"
                             f"<table cellspacing='6'>{rows}</table><p>{e(r.get('notes') or '')}</p>{spec}"
                             f"<p style='color:#6b7280'>{e(r['id'])}</p>")

    def _emit(self, signal: Any) -> None:
        r = self.selected()
        if r is not None:
            signal.emit(r)

    def open_code(self) -> Any:
        """The policy code dialog of the selected recipe (its spec for its run length, else 1,000 steps)."""
        from lrbench_gui.core.db.recipes import resolve_recipe_spec
        from lrbench_gui.qt.export_dialog import open_policy_code

        r = self.selected()
        if r is None:
            return None
        steps = _steps(r, 1000)
        return open_policy_code(self, resolve_recipe_spec(r, steps, self.registry), steps, self.registry,
                                title=str(r.get("name")), on_problem=lambda m: self.banner.show_message(m, "warning"))


def add_to_window(window: Any) -> RecipesPanel:
    """Wire this part into the main window: the Recipes panel (before Plugins) filling the Run and
    Study forms, a merge chosen in Results opening the Methods panel's merge form, the Run
    panel's command line naming the window's database, and the Policies panel's *Policy code…*."""
    from lrbench_gui.qt._resources import icon
    from lrbench_gui.qt.results_actions import open_merge_form

    panel = RecipesPanel(window.db_jobs, window.registry)
    window.add_panel("Recipes", panel, icon=icon("recipes"))  # before Plugins, which stays last
    window.recipes_panel = panel
    say = lambda text: window.statusBar().showMessage(text, 10_000)  # noqa: E731

    def use(fill: Any, target: Any, name: str, record: dict[str, Any]) -> None:
        try:
            text = fill(target, record, window.registry)
        except ValueError as exc:
            panel.banner.show_message(str(exc), "warning")
            return
        window.show_panel(name)
        say(text)

    panel.useInRun.connect(lambda r: use(fill_run, window.run_panel, "Run", r))
    panel.useInStudy.connect(lambda r: use(fill_study, window.study_panel, "Study", r))
    window.live_panel.recipeSaved.connect(lambda _r: panel.refresh() if panel._loaded else None)

    def merge(prefill: dict[str, Any]) -> None:
        open_merge_form(window.methods_panel, prefill)
        window.show_panel("Methods")

    window.results_panel.results_actions.mergeRequested.connect(merge)
    window.run_panel.command_line_db = lambda: window.db_path
    window.plugin_panel.registryReloaded.connect(panel.set_registry)
    policies = window.policy_panel
    from lrbench_gui.qt.export_dialog import add_code_button

    add_code_button(policies.spec_box, lambda: policies.current_spec(), lambda: policies.total_steps(),
                    lambda: window.registry)
    add_live_code_button(window.live_panel, lambda: window.registry)
    return panel


def add_live_code_button(live: Any, registry: Any) -> Any:
    """*Policy code…* beside the Live panel's *Save as recipe…*: the selected (else the best)
    ranked trial's policy, for the study's run length."""
    from PySide6.QtWidgets import QPushButton

    from lrbench_gui.qt.export_dialog import insert_beside, open_policy_code

    button = QPushButton("Policy code…", live)
    button.setToolTip("The selected (or best) trial's policy as a DeepSpeed block, HF TrainingArguments fields or torch code")

    def show() -> Any:
        ranking = live.controller.ranking()
        rows = {r["trial"]: r for r in ranking}
        tid = live.selected_ranking_trial() or next((r["trial"] for r in ranking if r.get("value") is not None), None)
        row = rows.get(tid)
        if row is None:
            live.banner.show_message("There is no ranked trial yet.", "warning")
            return None
        steps = getattr(live.config, "budget_steps", None) or row.get("steps") or 1000
        return open_policy_code(live, row["policy"], int(steps), registry(), title=f"trial {tid}")

    button.clicked.connect(show)
    insert_beside(getattr(live, "recipe_btn", None), button, live)
    live.code_button = button
    live.show_policy_code = show
    return button
