"""Live LR and loss curves of running trials.

Steps are appended into preallocated numpy buffers (doubled when full); nothing is drawn per
event. A timer pushes what changed to the curves, one plot a tick (the LR plot, then the loss
plot), so no tick blocks the event loop with the paint of both, and paces itself by what the
updates and paints cost (see :meth:`LivePlot.redraw`). Each curve is a bare
``PlotCurveItem`` given at most about one point per pixel column: the buffers are min/max
(peak) decimated in numpy into bins of a power-of-two size, so a spike still shows and the
picture does not shimmer as points arrive. Curves that did not change or are hidden are left
alone. The view ranges are computed here from the decimated data, with headroom, and set only
when the data leaves them (or fills well under half of them): pyqtgraph's auto-range, which
re-measures every curve and paints each plot twice a frame, stays off. Panning or zooming a plot
stops the following on that axis; the plot's "A" button brings it back. The loss plot shows the
raw loss faintly and an exponential moving average on top; log axes are applied to the data here
(a ``PlotCurveItem`` has no log mode of its own), and their ticks are labelled by decades
(:class:`lrbench_gui.qt.plot_style.LogAxis`). Each trial has its colour from its id
(:func:`lrbench_gui.qt.identity.trial_colour`, the same in every panel), and the curves are
listed beside the plots (:class:`~lrbench_gui.qt.plot_style.CurveList`, shown or hidden by the
"legend" box), not over the data.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from lrbench_gui.qt.identity import PALETTE, trial_colour
from lrbench_gui.qt.plot_style import CurveList, log_axes, style_plot

__all__ = ["LivePlot", "PALETTE"]

# which buffer each curve draws, and on which plot
_CURVES = {"lr": ("lrs", "lr"), "raw": ("losses", "loss"), "smooth": ("smooth", "loss")}


@dataclass
class _Series:
    label: str
    color: str
    steps: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    lrs: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    losses: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    smooth: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    n: int = 0
    hidden: bool = False
    ema: float = math.nan
    curves: dict = field(default_factory=dict)
    # per curve: the (points, log x, log y, bins) it was last drawn with, and its data bounds
    drawn: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)

    def append(self, step: float, lr: float, loss: float, alpha: float) -> None:
        if self.n == len(self.steps):
            for name in ("steps", "lrs", "losses", "smooth"):
                old = getattr(self, name)
                new = np.empty(len(old) * 2, dtype=np.float64)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        i = self.n
        self.steps[i], self.lrs[i], self.losses[i] = step, lr, loss
        if math.isfinite(loss):
            self.ema = loss if not math.isfinite(self.ema) else alpha * loss + (1 - alpha) * self.ema
        self.smooth[i] = self.ema
        self.n += 1


def peak_decimate(x: np.ndarray, y: np.ndarray, n: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` points of ``x``, ``y`` as at most ``2 * bins`` points (plus a short tail):
    runs of ``k`` points (``k`` the smallest power of two that makes at most ``bins`` runs, so
    the runs do not move as points arrive) become their minimum then their maximum, at the run's
    first x; the points after the last whole run are kept as they are. NaNs are ignored inside a
    run (a run of NaNs stays NaN, so ``connect="finite"`` breaks the line there)."""
    k = 1
    while n > k * bins:
        k *= 2
    if k == 1:
        return x[:n], y[:n]
    m = n // k
    whole = m * k
    runs = y[:whole].reshape(m, k)
    tail = n - whole
    xs = np.empty(2 * m + tail)
    ys = np.empty(2 * m + tail)
    xs[0 : 2 * m : 2] = xs[1 : 2 * m : 2] = x[0:whole:k]
    ys[0 : 2 * m : 2] = np.fmin.reduce(runs, axis=1)
    ys[1 : 2 * m : 2] = np.fmax.reduce(runs, axis=1)
    xs[2 * m :] = x[whole:n]
    ys[2 * m :] = y[whole:n]
    return xs, ys


