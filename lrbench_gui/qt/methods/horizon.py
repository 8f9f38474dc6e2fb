"""The ``horizon`` view: the LR sweeps per horizon and the power law LR*(D) = B·D^-beta."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.methods._plots import (
    MethodView,
    as_dict,
    as_list,
    fmt_g,
    make_plot,
    num,
    pos,
    room_for_legend,
    tokens_text,
    viridis,
)

__all__ = ["HorizonView"]


class HorizonView(MethodView):
    """Left: loss against LR (log x) per horizon, seed-sd error bars, the quadratic, a star at LR*.
    Right: LR* against tokens (log-log), the power law, the held-out/target predictions and the
    zero-overhead rule. Below: beta with its 90% band, the check of the prediction, warnings.

    After :meth:`set_summary` the drawn items are kept for tests and tooltips: ``point_items``,
    ``error_items``, ``fit_items``, ``star_items`` and ``diverged_lines`` per horizon (steps),
    ``measured_items``, ``law_item``, ``prediction_items``, ``zero_overhead_items``.
    """

    key = "horizon"

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(registry, parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        self.loss_plot = make_plot(split, "Loss against LR per horizon (star: fitted LR*)", "peak learning rate",
                               "validation loss (seed mean)", log_x=True)
        self.law_plot = make_plot(split, "LR* against the horizon", "horizon D (tokens)", "optimal LR", log_x=True,
                              log_y=True, x_fmt=tokens_text, legend="bottom-left")
        split.addWidget(self.loss_plot)
        split.addWidget(self.law_plot)
        layout.addWidget(split, 1)
        layout.addWidget(self.info)
        self._reset_items()

    def plots(self) -> list[pg.PlotWidget]:
        return [self.loss_plot, self.law_plot]

    def _reset_items(self) -> None:
        self.point_items: dict[int, pg.PlotDataItem] = {}
        self.error_items: dict[int, pg.ErrorBarItem] = {}
        self.fit_items: dict[int, pg.PlotDataItem] = {}
        self.star_items: dict[int, pg.PlotDataItem] = {}
        self.diverged_lines: dict[int, list[pg.InfiniteLine]] = {}
        self.measured_items: dict[str, pg.PlotDataItem] = {}
        self.law_item: pg.PlotDataItem | None = None
        self.prediction_items: dict[str, pg.PlotDataItem] = {}
        self.band_items: dict[str, pg.PlotDataItem] = {}
        self.zero_overhead_items: dict[str, pg.PlotDataItem] = {}

    def _draw(self, s: dict[str, Any]) -> list[str]:
        self._reset_items()
        self.loss_plot.setLabel("left", f"validation loss (mean of {s.get('seeds') or 1} seeds)")
        rows = [r for r in as_list(s.get("horizons")) if isinstance(r, dict)]
        for i, r in enumerate(rows):
            self._draw_horizon(i, len(rows), r)
        self.loss_plot.enableAutoRange()
        ys = [float(y) for item in [*self.point_items.values(), *self.fit_items.values(), *self.star_items.values()]
              for y in item.yData]
        room_for_legend(self.loss_plot, ys, top=0.12 * max(1, len(rows)))
        lines = self._draw_law(s, rows)
        if not any(pos(r.get("lr_star")) for r in rows):
            lines.insert(0, "No LR* yet: each horizon's sweep needs its results.")
        return lines

    def _draw_horizon(self, i: int, n: int, r: dict[str, Any]) -> None:
        plot = self.loss_plot
        color = viridis(i, n)
        steps = int(num(r.get("steps")) or 0)
        tokens = num(r.get("tokens"))
        lrs, means, sds = as_list(r.get("lrs")), as_list(r.get("loss_mean")), as_list(r.get("loss_sd"))
        pts = [(lr, m, num(sds[j]) if j < len(sds) else None)
               for j, (lr, m) in enumerate(zip(lrs, means)) if pos(lr) and num(m) is not None]
        name = f"{steps} steps" + (f" ({tokens_text(tokens)} tokens)" if tokens else "")
        if pts:
            x = np.array([p[0] for p in pts], dtype=float)
            y = np.array([p[1] for p in pts], dtype=float)
            item = pg.PlotDataItem(x, y, pen=None, symbol="o", symbolSize=7, symbolBrush=pg.mkBrush(color),
                                   symbolPen=pg.mkPen(color), name=name)
            plot.addItem(item)
            self.point_items[steps] = item
            with_sd = [(lr, m, sd) for lr, m, sd in pts if sd]
            if with_sd:
                # error bars are not transformed by the log axis: give them log10 x
                bars = pg.ErrorBarItem(x=np.log10([p[0] for p in with_sd]), y=np.array([p[1] for p in with_sd]),
                                       height=2 * np.array([p[2] for p in with_sd]), beam=0.03,
                                       pen=pg.mkPen(color, width=1.2))
                plot.addItem(bars)
                self.error_items[steps] = bars
        coef = [num(c) for c in as_list(r.get("coef"))]
        fit_lrs = [v for v in (pos(x) for x in as_list(r.get("fit_lrs"))) if v]
        if len(coef) == 3 and None not in coef and len(fit_lrs) >= 2:
            a, b, c = coef
            u = np.linspace(math.log(min(fit_lrs)), math.log(max(fit_lrs)), 60)
            curve = pg.PlotDataItem(np.exp(u), a * u * u + b * u + c, pen=pg.mkPen(color, width=1.3))
            plot.addItem(curve)
            self.fit_items[steps] = curve
        star_lr, star_loss = pos(r.get("lr_star")), num(r.get("loss_at_star"))
        if star_lr and star_loss is not None:
            star = pg.PlotDataItem([star_lr], [star_loss], pen=None, symbol="star", symbolSize=18,
                                   symbolBrush=pg.mkBrush(color), symbolPen=pg.mkPen("k", width=1))
            star.setZValue(10)
            plot.addItem(star)
            self.star_items[steps] = star
        for lr, m, d in zip(lrs, means, as_list(r.get("diverged"))):
            if num(m) is None and num(d) and pos(lr):
                line = pg.InfiniteLine(pos=math.log10(lr), angle=90,
                                       pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DotLine))
                line.setToolTip(f"{steps} steps: every seed diverged at LR {lr:.3g}")
                plot.addItem(line)
                self.diverged_lines.setdefault(steps, []).append(line)

    def _draw_law(self, s: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
        plot = self.law_plot
        law = as_dict(s.get("power_law"))
        hold = as_dict(s.get("holdout"))
        target = as_dict(s.get("target"))
        used = {int(h) for h in as_list(law.get("horizons")) if num(h) is not None}
        fitted: list[tuple[float, float]] = []
        held: list[tuple[float, float]] = []
        for r in rows:
            lr, tokens = pos(r.get("lr_star")), pos(r.get("tokens"))
            if lr and tokens:
                (held if used and r.get("steps") not in used else fitted).append((tokens, lr))
        for key, pts, symbol, color, name in (("fit", fitted, "o", "#1f77b4", "LR* per horizon"),
                                              ("held", held, "s", "#d62728", "held out (measured)")):
            if pts:
                item = pg.PlotDataItem([p[0] for p in pts], [p[1] for p in pts], pen=None, symbol=symbol,
                                       symbolSize=9, symbolBrush=pg.mkBrush(color), symbolPen=pg.mkPen(color),
                                       name=name)
                plot.addItem(item)
                self.measured_items[key] = item
        lines: list[str] = []
        B, beta = pos(law.get("B")), num(law.get("beta"))
        ds = [d for d in (pos(p[0]) for p in as_list(law.get("points")) if isinstance(p, (list, tuple)) and p) if d]
        if B and beta is not None:
            ds = ds or [t for t, _ in fitted]
            if ds:
                hi = max([*ds, pos(hold.get("tokens")) or 0, pos(target.get("tokens")) or 0])
                x = np.geomspace(min(ds) / 1.3, hi * 1.3, 80)
                self.law_item = pg.PlotDataItem(x, B * x ** (-beta), pen=pg.mkPen("#1f77b4", width=1.6),
                                                name=f"fit: LR* = {B:.3g}·D^-{beta:.3f}")
                plot.addItem(self.law_item)
            band = [num(b) for b in as_list(law.get("beta_band"))]
            level = num(law.get("band_level")) or 0.9
            fit_text = f"power law LR*(D) = {B:.4g}·D^-{beta:.4f}: beta {beta:.3f}"
            if len(band) == 2 and None not in band:
                fit_text += (f", {level:.0%} band [{band[0]:.3f}, {band[1]:.3f}] "
                             f"({law.get('band_method') or 'band'})")
            elif len(ds) < 3:
                fit_text += f", no {level:.0%} band (fitted on {len(ds)} horizons; a band needs three or more)"
            else:
                fit_text += f", no {level:.0%} band ({law.get('band_method') or 'none'})"
            r2 = num(law.get("r2"))
            if r2 is not None:
                fit_text += f"; R² {r2:.3f}"
            lines.append(fit_text)
        else:
            lines.append("No power law yet: it needs LR* at two horizons.")
        self._point("holdout", hold.get("tokens"), hold.get("predicted_lr"), hold.get("band"), "#2ca02c",
                    "predicted (held out)")
        self._zero("holdout", hold.get("tokens"), hold.get("zero_overhead_lr"), "zero-overhead rule")
        self._point("target", target.get("tokens"), target.get("lr"), target.get("band"), "#9467bd",
                    f"target {target.get('steps')} steps")
        self._zero("target", target.get("tokens"), target.get("zero_overhead_lr"),
                   "zero-overhead rule" if "holdout" not in self.zero_overhead_items else None)
        if hold:
            pred, meas = num(hold.get("predicted_lr")), num(hold.get("measured_lr_star"))
            text = f"held-out {hold.get('steps')} steps: predicted LR {fmt_g(pred)}, measured LR* {fmt_g(meas)}"
            if num(hold.get("ratio")) is not None:
                text += f" (x{hold['ratio']:.2f})"
            if num(hold.get("zero_overhead_lr")) is not None:
                text += f"; zero-overhead rule {fmt_g(hold['zero_overhead_lr'])}"
                if num(hold.get("zero_overhead_ratio")) is not None:
                    text += f" (x{hold['zero_overhead_ratio']:.2f})"
            if num(hold.get("loss_at_predicted")) is not None:
                text += f"; loss at the prediction {hold['loss_at_predicted']:.4f}"
                if num(hold.get("best_grid_loss")) is not None:
                    text += f" vs best {hold['best_grid_loss']:.4f}"
                if num(hold.get("loss_gap")) is not None:
                    text += f" ({hold['loss_gap']:+.2%})"
            lines.append(text)
        if target:
            tokens = pos(target.get("tokens"))
            text = f"target {target.get('steps')} steps" + (f" ({tokens_text(tokens)} tokens)" if tokens else "")
            text += f": LR {fmt_g(num(target.get('lr')))}"
            band = [num(b) for b in as_list(target.get("band"))]
            if len(band) == 2 and None not in band:
                text += f" (band {fmt_g(band[0])} to {fmt_g(band[1])})"
            if num(target.get("zero_overhead_lr")) is not None:
                text += f"; zero-overhead rule {fmt_g(target['zero_overhead_lr'])}"
            lines.append(text)
        return lines

    def _point(self, key: str, tokens: Any, lr: Any, band: Any, color: str, name: str) -> None:
        tokens, lr = pos(tokens), pos(lr)
        if not (tokens and lr):
            return
        plot = self.law_plot
        band_v = [pos(b) for b in as_list(band)]
        if len(band_v) == 2 and None not in band_v:
            line = pg.PlotDataItem([tokens, tokens], band_v, pen=pg.mkPen(color, width=3))
            line.setOpacity(0.6)
            plot.addItem(line)
            self.band_items[key] = line
        item = pg.PlotDataItem([tokens], [lr], pen=None, symbol="star", symbolSize=18, symbolBrush=pg.mkBrush(color),
                               symbolPen=pg.mkPen("k", width=1), name=f"{name}: {lr:.3g}")
        item.setZValue(10)
        plot.addItem(item)
        self.prediction_items[key] = item

    def _zero(self, key: str, tokens: Any, lr: Any, name: str | None) -> None:
        tokens, lr = pos(tokens), pos(lr)
        if not (tokens and lr):
            return
        item = pg.PlotDataItem([tokens], [lr], pen=None, symbol="d", symbolSize=10, symbolBrush=pg.mkBrush("#ff7f0e"),
                               symbolPen=pg.mkPen("#9a3412"), name=name)
        item.setZValue(9)
        self.law_plot.addItem(item)
        self.zero_overhead_items[key] = item
