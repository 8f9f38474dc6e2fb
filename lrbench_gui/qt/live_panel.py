"""The Live panel: a running study's trials, their curves as they stream, and the final ranking.

The trial table is a :class:`TrialStateModel` fed by the
:class:`~lrbench_gui.qt.study_controller.StudyController`'s throttled ``trialUpdated`` signal; its
first column carries the same colour swatch as the trial's curves in the
:class:`~lrbench_gui.qt.live_plot.LivePlot`, which gets every step event. Selecting rows
highlights those trials' curves (or shows only them). A range-test study also gets a loss-vs-LR
plot with the tuner's suggestions marked. A failed trial's error and stderr tail are in the
details pane under the table, one click away. When the study ends, the ranking's chosen trial can
be saved into the database's policies table as a recipe, on the jobs thread.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QRect,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
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
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.live_plot import PALETTE, LivePlot
from lrbench_gui.qt.study_controller import DatabaseJobs, StudyController, trial_label
from lrbench_gui.qt.widgets import MessageBanner, swatch_icon

__all__ = ["LivePanel", "TrialStateModel", "STATUS_COLORS", "recipe_record"]

STATUS_COLORS = {
    "queued": "#6b7280",
    "running": "#1d4ed8",
    "completed": "#2e7d32",
    "stopped": "#6b7280",
    "diverged": "#ef6c00",
    "failed": "#c62828",
    "pruned": "#7c3aed",
}
_STATUS_TIPS = {
    "queued": "waiting for a free slot",
    "running": "training now",
    "completed": "ran its whole budget",
    "stopped": "stopped by you (or the window closing) before the end",
    "diverged": "the loss blew up; the trainer stopped it",
    "failed": "the trainer failed: select the row to see its log",
    "pruned": "stopped early by the tuner (not promising enough)",
}
# (header, state key)
_COLUMNS = [
    ("Trial", "key"),
    ("Policy", "label"),
    ("Status", "status"),
    ("Progress", "progress"),
    ("Step", "step"),
    ("Loss", "loss"),
    ("Metric", "value"),
    ("Cost", "cost"),
]
TRIAL_ROLE = Qt.ItemDataRole.UserRole + 1
PROGRESS_COL = 3


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else "-"
    return "" if value is None else str(value)


class TrialStateModel(QAbstractTableModel):
    """One row per trial of the study: the controller's state dicts, with colours."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.index_of: dict[str, int] = {}
        self.colors: dict[str, str] = {}
        self.metric = "metric"

    def clear(self, metric: str = "metric") -> None:
        self.beginResetModel()
        self.rows, self.index_of, self.colors = [], {}, {}
        self.metric = metric
        self.endResetModel()
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(_COLUMNS) - 1)

    def add(self, trial_id: str, state: dict[str, Any], color: str) -> None:
        if trial_id in self.index_of:
            self.update(trial_id, state)
            return
        n = len(self.rows)
        self.beginInsertRows(QModelIndex(), n, n)
        self.rows.append(dict(state))
        self.index_of[trial_id] = n
        self.colors[trial_id] = color
        self.endInsertRows()

    def update(self, trial_id: str, state: dict[str, Any]) -> None:
        row = self.index_of.get(trial_id)
        if row is None:
            return
        self.rows[row].update(state)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(_COLUMNS) - 1))

    def state(self, trial_id: str) -> dict[str, Any] | None:
        row = self.index_of.get(trial_id)
        return self.rows[row] if row is not None else None

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.metric if _COLUMNS[section][1] == "value" else _COLUMNS[section][0]
        if role == Qt.ItemDataRole.ToolTipRole and _COLUMNS[section][1] == "value":
            return f"the study's objective, {self.metric}, at the last evaluation"
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        key = _COLUMNS[index.column()][1]
        trial_id = row["trial"]
        status = row.get("status", "")
        if role == TRIAL_ROLE:
            return trial_id
        if role == Qt.ItemDataRole.DisplayRole:
            if key == "key":
                return ("↺ " if row.get("replayed") else "") + str(row["key"])
            if key == "status":
                return "pruned ✂" if status == "pruned" else status
            if key == "progress":
                return f"{100 * row.get('progress', 0.0):.0f}%"
            if key == "step":
                return f"{row.get('step', 0)} / {row.get('steps', 0)}"
            if key == "cost":
                return f"{row.get('cost_steps') or 0} st · {row.get('seconds') or 0.0:.1f} s"
            return _num(row.get(key), 3 if key == "loss" else 4)
        if role == Qt.ItemDataRole.UserRole and key == "progress":
            return float(row.get("progress", 0.0))
        if role == Qt.ItemDataRole.DecorationRole and key == "key":
            return swatch_icon(self.colors.get(trial_id, "#9ca3af"))
        if role == Qt.ItemDataRole.ForegroundRole and key == "status":
            return QBrush(QColor(STATUS_COLORS.get(status, "#111827")))
        if role == Qt.ItemDataRole.FontRole and key == "status":
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and key in ("step", "loss", "value", "cost"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if key == "status":
                tip = _STATUS_TIPS.get(status, status)
                if row.get("notes") and status in ("pruned", "failed", "diverged"):
                    tip += "\n" + str(row["notes"]).splitlines()[0]
                return tip
            if key == "key":
                extra = "\nreplayed from the database (not run again)" if row.get("replayed") else ""
                rung = f"\nrung {row['rung']}" if row.get("rung") is not None else ""
                return f"{trial_id}{rung}{extra}"
            if key == "label":
                return json.dumps(row.get("policy"), indent=1)
            if key == "cost":
                return "the cost so far: optimizer steps and training seconds"
        return None


class _ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a thin bar in the status colour."""

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        value = index.data(Qt.ItemDataRole.UserRole)
        if value is None:
            return super().paint(painter, option, index)
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(option.rect.adjusted(4, 5, -4, -5))
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round(float(value) * 1000))
        bar.text = index.data(Qt.ItemDataRole.DisplayRole)
        bar.textVisible = True
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)


def recipe_record(row: dict[str, Any], config: dict[str, Any], name: str, registry: Registry | None = None) -> dict[str, Any]:
    """A ``policies`` record (``kind: recipe``, see docs/format.md) for a ranked trial of a study."""
    from lrbench_gui.core.spec import build_schedule

    steps = int(config.get("budget_steps") or row.get("steps") or 100)
    try:
        peak = max(build_schedule(row["policy"], steps, registry).lrs())
    except Exception:  # noqa: BLE001 - a spec of a plugin no longer installed: no peak LR
        peak = None
    value = row.get("value")
    metric = row.get("metric")
    optimizer = (config.get("optimizer") or {}).get("name") or "adamw"
    study_id = config.get("study_id", "")
    family = str(row.get("family") or "policy")
    return {
        "id": f"recipe:{row['trial']}",
        "name": name,
        "kind": "recipe",
        "spec": row["policy"],
        "lr": float(peak) if peak and math.isfinite(peak) and peak > 0 else None,
        "optimizer": str(optimizer)[:64],
        "task": config.get("task"),
        "source": {"title": f"lrbench study {study_id}", "url": None, "citation": None},
        "tags": ["study", family[:64]],
        "notes": (f"Chosen from study {study_id} ({config.get('method')} method, {config.get('tuner')} tuner): "
                  + (f"{metric} {value:.4g}" if isinstance(value, (int, float)) else "no metric")
                  + f" after {row.get('steps', 0)} steps on {config.get('task')}."),
        "extra": {"study": study_id, "trial": row["trial"], "metric": metric,
                  "value": value if isinstance(value, (int, float)) and math.isfinite(value) else None,
                  "budget_steps": steps, "task_params": config.get("task_params") or {}},
    }


class LivePanel(QWidget):
    """The live study view; see the module docstring."""

    # a recipe was stored in the policies table: (the stored record)
    recipeSaved = Signal(dict)
    # a plot image or the curves CSV was written: (path)
    exported = Signal(str)

    def __init__(self, controller: StudyController, jobs: DatabaseJobs, registry: Registry | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.jobs = jobs
        self.registry = registry or controller.registry
        self.config: Any = None
        self.logs: dict[str, deque[str]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.result: dict[str, Any] | None = None
        self.t_start = 0.0
        self._range_points: dict[str, list[tuple[float, float]]] = {}
        self._range_dirty = False
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
        self.table.setItemDelegateForColumn(PROGRESS_COL, _ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        for col, width in enumerate((72, 140, 86, 78, 74, 58, 62, 100)):
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
        self.range_plot = pg.PlotWidget(background="w")
        self.range_plot.setLogMode(x=True, y=False)
        self.range_plot.showGrid(x=True, y=True, alpha=0.25)
        self.range_plot.setLabel("bottom", "learning rate (log)")
        self.range_plot.setLabel("left", "training loss")
        self.range_plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        for axis in ("bottom", "left"):
            self.range_plot.getAxis(axis).enableAutoSIPrefix(False)
        self.range_note = QLabel("")
        self.range_note.setWordWrap(True)
        range_page = QWidget()
        rl = QVBoxLayout(range_page)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.range_plot, 1)
        rl.addWidget(self.range_note)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.plot, "Curves")
        self.tabs.addTab(range_page, "LR range test")
        self.tabs.setTabVisible(1, False)

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

        self.ranking_table = QTableWidget(0, 7)
        self.ranking_table.setHorizontalHeaderLabels(["#", "Trial", "Policy", "Status", "Metric", "Steps", "Seconds"])
        self.ranking_table.verticalHeader().setVisible(False)
        self.ranking_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ranking_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.ranking_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.ranking_table.horizontalHeader().setStretchLastSection(True)
        self.ranking_table.verticalHeader().setDefaultSectionSize(22)
        for col, width in enumerate((28, 70, 200, 80, 70, 56)):
            self.ranking_table.setColumnWidth(col, width)
        self.ranking_table.itemSelectionChanged.connect(self._ranking_selected)
        self.best_label = QLabel("The ranking fills in as trials finish.")
        self.best_label.setWordWrap(True)
        self.best_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.recipe_btn = QPushButton("Save as recipe…")
        self.recipe_btn.setToolTip("Store the selected (or best) trial's policy in the database's policies table as a recipe")
        self.recipe_btn.setEnabled(False)
        self.recipe_btn.clicked.connect(self._recipe_clicked)
        ranking_box = QGroupBox("Ranking")
        kl = QVBoxLayout(ranking_box)
        kl.setContentsMargins(6, 4, 6, 6)
        kl.addWidget(self.ranking_table, 1)
        kbar = QHBoxLayout()
        kbar.addWidget(self.best_label, 1)
        kbar.addWidget(self.recipe_btn, 0, Qt.AlignmentFlag.AlignTop)
        kl.addLayout(kbar)

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
        self._range_timer = QTimer(self)
        self._range_timer.setInterval(200)
        self._range_timer.timeout.connect(self._redraw_range)

    # The study's signals.

    def _study_started(self, study_id: str, config: Any) -> None:
        self.config = config
        self.result = None
        self.records = {}
        self.logs = {}
        self._range_points = {}
        self.plot.clear()
        self.range_plot.clear()
        self.range_plot.setLabel("left", "training loss")
        self.range_note.setText("")
        self.details.clear()
        self.ranking_table.setRowCount(0)
        self.recipe_btn.setEnabled(False)
        self.best_label.setText("The ranking fills in as trials finish.")
        self.banner.dismiss()
        metric = self.controller.study.objective.metric if self.controller.study else (config.metric or "metric")
        self.model.clear(metric)
        self.ranking_table.horizontalHeaderItem(4).setText(metric)
        name = config.name or f"{config.method} {config.tuner} on {config.task}"
        self.title.setText(f"{name}  ·  {study_id}")
        self.progress.setRange(0, max(1, config.trials))
        self.progress.setValue(0)
        self.stop_btn.setEnabled(True)
        self.t_start = time.monotonic()
        ranged = config.tuner in ("range-test", "value-range")
        self.tabs.setTabVisible(1, ranged)
        self.tabs.setCurrentIndex(1 if ranged else 0)
        if ranged:
            self._range_timer.start()
        self._clock.start()
        self._tick()

    def _trial_added(self, trial_id: str, info: dict) -> None:
        color = PALETTE[len(self.model.rows) % len(PALETTE)]
        self.plot.add_trial(trial_id, f"{info['key']} {info['family']}", color)
        state = self.controller.states.get(trial_id, {**info, "status": "queued"})
        self.model.add(trial_id, state, color)
        self.logs[trial_id] = deque(maxlen=400)
        if self.model.rowCount() > self.progress.maximum():
            self.progress.setMaximum(self.model.rowCount())
        if not self.only_selected.isChecked() or not self._selected():
            self._style_curve(trial_id, selected=False, any_selected=bool(self._selected()))

    def _trial_event(self, trial_id: str, event: Any) -> None:
        if event.type != "step":
            return
        self.plot.append(trial_id, event["step"], event["lr"], event["loss"])
        if self.tabs.isTabVisible(1) and self.config is not None and self.config.tuner == "range-test":
            lr, loss = float(event["lr"]), event.get("loss")
            if lr > 0 and isinstance(loss, (int, float)) and math.isfinite(loss):
                self._range_points.setdefault(trial_id, []).append((lr, float(loss)))
                self._range_dirty = True

    def _trial_log(self, trial_id: str, line: str) -> None:
        buf = self.logs.setdefault(trial_id, deque(maxlen=400))
        buf.append(line)
        if self._selected()[:1] == [trial_id]:
            self.details.appendPlainText(line)

    def _trial_updated(self, trial_id: str, state: dict) -> None:
        self.model.update(trial_id, state)

    def _trial_finished(self, trial_id: str, record: dict) -> None:
        self.records[trial_id] = record
        state = self.controller.states.get(trial_id)
        if state is not None:
            self.model.update(trial_id, state)
        if self.plot.points(trial_id) == 0:
            self._plot_stored_curves(trial_id, record)
        if self.tabs.isTabVisible(1) and self.config is not None and self.config.tuner == "value-range":
            self._value_range_point(trial_id, record)
        done = sum(1 for r in self.model.rows if r.get("status") in ("completed", "stopped", "diverged", "failed", "pruned"))
        self.progress.setValue(min(done, self.progress.maximum()))
        if self._selected()[:1] == [trial_id]:
            self.show_details(trial_id)
        status = (state or {}).get("status", record.get("status"))
        if status == "failed":
            first = (record.get("notes") or "").splitlines()[:1]
            self.banner.show_message(
                f"Trial {trial_id} failed{': ' + first[0] if first else ''}. Select its row to see its log.", "warning")

    def _value_range_point(self, trial_id: str, record: dict) -> None:
        """A value range test's short run ended: its (LR, metric) point joins the plot."""
        state = self.model.state(trial_id) or {}
        lr = (state.get("point") or {}).get("lr")
        value = (record.get("metrics") or {}).get(self.model.metric)
        if isinstance(lr, (int, float)) and lr > 0 and isinstance(value, (int, float)) and math.isfinite(value):
            self._range_points.setdefault("value-range", []).append((float(lr), float(value)))
            self._range_dirty = True
            self.range_plot.setLabel("left", self.model.metric)

    def _plot_stored_curves(self, trial_id: str, record: dict) -> None:
        """A replayed trial: draw its curves from the database record."""
        curves = record.get("curves") or {}
        try:
            lr_steps, lrs = _curve(curves.get("lr"))
            loss_steps, losses = _curve(curves.get("loss"))
        except Exception:  # noqa: BLE001 - an unreadable curve only means no curve
            return
        if not len(lr_steps):
            return
        loss_at = dict(zip(loss_steps.tolist(), losses.tolist()))
        for step, lr in zip(lr_steps.tolist(), lrs.tolist()):
            self.plot.append(trial_id, step, lr, loss_at.get(step, math.nan))

    def _study_finished(self, study_id: str, status: str, result: dict) -> None:
        self.result = result
        self.stop_btn.setEnabled(False)
        self._clock.stop()
        self._tick(final=status)
        self._show_ranking(result["ranking"])
        summary = result.get("summary") or {}
        if self.tabs.isTabVisible(1):
            self._range_timer.stop()
            self._redraw_range()
            self._show_range_summary(summary.get("tuner") or {})
        lines = []
        best = summary.get("best")
        if best:
            value = best.get("value")
            lines.append(f"Best: {trial_label(best['policy'], self.registry)}, {self.model.metric} "
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
        running = sum(1 for r in rows if r.get("status") == "running")
        done = sum(1 for r in rows if r.get("status") in ("completed", "stopped", "diverged", "failed", "pruned"))
        elapsed = time.monotonic() - self.t_start if self.t_start else 0.0
        word = final or self.controller.status
        self.status_label.setText(f"{word} · {done} done, {running} running · {elapsed:.0f} s")

    # The ranking.

    def _show_ranking(self, ranking: list) -> None:
        table = self.ranking_table
        table.blockSignals(True)
        selected = self.selected_ranking_trial()
        table.setRowCount(len(ranking))
        cost = self.config is not None and self.config.method == "cost"
        for i, row in enumerate(ranking):
            value = row.get("value")
            if cost:
                ctt = row.get("cost_to_target")
                value_text = "never" if ctt is None else f"{ctt} steps"
            else:
                value_text = "-" if value is None else f"{value:.4g}"
            cells = [str(i + 1), row["trial"].rsplit("-", 1)[-1], trial_label(row["policy"], self.registry),
                     row["status"], value_text, str(row.get("steps", 0)), f"{row.get('seconds', 0.0):.1f}"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(TRIAL_ROLE, row["trial"])
                if j == 1:
                    item.setIcon(swatch_icon(self.model.colors.get(row["trial"], "#9ca3af")))
                    item.setToolTip(row["trial"])
                if j == 3:
                    item.setForeground(QBrush(QColor(STATUS_COLORS.get(row["status"], "#111827"))))
                table.setItem(i, j, item)
        if cost:
            table.horizontalHeaderItem(4).setText("to target")
        table.blockSignals(False)
        self._rows_by_trial = {row["trial"]: row for row in ranking}
        if selected in self._rows_by_trial:
            self._select_ranking(selected)
        self.recipe_btn.setEnabled(any(r.get("value") is not None for r in ranking))

    def selected_ranking_trial(self) -> str | None:
        items = self.ranking_table.selectedItems()
        return items[0].data(TRIAL_ROLE) if items else None

    def _select_ranking(self, trial_id: str) -> None:
        for i in range(self.ranking_table.rowCount()):
            if self.ranking_table.item(i, 0).data(TRIAL_ROLE) == trial_id:
                self.ranking_table.selectRow(i)
                return

    def _ranking_selected(self) -> None:
        trial_id = self.selected_ranking_trial()
        if trial_id:
            self.select_trials([trial_id])

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

    # The range-test plot.

    def _redraw_range(self) -> None:
        if not self._range_dirty:
            return
        self._range_dirty = False
        for item in list(self.range_plot.listDataItems()):
            if getattr(item, "_lrbench_raw", False):
                self.range_plot.removeItem(item)
        for trial_id, pts in self._range_points.items():
            arr = np.asarray(sorted(pts))
            color = QColor(self.model.colors.get(trial_id, "#6b7280"))
            if trial_id == "value-range":
                item = self.range_plot.plot(arr[:, 0], arr[:, 1], pen=None, symbol="o", symbolSize=8,
                                            symbolBrush=pg.mkBrush("#6b7280"))
            else:
                item = self.range_plot.plot(arr[:, 0], arr[:, 1], pen=pg.mkPen("#9ca3af", width=1.2), name="loss")
            item._lrbench_raw = True

    def _show_range_summary(self, tuner: dict) -> None:
        """Mark what the range tuner concluded: the range test's suggested LRs on its smoothed
        loss, or the value range test's LRs that train well."""
        if self.config is not None and self.config.tuner == "value-range":
            self._show_value_range(tuner)
            return
        curve = tuner.get("curve") or {}
        smoothed = curve.get("smoothed") or curve.get("loss")
        if curve.get("lr") and smoothed:
            lrs = np.asarray(curve["lr"], dtype=float)
            losses = np.asarray(smoothed, dtype=float)
            ok = (lrs > 0) & np.isfinite(losses)
            self.range_plot.plot(lrs[ok], losses[ok], pen=pg.mkPen("#1f77b4", width=2.5), name="smoothed loss")
        colors = {"steepest": "#d62728", "valley": "#2ca02c", "minimum": "#ff7f0e", "min_div_10": "#ff7f0e"}
        notes = []
        chosen = tuner.get("chosen")
        for i, (name, info) in enumerate((tuner.get("suggestions") or {}).items()):
            lr = info.get("lr") if isinstance(info, dict) else info
            why = (info.get("why") or info.get("rule") or "") if isinstance(info, dict) else ""
            if not isinstance(lr, (int, float)) or not lr > 0:
                notes.append(f"{name}: none")
                continue
            color = colors.get(name, PALETTE[(i + 4) % len(PALETTE)])
            width = 3 if name == chosen else 2
            line = pg.InfiniteLine(pos=math.log10(lr), angle=90,
                                   pen=pg.mkPen(color, width=width, style=Qt.PenStyle.DashLine),
                                   label=f"{name} {lr:.2g}", labelOpts={"position": 0.92 - 0.08 * i, "color": color})
            self.range_plot.addItem(line)
            star = " ★ chosen" if name == chosen else ""
            notes.append(f"<b style='color:{color}'>{name}</b> {lr:.3g}{star}" + (f" — {why}" if why else ""))
        if tuner.get("why"):
            notes.append(str(tuner["why"]))
        for warning in tuner.get("warnings") or []:
            notes.append(f"<span style='color:#b45309'>{warning}</span>")
        self.range_note.setText("<br>".join(notes))

    def _show_value_range(self, tuner: dict) -> None:
        rows = [r for r in tuner.get("per_lr") or [] if isinstance(r.get("lr"), (int, float)) and r["lr"] > 0]
        self.range_plot.clear()
        self.range_plot.setLabel("left", self.model.metric)
        scored = [r for r in rows if isinstance(r.get("value"), (int, float))]
        if scored:
            xs = np.asarray([r["lr"] for r in scored])
            ys = np.asarray([r["value"] for r in scored])
            brushes = [pg.mkBrush("#2e7d32" if r.get("good") else "#9ca3af") for r in scored]
            self.range_plot.plot(xs, ys, pen=pg.mkPen("#6b7280", width=1), symbol="o", symbolSize=9,
                                 symbolBrush=brushes, name=f"{self.model.metric} after each short run")
        failed = [r["lr"] for r in rows if r.get("status") in ("diverged", "failed")]
        if failed:
            top = max((r["value"] for r in scored), default=1.0)
            self.range_plot.plot(np.asarray(failed), np.full(len(failed), top), pen=None, symbol="x", symbolSize=12,
                                 symbolBrush=pg.mkBrush("#c62828"), symbolPen=pg.mkPen("#c62828"), name="diverged")
        rng = tuner.get("lr_range")
        if rng:
            region = pg.LinearRegionItem(values=(math.log10(rng[0]), math.log10(rng[1])), movable=False,
                                         brush=pg.mkBrush(46, 125, 50, 40))
            self.range_plot.addItem(region)
        notes = []
        if rng:
            notes.append(f"<b style='color:#2e7d32'>trains well</b> from {rng[0]:.3g} to {rng[1]:.3g}"
                         + (f"; best {tuner['best_lr']:.3g}" if isinstance(tuner.get("best_lr"), (int, float)) else ""))
        if tuner.get("why"):
            notes.append(str(tuner["why"]))
        self.range_note.setText("<br>".join(notes))

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
        name = name or f"{trial_label(row['policy'], self.registry)} for {config['task']}"
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
        default = f"{trial_label(row['policy'], self.registry)} for {self.config.task}"
        name, ok = QInputDialog.getText(self, "Save as recipe", f"Name of the recipe for trial {trial_id}:", text=default)
        if ok and name.strip():
            self.save_recipe(trial_id, name.strip())

    def export_plot(self, path: str | Path) -> Path:
        """The LR and loss plots as PNG or SVG (``NAME-loss.EXT`` beside it holds the loss)."""
        out = self.plot.export_image(path)
        self.exported.emit(str(out))
        return out

    def export_curves(self, path: str | Path) -> Path:
        out = self.plot.export_csv(path)
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


def _curve(curve: dict | None) -> tuple[np.ndarray, np.ndarray]:
    if not curve:
        return np.empty(0), np.empty(0)
    if "encoding" in curve:
        from lrbench_gui.core.db.curves import unpack

        steps, values = unpack(curve)
        return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    return np.asarray(curve["steps"], dtype=float), np.asarray(curve["values"], dtype=float)