class _Curve(pg.PlotCurveItem):
    """A ``PlotCurveItem`` told its data bounds by the plot (they come with the decimation), so
    that Qt's many ``boundingRect`` calls after each ``setData`` or view change cost no pass
    over the data (pyqtgraph's own one re-measures it with ``nanmin``/``nanmax`` each time)."""

    bounds: tuple[float, float, float, float] | None = None

    def set_points(self, x: np.ndarray, y: np.ndarray, bounds, finite: bool) -> None:
        self.bounds = bounds
        self.setData(x, y, connect="all" if finite else "finite", skipFiniteCheck=finite)

    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        if frac == 1.0 and orthoRange is None:
            if self.bounds is None:
                return (None, None)
            return self.bounds[2 * ax], self.bounds[2 * ax + 1]
        return super().dataBounds(ax, frac, orthoRange)

    def boundingRect(self) -> QRectF:
        if self._boundingRect is None:
            if self.bounds is None:
                return QRectF()
            x0, x1, y0, y1 = self.bounds
            vb = self.getViewBox()
            px = py = 0.0
            if vb is not None:  # two pixels of margin for the pen, in data units
                (vx0, vx1), (vy0, vy1) = vb.viewRange()
                px = 2.0 * (vx1 - vx0) / max(1.0, vb.width())
                py = 2.0 * (vy1 - vy0) / max(1.0, vb.height())
            self._boundingRect = QRectF(x0 - px, y0 - py, x1 - x0 + 2 * px, y1 - y0 + 2 * py)
        return self._boundingRect


class _PlotWidget(pg.PlotWidget):
    """A ``PlotWidget`` that adds up the time its paints take (the live view paces itself by it)."""

    paint_s = 0.0

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt's name
        t0 = time.perf_counter()
        try:
            super().paintEvent(ev)
        finally:
            self.paint_s += time.perf_counter() - t0


