"""The selected trials' stored curves: LR, training loss and two evaluation curves (val_loss,
val_acc or any evaluator's metric), smoothed, against steps, tokens or seconds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QSlider, QWidget

from lrbench_gui.core.analysis import curve_x, smooth, x_axes
from lrbench_gui.core.db.query import metric_mode
from lrbench_gui.qt.results.common import LegendList, View, themed_plot, trial_colour

__all__ = ["CurvesView", "EVAL_PREFIX", "X_AXES", "SMOOTH_MIN_POINTS"]

EVAL_PREFIX = "eval/"
#: the x axes offered: (key, label)
X_AXES = (("step", "step"), ("tokens", "tokens"), ("seconds", "seconds (wall time)"))
#: curves of at most this many points (most evaluation curves) are not smoothed
SMOOTH_MIN_POINTS = 30


def _eval_names(items: list[tuple[str, dict, dict]]) -> list[str]:
    names: dict[str, None] = {}
    for _, row, curves in items:
        objective = ((row or {}).get("objective") or {}).get("metric")
        if objective and EVAL_PREFIX + objective in curves:
            names.setdefault(EVAL_PREFIX + objective)
    rest = {n for _, _, curves in items for n in curves if n.startswith(EVAL_PREFIX)}
    for n in sorted(rest, key=lambda n: (metric_mode(n[len(EVAL_PREFIX):]) != "min", n)):  # losses first
        names.setdefault(n)
    return list(names)


class CurvesView(View):
    """``set_data([(trial id, analysis row, {curve name: (steps, values)})])`` draws them."""

    title = "Curves"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.items: list[tuple[str, dict, dict]] = []
        self.labels: dict[str, str] = {}
        self._curves: dict[str, list[pg.PlotDataItem]] = {}
        bar = QHBoxLayout()
        bar.addWidget(QLabel("x:", self))
        self.x_combo = QComboBox(self)
        for key, label in X_AXES:
            self.x_combo.addItem(label, key)
        self.x_combo.setMinimumContentsLength(4)
        self.x_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.x_combo.setToolTip("Tokens and seconds are read from the trial's recorded totals at a steady rate")
        bar.addWidget(self.x_combo)
        bar.addWidget(QLabel("smooth:", self))
        self.smoothing = QSlider(Qt.Orientation.Horizontal, self)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.smoothing.setMaximumWidth(140)
        self.smoothing.setMinimumWidth(50)
        self.smoothing.setToolTip("Exponential moving average (TensorBoard's smoothing) of the curves of more than "
                                  f"{SMOOTH_MIN_POINTS} points; the raw curve stays faint behind, and a few "
                                  "evaluations are drawn as they are")
        bar.addWidget(self.smoothing)
        self.smoothing_label = QLabel("0.60", self)
        bar.addWidget(self.smoothing_label)
        self.eval_a = QComboBox(self)
        self.eval_b = QComboBox(self)
        for combo in (self.eval_a, self.eval_b):
            combo.setMinimumContentsLength(4)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setToolTip("Which evaluation curve this plot shows")
        bar.addStretch(1)
        self.legend_box = QCheckBox("legend", self)
        self.legend_box.setChecked(True)
        bar.addWidget(self.legend_box)

        self.figure = QWidget(self)
        grid = QGridLayout(self.figure)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        self.lr_plot = themed_plot(self.figure, "Learning rate", log_y=True)
        self.loss_plot = themed_plot(self.figure, "Training loss")
        self.eval_a_plot = themed_plot(self.figure, "")
        self.eval_b_plot = themed_plot(self.figure, "")
        for combo in (self.eval_a, self.eval_b):
            combo.setParent(self.figure)
        grid.addWidget(self.lr_plot, 0, 0)
        grid.addWidget(self.loss_plot, 0, 1)
        # each evaluation plot's chooser above it (it is the plot's title)
        for col, combo in ((0, self.eval_a), (1, self.eval_b)):
            row = QHBoxLayout()
            row.addWidget(QLabel("evaluation:", self.figure))
            row.addWidget(combo, 1)
            grid.addLayout(row, 1, col)
        grid.addWidget(self.eval_a_plot, 2, 0)
        grid.addWidget(self.eval_b_plot, 2, 1)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(2, 1)
        for plot in (self.lr_plot, self.eval_a_plot, self.eval_b_plot):
            plot.setXLink(self.loss_plot)
        self.legend = LegendList(self)
        self.lay_out(bar, self.figure, self.legend, "Select trials in the table to draw their curves.")

        self.x_combo.currentIndexChanged.connect(self.redraw)
        self.smoothing.valueChanged.connect(self._smoothing_changed)
        self.eval_a.currentIndexChanged.connect(self.redraw)
        self.eval_b.currentIndexChanged.connect(self.redraw)
        self.legend_box.toggled.connect(self.legend.setVisible)
        self.legend.toggled.connect(self._toggle)

    @property
    def weight(self) -> float:
        return self.smoothing.value() / 100.0

    def _smoothing_changed(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self.redraw()

    def set_data(self, items: list[tuple[str, dict, dict]], labels: dict[str, str] | None = None) -> None:
        self.items = list(items)
        self.labels = dict(labels or {})
        names = _eval_names(self.items)
        for i, combo in enumerate((self.eval_a, self.eval_b)):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for n in names:
                combo.addItem(n[len(EVAL_PREFIX):], n)
            pick = combo.findData(current) if current in names else min(i, len(names) - 1)
            if i == 1 and current not in names and len(names) > 1 and pick == self.eval_a.currentIndex():
                pick = 1 - self.eval_a.currentIndex()
            combo.setCurrentIndex(max(0, pick))
            combo.blockSignals(False)
        # the x axes every trial recorded
        axes = set.intersection(*(set(x_axes(row or {})) for _, row, _ in self.items)) if self.items else {"step"}
        model = self.x_combo.model()
        for i, (key, _) in enumerate(X_AXES):
            model.item(i).setEnabled(key in axes)
        if self.x_combo.currentData() not in axes:
            self.x_combo.setCurrentIndex(0)
        self.legend.set_entries((tid, self.labels.get(tid, tid), trial_colour(tid), f"{self.labels.get(tid, tid)}\n{tid}")
                                for tid, _, _ in self.items)
        self.redraw()

    def redraw(self) -> None:
        axis = self.x_combo.currentData() or "step"
        plots = {"lr": self.lr_plot, "loss": self.loss_plot,
                 self.eval_a.currentData() or "": self.eval_a_plot, self.eval_b.currentData() or "": self.eval_b_plot}
        for plot in (self.lr_plot, self.loss_plot, self.eval_a_plot, self.eval_b_plot):
            plot.clear()
            plot.setLabel("bottom", dict(X_AXES)[axis])
        for combo, plot in ((self.eval_a, self.eval_a_plot), (self.eval_b, self.eval_b_plot)):
            plot._results_title = "" if combo.currentText() else "no evaluation curve"
            plot.setTitle(plot._results_title or None, color=self.text_colour, size="9pt")
            plot.setLabel("left", combo.currentText())
        self._curves = {}
        hidden = self.legend.hidden_keys()
        weight = self.weight
        for tid, row, curves in self.items:
            colour = trial_colour(tid)
            pen = pg.mkPen(colour, width=1.6)
            faint = pg.mkColor(colour)
            faint.setAlpha(60)
            drawn = []
            for name, (steps, values) in curves.items():
                targets = [p for key, p in plots.items() if key == name]
                if not targets:
                    continue
                x = curve_x(steps, row or {}, axis)
                if x is None:
                    continue
                y = np.asarray(values, dtype=np.float64)
                for plot in targets:
                    if name == "lr":
                        ok = y > 0  # the LR axis is logarithmic
                        drawn.append(plot.plot(x[ok], y[ok], pen=pen, name=tid))
                        continue
                    if weight > 0 and len(x) > SMOOTH_MIN_POINTS:
                        drawn.append(plot.plot(x, y, pen=pg.mkPen(faint, width=1)))
                        y_s = smooth(y, weight)
                    else:  # a few evaluations are drawn as they are, each point marked
                        y_s = y
                    few = len(x) <= SMOOTH_MIN_POINTS
                    item = plot.plot(x, y_s, pen=pen, name=tid, symbol="o" if few else None,
                                     symbolSize=5, symbolPen=None, symbolBrush=colour)
                    drawn.append(item)
            for item in drawn:
                item.setVisible(tid not in hidden)
            self._curves[tid] = drawn
        if not self.items:
            self.note.setText("Select trials in the table to draw their curves.")
        else:
            missing = [tid for tid, _, c in self.items if not any(n.startswith(EVAL_PREFIX) for n in c)]
            self.note.setText(f"{len(self.items)} trial(s)" + (f"; {len(missing)} without evaluation curves" if missing else ""))
        self.drawn.emit()

    def _toggle(self, tid: str, on: bool) -> None:
        for item in self._curves.get(tid, []):
            item.setVisible(on)

    def curve_items(self, tid: str) -> list[pg.PlotDataItem]:
        return list(self._curves.get(tid, []))

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        axis = self.x_combo.currentData() or "step"
        rows = []
        for tid, row, curves in self.items:
            for name, (steps, values) in sorted(curves.items()):
                x = curve_x(steps, row or {}, axis)
                if x is None:
                    continue
                smoothed = name != "lr" and len(values) > SMOOTH_MIN_POINTS
                sm = smooth(values, self.weight) if smoothed else np.asarray(values, dtype=np.float64)
                rows += [[tid, name, int(s), repr(float(xv)), repr(float(v)), repr(float(m))]
                         for s, xv, v, m in zip(steps, x, values, sm)]
        return ["trial", "curve", "step", axis, "value", "smoothed"], rows
