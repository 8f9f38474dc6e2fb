"""The ``merge`` view: held-out loss against lambda, the BO's evaluations in order, the best merge."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QSpinBox, QVBoxLayout, QWidget

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.methods._plots import TEXT, MethodView, as_dict, as_list, make_plot, num, room_for_legend

__all__ = ["MergeView"]


class MergeView(MethodView):
    """Held-out loss against lambda (the share of the later checkpoint): the dense grid as a line
    when there is one, the BO's evaluations numbered in order, the best point starred, and the gain
    against the better of the two checkpoints.

    After :meth:`set_summary`: ``grid_item``, ``bo_item``, ``best_item``, ``order_labels``.
    The "Dense grid..." button emits :attr:`denseGridRequested` with the number of lambdas.
    """

    key = "merge"

    # the user asked for the same merge with a dense grid of lambdas: (number of lambdas); the view
    # also emits repeatRequested({"grid": n}, "grid of n")
    denseGridRequested = Signal(int)

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(registry, parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = make_plot(self, "Held-out loss against lambda", "lambda (share of the later checkpoint)",
                          "held-out loss")
        layout.addWidget(self.plot, 1)
        row = QHBoxLayout()
        row.setContentsMargins(6, 0, 6, 0)
        row.addWidget(self.info, 1)
        self.grid_spin = QSpinBox(self)
        self.grid_spin.setRange(3, 401)
        self.grid_spin.setValue(21)
        self.grid_spin.setSuffix(" lambdas")
        self.grid_spin.setToolTip("How many evenly spaced lambdas the dense grid evaluates")
        self.grid_button = QPushButton("Dense grid…", self)
        self.grid_button.setToolTip("Run this merge again as a new study that also evaluates a dense grid of "
                                    "lambdas, to check the BO's answer")
        self.grid_button.clicked.connect(self._dense_grid)
        row.addWidget(self.grid_spin, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.grid_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        self._reset_items()

    def plots(self) -> list[pg.PlotWidget]:
        return [self.plot]

    def set_can_start(self, can: bool) -> None:
        self.grid_button.setEnabled(can)

    def _dense_grid(self) -> None:
        n = self.grid_spin.value()
        self.denseGridRequested.emit(n)
        self.repeatRequested.emit({"grid": n}, f"grid of {n}")

    def _reset_items(self) -> None:
        self.grid_item: pg.PlotDataItem | None = None
        self.bo_item: pg.PlotDataItem | None = None
        self.best_item: pg.PlotDataItem | None = None
        self.endpoint_line: pg.InfiniteLine | None = None
        self.order_labels: list[pg.TextItem] = []

    def _draw(self, s: dict[str, Any]) -> list[str]:
        self._reset_items()
        metric = str(s.get("metric") or "loss")
        self.plot.setLabel("left", f"held-out {metric}")
        earlier, later = s.get("earlier"), s.get("later")
        title = "Held-out loss against lambda"
        if earlier and later:
            title = f"{Path(str(earlier)).stem} → {Path(str(later)).stem}"
        self.plot.setTitle(title, color=TEXT, size="10pt")
        grid = sorted(((g["lambda"], g["value"]) for g in as_list(s.get("grid")) if isinstance(g, dict)
                       and num(g.get("lambda")) is not None and num(g.get("value")) is not None))
        if grid:
            self.grid_item = pg.PlotDataItem([g[0] for g in grid], [g[1] for g in grid],
                                             pen=pg.mkPen("#9ca3af", width=1.5), symbol="o", symbolSize=4,
                                             symbolBrush=pg.mkBrush("#9ca3af"), symbolPen=pg.mkPen("#9ca3af"),
                                             name=f"grid of {len(grid)}")
            self.plot.addItem(self.grid_item)
        ev = [e for e in as_list(s.get("evaluations")) if isinstance(e, dict)
              and num(e.get("lambda")) is not None and num(e.get("value")) is not None]
        ev.sort(key=lambda e: num(e.get("order")) if num(e.get("order")) is not None else math.inf)
        if ev:
            self.bo_item = pg.PlotDataItem([e["lambda"] for e in ev], [e["value"] for e in ev], pen=None,
                                           symbol="o", symbolSize=9, symbolBrush=pg.mkBrush("#1f77b4"),
                                           symbolPen=pg.mkPen("w", width=1), name="BO evaluations")
            self.bo_item.setZValue(5)
            self.plot.addItem(self.bo_item)
            for k, e in enumerate(ev):
                order = num(e.get("order"))
                n = int(order) + 1 if order is not None else k + 1
                # alternate above and below: BO's late points crowd around the optimum
                self.order_labels.append(self._text(self.plot, str(n), e["lambda"], e["value"],
                                                    (-0.15, 1.0) if k % 2 == 0 else (-0.15, 0.0)))
        room_for_legend(self.plot, [v for _, v in grid] + [e["value"] for e in ev], top=0.08)
        alpha = num(s.get("alpha")) or 0.0
        self.plot.setXRange(alpha - 0.04 * (1 - alpha), 1 + 0.04 * (1 - alpha), padding=0)
        better = [v for v in (num(x) for x in as_dict(s.get("endpoints")).values()) if v is not None]
        if better:
            best_end = min(better) if s.get("mode", "min") != "max" else max(better)
            self.endpoint_line = pg.InfiniteLine(pos=best_end, angle=0,
                                                 pen=pg.mkPen("#6b7280", width=1, style=Qt.PenStyle.DashLine))
            self.endpoint_line.setToolTip(f"the better checkpoint: {best_end:.6g}")
            self.plot.addItem(self.endpoint_line)
        best = as_dict(s.get("best"))
        lam, value = num(best.get("lambda")), num(best.get("value"))
        lines = []
        if lam is not None and value is not None:
            self.best_item = pg.PlotDataItem([lam], [value], pen=None, symbol="star", symbolSize=20,
                                             symbolBrush=pg.mkBrush("#2ca02c"), symbolPen=pg.mkPen("k", width=1),
                                             name=f"best lambda {lam:.3f}")
            self.best_item.setZValue(10)
            self.plot.addItem(self.best_item)
            text = f"best lambda {lam:.4f}: {metric} {value:.6g}"
            gain = num(s.get("gain_vs_better_endpoint"))
            if gain is not None:
                text += f", gain {gain:+.3%} vs the better checkpoint (dashed)"
            lines.append(text)
        else:
            lines.append(f"{len(ev)} evaluation(s) so far; no best yet." if ev else "No evaluation yet.")
        gb = as_dict(s.get("grid_best"))
        if num(gb.get("lambda")) is not None and num(gb.get("value")) is not None:
            text = f"grid of {len(grid)}: best lambda {gb['lambda']:.4f} ({gb['value']:.6g})"
            if num(s.get("bo_vs_grid")) is not None:
                text += f"; BO within {s['bo_vs_grid']:+.4%} of it"
            if num(s.get("evaluations_to_reach_grid")) is not None:
                text += f", reached after {int(s['evaluations_to_reach_grid'])} evaluation(s)"
            lines.append(text)
        if s.get("model_dir"):
            lines.append(f"merged model: {s['model_dir']}")
        return lines
