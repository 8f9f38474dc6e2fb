"""The Live panel's trial table: one row per trial of the running study, fed by the
controller's state dicts, with the status in colour, a progress bar, the curves' swatch and the
trial's device (the GPUs it was given, else the trainer's device)."""

from __future__ import annotations

import json
import math
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QRect, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from lrbench_gui.core.records import TrialStatus
from lrbench_gui.qt.identity import trial_label
from lrbench_gui.qt.widgets import STATUS_COLORS, swatch_icon

__all__ = ["TrialStateModel", "ProgressDelegate", "STATUS_COLORS", "TRIAL_ROLE", "PROGRESS_COL"]

_STATUS_TIPS = {
    TrialStatus.PENDING: "waiting for a free slot",
    TrialStatus.RUNNING: "training now",
    TrialStatus.COMPLETED: "ran its whole budget",
    TrialStatus.STOPPED: "stopped by you (or the window closing) before the end",
    TrialStatus.DIVERGED: "the loss blew up; the trainer stopped it",
    TrialStatus.FAILED: "the trainer failed: select the row to see its log",
    TrialStatus.PRUNED: "stopped early by the tuner (not promising enough)",
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
    ("Device", "device"),
    ("ETA", "eta"),
]
TRIAL_ROLE = Qt.ItemDataRole.UserRole + 1
PROGRESS_COL = 3


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else "-"
    return "" if value is None else str(value)


def _trial_eta(row: dict[str, Any]) -> str:
    """A running trial's time left at its rate so far (its steps and training seconds)."""
    from lrbench_gui.core.tuning.study import format_duration

    step, steps, seconds = row.get("step") or 0, row.get("steps") or 0, row.get("seconds") or 0.0
    if row.get("status") != TrialStatus.RUNNING or not (step > 0 and steps > 0 and seconds > 0):
        return ""
    return format_duration(max(0, steps - step) * seconds / step)


class TrialStateModel(QAbstractTableModel):
    """One row per trial of the study: the controller's state dicts, with colours."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.index_of: dict[str, int] = {}
        self.colors: dict[str, str] = {}
        self.labels: dict[str, str] = {}  # trial -> the short label that tells it from the others
        self.metric = "metric"

    def clear(self, metric: str = "metric") -> None:
        self.beginResetModel()
        self.rows, self.index_of, self.colors, self.labels = [], {}, {}, {}
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

    def set_labels(self, labels: dict[str, str]) -> None:
        """Show these short labels in the Policy column (:func:`lrbench_gui.qt.identity.short_labels`)."""
        changed = [tid for tid, text in labels.items() if self.labels.get(tid) != text and tid in self.index_of]
        self.labels.update(labels)
        col = [k for _, k in _COLUMNS].index("label")
        for tid in changed:
            i = self.index(self.index_of[tid], col)
            self.dataChanged.emit(i, i)

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
                return "pruned ✂" if status == TrialStatus.PRUNED else status
            if key == "progress":
                return f"{100 * row.get('progress', 0.0):.0f}%"
            if key == "step":
                return f"{row.get('step', 0)} / {row.get('steps', 0)}"
            if key == "cost":
                return f"{row.get('cost_steps') or 0} st · {row.get('seconds') or 0.0:.1f} s"
            if key == "eta":
                return _trial_eta(row)
            if key == "label":
                return self.labels.get(trial_id) or row.get("label", "")
            return _num(row.get(key), 3 if key == "loss" else 4)
        if role == Qt.ItemDataRole.UserRole and key == "progress":
            return float(row.get("progress", 0.0))
        if role == Qt.ItemDataRole.DecorationRole and key == "key":
            return swatch_icon(self.colors.get(trial_id, "#9ca3af"))
        if role == Qt.ItemDataRole.ForegroundRole and key == "status":
            colour = STATUS_COLORS.get(status)  # none (queued): the theme's text colour
            return QBrush(QColor(colour)) if colour else None
        if role == Qt.ItemDataRole.FontRole and key == "status":
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and key in ("step", "loss", "value", "cost"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if key == "status":
                tip = _STATUS_TIPS.get(status, status)
                if row.get("notes") and status in (TrialStatus.PRUNED, TrialStatus.FAILED, TrialStatus.DIVERGED):
                    tip += "\n" + str(row["notes"]).splitlines()[0]
                return tip
            if key == "key":
                extra = "\nreplayed from the database (not run again)" if row.get("replayed") else ""
                rung = f"\nrung {row['rung']}" if row.get("rung") is not None else ""
                return f"{trial_id}{rung}{extra}"
            if key == "label":
                return trial_label(row) + "\n" + json.dumps(row.get("policy"), indent=1)
            if key == "cost":
                return "the cost so far: optimizer steps and training seconds"
            if key == "eta":
                return "time left for this trial at its steps per second so far"
            if key == "device":
                return (f"given GPU {row['gpus']} (CUDA_VISIBLE_DEVICES)" if row.get("gpus") else
                        "where the trainer runs (no GPU given)")
        return None


class ProgressDelegate(QStyledItemDelegate):
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
