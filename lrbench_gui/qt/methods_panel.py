"""The Methods panel: the horizon, path-switch and merge studies, each drawn as its own view.

These three study kinds answer questions a ranking cannot show: how the best LR moves with the
training horizon (``horizon``), what a constant-LR main path with fast-decay branches costs
against retraining (``path-switch``), and where between two checkpoints the merge is best
(``merge``). Each is an ordinary study of its tuner plugin; the view draws the tuner's
``summary_json()`` as stored in the study record (``extra.summary.tuner``), the same dicts that
``lrbench_gui.cli.method_plots`` draws with matplotlib for the CLI.

The panel lists the database's studies of these tuners (newest first, read on the window's
database-jobs thread), shows the selected one's view, and has a "New..." form per kind: a
:class:`~lrbench_gui.qt.param_form.ParamForm` over the tuner's parameters that starts the study
through the window's :class:`~lrbench_gui.qt.study_controller.StudyController` (its trials stream
into the Live panel like any study's) and shows the equivalent ``lrbench <kind> ...`` command.
While such a study runs, its view is redrawn each time one of its trials finishes.

Every view's ``set_summary(summary)`` takes whatever the tuner has said so far: a running study's
summary lacks fits, holds None values and empty lists, and is drawn as far as it goes.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.study import StudyConfig
from lrbench_gui.qt.param_form import ParamForm, format_float
from lrbench_gui.qt.widgets import MessageBanner

__all__ = [
    "MethodsPanel",
    "HorizonView",
    "PathSwitchView",
    "MergeView",
    "NewMethodStudyForm",
    "METHOD_KINDS",
    "methods_icon",
]

#: The tuners this panel draws, in the order of its "New..." menu.
METHOD_KINDS = ("horizon", "path-switch", "merge")

_KIND_TITLES = {
    "horizon": "Token-horizon LR transfer",
    "path-switch": "LR path switching",
    "merge": "Checkpoint merging",
}
_TEXT = "#374151"
_TEXT_DARK = "#d1d5db"
_GRID_ALPHA = 0.2
_STATUS_COLORS = {"finished": "#2e7d32", "running": "#1d4ed8", "stopped": "#6b7280", "failed": "#c62828",
                  "created": "#6b7280"}


def _num(x: Any) -> float | None:
    """``x`` as a finite float, or None (None, NaN, strings, booleans all read as missing)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pos(x: Any) -> float | None:
    """``x`` as a positive finite float (a value a log axis can show), or None."""
    v = _num(x)
    return v if v is not None and v > 0 else None


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def _tokens_text(tokens: float) -> str:
    """``20480`` -> ``20.5k``, ``3.2e6`` -> ``3.2M``."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if tokens >= scale:
            return f"{tokens / scale:.3g}{unit}"
    return f"{tokens:.0f}"


def _viridis(i: int, n: int) -> str:
    """The i-th of n colours along viridis (its dark-to-green part: yellow does not read on white)."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    t = (i / max(1, n - 1)) * 0.85
    k = min(len(stops) - 2, int(t * (len(stops) - 1)))
    f = t * (len(stops) - 1) - k
    rgb = [round(a + (b - a) * f) for a, b in zip(stops[k], stops[k + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def methods_icon(size: int = 32) -> QIcon:
    """The sidebar icon: a loss-against-LR parabola with its optimum marked."""
    from lrbench_gui.qt._resources import icon

    found = icon("methods")
    if not found.isNull():
        return found
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 32
    path = QPainterPath()
    path.moveTo(4 * s, 6 * s)
    path.quadTo(16 * s, 38 * s, 28 * s, 6 * s)
    painter.setPen(QPen(QColor("#0b5cad"), 2.2 * s))
    painter.drawPath(path)
    painter.setPen(QPen(QColor("#0b5cad"), 1.2 * s))
    painter.setBrush(QColor("#f59e0b"))
    painter.drawEllipse(int(12.5 * s), int(18.5 * s), int(7 * s), int(7 * s))
    painter.end()
    return QIcon(pix)


class _CompactAxis(pg.AxisItem):
    """An axis without SI-prefix scaling whose log-mode ticks read as plain numbers (``0.003``,
    ``40k``), only the 1-2-5 ones labelled when many are shown (pyqtgraph's ``2·10⁴`` labels of
    every minor tick run into each other)."""

    def __init__(self, orientation: str, fmt: Callable[[float], str] | None = None) -> None:
        super().__init__(orientation)
        self.fmt = fmt or (lambda v: f"{v:.3g}")
        self.enableAutoSIPrefix(False)

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if not self.logMode:
            return super().tickStrings(values, scale, spacing)
        out = []
        for v in values:
            x = 10.0 ** v
            mantissa = round(x / 10 ** math.floor(math.log10(x) + 1e-9), 3)
            out.append(self.fmt(x) if len(values) <= 6 or mantissa in (1, 2, 5) else "")
        return out


_LEGEND_OFFSETS = {"top-right": (-8, 8), "top-left": (8, 8), "bottom-left": (8, -8), "bottom-right": (-8, -8)}


def _plot(parent: QWidget, title: str, bottom: str, left: str, *, log_x: bool = False, log_y: bool = False,
          x_fmt: Callable[[float], str] | None = None, y_fmt: Callable[[float], str] | None = None,
          legend: str = "top-right") -> pg.PlotWidget:
    axes = {"bottom": _CompactAxis("bottom", x_fmt), "left": _CompactAxis("left", y_fmt)}
    plot = pg.PlotWidget(parent, background="w", axisItems=axes)
    plot.setTitle(title, color=_TEXT, size="10pt")
    plot.showGrid(x=True, y=True, alpha=_GRID_ALPHA)
    plot.setLabel("bottom", bottom)
    plot.setLabel("left", left)
    plot.setLogMode(x=log_x, y=log_y)
    plot.addLegend(offset=_LEGEND_OFFSETS[legend], brush=pg.mkBrush(255, 255, 255, 210), pen=pg.mkPen("#d1d5db"),
                   labelTextColor="#1f2937", labelTextSize="8pt", verSpacing=-4)
    plot.setMinimumSize(260, 200)
    return plot


def _room_for_legend(plot: pg.PlotWidget, ys: list[float], top: float = 0.35) -> None:
    """Fit the y range to ``ys`` with ``top`` of the span free above, where the legend sits."""
    ys = [y for y in ys if y is not None and math.isfinite(y)]
    if not ys:
        return
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    plot.setYRange(lo - 0.05 * span, hi + top * span, padding=0)


def _info_label(parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setContentsMargins(6, 2, 6, 2)
    return label


class _MethodView(QWidget):
    """What the three views share: the summary drawn last, the info line, the guard."""

    kind = ""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary: dict[str, Any] = {}
        self.text_color = _TEXT
        self.info = _info_label(self)

    def set_summary(self, summary: dict[str, Any] | None) -> None:
        """Draw ``summary`` (the tuner's ``summary_json()``), as much of it as there is."""
        self.summary = summary if isinstance(summary, dict) else {}
        for plot in self.plots():
            plot.clear()
        try:
            lines = self._draw(self.summary)
        except Exception as exc:  # noqa: BLE001 - a tuner's summary of a newer version: say so, draw on
            lines = [f"Could not draw all of this summary: {type(exc).__name__}: {exc}"]
        warnings = [str(w) for w in _list(self.summary.get("warnings"))]
        self.info.setText("\n".join([*lines, *(f"warning: {w}" for w in warnings)]))

    def theme_changed(self, dark: bool) -> None:
        self.text_color = _TEXT_DARK if dark else _TEXT
        self.set_summary(self.summary)

    def plots(self) -> list[pg.PlotWidget]:
        raise NotImplementedError

    def _draw(self, summary: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def _text(self, plot: pg.PlotWidget, text: str, x: float, y: float, anchor: tuple[float, float],
              color: str | None = None) -> pg.TextItem:
        item = pg.TextItem(text, color=color or self.text_color, anchor=anchor)
        font = QFont()
        font.setPointSizeF(8)
        item.setFont(font)
        item.setPos(x, y)
        plot.addItem(item)
        return item


class HorizonView(_MethodView):
    """Left: loss against LR (log x) per horizon, seed-sd error bars, the quadratic, a star at LR*.
    Right: LR* against tokens (log-log), the power law, the held-out/target predictions and the
    zero-overhead rule. Below: beta with its 90% band, the check of the prediction, warnings.

    After :meth:`set_summary` the drawn items are kept for tests and tooltips: ``point_items``,
    ``error_items``, ``fit_items``, ``star_items`` and ``diverged_lines`` per horizon (steps),
    ``measured_items``, ``law_item``, ``prediction_items``, ``zero_overhead_items``.
    """

    kind = "horizon"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        self.loss_plot = _plot(split, "Loss against LR per horizon (star: fitted LR*)", "peak learning rate",
                               "validation loss (seed mean)", log_x=True)
        self.law_plot = _plot(split, "LR* against the horizon", "horizon D (tokens)", "optimal LR", log_x=True,
                              log_y=True, x_fmt=_tokens_text, legend="bottom-left")
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
        rows = [r for r in _list(s.get("horizons")) if isinstance(r, dict)]
        for i, r in enumerate(rows):
            self._draw_horizon(i, len(rows), r)
        self.loss_plot.enableAutoRange()
        ys = [float(y) for item in [*self.point_items.values(), *self.fit_items.values(), *self.star_items.values()]
              for y in item.yData]
        _room_for_legend(self.loss_plot, ys, top=0.12 * max(1, len(rows)))
        lines = self._draw_law(s, rows)
        if not any(_pos(r.get("lr_star")) for r in rows):
            lines.insert(0, "No LR* yet: each horizon's sweep needs its results.")
        return lines

    def _draw_horizon(self, i: int, n: int, r: dict[str, Any]) -> None:
        plot = self.loss_plot
        color = _viridis(i, n)
        steps = int(_num(r.get("steps")) or 0)
        tokens = _num(r.get("tokens"))
        lrs, means, sds = _list(r.get("lrs")), _list(r.get("loss_mean")), _list(r.get("loss_sd"))
        pts = [(lr, m, _num(sds[j]) if j < len(sds) else None)
               for j, (lr, m) in enumerate(zip(lrs, means)) if _pos(lr) and _num(m) is not None]
        name = f"{steps} steps" + (f" ({_tokens_text(tokens)} tokens)" if tokens else "")
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
        coef = [_num(c) for c in _list(r.get("coef"))]
        fit_lrs = [v for v in (_pos(x) for x in _list(r.get("fit_lrs"))) if v]
        if len(coef) == 3 and None not in coef and len(fit_lrs) >= 2:
            a, b, c = coef
            u = np.linspace(math.log(min(fit_lrs)), math.log(max(fit_lrs)), 60)
            curve = pg.PlotDataItem(np.exp(u), a * u * u + b * u + c, pen=pg.mkPen(color, width=1.3))
            plot.addItem(curve)
            self.fit_items[steps] = curve
        star_lr, star_loss = _pos(r.get("lr_star")), _num(r.get("loss_at_star"))
        if star_lr and star_loss is not None:
            star = pg.PlotDataItem([star_lr], [star_loss], pen=None, symbol="star", symbolSize=18,
                                   symbolBrush=pg.mkBrush(color), symbolPen=pg.mkPen("k", width=1))
            star.setZValue(10)
            plot.addItem(star)
            self.star_items[steps] = star
        for lr, m, d in zip(lrs, means, _list(r.get("diverged"))):
            if _num(m) is None and _num(d) and _pos(lr):
                line = pg.InfiniteLine(pos=math.log10(lr), angle=90,
                                       pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DotLine))
                line.setToolTip(f"{steps} steps: every seed diverged at LR {lr:.3g}")
                plot.addItem(line)
                self.diverged_lines.setdefault(steps, []).append(line)

    def _draw_law(self, s: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
        plot = self.law_plot
        law = _dict(s.get("power_law"))
        hold = _dict(s.get("holdout"))
        target = _dict(s.get("target"))
        used = {int(h) for h in _list(law.get("horizons")) if _num(h) is not None}
        fitted: list[tuple[float, float]] = []
        held: list[tuple[float, float]] = []
        for r in rows:
            lr, tokens = _pos(r.get("lr_star")), _pos(r.get("tokens"))
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
        B, beta = _pos(law.get("B")), _num(law.get("beta"))
        ds = [d for d in (_pos(p[0]) for p in _list(law.get("points")) if isinstance(p, (list, tuple)) and p) if d]
        if B and beta is not None:
            ds = ds or [t for t, _ in fitted]
            if ds:
                hi = max([*ds, _pos(hold.get("tokens")) or 0, _pos(target.get("tokens")) or 0])
                x = np.geomspace(min(ds) / 1.3, hi * 1.3, 80)
                self.law_item = pg.PlotDataItem(x, B * x ** (-beta), pen=pg.mkPen("#1f77b4", width=1.6),
                                                name=f"fit: LR* = {B:.3g}·D^-{beta:.3f}")
                plot.addItem(self.law_item)
            band = [_num(b) for b in _list(law.get("beta_band"))]
            level = _num(law.get("band_level")) or 0.9
            fit_text = f"power law LR*(D) = {B:.4g}·D^-{beta:.4f}: beta {beta:.3f}"
            if len(band) == 2 and None not in band:
                fit_text += (f", {level:.0%} band [{band[0]:.3f}, {band[1]:.3f}] "
                             f"({law.get('band_method') or 'band'})")
            elif len(ds) < 3:
                fit_text += f", no {level:.0%} band (fitted on {len(ds)} horizons; a band needs three or more)"
            else:
                fit_text += f", no {level:.0%} band ({law.get('band_method') or 'none'})"
            r2 = _num(law.get("r2"))
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
            pred, meas = _num(hold.get("predicted_lr")), _num(hold.get("measured_lr_star"))
            text = f"held-out {hold.get('steps')} steps: predicted LR {_g(pred)}, measured LR* {_g(meas)}"
            if _num(hold.get("ratio")) is not None:
                text += f" (x{hold['ratio']:.2f})"
            if _num(hold.get("zero_overhead_lr")) is not None:
                text += f"; zero-overhead rule {_g(hold['zero_overhead_lr'])}"
                if _num(hold.get("zero_overhead_ratio")) is not None:
                    text += f" (x{hold['zero_overhead_ratio']:.2f})"
            if _num(hold.get("loss_at_predicted")) is not None:
                text += f"; loss at the prediction {hold['loss_at_predicted']:.4f}"
                if _num(hold.get("best_grid_loss")) is not None:
                    text += f" vs best {hold['best_grid_loss']:.4f}"
                if _num(hold.get("loss_gap")) is not None:
                    text += f" ({hold['loss_gap']:+.2%})"
            lines.append(text)
        if target:
            tokens = _pos(target.get("tokens"))
            text = f"target {target.get('steps')} steps" + (f" ({_tokens_text(tokens)} tokens)" if tokens else "")
            text += f": LR {_g(_num(target.get('lr')))}"
            band = [_num(b) for b in _list(target.get("band"))]
            if len(band) == 2 and None not in band:
                text += f" (band {_g(band[0])} to {_g(band[1])})"
            if _num(target.get("zero_overhead_lr")) is not None:
                text += f"; zero-overhead rule {_g(target['zero_overhead_lr'])}"
            lines.append(text)
        return lines

    def _point(self, key: str, tokens: Any, lr: Any, band: Any, color: str, name: str) -> None:
        tokens, lr = _pos(tokens), _pos(lr)
        if not (tokens and lr):
            return
        plot = self.law_plot
        band_v = [_pos(b) for b in _list(band)]
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
        tokens, lr = _pos(tokens), _pos(lr)
        if not (tokens and lr):
            return
        item = pg.PlotDataItem([tokens], [lr], pen=None, symbol="d", symbolSize=10, symbolBrush=pg.mkBrush("#ff7f0e"),
                               symbolPen=pg.mkPen("#9a3412"), name=name)
        item.setZValue(9)
        self.law_plot.addItem(item)
        self.zero_overhead_items[key] = item


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


_METHOD_COLORS = {"main": "#6b7280", "scratch": "#d62728", "continued": "#ff7f0e", "path_switch": "#2ca02c"}
_BRANCH_GREENS = ["#2ca02c", "#0f766e", "#65a30d", "#15803d", "#4d7c0f"]
_PATH_NAMES = {"main": "main path (constant)", "continued": "continued pre-training",
               "path_switch": "branches (fast decay)"}
_BRANCH_NAME = re.compile(r"^branch_f([0-9.]+)_(\w+)$")


def _short_method(label: str) -> str:
    return (label.replace("path switching, ", "switch ").replace("continued pre-training", "continued")
            .replace("retrain from scratch", "from scratch").replace(" data", ""))


class PathSwitchView(_MethodView):
    """The LR paths as a tree (main path, its branches, continued pre-training; x = global step),
    the released model's loss per version per method, and the cost of each method (total steps,
    labelled with the final val loss).

    After :meth:`set_summary`: ``path_items`` (trial -> curve), ``loss_items`` (method -> curve),
    ``cost_bars`` (one ``BarGraphItem``, ``cost_names`` its methods top to bottom) and
    ``cost_labels``.
    """

    kind = "path-switch"

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self._lrs_cache: dict[tuple[str, int], np.ndarray | None] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.tree_plot = _plot(split, "LR paths: the main path and its branches (dashed: newest data only)",
                               "step (chunks in order)", "learning rate", legend="bottom-left")
        lower = QSplitter(Qt.Orientation.Horizontal, split)
        self.loss_plot = _plot(lower, "Released model per version", "version", "val loss (versions so far)")
        self.cost_plot = _plot(lower, "Cost, labelled with the final val loss", "total steps, all versions", "")
        self.cost_plot.getViewBox().invertY(True)
        self.cost_plot.showGrid(x=True, y=False, alpha=_GRID_ALPHA)
        self.cost_plot.getPlotItem().legend.setVisible(False)
        self.cost_plot.getPlotItem().hideAxis("left")
        self.cost_plot.setMouseEnabled(x=True, y=False)
        lower.addWidget(self.loss_plot)
        lower.addWidget(self.cost_plot)
        split.addWidget(self.tree_plot)
        split.addWidget(lower)
        split.setSizes([330, 400])
        layout.addWidget(split, 1)
        layout.addWidget(self.info)
        self._reset_items()

    def plots(self) -> list[pg.PlotWidget]:
        return [self.tree_plot, self.loss_plot, self.cost_plot]

    def _reset_items(self) -> None:
        self.path_items: dict[str, pg.PlotDataItem] = {}
        self.loss_items: dict[str, pg.PlotDataItem] = {}
        self.cost_bars: pg.BarGraphItem | None = None
        self.cost_names: list[str] = []
        self.cost_labels: list[pg.TextItem] = []
        self.cost_method_labels: list[pg.TextItem] = []

    def _lrs(self, policy: Any, steps: int) -> np.ndarray | None:
        key = (json.dumps(policy, sort_keys=True, default=str), steps)
        if key not in self._lrs_cache:
            from lrbench_gui.core.spec import build_schedule

            try:
                self._lrs_cache[key] = np.asarray(build_schedule(policy, steps, self.registry).lrs(), dtype=float)
            except Exception:  # noqa: BLE001 - a policy of a plugin not installed here: no curve
                self._lrs_cache[key] = None
        return self._lrs_cache[key]

    def _draw(self, s: dict[str, Any]) -> list[str]:
        self._reset_items()
        methods = {str(k): m for k, m in _dict(s.get("methods")).items() if isinstance(m, dict)}
        fractions = sorted({float(m.group(1)) for m in (_BRANCH_NAME.match(n) for n in methods) if m}
                           | {f for f in (_num(p.get("f")) for p in _list(s.get("paths")) if isinstance(p, dict))
                              if f is not None})
        green = {f: _BRANCH_GREENS[i % len(_BRANCH_GREENS)] for i, f in enumerate(fractions)}

        def color_of(method: str, f: float | None = None) -> str:
            if method == "path_switch":
                return green.get(f, _METHOD_COLORS["path_switch"]) if f is not None else _METHOD_COLORS["path_switch"]
            return _METHOD_COLORS.get(method, "#1f77b4")

        named: set[str] = set()
        for path in _list(s.get("paths")):
            if not isinstance(path, dict):
                continue
            method = str(path.get("method") or "")
            steps = int(_num(path.get("steps")) or 0)
            if method == "scratch" or steps < 1 or not isinstance(path.get("policy"), (dict, str)):
                continue  # the from-scratch runs start over at step 0: drawn as cost, not in the tree
            lrs = self._lrs(path["policy"], steps)
            if lrs is None or not len(lrs):
                continue
            start = int(_num(path.get("start")) or 0)
            f = _num(path.get("f"))
            style = Qt.PenStyle.DashLine if path.get("data") == "newest" else Qt.PenStyle.SolidLine
            pen = pg.mkPen(color_of(method, f), width=2.4 if method == "main" else 1.4, style=style)
            name = None
            legend_key = f"{method} {f}" if method == "path_switch" else method
            if legend_key not in named:
                name = _PATH_NAMES.get(method, method) if method != "path_switch" or f is None else f"branch f={f:g}"
                named.add(legend_key)
            item = pg.PlotDataItem(np.arange(start, start + len(lrs)), lrs, pen=pen, name=name)
            if method == "main":
                item.setZValue(-1)
            self.tree_plot.addItem(item)
            self.path_items[str(path.get("trial") or f"{method}-{start}")] = item
        chunk = int(_num(s.get("chunk_steps")) or 0)
        for v in range(int(_num(s.get("versions")) or 0) if chunk else 0):
            line = pg.InfiniteLine(pos=chunk * (v + 1), angle=90,
                                   pen=pg.mkPen("#9ca3af", width=1, style=Qt.PenStyle.DotLine))
            self.tree_plot.addItem(line)

        for name, m in methods.items():
            rel = [r for r in _list(m.get("releases")) if isinstance(r, dict)
                   and _num(r.get("val_loss")) is not None and _num(r.get("version")) is not None]
            if not rel:
                continue
            match = _BRANCH_NAME.match(name)
            color = color_of("path_switch", float(match.group(1))) if match else color_of(name)
            style = Qt.PenStyle.DashLine if name.endswith("newest") else Qt.PenStyle.SolidLine
            item = pg.PlotDataItem([r["version"] for r in rel], [r["val_loss"] for r in rel],
                                   pen=pg.mkPen(color, width=1.6, style=style), symbol="o", symbolSize=6,
                                   symbolBrush=pg.mkBrush(color), symbolPen=pg.mkPen(color),
                                   name=_short_method(str(m.get("label") or name)))
            self.loss_plot.addItem(item)
            self.loss_items[name] = item
        versions = int(_num(s.get("versions")) or 0)
        self.loss_plot.getAxis("bottom").setTicks([[(v, str(v)) for v in range(versions)]] if versions else None)

        names = [n for n in methods if _pos(methods[n].get("total_steps"))]
        self.cost_names = names
        if names:
            steps = [float(methods[n]["total_steps"]) for n in names]
            brushes = []
            for n in names:
                match = _BRANCH_NAME.match(n)
                brushes.append(pg.mkBrush(color_of("path_switch", float(match.group(1))) if match else color_of(n)))
            self.cost_bars = pg.BarGraphItem(x0=0, y=np.arange(len(names)) + 0.12, height=0.5, width=steps,
                                             brushes=brushes, pen=pg.mkPen(None))
            self.cost_plot.addItem(self.cost_bars)
            self.cost_method_labels = []
            for i, n in enumerate(names):
                # the method's name above its bar (an axis would cut long names), the loss after it
                self.cost_method_labels.append(self._text(
                    self.cost_plot, _short_method(str(methods[n].get("label") or n)), 0, i - 0.13, (0, 1)))
                loss = _num(methods[n].get("final_val_loss"))
                if loss is not None:
                    self.cost_labels.append(self._text(self.cost_plot, f" {loss:.4f}", steps[i], i + 0.12,
                                                       (0, 0.5)))
            self.cost_plot.setXRange(0, max(steps) * 1.25, padding=0)
            self.cost_plot.setYRange(-0.55, len(names) - 0.3, padding=0)

        lines = []
        compared = [(n, m) for n, m in methods.items() if _num(m.get("vs_scratch")) is not None and n != "scratch"]
        if compared:
            compared.sort(key=lambda nm: nm[1]["vs_scratch"])
            parts = []
            for n, m in compared:
                part = f"{_short_method(str(m.get('label') or n))} {m['vs_scratch']:+.1%}"
                if _num(m.get("cost_vs_scratch")) is not None:
                    part += f" at {m['cost_vs_scratch']:.0%} of the cost"
                parts.append(part)
            lines.append("Final val loss against retraining from scratch: " + "; ".join(parts) + ".")
        elif not methods:
            lines.append("No version released yet: the main path and the baselines are running.")
        return lines


class MergeView(_MethodView):
    """Held-out loss against lambda (the share of the later checkpoint): the dense grid as a line
    when there is one, the BO's evaluations numbered in order, the best point starred, and the gain
    against the better of the two checkpoints.

    After :meth:`set_summary`: ``grid_item``, ``bo_item``, ``best_item``, ``order_labels``.
    The "Dense grid..." button emits :attr:`denseGridRequested` with the number of lambdas.
    """

    kind = "merge"

    # the user asked for the same merge with a dense grid of lambdas: (number of lambdas)
    denseGridRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = _plot(self, "Held-out loss against lambda", "lambda (share of the later checkpoint)",
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
        self.grid_button.clicked.connect(lambda: self.denseGridRequested.emit(self.grid_spin.value()))
        row.addWidget(self.grid_spin, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.grid_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        self._reset_items()

    def plots(self) -> list[pg.PlotWidget]:
        return [self.plot]

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
        self.plot.setTitle(title, color=_TEXT, size="10pt")
        grid = sorted(((g["lambda"], g["value"]) for g in _list(s.get("grid")) if isinstance(g, dict)
                       and _num(g.get("lambda")) is not None and _num(g.get("value")) is not None))
        if grid:
            self.grid_item = pg.PlotDataItem([g[0] for g in grid], [g[1] for g in grid],
                                             pen=pg.mkPen("#9ca3af", width=1.5), symbol="o", symbolSize=4,
                                             symbolBrush=pg.mkBrush("#9ca3af"), symbolPen=pg.mkPen("#9ca3af"),
                                             name=f"grid of {len(grid)}")
            self.plot.addItem(self.grid_item)
        ev = [e for e in _list(s.get("evaluations")) if isinstance(e, dict)
              and _num(e.get("lambda")) is not None and _num(e.get("value")) is not None]
        ev.sort(key=lambda e: _num(e.get("order")) if _num(e.get("order")) is not None else math.inf)
        if ev:
            self.bo_item = pg.PlotDataItem([e["lambda"] for e in ev], [e["value"] for e in ev], pen=None,
                                           symbol="o", symbolSize=9, symbolBrush=pg.mkBrush("#1f77b4"),
                                           symbolPen=pg.mkPen("w", width=1), name="BO evaluations")
            self.bo_item.setZValue(5)
            self.plot.addItem(self.bo_item)
            for k, e in enumerate(ev):
                order = _num(e.get("order"))
                n = int(order) + 1 if order is not None else k + 1
                # alternate above and below: BO's late points crowd around the optimum
                self.order_labels.append(self._text(self.plot, str(n), e["lambda"], e["value"],
                                                    (-0.15, 1.0) if k % 2 == 0 else (-0.15, 0.0)))
        _room_for_legend(self.plot, [v for _, v in grid] + [e["value"] for e in ev], top=0.08)
        alpha = _num(s.get("alpha")) or 0.0
        self.plot.setXRange(alpha - 0.04 * (1 - alpha), 1 + 0.04 * (1 - alpha), padding=0)
        better = [v for v in (_num(x) for x in _dict(s.get("endpoints")).values()) if v is not None]
        if better:
            best_end = min(better) if s.get("mode", "min") != "max" else max(better)
            self.endpoint_line = pg.InfiniteLine(pos=best_end, angle=0,
                                                 pen=pg.mkPen("#6b7280", width=1, style=Qt.PenStyle.DashLine))
            self.endpoint_line.setToolTip(f"the better checkpoint: {best_end:.6g}")
            self.plot.addItem(self.endpoint_line)
        best = _dict(s.get("best"))
        lam, value = _num(best.get("lambda")), _num(best.get("value"))
        lines = []
        if lam is not None and value is not None:
            self.best_item = pg.PlotDataItem([lam], [value], pen=None, symbol="star", symbolSize=20,
                                             symbolBrush=pg.mkBrush("#2ca02c"), symbolPen=pg.mkPen("k", width=1),
                                             name=f"best lambda {lam:.3f}")
            self.best_item.setZValue(10)
            self.plot.addItem(self.best_item)
            text = f"best lambda {lam:.4f}: {metric} {value:.6g}"
            gain = _num(s.get("gain_vs_better_endpoint"))
            if gain is not None:
                text += f", gain {gain:+.3%} vs the better checkpoint (dashed)"
            lines.append(text)
        else:
            lines.append(f"{len(ev)} evaluation(s) so far; no best yet." if ev else "No evaluation yet.")
        gb = _dict(s.get("grid_best"))
        if _num(gb.get("lambda")) is not None and _num(gb.get("value")) is not None:
            text = f"grid of {len(grid)}: best lambda {gb['lambda']:.4f} ({gb['value']:.6g})"
            if _num(s.get("bo_vs_grid")) is not None:
                text += f"; BO within {s['bo_vs_grid']:+.4%} of it"
            if _num(s.get("evaluations_to_reach_grid")) is not None:
                text += f", reached after {int(s['evaluations_to_reach_grid'])} evaluation(s)"
            lines.append(text)
        if s.get("model_dir"):
            lines.append(f"merged model: {s['model_dir']}")
        return lines


# The "New..." forms.

#: Each kind's defaults as the CLI has them (``lrbench horizon --help``...), so both start the same study.
_FORM_DEFAULTS: dict[str, dict[str, Any]] = {
    "horizon": {"tuner": {"horizons": [448, 896, 1792], "lr_min": 3.5e-3, "lr_max": 2.8e-2, "points": 7, "seeds": 2,
                          "widen": 2, "policy": "cosine", "warmup": 0.05, "target_steps": 0, "check": False},
                "batch_size": 8, "optimizer": {"weight_decay": 0.1, "betas": [0.9, 0.95]}},
    "path-switch": {"tuner": {"versions": 4, "chunk_steps": 640, "lr": 7e-3, "fractions": [0.5], "decay": "cosine",
                              "branch_data": "replay", "scratch": True, "continued": True, "branch_warmup": 0.0},
                    "batch_size": 16, "optimizer": {"weight_decay": 0.1, "betas": [0.9, 0.95]}},
    "merge": {"tuner": {"alpha": 0.0, "evaluations": 6, "grid": 0, "write": True}, "batch_size": 32, "optimizer": {}},
}
#: tuner parameter -> CLI flag; a bool maps to a flag given when it is True ("--check") or, with
#: a leading "!", when it is False ("--no-scratch"). Parameters not here go through --set tuner.K=V.
_CLI_FLAGS: dict[str, dict[str, str]] = {
    "horizon": {"horizons": "--horizons", "lr_min": "--lr-min", "lr_max": "--lr-max", "points": "--points",
                "seeds": "--seeds", "widen": "--widen", "policy": "--policy", "warmup": "--warmup",
                "target_steps": "--target-steps", "check": "--check"},
    "path-switch": {"versions": "--versions", "chunk_steps": "--chunk-steps", "lr": "--lr", "fractions": "--fractions",
                    "decay": "--decay", "branch_data": "--branch-data", "scratch": "!--no-scratch",
                    "continued": "!--no-continued", "branch_warmup": "--branch-warmup"},
    "merge": {"later": "--later", "earlier": "--earlier", "alpha": "--alpha", "evaluations": "--evaluations",
              "grid": "--grid", "write": "!--no-write"},
}
_FORM_HINTS = {
    "horizon": "Sweeps the peak LR at each horizon, fits LR*(D) = B·D^-beta and predicts the LR of a longer "
               "run. check holds out the longest horizon to test the prediction.",
    "path-switch": "A constant-LR main path with a fast-decay branch per version, against retraining from "
                   "scratch and continued pre-training.",
    "merge": "lambda·later + (1−lambda)·earlier, lambda chosen by GP Bayesian optimization on held-out loss. "
             "later and earlier are trainer .safetensors checkpoints of the same model (a trial run with "
             "checkpoints keeps them in its folder; lrbench merge --trial ID finds them for you).",
}


def _cli_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_cli_value(v) for v in value)
    if isinstance(value, float):
        return format_float(value)
    return str(value)


class NewMethodStudyForm(QWidget):
    """The "New..." form of one kind: task, tuner parameters (a ParamForm over the tuner's
    Params), the study's size, and the equivalent ``lrbench <kind> ...`` command line."""

    # the user pressed Start: (kind)
    startRequested = Signal(str)
    # the user pressed Cancel
    cancelled = Signal()

    def __init__(self, kind: str, registry: Registry, db_path: Callable[[], Path | None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.registry = registry
        self._db_path = db_path or (lambda: None)
        defaults = _FORM_DEFAULTS.get(kind, {})
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        body = QWidget(scroll)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 4, 8, 4)
        title = QLabel(f"<b>{_KIND_TITLES.get(kind, kind)}</b>", body)
        layout.addWidget(title)
        hint = QLabel(_FORM_HINTS.get(kind, ""), body)
        hint.setWordWrap(True)
        hint.setProperty("role", "unit")
        hint.setStyleSheet("color: #6b7280;")
        layout.addWidget(hint)

        study_box = QGroupBox("Study", body)
        form = QFormLayout(study_box)
        self.name_edit = QLineEdit(study_box)
        self.name_edit.setPlaceholderText(f"{kind} on <task>")
        self.task_combo = QComboBox(study_box)
        self.parallel = QSpinBox(study_box)
        self.parallel.setRange(1, 64)
        self.parallel.setValue(2)
        self.parallel.setToolTip("Trials side by side (CPU workers or GPUs)")
        self.batch = QSpinBox(study_box)
        self.batch.setRange(1, 1 << 16)
        self.batch.setValue(int(defaults.get("batch_size", 32)))
        self.seed = QSpinBox(study_box)
        self.seed.setRange(0, 2**31 - 1)
        form.addRow("Name", self.name_edit)
        form.addRow("Task", self.task_combo)
        form.addRow("Parallel", self.parallel)
        form.addRow("Batch size", self.batch)
        form.addRow("Seed", self.seed)
        layout.addWidget(study_box)

        tuner_box = QGroupBox(f"{kind} parameters", body)
        QVBoxLayout(tuner_box).setContentsMargins(8, 4, 8, 4)
        self.tuner_form = ParamForm(tuner_box)
        tuner_box.layout().addWidget(self.tuner_form)
        layout.addWidget(tuner_box)
        task_box = QGroupBox("Task parameters", body)
        QVBoxLayout(task_box).setContentsMargins(8, 4, 8, 4)
        self.task_form = ParamForm(task_box)
        task_box.layout().addWidget(self.task_form)
        layout.addWidget(task_box)
        layout.addStretch(1)
        body.setMaximumWidth(820)
        scroll.setWidget(body)
        outer.addWidget(scroll, 1)

        cmd_row = QHBoxLayout()
        cmd_row.setContentsMargins(8, 0, 8, 0)
        cmd_row.addWidget(QLabel("Command line:", self), 0, Qt.AlignmentFlag.AlignTop)
        self.command_edit = QPlainTextEdit(self)
        self.command_edit.setReadOnly(True)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.command_edit.setFont(mono)
        self.command_edit.setFixedHeight(self.command_edit.fontMetrics().lineSpacing() * 3 + 12)
        self.command_edit.setToolTip("The same study from a terminal")
        copy = QToolButton(self)
        copy.setText("Copy")
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.command_edit.toPlainText()))
        cmd_row.addWidget(self.command_edit, 1)
        cmd_row.addWidget(copy, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(cmd_row)
        self.error_label = QLabel(self)
        self.error_label.setStyleSheet("color: #c62828;")
        self.error_label.setWordWrap(True)
        self.error_label.setContentsMargins(8, 0, 8, 0)
        outer.addWidget(self.error_label)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(8, 0, 8, 6)
        buttons.addStretch(1)
        self.cancel_btn = QPushButton("Cancel", self)
        self.start_btn = QPushButton("Start study", self)
        self.start_btn.setDefault(True)
        buttons.addWidget(self.cancel_btn)
        buttons.addWidget(self.start_btn)
        outer.addLayout(buttons)
        self.start_btn.clicked.connect(lambda: self.startRequested.emit(self.kind))
        self.cancel_btn.clicked.connect(self.cancelled.emit)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(80)
        self._timer.timeout.connect(self.update_command)
        for signal in (self.name_edit.textEdited, self.task_combo.currentTextChanged, self.parallel.valueChanged,
                       self.batch.valueChanged, self.seed.valueChanged, self.tuner_form.paramsChanged,
                       self.tuner_form.paramsRejected, self.task_form.paramsChanged, self.task_form.paramsRejected):
            signal.connect(lambda *_: self._timer.start())
        self.task_combo.currentTextChanged.connect(self._task_changed)
        self.set_registry(registry)

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry
        current = self.task_combo.currentText() or "tinylm-pretrain"
        self.task_combo.blockSignals(True)
        self.task_combo.clear()
        self.task_combo.addItems(sorted(registry.tasks))
        i = self.task_combo.findText(current)
        self.task_combo.setCurrentIndex(max(0, i))
        self.task_combo.blockSignals(False)
        self._task_changed(self.task_combo.currentText())
        tuner = _registered(registry.tuners, self.kind)
        self.tuner_form.set_schema(getattr(tuner, "Params", None), _FORM_DEFAULTS.get(self.kind, {}).get("tuner"))
        self.start_btn.setEnabled(tuner is not None)
        self.update_command()

    def _task_changed(self, name: str) -> None:
        task = _registered(self.registry.tasks, name)
        self.task_form.set_schema(getattr(task, "Params", None))

    def set_values(self, tuner_params: dict[str, Any] | None = None, *, task: str | None = None,
                   task_params: dict[str, Any] | None = None, name: str | None = None) -> None:
        """Fill the form (e.g. from a stored study's configuration)."""
        if task:
            self.task_combo.setCurrentText(task)
        if task_params:
            self.task_form.set_values(task_params)
        if tuner_params:
            self.tuner_form.set_values(tuner_params)
        if name is not None:
            self.name_edit.setText(name)
        self.update_command()

    def _budget(self, params: dict[str, Any]) -> int:
        if self.kind == "horizon":
            return max([int(h) for h in params.get("horizons") or [1]] or [1])
        if self.kind == "path-switch":
            return int(params.get("chunk_steps") or 1)
        return 1

    def config(self) -> StudyConfig:
        """The study the form describes, as the CLI would build it; ``ValueError`` in words."""
        for form, what in ((self.tuner_form, f"{self.kind} parameters"), (self.task_form, "task parameters")):
            form.flush()
            if not form.is_valid():
                raise ValueError(f"{what}: {form.error_text()}")
        task = self.task_combo.currentText()
        if not task:
            raise ValueError("choose a task")
        if self.kind not in self.registry.tuners:
            raise ValueError(f"the {self.kind} tuner is not installed (its plugin did not load)")
        tuner_params = self.tuner_form.last_valid_values()
        self._check_tuner(tuner_params)
        try:
            return StudyConfig(
                name=self.name_edit.text().strip() or self._default_name(task),
                task=task, task_params=self._changed_task_params(), tuner=self.kind, tuner_params=tuner_params,
                policies=["fixed"], budget_steps=max(1, self._budget(tuner_params)), trials=1,
                parallel=self.parallel.value(), batch_size=self.batch.value(), seed=self.seed.value(),
                optimizer=dict(_FORM_DEFAULTS.get(self.kind, {}).get("optimizer", {})),
            )
        except Exception as exc:  # pydantic names the field
            lines = str(exc).splitlines()
            raise ValueError(" ".join(lines[1:3]) if len(lines) > 2 else str(exc)) from None

    def _check_tuner(self, params: dict[str, Any]) -> None:
        """The tuner's own rules (lr_min below lr_max, two checkpoints...), said before the start."""
        from lrbench_gui.core.tuner import Objective, StudyBudget

        if self.kind == "merge":
            for key in ("later", "earlier"):
                if params.get(key) and not Path(params[key]).is_file():
                    raise ValueError(f"{key}: checkpoint {params[key]} does not exist")
        try:
            self.registry.tuner(self.kind)(params, None, Objective("val_loss", "min"), StudyBudget(1, 1), 0)
        except ValueError as exc:
            raise ValueError(str(exc).splitlines()[0]) from None

    def _default_name(self, task: str) -> str:
        return {"horizon": "horizon", "path-switch": "path switching", "merge": "merge"}.get(self.kind, self.kind) \
            + f" on {task}"

    def _changed_task_params(self) -> dict[str, Any]:
        task = _registered(self.registry.tasks, self.task_combo.currentText())
        values = self.task_form.last_valid_values()
        if task is None:
            return values
        defaults = task.Params().model_dump(mode="json")
        return {k: v for k, v in values.items() if defaults.get(k) != v}

    def command_line(self) -> str:
        """The ``lrbench <kind> ...`` command that starts the same study."""
        params = self.tuner_form.last_valid_values()
        flags = _CLI_FLAGS.get(self.kind, {})
        args = ["lrbench", self.kind, "--task", self.task_combo.currentText()]
        tuner = _registered(self.registry.tuners, self.kind)
        defaults = tuner.Params().model_dump(mode="json") if tuner is not None else {}
        sets = []
        for key, value in params.items():
            flag = flags.get(key)
            if flag is None:
                if defaults.get(key) != value:
                    sets.append(f"tuner.{key}={json.dumps(value)}")
            elif isinstance(value, bool):
                if flag.startswith("!"):
                    if not value:
                        args.append(flag[1:])
                elif value:
                    args.append(flag)
            elif self.kind == "merge" and key in ("later", "earlier") and not value:
                continue
            else:
                args += [flag, _cli_value(value)]
        for key, value in self._changed_task_params().items():
            sets.append(f"task.{key}={json.dumps(value)}")
        for item in sets:
            args += ["--set", item]
        default_batch = int(_FORM_DEFAULTS.get(self.kind, {}).get("batch_size", 32))
        if self.batch.value() != default_batch:
            args += ["--batch-size", str(self.batch.value())]
        if self.parallel.value() != 2:
            args += ["--parallel", str(self.parallel.value())]
        if self.seed.value():
            args += ["--seed", str(self.seed.value())]
        if self.name_edit.text().strip():
            args += ["--name", self.name_edit.text().strip()]
        db = self._db_path()
        if db:
            args += ["--db", str(db)]
        return shlex.join(args)

    def update_command(self) -> None:
        self._timer.stop()
        self.command_edit.setPlainText(self.command_line())
        try:
            self.config()
            self.error_label.clear()
        except ValueError as exc:
            self.error_label.setText(str(exc))


class MethodsPanel(QWidget):
    """The Methods panel; see the module docstring.

    ``controller`` (the window's StudyController) starts the "New..." studies and reports their
    trials; ``jobs`` (the window's DatabaseJobs) reads the database off the GUI thread. Without a
    controller the forms only show the command line.
    """

    # the method studies were read from the database: (records, newest first)
    studiesLoaded = Signal(list)
    # a study's view was (re)drawn: (study_id)
    viewUpdated = Signal(str)
    # a study was started from this panel: (study_id)
    studyRequested = Signal(str)

    def __init__(self, registry: Registry, controller: QObject | None, jobs: Any,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.controller = controller
        self.jobs = jobs
        self.studies: list[dict[str, Any]] = []
        self._views: dict[str, _MethodView] = {}
        self._forms: dict[str, NewMethodStudyForm] = {}
        self._requested: str | None = None
        self._dark = False
        self._build()
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(400)
        self._reload_timer.timeout.connect(self.refresh)
        if controller is not None:
            controller.studyStarted.connect(self._study_started)
            controller.trialFinished.connect(self._trial_finished)
            controller.studyFinished.connect(self._study_finished)
            controller.recordStored.connect(self._record_stored)
            controller.idle.connect(self._update_buttons)
        self._update_buttons()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.banner = MessageBanner(self)
        layout.addWidget(self.banner)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        left = QWidget(split)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Method studies</b>", left), 1)
        self.new_btn = QToolButton(left)
        self.new_btn.setText("New…")
        self.new_btn.setToolTip("Design a new horizon, path-switch or merge study")
        self.new_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.new_btn)
        for kind in METHOD_KINDS:
            action = menu.addAction(f"{kind}: {_KIND_TITLES[kind]}…")
            action.triggered.connect(lambda _=False, k=kind: self.new_study(k))
        self.new_btn.setMenu(menu)
        self.refresh_btn = QToolButton(left)
        self.refresh_btn.setText("Refresh")
        self.refresh_btn.clicked.connect(self.refresh)
        head.addWidget(self.new_btn)
        head.addWidget(self.refresh_btn)
        lv.addLayout(head)
        self.study_list = QListWidget(left)
        self.study_list.setSpacing(3)
        self.study_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.study_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.study_list.currentItemChanged.connect(lambda *_: self._selection_changed())
        lv.addWidget(self.study_list, 1)
        self.empty_label = QLabel("No horizon, path-switch or merge study in this database yet. Start one with "
                                  "New…, or from a terminal: lrbench horizon --help.", left)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: #6b7280;")
        lv.addWidget(self.empty_label)
        left.setMinimumWidth(240)

        right = QWidget(split)
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        self.title_label = QLabel(right)
        self.title_label.setTextFormat(Qt.TextFormat.RichText)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.title_label)
        self.stack = QStackedWidget(right)
        self.placeholder = QLabel("Select a study on the left, or start one with New….", self.stack)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #6b7280;")
        self.stack.addWidget(self.placeholder)
        rv.addWidget(self.stack, 1)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([270, 930])
        layout.addWidget(split, 1)

    # Views and forms, built when first needed.

    def view(self, kind: str) -> _MethodView:
        """The view of ``kind`` (built on first use)."""
        if kind not in self._views:
            if kind == "horizon":
                view: _MethodView = HorizonView(self.stack)
            elif kind == "path-switch":
                view = PathSwitchView(self.registry, self.stack)
            elif kind == "merge":
                view = MergeView(self.stack)
                view.denseGridRequested.connect(self.dense_grid)
            else:
                raise KeyError(f"no view for {kind!r} (kinds: {', '.join(METHOD_KINDS)})")
            if self._dark:
                view.theme_changed(True)
            self.stack.addWidget(view)
            self._views[kind] = view
        return self._views[kind]

    def form(self, kind: str) -> NewMethodStudyForm:
        """The "New..." form of ``kind`` (built on first use)."""
        if kind not in self._forms:
            if kind not in METHOD_KINDS:
                raise KeyError(f"no form for {kind!r} (kinds: {', '.join(METHOD_KINDS)})")
            form = NewMethodStudyForm(kind, self.registry, lambda: getattr(self.jobs, "db_path", None), self.stack)
            form.startRequested.connect(lambda _k, f=form: self.start_form(f))
            form.cancelled.connect(self._selection_changed)
            self.stack.addWidget(form)
            self._forms[kind] = form
            self._update_buttons()
        return self._forms[kind]

    def current_widget(self) -> QWidget:
        return self.stack.currentWidget()

    # The list.

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Read the method studies on the jobs thread; fills the list (keeps the selection)."""
        if self.jobs is None:
            return

        def load(db: Any) -> list[dict[str, Any]]:
            studies = list(reversed(db.studies()))  # replaced records go to the end: newest first
            return [s for s in studies if _tuner_name(s) in METHOD_KINDS]

        self.jobs.submit(load, self.show_studies,
                         lambda msg: self.banner.show_message(f"Could not read the studies: {msg}", "error"))

    def show_studies(self, studies: list[dict[str, Any]]) -> None:
        """Show ``studies`` (study records, newest first); the running study keeps its live summary."""
        running = self._running_local_study()
        out = []
        for s in studies:
            if running is not None and s.get("id") == running.config.study_id:
                s = self._with_summary(s, self._live_summary(running) or _summary_of(s))
            out.append(s)
        if running is not None and running.config.tuner in METHOD_KINDS and \
                all(s.get("id") != running.config.study_id for s in out):
            out.insert(0, self._running_record(running))
        self.studies = out
        current = self.selected_study_id()
        self.study_list.blockSignals(True)
        self.study_list.clear()
        for s in out:
            kind = _tuner_name(s)
            status = str(s.get("status") or "")
            item = QListWidgetItem(f"{s.get('name') or s.get('id')}\n{kind} · {status} · {s.get('task') or ''}")
            item.setData(Qt.ItemDataRole.UserRole, s.get("id"))
            item.setToolTip(f"{s.get('id')}: {kind} study on {s.get('task')}, {status}")
            if status == "running":
                item.setForeground(QColor(_STATUS_COLORS["running"]))
            self.study_list.addItem(item)
        self.study_list.blockSignals(False)
        self.empty_label.setVisible(not out)
        want = self._requested if any(s.get("id") == self._requested for s in out) else current
        if want:
            self.select_study(want)
        elif self.stack.currentWidget() is self.placeholder and out:
            self.select_study(out[0]["id"])
        self.studiesLoaded.emit(out)

    def study_ids(self) -> list[str]:
        return [self.study_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.study_list.count())]

    def selected_study_id(self) -> str | None:
        item = self.study_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def selected_study(self) -> dict[str, Any] | None:
        sid = self.selected_study_id()
        return next((s for s in self.studies if s.get("id") == sid), None)

    def select_study(self, study_id: str) -> bool:
        """Select ``study_id`` in the list and show its view; False when it is not listed."""
        for i in range(self.study_list.count()):
            if self.study_list.item(i).data(Qt.ItemDataRole.UserRole) == study_id:
                if self.study_list.currentRow() == i:
                    self._selection_changed()
                else:
                    self.study_list.setCurrentRow(i)
                return True
        return False

    def _selection_changed(self) -> None:
        s = self.selected_study()
        if s is None:
            self.title_label.clear()
            self.stack.setCurrentWidget(self.placeholder)
            return
        kind = _tuner_name(s)
        extra = _dict(s.get("extra"))
        trials = _dict(extra.get("summary")).get("trials")
        status = str(s.get("status") or "")
        self.title_label.setText(
            f"<b>{_escape(s.get('name') or s.get('id'))}</b> &nbsp;<span style='color:#6b7280'>{kind} · "
            f"{_escape(s.get('task') or '')} · <span style='color:{_STATUS_COLORS.get(status, '#6b7280')}'>"
            f"{_escape(status)}</span>" + (f" · {trials} trials" if isinstance(trials, int) else "")
            + f" · {_escape(s.get('id'))}</span>")
        view = self.view(kind)
        view.set_summary(_summary_of(s))
        self.stack.setCurrentWidget(view)
        if isinstance(view, MergeView):
            view.grid_button.setEnabled(self._can_start() and bool(extra.get("config")))
        self.viewUpdated.emit(str(s.get("id")))

    # Starting studies.

    def _can_start(self) -> bool:
        return self.controller is not None and not self.controller.is_busy()

    def _update_buttons(self, *_: Any) -> None:
        can = self._can_start()
        for form in self._forms.values():
            form.start_btn.setEnabled(can and form.kind in self.registry.tuners)
            form.start_btn.setToolTip("" if can else "A study is running: stop it first, or copy the command line"
                                      if self.controller is not None else "Copy the command line to run it")
        merge = self._views.get("merge")
        if isinstance(merge, MergeView):
            merge.grid_button.setEnabled(can)

    def new_study(self, kind: str, from_study: dict[str, Any] | None = None) -> NewMethodStudyForm:
        """Show the "New..." form of ``kind`` (filled from ``from_study``'s configuration if given)."""
        form = self.form(kind)
        cfg = _dict(_dict((from_study or {}).get("extra")).get("config"))
        if cfg:
            form.set_values(cfg.get("tuner_params"), task=cfg.get("task"), task_params=cfg.get("task_params"))
        self.title_label.setText(f"<b>New {kind} study</b>")
        self.stack.setCurrentWidget(form)
        form.update_command()
        return form

    def start_form(self, form: NewMethodStudyForm) -> bool:
        """Start the study ``form`` describes; problems show in the banner. True when it started."""
        try:
            cfg = form.config()
        except ValueError as exc:
            self.banner.show_message(f"Cannot start the study: {exc}", "error")
            return False
        return self.start(cfg)

    def start(self, config: StudyConfig) -> bool:
        """Start ``config`` through the controller (its trials show in the Live panel)."""
        if self.controller is None:
            self.banner.show_message("Studies cannot start here; run the command line instead.", "warning")
            return False
        self._requested = config.study_id
        try:
            self.controller.start(config)
        except Exception as exc:  # noqa: BLE001 - unknown names, bad params, busy: all said in words
            self._requested = None
            self.banner.show_message(f"Cannot start the study: {exc}", "error")
            return False
        self.banner.dismiss()
        self.studyRequested.emit(config.study_id)
        self._update_buttons()
        return True

    def dense_grid(self, points: int) -> bool:
        """Run the selected merge study again as a new study with a dense grid of ``points`` lambdas."""
        s = self.selected_study()
        cfg = _dict(_dict((s or {}).get("extra")).get("config"))
        if not cfg or _tuner_name(s or {}) != "merge":
            self.banner.show_message("Select a merge study first.", "warning")
            return False
        obj = {k: v for k, v in cfg.items() if k != "study_id"}
        obj["tuner_params"] = {**(cfg.get("tuner_params") or {}), "grid": int(points)}
        base = str(cfg.get("name") or (s or {}).get("name") or "merge")
        obj["name"] = f"{base} (grid of {int(points)})"
        try:
            config = StudyConfig.model_validate(obj)
        except Exception as exc:  # noqa: BLE001 - a study stored by another version
            self.banner.show_message(f"Cannot repeat study {cfg.get('study_id')}: {str(exc).splitlines()[0]}", "error")
            return False
        return self.start(config)

    # A running study.

    def _running_local_study(self) -> Any:
        c = self.controller
        study = getattr(c, "study", None) if c is not None and c.is_busy() else None
        # a Ray study lives on its own thread until it ends: read it from the database instead
        if study is None or study.config.backend != "local" or study.config.tuner not in METHOD_KINDS:
            return None
        return study

    @staticmethod
    def _live_summary(study: Any) -> dict[str, Any] | None:
        try:
            return study.tuner.summary_json()
        except Exception:  # noqa: BLE001 - mid-study, a tuner's summary may not be ready
            return None

    @staticmethod
    def _with_summary(record: dict[str, Any], tuner_summary: dict[str, Any]) -> dict[str, Any]:
        extra = dict(_dict(record.get("extra")))
        extra["summary"] = {**_dict(extra.get("summary")), "tuner": tuner_summary}
        return {**record, "extra": extra}

    def _running_record(self, study: Any) -> dict[str, Any]:
        cfg = study.config
        return {"id": cfg.study_id, "name": cfg.name or f"{cfg.tuner} on {cfg.task}", "task": cfg.task,
                "tuner": {"name": cfg.tuner, "params": cfg.tuner_params}, "status": "running",
                "extra": {"config": cfg.model_dump(mode="json"),
                          "summary": {"trials": len(study.results), "tuner": self._live_summary(study) or {}}}}

    def _study_started(self, study_id: str, config: Any) -> None:
        self._update_buttons()
        if getattr(config, "tuner", None) not in METHOD_KINDS:
            return
        study = self._running_local_study()
        record = self._running_record(study) if study is not None else {
            "id": study_id, "name": config.name, "task": config.task, "status": "running",
            "tuner": {"name": config.tuner, "params": config.tuner_params},
            "extra": {"config": config.model_dump(mode="json"), "summary": {}}}
        self.show_studies([record, *[s for s in self.studies if s.get("id") != study_id]])

    def _trial_finished(self, _trial_id: str, _record: dict) -> None:
        study = self._running_local_study()
        if study is None:
            return
        sid = study.config.study_id
        record = self._running_record(study)
        self.studies = [record if s.get("id") == sid else s for s in self.studies]
        if sid not in self.study_ids():
            self.show_studies([record, *self.studies])
        elif self.selected_study_id() == sid:
            self._selection_changed()

    def _study_finished(self, _study_id: str, _status: str, result: dict) -> None:
        self._update_buttons()
        if _dict(result.get("config")).get("tuner") in METHOD_KINDS or self.isVisible():
            self.refresh()  # the stored record: its final status and summary

    def _record_stored(self, _table: str, _record_id: str) -> None:
        # a Ray study's progress reaches this panel through the database
        c = self.controller
        study = getattr(c, "study", None)
        if study is not None and study.config.tuner in METHOD_KINDS and study.config.backend != "local":
            self._reload_timer.start()

    # The window.

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry
        for form in self._forms.values():
            form.set_registry(registry)
        view = self._views.get("path-switch")
        if isinstance(view, PathSwitchView):
            view.registry = registry
            view._lrs_cache.clear()
        self._update_buttons()

    def theme_changed(self, dark: bool) -> None:
        self._dark = dark  # the views redraw their text themselves (apply_theme reaches them too)


def _registered(items: dict[str, Any], name: str) -> Any:
    """The class registered as ``name`` (a registry's ``tasks``/``tuners`` hold Registered entries)."""
    entry = items.get(name)
    return getattr(entry, "obj", None)


def _tuner_name(record: dict[str, Any]) -> str:
    tuner = record.get("tuner")
    if isinstance(tuner, dict):
        return str(tuner.get("name") or "")
    return str(tuner or _dict(_dict(record.get("extra")).get("config")).get("tuner") or "")


def _summary_of(record: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(_dict(record.get("extra")).get("summary")).get("tuner"))


def _escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
