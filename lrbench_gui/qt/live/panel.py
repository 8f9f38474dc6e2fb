"""The Live panel: a running study's trials, their curves as they stream, and the final ranking.

The trial table (:class:`~lrbench_gui.qt.live.trial_table.TrialStateModel`) is fed by the
:class:`~lrbench_gui.qt.study_controller.StudyController`'s throttled ``trialUpdated`` signal; its
first column carries the same colour swatch as the trial's curves in the
:class:`~lrbench_gui.qt.live_plot.LivePlot`, which gets every step event. Selecting rows
highlights those trials' curves (or shows only them). A study whose tuner's view is
``"range-test"`` also gets the :class:`~lrbench_gui.qt.live.range_view.RangeView`. A failed
trial's error and stderr tail are in the details pane under the table, one click away. When the
study ends, the :class:`~lrbench_gui.qt.live.ranking.RankingBox`'s chosen trial can be saved
into the database's policies table as a recipe, on the jobs thread. The Results panel's
:class:`~lrbench_gui.qt.results.lr_view.MetricVsLrView` and
:class:`~lrbench_gui.qt.results.param_view.MetricVsParamView` are tabs beside the curves, fed the
study's finished trial records; a hidden one only notes that it is out of date and redraws when shown.
Each is made when its tab is first shown (or the attribute read); until then its tab holds an empty page.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core import analysis
from lrbench_gui.core.records import TRIAL_FINAL, TrialStatus, curve_points, spec_label
from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.db_jobs import DatabaseJobs
from lrbench_gui.qt.live.range_view import RANGE_VIEW, RangeView
from lrbench_gui.qt.live.ranking import RankingBox, recipe_record
from lrbench_gui.qt.live.trial_table import PROGRESS_COL, ProgressDelegate, TrialStateModel
from lrbench_gui.qt.identity import short_labels, trial_colour, trial_label
from lrbench_gui.qt.live_plot import LivePlot
from lrbench_gui.qt.plot_style import is_dark
from lrbench_gui.qt.results.common import View
from lrbench_gui.qt.results.lr_view import MetricVsLrView
from lrbench_gui.qt.results.param_view import MetricVsParamView
from lrbench_gui.qt.study_controller import StudyController
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["LivePanel"]

#: the analysis tabs after the curves and the range test: (attribute name, class)
_ANALYSIS: tuple[tuple[str, type[View]], ...] = (("lr_view", MetricVsLrView), ("param_view", MetricVsParamView))


class LivePanel(QWidget):
    """The live study view; see the module docstring."""

    # a recipe was stored in the policies table: (the stored record)
    recipeSaved = Signal(dict)
    # a plot image or the curves CSV was written: (path)
    exported = Signal(str)

    def __init__(self, controller: StudyController, jobs: DatabaseJobs, registry: Registry,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.jobs = jobs
        self.registry = registry
        self.config: Any = None
        self.logs: dict[str, deque[str]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, dict[str, Any]] = {}  # analysis rows of the finished trials, made when a view is shown
        self._stale: set[str] = set()  # the analysis views (by name) out of date
        self._built: dict[str, View] = {}  # the analysis views made so far
        self.result: dict[str, Any] | None = None
        self.t_start = 0.0
        self._build()
        controller.studyStarted.connect(self._study_started)
        controller.trialAdded.connect(self._trial_added)
        controller.trialEvent.connect(self._trial_event)
        controller.trialLog.connect(self._trial_log)
        controller.trialUpdated.connect(self._trial_updated)
        controller.trialFinished.connect(self._trial_finished)
        controller.rankingChanged.connect(self._show_ranking)
        controller.studyFinished.connect(self._study_finished)
        controller.problem.connect(lambda text: self.banner.show_message(text, "error"))
        self._clock = QTimer(self)
        self._clock.setInterval(500)
        self._clock.timeout.connect(self._tick)

    # Building.

    def _build(self) -> None:
        self.banner = MessageBanner(self)
        self.title = QLabel("No study yet. Start one in the Study panel, or run the demo study there.")
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setWordWrap(True)
        self.status_label = QLabel("")
        self.status_label.setStyleSheet("color: #6b7280;")
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m trials")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setMaximumWidth(260)
        self.stop_btn = QPushButton("Stop study")
        self.stop_btn.setToolTip("Stop every running trial (recorded as stopped); resume the study later from the Study panel")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.controller.stop)
        self.stop_btn.clicked.connect(lambda: (self.stop_btn.setEnabled(False), self._tick()))
        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.addWidget(self.title)
        titles.addWidget(self.status_label)
        head.addLayout(titles, 1)
        head.addWidget(self.progress)
        head.addWidget(self.stop_btn)

        self.model = TrialStateModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(PROGRESS_COL, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setMinimumSectionSize(40)
        # the policy label wide enough to read (the full one is its tooltip)
        for col, width in enumerate((64, 190, 84, 70, 72, 56, 62, 96, 56)):
            self.table.setColumnWidth(col, width)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.only_selected = QCheckBox("Plot only the selected trials")
        self.only_selected.toggled.connect(lambda _: self._selection_changed())
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumBlockCount(3000)
        self.details.setPlaceholderText("Select a trial to see its policy, metrics and log (a failed trial's error is here).")
        details_box = QGroupBox("Details and log")
        dl = QVBoxLayout(details_box)
        dl.setContentsMargins(6, 4, 6, 6)
        dl.addWidget(self.details)

        self.plot = LivePlot()
        # a study's LRs span decades and a diverged trial's loss dwarfs the others: log axes
        self.plot.log_lr.setChecked(True)
        self.plot.log_loss.setChecked(True)
        self.plot.raw.setChecked(False)  # many trials: the smoothed losses say more
        for plot in (self.plot.lr_plot, self.plot.loss_plot):
            plot.getAxis("left").enableAutoSIPrefix(False)
        self.range_view = RangeView()
        self.range_plot, self.range_note = self.range_view.range_plot, self.range_view.range_note
        self.tabs = QTabWidget()
        self.tabs.addTab(self.plot, "Curves")
        self.tabs.addTab(self.range_view, "LR range test")
        self.tabs.setTabVisible(1, False)
        # across the finished trials, as in Results (index 2 and 3; 0 and 1 stay the curves and the range
        # test): an empty page each until the view is made (its tab shown, or the attribute read)
        for _name, cls in _ANALYSIS:
            self.tabs.addTab(QWidget(), cls.title)
        self.tabs.currentChanged.connect(self._tab_shown)

        self.export_png_btn = QPushButton("Export plot…")
        self.export_png_btn.setToolTip("Save the LR and loss plots as PNG or SVG")
        self.export_png_btn.clicked.connect(self._export_plot_clicked)
        self.export_csv_btn = QPushButton("Export curves CSV…")
        self.export_csv_btn.setToolTip("Every trial's steps, LR, loss and smoothed loss as one CSV")
        self.export_csv_btn.clicked.connect(self._export_csv_clicked)
        plot_bar = QHBoxLayout()
        plot_bar.addWidget(self.only_selected)
        plot_bar.addStretch(1)
        plot_bar.addWidget(self.export_png_btn)
        plot_bar.addWidget(self.export_csv_btn)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.tabs, 1)
        rv.addLayout(plot_bar)

        self.ranking = ranking_box = RankingBox(lambda tid: self.model.colors.get(tid, "#9ca3af"))
        self.ranking_table, self.best_label, self.recipe_btn = (ranking_box.ranking_table, ranking_box.best_label,
                                                                ranking_box.recipe_btn)
        ranking_box.trialSelected.connect(lambda tid: self.select_trials([tid]))
        ranking_box.recipeRequested.connect(self._recipe_clicked)

        left = QSplitter(Qt.Orientation.Vertical)
        table_page = QWidget()
        tl = QVBoxLayout(table_page)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.table)
        left.addWidget(table_page)
        left.addWidget(ranking_box)
        left.addWidget(details_box)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        left.setStretchFactor(2, 1)
        left.setSizes([320, 220, 130])
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 4)
        split.setSizes([640, 560])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.addWidget(self.banner)
        outer.addLayout(head)
        outer.addWidget(split, 1)

    # The study's signals.

    def _study_started(self, study_id: str, config: Any) -> None:
        self.config = config
        self.result = None
        self.records = {}
        self._rows = {}
        self.logs = {}
        self.plot.clear()
        self.details.clear()
        self.banner.dismiss()
        metric = self.controller.study.objective.metric if self.controller.study else (config.metric or "metric")
        self.model.clear(metric)
        self.ranking.clear(metric)
        name = config.name or f"{config.method} {config.tuner} on {config.task}"
        self.title.setText(f"{name}  ·  {study_id}")
        self.progress.setRange(0, max(1, config.trials))
        self.progress.setValue(0)
        self.stop_btn.setEnabled(True)
        self.t_start = time.monotonic()
        tuner = self.registry.tuners.get(config.tuner)
        ranged = tuner is not None and getattr(tuner.obj, "view", "") == RANGE_VIEW
        self.range_view.start(metric, live=ranged)
        self.tabs.setTabVisible(1, ranged)
        self.tabs.setCurrentIndex(1 if ranged else 0)
        self._clock.start()
        self._tick()
        self._analysis_changed()

    def _trial_added(self, trial_id: str, info: dict) -> None:
        color = trial_colour(trial_id)  # the same in Results, Methods and after a resume
        state = self.controller.states.get(trial_id, {**info, "status": "queued"})
        self.plot.add_trial(trial_id, info.get("label") or info["key"], color, trial_label(state, self.registry))
        self.model.add(trial_id, state, color)
        self._relabel()
        self.logs[trial_id] = deque(maxlen=400)
        if self.model.rowCount() > self.progress.maximum():
            self.progress.setMaximum(self.model.rowCount())
        if not self.only_selected.isChecked() or not self._selected():
            self._style_curve(trial_id, selected=False, any_selected=bool(self._selected()))

    def _trial_event(self, trial_id: str, event: Any) -> None:
        if event.type != "step":
            return
        self.plot.append(trial_id, event["step"], event["lr"], event["loss"])
        if isinstance(event.get("switch"), str):  # a reactive policy changed the LR here (a plateau)
            self.plot.mark_switch(trial_id, event["step"], event["lr"], event["switch"])
        if self.tabs.isTabVisible(1):
            self.range_view.step(trial_id, (self.model.state(trial_id) or {}).get("point") or {}, event)

    def _trial_log(self, trial_id: str, line: str) -> None:
        buf = self.logs.setdefault(trial_id, deque(maxlen=400))
        buf.append(line)
        if self._selected()[:1] == [trial_id]:
            self.details.appendPlainText(line)

    def _trial_updated(self, trial_id: str, state: dict) -> None:
        self.model.update(trial_id, state)

    def _trial_finished(self, trial_id: str, record: dict) -> None:
        self.records[trial_id] = record
        self._rows.pop(trial_id, None)
        self._analysis_changed()
        state = self.controller.states.get(trial_id)
        if state is not None:
            self.model.update(trial_id, state)
        if self.plot.points(trial_id) == 0:
            self._plot_stored_curves(trial_id, record)
        if self.tabs.isTabVisible(1):
            self.range_view.finished((self.model.state(trial_id) or {}).get("point") or {}, record)
        done = sum(1 for r in self.model.rows if r.get("status") in TRIAL_FINAL)
        self.progress.setValue(min(done, self.progress.maximum()))
        if self._selected()[:1] == [trial_id]:
            self.show_details(trial_id)
        status = (state or {}).get("status", record.get("status"))
        if status == TrialStatus.FAILED:
            first = (record.get("notes") or "").splitlines()[:1]
            self.banner.show_message(
                f"Trial {trial_id} failed{': ' + first[0] if first else ''}. Select its row to see its log.", "warning")

    def _plot_stored_curves(self, trial_id: str, record: dict) -> None:
        """A replayed trial: draw its curves from the database record."""
        curves = record.get("curves") or {}
        try:
            lrs = curve_points(curves.get("lr"))
            loss_at = dict(curve_points(curves.get("loss")))
        except Exception:  # noqa: BLE001 - an unreadable curve only means no curve
            return
        for step, lr in lrs:
            self.plot.append(trial_id, step, lr, loss_at.get(step, math.nan))
        for sw in ((record.get("extra") or {}).get("switches") or [])[:64]:  # a reactive policy's changes
            if isinstance(sw, dict) and isinstance(sw.get("step"), int) and isinstance(sw.get("lr"), (int, float)):
                self.plot.mark_switch(trial_id, sw["step"], float(sw["lr"]), str(sw.get("reason", "")))

    def _study_finished(self, study_id: str, status: str, result: dict) -> None:
        self.result = result
        self.stop_btn.setEnabled(False)
        self._clock.stop()
        self._tick(final=status)
        self._show_ranking(result["ranking"])
        summary = result.get("summary") or {}
        if self.tabs.isTabVisible(1):
            self.range_view.conclude(summary.get("tuner") or {})
        lines = []
        best = summary.get("best")
        if best:
            value = best.get("value")
            lines.append(f"Best: {self.model.labels.get(best.get('trial')) or spec_label(best['policy'], self.registry)}, {self.model.metric} "
                         f"{value:.4g}" if isinstance(value, (int, float)) else f"Best: {best['trial']}")
        if summary.get("best_single") and summary.get("best_composition"):
            bs, bc = summary["best_single"], summary["best_composition"]
            lines.append(f"best composition {bc['value']:.4g} vs best single policy {bs['value']:.4g}")
        lines.append(f"{summary.get('trials', 0)} trials, {summary.get('compute_steps', 0):,} steps of compute"
                     + (f", {summary['replayed']} replayed" if summary.get("replayed") else "") + ".")
        self.best_label.setText("  ".join(lines))
        if status == "stopped":
            self.banner.show_message(f"Study {study_id} stopped. Resume it from the Study panel.", "info", 10000)

    def _tick(self, final: str | None = None) -> None:
        rows = self.model.rows
        running = sum(1 for r in rows if r.get("status") == TrialStatus.RUNNING)
        done = sum(1 for r in rows if r.get("status") in TRIAL_FINAL)
        elapsed = time.monotonic() - self.t_start if self.t_start else 0.0
        word = final or self.controller.status
        eta = ""
        study = self.controller.study
        if study is not None and self.config is not None and study.config.study_id == self.config.study_id:
            from lrbench_gui.core.tuning.study import format_duration

            p = study.progress()  # completed / planned (the tuner's count), ETA from the trials so far
            self.progress.setRange(0, max(1, p["planned"], self.progress.maximum() if p["estimate"] else 0))
            self.progress.setValue(min(p["completed"], self.progress.maximum()))
            if not final and p["eta_seconds"] is not None:
                eta = f" · ETA {format_duration(p['eta_seconds'])}"
        self.status_label.setText(f"{word} · {done} done, {running} running · {elapsed:.0f} s{eta}")

    # The across-trial views.

    def _view(self, name: str) -> View:
        """Analysis view ``name``, made now (in place of its tab's empty page) if not yet."""
        view = self._built.get(name)
        if view is None:
            index = 2 + [n for n, _ in _ANALYSIS].index(name)
            view = self._built[name] = dict(_ANALYSIS)[name]()
            if is_dark():  # its plots follow the theme; its titles and text too
                view.theme_changed(True)
            current, page = self.tabs.currentIndex(), self.tabs.widget(index)
            self.tabs.blockSignals(True)  # the swap is not the user's tab change
            try:
                self.tabs.removeTab(index)
                self.tabs.insertTab(index, view, view.title)
                self.tabs.setCurrentIndex(current)
            finally:
                self.tabs.blockSignals(False)
            page.deleteLater()
        return view

    lr_view = property(lambda self: self._view("lr_view"), doc="The :class:`MetricVsLrView` tab.")
    param_view = property(lambda self: self._view("param_view"), doc="The :class:`MetricVsParamView` tab.")

    def analysis_views(self) -> list[View]:
        """Both analysis views (made now if not yet)."""
        return [self._view(name) for name, _ in _ANALYSIS]

    def _tab_shown(self, index: int) -> None:
        if index >= 2 and self.tabs.widget(index) not in self._built.values():
            self._view(_ANALYSIS[index - 2][0])  # the tab opened shows its view
        self._refresh_analysis()

    def _analysis_changed(self) -> None:
        """The finished trials changed: redraw the view shown, mark the others out of date."""
        self._stale.update(name for name, _ in _ANALYSIS)
        self._refresh_analysis()

    def _refresh_analysis(self) -> None:
        """Redraw the analysis views that are out of date and shown."""
        due = [v for n, v in self._built.items() if n in self._stale and v.isVisible()]
        if not due:
            return
        for trial_id, record in self.records.items():
            if trial_id not in self._rows:
                self._rows[trial_id] = analysis.analysis_rows([record], self.registry)[0]
        rows = [self._rows[t] for t in self.records]
        for view in due:
            self._stale.discard(next(n for n, v in self._built.items() if v is view))
            if view is self._built.get("lr_view"):
                view.set_data(rows, analysis.range_tests(self.records.values()))
            else:
                view.set_data(rows)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._refresh_analysis()  # trials that finished while another panel was shown

    # The ranking.

    def _relabel(self) -> None:
        """Short labels that tell the study's trials apart, in the table, the legend and the ranking."""
        labels = short_labels(self.model.rows, self.registry)
        self.model.set_labels(labels)
        for tid, text in labels.items():
            self.plot.set_label(tid, text)

    def _show_ranking(self, ranking: list) -> None:
        cost = self.config is not None and self.config.method == "cost"
        labels = {r["trial"]: self.model.labels[r["trial"]] for r in ranking if r["trial"] in self.model.labels}
        self.ranking.show_ranking(ranking, self.registry, cost, labels if len(labels) == len(ranking) else None)

    def selected_ranking_trial(self) -> str | None:
        return self.ranking.selected_trial()

    def _select_ranking(self, trial_id: str) -> None:
        self.ranking.select(trial_id)

    # Selection: highlight, filter, details.

    def _selected(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.rows[r]["trial"] for r in rows if r < len(self.model.rows)]

    def selected_trials(self) -> list[str]:
        return self._selected()

    def select_trials(self, ids: list[str]) -> None:
        """Select these trials' rows (their curves are highlighted, their details shown)."""
        sel = self.table.selectionModel()
        selection = QItemSelection()
        for trial_id in ids:
            row = self.model.index_of.get(trial_id)
            if row is not None:
                selection.select(self.model.index(row, 0), self.model.index(row, self.model.columnCount() - 1))
        sel.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)

    def _selection_changed(self, *_: Any) -> None:
        chosen = self._selected()
        for trial_id in self.plot.series:
            self._style_curve(trial_id, trial_id in chosen, bool(chosen))
        if len(chosen) == 1:
            self.show_details(chosen[0])
        elif not chosen:
            self.details.clear()

    def _style_curve(self, trial_id: str, selected: bool, any_selected: bool) -> None:
        s = self.plot.series.get(trial_id)
        if s is None:
            return
        color = QColor(s.color)
        faded = any_selected and not selected
        hidden = faded and self.only_selected.isChecked()
        if faded:
            color.setAlpha(45)
        # 1-pixel pens: a 2-pixel line is ~10x dearer to paint, and a study draws many at once
        width = 2 if selected else 1
        s.curves["lr"].setPen(pg.mkPen(color, width=width))
        s.curves["smooth"].setPen(pg.mkPen(color, width=width))
        for name in ("lr", "smooth"):
            s.curves[name].setVisible(not hidden)
        s.curves["raw"].setVisible(not hidden and self.plot.raw.isChecked())
        if selected:
            for name in ("lr", "smooth"):
                s.curves[name].setZValue(10)
        else:
            for name in ("lr", "smooth"):
                s.curves[name].setZValue(0)

    def show_details(self, trial_id: str) -> None:
        """Show a trial's policy, result, error and log tail in the details pane."""
        state = self.model.state(trial_id) or {}
        record = self.records.get(trial_id) or {}
        lines = [f"{trial_id}   {state.get('status', record.get('status', ''))}"]
        lines.append(f"policy: {json.dumps(state.get('policy') or record.get('policy'))}")
        if state.get("point"):
            lines.append("point: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in state["point"].items()))
        metrics = record.get("metrics") or {}
        if metrics:
            lines.append("metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                                                 if isinstance(v, (int, float))))
        cost = record.get("cost") or {}
        if cost:
            lines.append(f"cost: {cost.get('steps', 0)} steps, {cost.get('seconds', 0)} s")
        if state.get("notes") or record.get("notes"):
            lines.append("")
            lines.append(str(record.get("notes") or state.get("notes")))
        log = list(self.logs.get(trial_id, ()))
        if log:
            lines.append("")
            lines.append(f"log (last {len(log)} lines):")
            lines.extend(log)
        self.details.setPlainText("\n".join(lines))
        self.details.moveCursor(QTextCursor.MoveOperation.Start)  # the error first; the log tail below

    def details_text(self) -> str:
        return self.details.toPlainText()

    # Recipes and exports.

    def save_recipe(self, trial_id: str | None = None, name: str | None = None) -> None:
        """Store a ranked trial's policy (default: the selected row, else the best) as a recipe.

        Runs on the jobs thread; ``recipeSaved`` carries the stored record, a failure shows in
        the banner.
        """
        ranking = self.controller.ranking()
        rows = {r["trial"]: r for r in ranking}
        trial_id = trial_id or self.selected_ranking_trial() or next(
            (r["trial"] for r in ranking if r.get("value") is not None), None)
        if trial_id is None or trial_id not in rows or self.config is None:
            self.banner.show_message("There is no ranked trial to save yet.", "warning")
            return
        row = rows[trial_id]
        config = self.config.model_dump(mode="json")
        name = name or f"{spec_label(row['policy'], self.registry)} for {config['task']}"
        record = recipe_record(row, config, name, self.registry)

        def done(stored: dict) -> None:
            self.banner.show_message(f"Saved recipe {stored['name']!r} ({stored['id']}) in the policies table.", "info")
            self.recipeSaved.emit(stored)

        self.jobs.submit(lambda db: db.add_policy(record, replace=True), done,
                         lambda msg: self.banner.show_message(f"Could not save the recipe: {msg}", "error"))

    def _recipe_clicked(self) -> None:
        ranking = self.controller.ranking()
        trial_id = self.selected_ranking_trial() or next((r["trial"] for r in ranking if r.get("value") is not None), None)
        if trial_id is None:
            return
        row = next(r for r in ranking if r["trial"] == trial_id)
        default = f"{spec_label(row['policy'], self.registry)} for {self.config.task}"
        name, ok = QInputDialog.getText(self, "Save as recipe", f"Name of the recipe for trial {trial_id}:", text=default)
        if ok and name.strip():
            self.save_recipe(trial_id, name.strip())

    def _shown_view(self) -> View | None:
        view = self.tabs.currentWidget()
        return view if isinstance(view, View) else None

    def export_plot(self, path: str | Path) -> Path:
        """The LR and loss plots as PNG or SVG (``NAME-loss.EXT`` beside it holds the loss), or
        the analysis view shown."""
        view = self._shown_view()
        out = view.export_image(path) if view else self.plot.export_image(path)
        self.exported.emit(str(out))
        return out

    def export_curves(self, path: str | Path) -> Path:
        view = self._shown_view()
        out = view.export_csv(path) if view else self.plot.export_csv(path)
        self.exported.emit(str(out))
        return out

    def _export_plot_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the plot", "study-curves.png", "Images (*.png *.svg)")
        if path:
            self._guarded(self.export_plot, path)

    def _export_csv_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the curves", "study-curves.csv", "CSV (*.csv)")
        if path:
            self._guarded(self.export_curves, path)

    def _guarded(self, fn: Any, path: str) -> None:
        try:
            out = fn(path)
        except Exception as exc:  # noqa: BLE001 - a full disk or a bad folder: say so
            self.banner.show_message(f"Could not write {path}: {exc}", "error")
            return
        self.banner.show_message(f"Wrote {out}.", "info")