class LivePlot(QWidget):
    """Two linked plots (LR above, loss below) with one colored curve per trial."""

    # the mouse moved over a plot: (text describing the nearest points)
    hovered = Signal(str)

    #: at most this many points per curve reach pyqtgraph (and at most about one per 1.5 pixel
    #: columns: a third of the plot's width in bins, a minimum and a maximum each)
    MAX_DRAWN = 1500

    def __init__(self, parent: QWidget | None = None, *, redraw_ms: int = 40, smoothing: float = 0.1) -> None:
        super().__init__(parent)
        self.series: dict[str, _Series] = {}
        self._marks: dict[str, list[pg.InfiniteLine]] = {}  # switch markers (mark_switch), per trial
        self.alpha = smoothing
        self.lr_plot = _PlotWidget(axisItems=log_axes())
        self.loss_plot = _PlotWidget(axisItems=log_axes())
        self._plots = {"lr": self.lr_plot, "loss": self.loss_plot}
        # following the data (the view ranges set here) on x (shared: the plots are x-linked)
        # and on each plot's y; a pan or zoom by hand stops it, the "A" button restarts it
        self._follow = {"x": True, "lr": True, "loss": True}
        for key, plot, label in (("lr", self.lr_plot, "learning rate"), ("loss", self.loss_plot, "loss")):
            plot.setLabel("left", label)
            item = plot.getPlotItem()
            item.setMenuEnabled(True)
            vb = item.getViewBox()
            vb.disableAutoRange()
            vb.sigRangeChangedManually.connect(lambda mask, key=key: self._manual_range(key, mask))
            # log axes from the plot's own context menu as well as from the check boxes here
            item.ctrl.logXCheck.toggled.connect(self._log_changed)
            item.ctrl.logYCheck.toggled.connect(self._log_changed)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setXLink(self.lr_plot)
        for plot in self._plots.values():
            style_plot(plot)
        self.legend = CurveList(self)
        self.legend.toggled.connect(self.set_trial_visible)
        self.show_legend = QCheckBox("legend")
        self.show_legend.setChecked(True)
        self.show_legend.setToolTip("List the trials beside the plots (untick one there to hide its curves)")
        self.show_legend.toggled.connect(lambda _: self._legend_shown())
        self.log_lr = QCheckBox("log LR")
        self.log_lr.toggled.connect(lambda on: self.lr_plot.setLogMode(y=on))
        self.log_loss = QCheckBox("log loss")
        self.log_loss.toggled.connect(lambda on: self.loss_plot.setLogMode(y=on))
        self.raw = QCheckBox("raw loss")
        self.raw.setChecked(True)
        self.raw.toggled.connect(self._toggle_raw)
        self.readout = QLabel(" ")
        self.readout.setStyleSheet("color: #4b5563;")  # its dark twin in the dark theme (plot_style)
        top = QHBoxLayout()
        top.addWidget(self.log_lr)
        top.addWidget(self.log_loss)
        top.addWidget(self.raw)
        top.addWidget(self.show_legend)
        top.addStretch(1)
        top.addWidget(self.readout)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        body = QHBoxLayout()
        plots = QVBoxLayout()
        plots.addWidget(self.lr_plot, 2)
        plots.addWidget(self.loss_plot, 3)
        body.addLayout(plots, 1)
        body.addWidget(self.legend)
        layout.addLayout(body, 1)
        self._legend_shown()
        self._proxies = [
            pg.SignalProxy(p.scene().sigMouseMoved, rateLimit=30, slot=lambda ev, p=p: self._mouse(p, ev[0]))
            for p in (self.lr_plot, self.loss_plot)
        ]
        self._base_interval = redraw_ms
        self._last_tick = 0.0
        self._turn = 0
        self._update_s = 0.0
        self._cost: float | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(redraw_ms)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def add_trial(self, trial_id: str, label: str, color: str | None = None, tooltip: str | None = None) -> str:
        """A curve pair for a trial, in ``color`` (default: the trial's own colour)."""
        if trial_id in self.series:
            return self.series[trial_id].color
        color = color or trial_colour(trial_id)
        s = _Series(label, color)
        pen = pg.mkPen(color, width=1)  # a 1-pixel pen paints several times faster than a wide one
        faint = pg.mkColor(color)
        faint.setAlpha(70)
        for name, curve_pen in (("lr", pen), ("raw", pg.mkPen(faint, width=1)), ("smooth", pen)):
            curve = _Curve(pen=curve_pen, antialias=False, connect="finite")
            s.curves[name] = curve
            self._plots[_CURVES[name][1]].addItem(curve)
        self.legend.add(trial_id, label, color, tooltip)
        self._legend_shown()
        s.curves["raw"].setVisible(self.raw.isChecked())
        self.series[trial_id] = s
        return color

    def append(self, trial_id: str, step: float, lr: float, loss: float) -> None:
        s = self.series.get(trial_id)
        if s is None:
            self.add_trial(trial_id, trial_id)
            s = self.series[trial_id]
        s.append(float(step), float(lr), float(loss), self.alpha)

    #: switch markers kept per trial (a reactive policy changes its LR a few times a run)
    MAX_MARKS = 64

    def mark_switch(self, trial_id: str, step: float, lr: float, reason: str = "") -> None:
        """Mark where a reactive policy (a plateau) changed the trial's LR: a dotted vertical line
        in the trial's colour on the LR plot, the reason as its tooltip. Cheap: one item a switch."""
        marks = self._marks.setdefault(trial_id, [])
        if len(marks) >= self.MAX_MARKS:
            return
        s = self.series.get(trial_id)
        color = s.color if s is not None else trial_colour(trial_id)
        line = pg.InfiniteLine(pos=float(step), angle=90, movable=False,
                               pen=pg.mkPen(color, width=1, style=pg.QtCore.Qt.PenStyle.DotLine))
        line.setToolTip(f"step {int(step)}: lr {lr:.4g}" + (f"\n{reason}" if reason else ""))
        line.setVisible(s is None or not s.hidden)
        self.lr_plot.addItem(line, ignoreBounds=True)
        marks.append(line)

    def switch_marks(self, trial_id: str) -> list[float]:
        """The steps of a trial's switch markers."""
        return [float(m.value()) for m in self._marks.get(trial_id, [])]

    def remove_trial(self, trial_id: str) -> None:
        for mark in self._marks.pop(trial_id, []):
            self.lr_plot.removeItem(mark)
        s = self.series.pop(trial_id, None)
        if s is None:
            return
        self.legend.remove(trial_id)
        self._legend_shown()
        for name, curve in s.curves.items():
            self._plots[_CURVES[name][1]].removeItem(curve)

    def clear(self) -> None:
        for trial_id in list(self.series):
            self.remove_trial(trial_id)
        self._follow = dict.fromkeys(self._follow, True)

    def _legend_shown(self) -> None:
        """The side list while it has trials and the "legend" box is ticked (an empty one would
        only take the plots' width)."""
        self.legend.setVisible(self.show_legend.isChecked() and self.legend.count() > 0)

    def set_label(self, trial_id: str, label: str, tooltip: str | None = None) -> None:
        """Rename a trial's curves (in the legend and the hover readout)."""
        s = self.series.get(trial_id)
        if s is not None:
            s.label = label
            self.legend.set_label(trial_id, label, tooltip)

    def set_trial_visible(self, trial_id: str, shown: bool) -> None:
        """Show or hide a trial's curves (the legend's check box)."""
        s = self.series.get(trial_id)
        if s is None:
            return
        s.hidden = not shown
        for mark in self._marks.get(trial_id, []):
            mark.setVisible(shown)
        for name, curve in s.curves.items():
            curve.setVisible(shown and (name != "raw" or self.raw.isChecked()))
        s.drawn.clear()
        self.redraw_all()

    def points(self, trial_id: str) -> int:
        s = self.series.get(trial_id)
        return s.n if s else 0

    def data(self, trial_id: str) -> dict[str, np.ndarray]:
        s = self.series[trial_id]
        return {"step": s.steps[: s.n].copy(), "lr": s.lrs[: s.n].copy(), "loss": s.losses[: s.n].copy(),
                "loss_smooth": s.smooth[: s.n].copy()}

    #: the share of the GUI thread's time the live view may take (curve updates plus paints)
    DUTY = 0.15
    #: the longest redraw period (ms) it may back off to
    SLOWEST_MS = 250

    def redraw(self) -> None:
        """One tick of the redraw timer: bring one plot's curves and ranges up to date (the LR plot
        and the loss plot take turns), and adapt the period to what drawing costs. The period is at
        least what keeps the updates and paints of the last ticks under ``DUTY`` of the time (many
        trials, or a loaded machine where they take longer, draw less often); after a stall (a tick
        over 50 ms late) it doubles, up to ``SLOWEST_MS``, and comes back down over the next
        ticks. So the event loop stays responsive whatever the number of curves."""
        now = time.perf_counter()
        interval = self.timer.interval()
        late_ms = (now - self._last_tick) * 1000.0 - interval if self._last_tick else 0.0
        self._last_tick = now
        # what the last tick cost: its curve update and the paints since (of the plot it updated)
        cost = self._update_s + self.lr_plot.paint_s + self.loss_plot.paint_s
        self.lr_plot.paint_s = self.loss_plot.paint_s = 0.0
        self._cost = cost if self._cost is None else 0.7 * self._cost + 0.3 * cost
        floor = min(self.SLOWEST_MS, max(self._base_interval, int(self._cost * 1000.0 / self.DUTY)))
        if late_ms > 50:  # a stall: the loop had more to do than this period allows
            interval = min(self.SLOWEST_MS, interval * 2)
        else:  # back down towards the floor
            interval = (interval + floor) // 2
        self.timer.setInterval(max(floor, interval))
        key = ("lr", "loss")[self._turn]
        self._turn ^= 1
        t0 = time.perf_counter()
        self.update_plot(key)
        self._update_s = time.perf_counter() - t0

    def redraw_all(self) -> None:
        """Both plots up to date now (exports, tests, a change of log mode)."""
        self.update_plot("lr")
        self.update_plot("loss")

    def _bins(self, plot: pg.PlotWidget) -> int:
        return max(100, min(self.MAX_DRAWN // 2, plot.width() // 3))

    def update_plot(self, key: str) -> None:
        """Push new points to the visible curves of one plot (``lr`` or ``loss``), then its ranges."""
        plot = self._plots[key]
        item = plot.getPlotItem()
        log_x, log_y = item.ctrl.logXCheck.isChecked(), item.ctrl.logYCheck.isChecked()
        bins = self._bins(plot)
        names = [name for name, (_, on) in _CURVES.items() if on == key]
        for s in self.series.values():
            for name in names:
                curve = s.curves[name]
                if not curve.isVisible():
                    continue
                state = (s.n, log_x, log_y, bins)
                if s.drawn.get(name) == state:
                    continue
                s.drawn[name] = state
                x, y = peak_decimate(s.steps, getattr(s, _CURVES[name][0]), s.n, bins)
                with np.errstate(divide="ignore", invalid="ignore"):
                    if log_x:
                        x = np.log10(x)
                    if log_y:
                        y = np.log10(y)
                ok = np.isfinite(x) & np.isfinite(y)
                finite = bool(ok.all())
                if not finite:
                    x, y = x.copy(), y.copy()  # NaN both where either is not finite: a gap
                    x[~ok] = y[~ok] = np.nan
                xs, ys = (x, y) if finite else (x[ok], y[ok])
                bounds = (float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())) if len(xs) else None
                s.bounds[name] = bounds
                curve.set_points(x, y, bounds, finite)
        self._fit(key)

    def _fit(self, key: str) -> None:
        """Set the plot's view ranges to its visible data when the data left them (or fills well
        under half of them), with headroom so that they change seldom; not on an axis moved by
        hand. The x range (shared by the linked plots) is set on the LR plot's turn."""
        vb = self._plots[key].getPlotItem().getViewBox()
        auto_x, auto_y = vb.autoRangeEnabled()
        if auto_x or auto_y:  # the "A" button (or a log switch): follow the data again
            if auto_x:
                self._follow["x"] = True
            if auto_y:
                self._follow[key] = True
            vb.disableAutoRange()
        boxes = {k: [] for k in self._plots}
        for s in self.series.values():
            for name, b in s.bounds.items():
                if b is not None and s.curves[name].isVisible():
                    boxes[_CURVES[name][1]].append(b)
        (vx0, vx1), (vy0, vy1) = vb.viewRange()
        kw = {}
        every = boxes["lr"] + boxes["loss"]
        if key == "lr" and self._follow["x"] and every:
            arr = np.asarray(every)
            x0, x1 = arr[:, 0].min(), arr[:, 1].max()
            span = x1 - x0
            if x0 < vx0 or x1 > vx1 or span < 0.5 * (vx1 - vx0):
                kw["xRange"] = (x0, x1 + max(span * 0.25, 1.0))
        if self._follow[key] and boxes[key]:
            arr = np.asarray(boxes[key])
            y0, y1 = arr[:, 2].min(), arr[:, 3].max()
            span = y1 - y0
            if y0 < vy0 or y1 > vy1 or span < 0.5 * (vy1 - vy0):
                pad = span * 0.08 if span > 0 else max(abs(y1) * 0.1, 1e-12)
                kw["yRange"] = (y0 - pad, y1 + pad)
        if kw:
            vb.setRange(padding=0, update=True, disableAutoRange=True, **kw)

    def _manual_range(self, key: str, mask) -> None:
        mx, my = (bool(mask[0]), bool(mask[1])) if mask is not None else (True, True)
        if mx:
            self._follow["x"] = False
        if my:
            self._follow[key] = False

    def _log_changed(self, *_) -> None:
        for box, plot in ((self.log_lr, self.lr_plot), (self.log_loss, self.loss_plot)):
            on = plot.getPlotItem().ctrl.logYCheck.isChecked()
            if box.isChecked() != on:
                box.blockSignals(True)
                box.setChecked(on)
                box.blockSignals(False)
        for s in self.series.values():  # the old bounds are in the other scale
            s.bounds.clear()
        self._follow = dict.fromkeys(self._follow, True)
        self.redraw_all()

    def _toggle_raw(self, on: bool) -> None:
        for s in self.series.values():
            s.curves["raw"].setVisible(on and not s.hidden)
        self.update_plot("loss")

    def _mouse(self, plot: pg.PlotWidget, pos) -> None:
        if not self.series or not plot.sceneBoundingRect().contains(pos):
            return
        item = plot.getPlotItem()
        x = item.vb.mapSceneToView(pos).x()
        if item.ctrl.logXCheck.isChecked():
            x = 10.0 ** x
        parts = []
        for s in list(self.series.values())[:4]:
            if not s.n:
                continue
            i = int(np.clip(np.searchsorted(s.steps[: s.n], x), 0, s.n - 1))
            parts.append(f"{s.label}: step {int(s.steps[i])}, lr {s.lrs[i]:.3g}, loss {s.losses[i]:.4g}")
        text = "   ".join(parts)
        self.readout.setText(text)
        self.hovered.emit(text)

    def export_image(self, path: str | Path) -> Path:
        """Both plots as one PNG or SVG (by the file's suffix)."""
        import pyqtgraph.exporters as exporters

        path = Path(path)
        self.redraw_all()  # the curves as they are now, not as of the last tick
        loss_path = path.with_name(path.stem + "-loss" + path.suffix)
        if path.suffix.lower() == ".svg":
            # pyqtgraph's SVGExporter cannot parse the SVG this Qt writes (its coordinate fix-up
            # fails); Qt's own generator renders the widget as vectors instead
            _render_svg(self.loss_plot, loss_path)
            _render_svg(self.lr_plot, path)
            return path
        exporters.ImageExporter(self.loss_plot.getPlotItem()).export(str(loss_path))
        exporters.ImageExporter(self.lr_plot.getPlotItem()).export(str(path))
        return path

    def export_csv(self, path: str | Path) -> Path:
        """Every trial's points as rows: trial, step, lr, loss, loss_smooth."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["trial", "step", "lr", "loss", "loss_smooth"])
            for trial_id, s in self.series.items():
                for i in range(s.n):
                    w.writerow([trial_id, int(s.steps[i]), repr(s.lrs[i]), repr(s.losses[i]), repr(s.smooth[i])])
        tmp.replace(path)
        return path


def _render_svg(widget: QWidget, path: Path) -> None:
    """``widget`` drawn into an SVG file (written to a temporary name, then renamed)."""
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    tmp = path.with_name(path.name + ".tmp")
    gen = QSvgGenerator()
    gen.setFileName(str(tmp))
    gen.setSize(widget.size())
    gen.setViewBox(widget.rect())
    gen.setTitle("lrbench live plot")
    painter = QPainter(gen)
    try:
        widget.render(painter)
    finally:
        painter.end()
    tmp.replace(path)
