"""Any metric against any searched parameter: one point per completed trial, coloured by
family; a log axis for an LR, the values of a choice spread along the axis."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from lrbench_gui.core.analysis import metric_names, metric_vs_param, objective_of, param_names
from lrbench_gui.qt.results.common import LegendList, View, family_colours, themed_plot, refill_combo

__all__ = ["MetricVsParamView"]


class MetricVsParamView(View):
    """``set_data(rows)``: :func:`~lrbench_gui.core.analysis.analysis_rows`."""

    title = "Metric vs parameter"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict] = []
        self.points: dict[str, Any] = {}
        self._items: dict[str, Any] = {}
        bar = QHBoxLayout()
        bar.addWidget(QLabel("metric:", self))
        self.metric_combo = QComboBox(self)
        self.metric_combo.setMinimumContentsLength(10)
        bar.addWidget(self.metric_combo)
        bar.addWidget(QLabel("against:", self))
        self.param_combo = QComboBox(self)
        self.param_combo.setMinimumContentsLength(10)
        bar.addWidget(self.param_combo)
        bar.addStretch(1)
        self.figure = self.plot = themed_plot(self, "")
        self.legend = LegendList(self)
        self.lay_out(bar, self.plot, self.legend)
        self.metric_combo.currentIndexChanged.connect(self.redraw)
        self.param_combo.currentIndexChanged.connect(self.redraw)
        self.legend.toggled.connect(lambda key, on: self._items[key].setVisible(on) if key in self._items else None)

    def set_data(self, rows: list[dict]) -> None:
        self.rows = list(rows)
        refill_combo(self.metric_combo, metric_names(self.rows), objective_of(self.rows)[0])
        refill_combo(self.param_combo, param_names(self.rows))
        self.redraw()

    def redraw(self) -> None:
        self.plot.clear()
        self._items = {}
        metric, param = self.metric_combo.currentText(), self.param_combo.currentText()
        axis = self.plot.getAxis("bottom")
        if not metric or not param:
            self.points = {}
            self.note.setText("No completed trials with a metric and a searched parameter here.")
            self.legend.set_entries([])
            self.drawn.emit()
            return
        pts = self.points = metric_vs_param(self.rows, metric, param)
        self.plot.setLogMode(x=pts["log_x"], y=False)
        self.plot.setLabel("bottom", param + (" (log)" if pts["log_x"] else ""))
        self.plot.setLabel("left", metric)
        self.plot._results_title = f"{metric} against {param}"
        self.plot.setTitle(self.plot._results_title, color=self.text_colour, size="9pt")
        axis.setTicks([list(enumerate(pts["categories"]))] if pts["categorical"] else None)
        colours = family_colours(pts["families"])
        hidden = self.legend.hidden_keys()
        xs, ys = np.array(pts["x"], dtype=np.float64), np.array(pts["y"], dtype=np.float64)
        view_x = np.log10(xs) if pts["log_x"] else xs
        if pts["categorical"]:  # a little spread so points of one value do not hide each other
            view_x = view_x + (np.random.default_rng(0).random(len(view_x)) - 0.5) * 0.25
        entries = []
        for family, colour in colours.items():
            idx = [i for i, f in enumerate(pts["families"]) if f == family]
            shown = [pts["categories"][int(xs[i])] if pts["categorical"] else f"{xs[i]:.4g}" for i in idx]
            tips = [f"{pts['ids'][i]}\n{param} {v}\n{metric} {ys[i]:.4g}" for i, v in zip(idx, shown)]
            item = pg.ScatterPlotItem(view_x[idx], ys[idx], size=8, pen=pg.mkPen(colour), brush=pg.mkBrush(colour),
                                      data=tips, hoverable=True, tip=lambda x, y, data: data, name=family)
            self.plot.addItem(item)
            item.setVisible(family not in hidden)
            self._items[family] = item
            entries.append((family, f"{family} ({len(idx)})", colour, family))
        self.legend.set_entries(entries)
        left = f"; {pts['left_out']} trial(s) without {param} left out" if pts["left_out"] else ""
        self.note.setText(f"{len(xs)} completed trial(s){left}")
        self.drawn.emit()

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        p = self.points
        if not p:
            return ["trial", "family", "x", "y"], []
        xs = [p["categories"][int(x)] if p["categorical"] else repr(x) for x in p["x"]]
        return ["trial", "family", p["param"], p["metric"]], [[i, f, x, repr(y)] for i, f, x, y in zip(p["ids"], p["families"], xs, p["y"])]
