"""The Live panel's ranking: the study's trials best first, what the study concluded, and the
recipe a ranked trial becomes in the database's policies table."""

from __future__ import annotations

import math
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.identity import short_labels, trial_keys, trial_label
from lrbench_gui.qt.live.trial_table import TRIAL_ROLE
from lrbench_gui.qt.widgets import STATUS_COLORS, swatch_icon

__all__ = ["RankingBox", "recipe_record"]


def recipe_record(row: dict[str, Any], config: dict[str, Any], name: str, registry: Registry) -> dict[str, Any]:
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


class RankingBox(QGroupBox):
    """The ranking table (rank, trial, policy, status, value, steps, seconds), a line on the
    best trial, and *Save as recipe*. ``color_of(trial_id)`` gives a trial's curve colour."""

    #: Fires when the user selects a ranked trial; carries its id.
    trialSelected = Signal(str)
    #: Fires on *Save as recipe…*.
    recipeRequested = Signal()

    def __init__(self, color_of: Callable[[str], str], parent: QWidget | None = None) -> None:
        super().__init__("Ranking", parent)
        self.color_of = color_of
        self.rows_by_trial: dict[str, dict[str, Any]] = {}
        table = self.ranking_table = QTableWidget(0, 7, self)
        table.setHorizontalHeaderLabels(["#", "Trial", "Policy", "Status", "Metric", "Steps", "Seconds"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.horizontalHeader().setStretchLastSection(True)
        table.verticalHeader().setDefaultSectionSize(22)
        for col, width in enumerate((28, 70, 200, 80, 70, 56)):
            table.setColumnWidth(col, width)
        table.itemSelectionChanged.connect(self._selected)
        self.best_label = QLabel("The ranking fills in as trials finish.", self)
        self.best_label.setWordWrap(True)
        self.best_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.recipe_btn = QPushButton("Save as recipe…", self)
        self.recipe_btn.setToolTip("Store the selected (or best) trial's policy in the database's policies table as a recipe")
        self.recipe_btn.setEnabled(False)
        self.recipe_btn.clicked.connect(lambda: self.recipeRequested.emit())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(table, 1)
        bar = QHBoxLayout()
        bar.addWidget(self.best_label, 1)
        bar.addWidget(self.recipe_btn, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(bar)

    def clear(self, metric: str) -> None:
        self.ranking_table.setRowCount(0)
        self.ranking_table.horizontalHeaderItem(4).setText(metric)
        self.rows_by_trial = {}
        self.recipe_btn.setEnabled(False)
        self.best_label.setText("The ranking fills in as trials finish.")

    def show_ranking(self, ranking: list[dict[str, Any]], registry: Registry, cost: bool,
                     labels: dict[str, str] | None = None) -> None:
        """Fill the table, keeping the selected trial selected; ``cost``: rank by steps to target.
        ``labels``: the trials' short labels as the trial table shows them (default: made here,
        telling the ranked trials apart)."""
        labels = labels or short_labels(ranking, registry)
        keys = trial_keys([row["trial"] for row in ranking])
        table = self.ranking_table
        table.blockSignals(True)
        selected = self.selected_trial()
        table.setRowCount(len(ranking))
        for i, row in enumerate(ranking):
            value = row.get("value")
            if cost:
                ctt = row.get("cost_to_target")
                value_text = "never" if ctt is None else f"{ctt} steps"
            else:
                value_text = "-" if value is None else f"{value:.4g}"
            cells = [str(i + 1), keys[row["trial"]], labels.get(row["trial"]) or trial_label(row["policy"], registry, short=True),
                     row["status"], value_text, str(row.get("steps", 0)), f"{row.get('seconds', 0.0):.1f}"]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(TRIAL_ROLE, row["trial"])
                if j == 1:
                    item.setIcon(swatch_icon(self.color_of(row["trial"])))
                    item.setToolTip(row["trial"])
                if j == 2:
                    item.setToolTip(trial_label(row, registry))
                if j == 3 and row["status"] in STATUS_COLORS:
                    item.setForeground(QBrush(QColor(STATUS_COLORS[row["status"]])))
                table.setItem(i, j, item)
        if cost:
            table.horizontalHeaderItem(4).setText("to target")
        table.blockSignals(False)
        self.rows_by_trial = {row["trial"]: row for row in ranking}
        if selected in self.rows_by_trial:
            self.select(selected)
        self.recipe_btn.setEnabled(any(r.get("value") is not None for r in ranking))

    def selected_trial(self) -> str | None:
        items = self.ranking_table.selectedItems()
        return items[0].data(TRIAL_ROLE) if items else None

    def select(self, trial_id: str) -> None:
        for i in range(self.ranking_table.rowCount()):
            if self.ranking_table.item(i, 0).data(TRIAL_ROLE) == trial_id:
                self.ranking_table.selectRow(i)
                return

    def _selected(self) -> None:
        trial_id = self.selected_trial()
        if trial_id:
            self.trialSelected.emit(trial_id)
