"""The selected trials side by side: their parameters, metrics and cost in one table (the best
value of each metric in bold), and one curve of theirs overlaid."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from lrbench_gui.core.analysis import compare_table
from lrbench_gui.core.db.query import metric_mode
from lrbench_gui.qt.results.common import View, themed_plot, trial_colour

__all__ = ["CompareView"]


class CompareView(View):
    """``set_data([(trial id, analysis row, curves)], labels)``: the Curves view's items."""

    title = "Compare"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.items: list[tuple[str, dict, dict]] = []
        self.fields: list[str] = []
        self.columns: list[list[str]] = []
        bar = QHBoxLayout()
        bar.addWidget(QLabel("curve:", self))
        self.curve_combo = QComboBox(self)
        self.curve_combo.setMinimumContentsLength(10)
        bar.addWidget(self.curve_combo)
        bar.addStretch(1)
        self.figure = QSplitter(Qt.Orientation.Vertical, self)
        self.figure.setChildrenCollapsible(False)
        self.table = QTableWidget(0, 0, self.figure)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)
        self.plot = themed_plot(self.figure, "")
        self.figure.addWidget(self.table)
        self.figure.addWidget(self.plot)
        self.figure.setStretchFactor(0, 1)
        self.figure.setStretchFactor(1, 1)
        self.figure.setSizes([260, 240])
        self.lay_out(bar, self.figure, note="Select two or more trials in the table to compare them.")
        self.curve_combo.currentIndexChanged.connect(self._draw_curve)

    def set_data(self, items: list[tuple[str, dict, dict]], labels: dict[str, str] | None = None) -> None:
        self.items = [it for it in items if it[1]]
        labels = labels or {}
        rows = [row for _, row, _ in self.items]
        self.fields, self.columns = compare_table(rows)
        t = self.table
        t.clear()
        t.setRowCount(len(self.fields))
        t.setColumnCount(len(self.items))
        t.setVerticalHeaderLabels(self.fields)
        bold = QFont()
        bold.setBold(True)
        for j, (tid, row, _) in enumerate(self.items):
            head = QTableWidgetItem(labels.get(tid, tid))
            head.setToolTip(f"{row.get('label', '')}\n{tid}")
            head.setForeground(QColor(trial_colour(tid)))
            t.setHorizontalHeaderItem(j, head)
            for i, text in enumerate(self.columns[j]):
                t.setItem(i, j, QTableWidgetItem(text))
        # the best value of each metric, by its direction
        metric_fields = sorted({k for r in rows for k in r["metrics"]})
        for name in metric_fields:
            i = self.fields.index(name)
            vals = [(j, r["metrics"][name]) for j, r in enumerate(rows) if name in r["metrics"]]
            if len(vals) > 1:
                pick = (min if metric_mode(name) == "min" else max)(vals, key=lambda jv: jv[1])
                t.item(i, pick[0]).setFont(bold)
        t.resizeColumnsToContents()
        names = sorted({n for _, _, c in self.items for n in c if n != "lr"}, key=lambda n: (not n.startswith("eval/"), n))
        current = self.curve_combo.currentData()
        self.curve_combo.blockSignals(True)
        self.curve_combo.clear()
        for n in names:
            self.curve_combo.addItem(n.removeprefix("eval/"), n)
        idx = self.curve_combo.findData(current)
        self.curve_combo.setCurrentIndex(idx if idx >= 0 else 0)
        self.curve_combo.blockSignals(False)
        self.note.setText(f"{len(self.items)} trial(s) side by side; bold: the best of each metric" if self.items
                          else "Select two or more trials in the table to compare them.")
        self.redraw()

    def redraw(self) -> None:
        self._draw_curve()

    def _draw_curve(self, *_: Any) -> None:
        self.plot.clear()
        name = self.curve_combo.currentData()
        self.plot._results_title = (name or "no curve").removeprefix("eval/")
        self.plot.setTitle(self.plot._results_title, color=self.text_colour, size="9pt")
        self.plot.setLabel("bottom", "step")
        for tid, _, curves in self.items:
            if name in curves:
                steps, values = curves[name]
                self.plot.plot(np.asarray(steps), np.asarray(values, dtype=np.float64), pen=pg.mkPen(trial_colour(tid), width=1.6), name=tid)
        self.drawn.emit()

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        header = ["field", *(tid for tid, _, _ in self.items)]
        return header, [[f, *(col[i] for col in self.columns)] for i, f in enumerate(self.fields)]
