"""The picture an LR study is for: the final metric against the peak LR, one curve per family
with the spread over seeds, and the task's range test (loss against LR, its suggested range
shaded) on the same LR axis below."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSplitter, QWidget
from PySide6.QtCore import Qt

from lrbench_gui.core.analysis import family_curves, metric_names, objective_of
from lrbench_gui.qt.results.common import LegendList, View, family_colours, themed_plot, refill_combo

__all__ = ["MetricVsLrView"]

RANGE_TEST = "range test"


class MetricVsLrView(View):
    """``set_data(rows, range_tests)``: :func:`~lrbench_gui.core.analysis.analysis_rows` and
    :func:`~lrbench_gui.core.analysis.range_tests`."""

    title = "Metric vs LR"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict] = []
        self.tests: list[dict] = []
        self.curves: dict[str, list[dict]] = {}
        self._items: dict[str, list[Any]] = {}
        bar = QHBoxLayout()
        bar.addWidget(QLabel("metric:", self))
        self.metric_combo = QComboBox(self)
        self.metric_combo.setMinimumContentsLength(10)
        bar.addWidget(self.metric_combo)
        self.spread_box = QCheckBox("seed spread (min-max)", self)
        self.spread_box.setChecked(True)
        self.spread_box.setToolTip("Trials that differ only in their seed are one point: their mean, with bars from the lowest to the highest")
        bar.addWidget(self.spread_box)
        bar.addStretch(1)
        self.figure = QSplitter(Qt.Orientation.Vertical, self)
        self.figure.setChildrenCollapsible(False)
        self.plot = themed_plot(self.figure, "", bottom="peak LR", log_x=True)
        self.range_plot = themed_plot(self.figure, "Range test: loss against LR", left="loss", bottom="LR", log_x=True)
        self.range_plot.setXLink(self.plot)
        self.figure.addWidget(self.plot)
        self.figure.addWidget(self.range_plot)
        self.figure.setStretchFactor(0, 3)
        self.figure.setStretchFactor(1, 2)
        self.figure.setSizes([300, 200])
        self.legend = LegendList(self)
        self.lay_out(bar, self.figure, self.legend)
        self.metric_combo.currentIndexChanged.connect(self.redraw)
        self.spread_box.toggled.connect(self.redraw)
        self.legend.toggled.connect(self._toggle)

    def set_data(self, rows: list[dict], range_tests: list[dict]) -> None:
        self.rows, self.tests = list(rows), list(range_tests)
        refill_combo(self.metric_combo, metric_names(self.rows), objective_of(self.rows)[0])
        self.redraw()

    @property
    def metric(self) -> str:
        return self.metric_combo.currentText()

    def redraw(self) -> None:
        self.plot.clear()
        self.range_plot.clear()
        self._items = {}
        metric = self.metric
        self.curves = family_curves(self.rows, metric) if metric else {}
        colours = family_colours(self.curves)
        hidden = self.legend.hidden_keys()
        self.plot._results_title = f"{metric} against the peak LR, per family" if metric else "no metric"
        self.plot.setTitle(self.plot._results_title, color=self.text_colour, size="9pt")
        self.plot.setLabel("left", metric)
        entries = []
        for family, points in self.curves.items():
            colour = colours[family]
            lrs = np.array([p["lr"] for p in points])
            means = np.array([p["mean"] for p in points])
            items: list[Any] = [self.plot.plot(lrs, means, pen=pg.mkPen(colour, width=1.8), name=family)]
            tips = [f"{family}: LR {p['lr']:.3g}\n{metric} {p['mean']:.4g}" + (
                f" (mean of {p['n']} seeds: {p['min']:.4g} to {p['max']:.4g})" if p["n"] > 1 else "") + "\n" + ", ".join(p["ids"][:4])
                for p in points]
            scatter = pg.ScatterPlotItem(np.log10(lrs), means, size=8, pen=pg.mkPen(colour), brush=pg.mkBrush(colour),
                                         data=tips, hoverable=True, tip=lambda x, y, data: data)
            self.plot.addItem(scatter)
            items.append(scatter)
            spread = [p for p in points if p["n"] > 1]
            if spread and self.spread_box.isChecked():
                bars = pg.ErrorBarItem(x=np.log10([p["lr"] for p in spread]), y=np.array([p["mean"] for p in spread]),
                                       top=np.array([p["max"] - p["mean"] for p in spread]),
                                       bottom=np.array([p["mean"] - p["min"] for p in spread]),
                                       beam=0.04, pen=pg.mkPen(colour, width=1.2))
                self.plot.addItem(bars)
                items.append(bars)
            n = sum(p["n"] for p in points)
            entries.append((family, f"{family} ({n})", colour, f"{family}: {len(points)} configurations, {n} trials"))
            self._items[family] = items
        for i, test in enumerate(self.tests):
            colour = "#6b7280" if not self.dark else "#9ca3af"
            key = f"{RANGE_TEST} {test['id']}"
            items = [self.range_plot.plot(test["lr"], test["loss"], pen=pg.mkPen(colour, width=1.4), name=key)]
            if test["suggested"]:
                lo, hi = test["suggested"]
                for plot in (self.plot, self.range_plot):
                    region = pg.LinearRegionItem(values=(math.log10(lo), math.log10(hi)), movable=False,
                                                 brush=pg.mkBrush(22, 163, 74, 40), pen=pg.mkPen(22, 163, 74, 90))
                    region.setZValue(-10)
                    plot.addItem(region)
                    items.append(region)
            entries.append((key, f"range test {i + 1}", colour, f"{test['id']}" + (
                f": suggests {test['suggested'][0]:.3g} to {test['suggested'][1]:.3g}" if test["suggested"] else "")))
            self._items[key] = items
            if test["loss"]:  # a diverged end would squash the picture: show up to 3x the start
                loss = np.asarray(test["loss"])
                top = min(float(np.nanmax(loss)), 3.0 * float(loss[: max(1, len(loss) // 10)].mean()))
                self.range_plot.setYRange(float(np.nanmin(loss)), top, padding=0.05)
        self.range_plot.setVisible(bool(self.tests))
        # the trials' LRs and the suggested range, a little wider: a range test spans 1e-6..1,
        # which would squash the trials into a corner (zoom out for the whole test)
        span = [p["lr"] for pts in self.curves.values() for p in pts]
        span += [v for t in self.tests if t["suggested"] for v in t["suggested"]]
        if span:
            lo, hi = math.log10(min(span)), math.log10(max(span))
            pad = max(0.15, 0.08 * (hi - lo))
            self.plot.setXRange(lo - pad, hi + pad, padding=0)
        self.legend.set_entries(entries)
        for key, items in self._items.items():
            for item in items:
                item.setVisible(key not in hidden)
        configs = sum(len(p) for p in self.curves.values())
        seeded = sum(1 for pts in self.curves.values() for p in pts if p["n"] > 1)
        lines = [f"{configs} configuration(s) in {len(self.curves)} famil{'y' if len(self.curves) == 1 else 'ies'}"
                 + (f"; {seeded} with several seeds (bars: min to max)" if seeded else "; one seed each")]
        if self.tests:
            sug = [t for t in self.tests if t["suggested"]]
            lines.append(f"range test: {len(self.tests)}" + (
                f", suggested LR {sug[0]['suggested'][0]:.3g} to {sug[0]['suggested'][1]:.3g} (shaded)" if sug else ""))
        else:
            lines.append("no range test of this task here (a range-test study adds one)")
        diverged = sum(1 for r in self.rows if r["kind"] != "range_test" and r["status"] == "diverged")
        if diverged:  # no metric to draw, but the LR they had says where too high starts
            lrs = sorted(r["lr"] for r in self.rows if r["status"] == "diverged" and r["lr"])
            lines.append(f"{diverged} diverged trial(s) not drawn" + (f" (lowest LR {lrs[0]:.3g})" if lrs else ""))
        self.note.setText("; ".join(lines) if configs else "No completed trials with a metric and an LR here.")
        self.drawn.emit()

    def _toggle(self, key: str, on: bool) -> None:
        for item in self._items.get(key, []):
            item.setVisible(on)

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        rows = [[family, repr(p["lr"]), repr(p["mean"]), repr(p["min"]), repr(p["max"]), p["n"], " ".join(p["ids"])]
                for family, pts in self.curves.items() for p in pts]
        for t in self.tests:
            rows += [[f"range test {t['id']}", repr(lr), repr(loss), "", "", 1, t["id"]] for lr, loss in zip(t["lr"], t["loss"])]
        return ["family", "lr", f"{self.metric or 'value'} (mean)", "min", "max", "seeds", "trials"], rows
