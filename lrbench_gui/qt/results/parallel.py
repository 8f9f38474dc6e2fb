"""Studies of more than one dimension: parallel coordinates (one line per trial through its
parameters to its metric, coloured by the metric) and parameter importance by Optuna's
fANOVA or PED-ANOVA, computed off the GUI thread."""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSplitter, QWidget

from lrbench_gui.core.analysis import IMPORTANCE_EVALUATORS, dimensions, metric_names, objective_of, parallel_coordinates, param_importance
from lrbench_gui.qt.results.common import View, themed_plot, refill_combo

__all__ = ["ParallelView"]


class ParallelView(View):
    """``set_data(rows)``; ``importanceReady`` carries each importance result (the latest only)."""

    title = "Parallel && importance"
    importanceReady = Signal(dict)
    _computed = Signal(int, dict)  # from the worker thread: (request, result)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict] = []
        self.table: dict[str, Any] = {}
        self.importance: dict[str, Any] = {}
        self._request = itertools.count()
        self._latest = -1
        self._version = 0  # of the rows: a redraw of the same rows, metric and evaluator reuses the importance
        self._importance_key: tuple | None = None
        self._parallel_note = ""
        bar = QHBoxLayout()
        bar.addWidget(QLabel("metric:", self))
        self.metric_combo = QComboBox(self)
        self.metric_combo.setMinimumContentsLength(10)
        bar.addWidget(self.metric_combo)
        bar.addWidget(QLabel("importance by:", self))
        self.evaluator_combo = QComboBox(self)
        for key, (_, title) in IMPORTANCE_EVALUATORS.items():
            self.evaluator_combo.addItem(title, key)
        self.evaluator_combo.setToolTip("Optuna's importance evaluators: fANOVA (a random forest's variance decomposition) "
                                        "or PED-ANOVA (how the best trials' parameters differ from all trials'; fast)")
        bar.addWidget(self.evaluator_combo)
        bar.addStretch(1)
        self.figure = QSplitter(Qt.Orientation.Horizontal, self)
        self.figure.setChildrenCollapsible(False)
        self.parallel_plot = themed_plot(self.figure, "Parallel coordinates")
        self.importance_plot = themed_plot(self.figure, "Parameter importance", bottom="share")
        self.figure.addWidget(self.parallel_plot)
        self.figure.addWidget(self.importance_plot)
        self.figure.setStretchFactor(0, 3)
        self.figure.setStretchFactor(1, 2)
        self.figure.setSizes([500, 280])
        for plot in (self.parallel_plot, self.importance_plot):
            plot.setMouseEnabled(x=False, y=False)
            plot.showGrid(x=False, y=False)
        self.parallel_plot.getAxis("left").setStyle(showValues=False)
        self.lay_out(bar, self.figure)
        self.metric_combo.currentIndexChanged.connect(self.redraw)
        self.evaluator_combo.currentIndexChanged.connect(self.redraw)
        self._computed.connect(self._importance_done)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        # narrow (a 1024 px window): the importance under the parallel coordinates, not beside
        orientation = Qt.Orientation.Vertical if self.width() < 640 else Qt.Orientation.Horizontal
        if self.figure.orientation() != orientation:
            self.figure.setOrientation(orientation)
            self.figure.setSizes([3, 2])

    def set_data(self, rows: list[dict]) -> None:
        self.rows = list(rows)
        self._version += 1
        refill_combo(self.metric_combo, metric_names(self.rows), objective_of(self.rows)[0])
        self.redraw()

    def redraw(self) -> None:
        self.parallel_plot.clear()
        self.importance_plot.clear()
        metric = self.metric_combo.currentText()
        dims = dimensions(self.rows)
        self._latest = next(self._request)  # a result of an older request is dropped
        if not metric or len(dims) < 2:
            self.table = {}
            self.importance = {}
            searched = ", ".join(dims) or "nothing"
            self.note.setText(f"These trials searched one dimension ({searched}): see Metric vs LR and Metric vs parameter. "
                              "Parallel coordinates and importance need a study of two or more dimensions.")
            self.drawn.emit()
            return
        self.table = parallel_coordinates(self.rows, metric, dims)
        self._draw_parallel(metric)
        key = (self._version, metric, self.evaluator_combo.currentData())
        if key == self._importance_key and self.importance:  # a theme switch: draw it again, no new forest
            self._importance_done(self._latest, self.importance)
        else:
            self._importance_key = key
            self.importance = {}
            self.note.setText(f"Computing the parameter importance of {len(dims)} dimensions…")
            self._start_importance(metric, dims)
        self.drawn.emit()

    def _draw_parallel(self, metric: str) -> None:
        t = self.table
        axes, values = t["axes"], np.array(t["values"], dtype=np.float64)
        plot = self.parallel_plot
        fg = self.text_colour
        _, mode = objective_of(self.rows)
        cmap = pg.colormap.get("viridis")
        if len(values):
            # colour by rank, not value: one bad trial would make all the others look equally good
            ranks = np.argsort(np.argsort(-values if mode == "min" else values))
            score = ranks / max(1, len(values) - 1)  # 1: the best, the brightest
            top = 1.0 if self.dark else 0.82  # viridis' last yellows are pale on white
            order = np.argsort(score)  # the best drawn last, on top
            xs = np.arange(len(axes), dtype=np.float64)
            for i in order:
                ys = np.array([t["columns"][a][i] for a in axes], dtype=np.float64)
                colour = cmap.map(float(score[i]) * top, mode="qcolor")
                plot.plot(xs, ys, pen=pg.mkPen(colour, width=2.2 if score[i] > 0.9 else 1.2), connect="finite")
        for k, name in enumerate(axes):
            plot.addItem(pg.InfiniteLine(pos=k, angle=90, pen=pg.mkPen(fg, width=1)))
            for pos, label in t["ticks"][name]:
                text = pg.TextItem(label, color=fg, anchor=(0, 0.5))
                text.setPos(k + 0.03, pos)
                plot.addItem(text)
        plot.getAxis("bottom").setTicks([list(enumerate(axes))])
        plot.setXRange(-0.2, len(axes) - 0.5, padding=0)
        plot.setYRange(-0.05, 1.05, padding=0)
        plot._results_title = "Parallel coordinates"  # short: a long title is cut at a narrow width
        plot.setTitle(plot._results_title, color=fg, size="9pt")
        self._parallel_note = f"{len(values)} trials, brighter lines: better {metric}"

    def _start_importance(self, metric: str, dims: list[str]) -> None:
        request = self._latest
        rows, evaluator = list(self.rows), self.evaluator_combo.currentData()
        _, mode = objective_of(rows)

        def work() -> None:
            try:
                result = param_importance(rows, metric, mode, evaluator=evaluator, params=dims)
            except Exception as exc:  # noqa: BLE001 - said in the view, never raised into Qt
                result = {"importances": {}, "note": f"importance failed: {type(exc).__name__}: {exc}", "evaluator": evaluator}
            try:
                self._computed.emit(request, result)
            except RuntimeError:  # the view was closed meanwhile
                pass

        threading.Thread(target=work, name="lrbench-importance", daemon=True).start()

    def _importance_done(self, request: int, result: dict) -> None:
        if request != self._latest:
            return
        self.importance = result
        plot = self.importance_plot
        plot.clear()
        imp = result.get("importances") or {}
        names = list(imp)[::-1]  # the largest on top
        if names:
            widths = np.array([imp[n] for n in names])
            plot.addItem(pg.BarGraphItem(x0=np.zeros(len(names)), y=np.arange(len(names)), height=0.6, width=widths,
                                         brush=pg.mkBrush("#3280dd"), pen=pg.mkPen(None)))
            for i, n in enumerate(names):
                text = pg.TextItem(f"{imp[n]:.2f}", color=self.text_colour, anchor=(0, 0.5))
                text.setPos(float(widths[i]) + 0.01, i)
                plot.addItem(text)
            plot.getAxis("left").setTicks([list(enumerate(names))])
            plot.setXRange(0, max(1.0, float(widths.max()) * 1.3), padding=0)
            plot.setYRange(-0.6, len(names) - 0.4, padding=0)
        plot._results_title = f"Importance ({result.get('evaluator', '')})"
        plot.setTitle(plot._results_title, color=self.text_colour, size="9pt")
        self.note.setText("; ".join(t for t in (self._parallel_note, str(result.get("note") or ""),
                                                "" if names else "nothing to rank") if t))
        self.importanceReady.emit(result)

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        t = self.table
        if not t:
            return ["trial"], []
        rows = []
        for i, tid in enumerate(t["ids"]):
            rows.append([tid, t["families"][i], *(repr(v) if not (isinstance(v, float) and math.isnan(v)) else ""
                                                  for v in (t["columns"][a][i] for a in t["axes"])), repr(t["values"][i])])
        imp = (self.importance or {}).get("importances") or {}
        header = ["trial", "family", *(f"{a} (scaled)" for a in t["axes"]), t["axes"][-1]]
        rows += [[f"importance: {n}", (self.importance or {}).get("evaluator", ""), repr(v)] for n, v in imp.items()]
        return header, rows
