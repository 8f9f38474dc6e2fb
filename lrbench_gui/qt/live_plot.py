"""Live LR and loss curves of running trials.

Steps are appended into preallocated numpy buffers (doubled when full) and the curves are redrawn
on a ~40 ms timer, never per event, with pyqtgraph's peak downsampling and clip-to-view, so many
trials streaming fast stay smooth. The loss plot shows the raw loss faintly and an exponential
moving average on top.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

__all__ = ["LivePlot", "PALETTE"]

PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd",
]


@dataclass
class _Series:
    label: str
    color: str
    steps: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    lrs: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    losses: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    smooth: np.ndarray = field(default_factory=lambda: np.empty(256, dtype=np.float64))
    n: int = 0
    ema: float = math.nan
    dirty: bool = False
    curves: dict = field(default_factory=dict)

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
        self.dirty = True


class LivePlot(QWidget):
    """Two linked plots (LR above, loss below) with one colored curve per trial."""

    # the mouse moved over a plot: (text describing the nearest points)
    hovered = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, redraw_ms: int = 40, smoothing: float = 0.1) -> None:
        super().__init__(parent)
        self.series: dict[str, _Series] = {}
        self.alpha = smoothing
        self.lr_plot = pg.PlotWidget()
        self.loss_plot = pg.PlotWidget()
        for plot, label in ((self.lr_plot, "learning rate"), (self.loss_plot, "loss")):
            plot.setBackground("w")
            plot.setLabel("left", label)
            plot.setClipToView(True)
            plot.setDownsampling(auto=True, mode="peak")
            plot.getPlotItem().setMenuEnabled(True)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setXLink(self.lr_plot)
        self.legend = self.lr_plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        self.log_lr = QCheckBox("log LR")
        self.log_lr.toggled.connect(lambda on: self.lr_plot.setLogMode(y=on))
        self.log_loss = QCheckBox("log loss")
        self.log_loss.toggled.connect(lambda on: self.loss_plot.setLogMode(y=on))
        self.raw = QCheckBox("raw loss")
        self.raw.setChecked(True)
        self.raw.toggled.connect(self._toggle_raw)
        self.readout = QLabel(" ")
        self.readout.setStyleSheet("color: #4b5563;")
        top = QHBoxLayout()
        top.addWidget(self.log_lr)
        top.addWidget(self.log_loss)
        top.addWidget(self.raw)
        top.addStretch(1)
        top.addWidget(self.readout)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.lr_plot, 2)
        layout.addWidget(self.loss_plot, 3)
        self._proxies = [
            pg.SignalProxy(p.scene().sigMouseMoved, rateLimit=30, slot=lambda ev, p=p: self._mouse(p, ev[0]))
            for p in (self.lr_plot, self.loss_plot)
        ]
        self._base_interval = redraw_ms
        self._last_tick = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(redraw_ms)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()

    def add_trial(self, trial_id: str, label: str, color: str | None = None) -> str:
        if trial_id in self.series:
            return self.series[trial_id].color
        color = color or PALETTE[len(self.series) % len(PALETTE)]
        s = _Series(label, color)
        pen = pg.mkPen(color, width=1)  # a 1-pixel pen paints several times faster than a wide one
        s.curves["lr"] = self.lr_plot.plot([], [], pen=pen, name=label)
        faint = pg.mkColor(color)
        faint.setAlpha(70)
        s.curves["raw"] = self.loss_plot.plot([], [], pen=pg.mkPen(faint, width=1))
        s.curves["raw"].setVisible(self.raw.isChecked())
        s.curves["smooth"] = self.loss_plot.plot([], [], pen=pen)
        self.series[trial_id] = s
        return color

    def append(self, trial_id: str, step: float, lr: float, loss: float) -> None:
        s = self.series.get(trial_id)
        if s is None:
            self.add_trial(trial_id, trial_id)
            s = self.series[trial_id]
        s.append(float(step), float(lr), float(loss), self.alpha)

    def remove_trial(self, trial_id: str) -> None:
        s = self.series.pop(trial_id, None)
        if s is None:
            return
        self.lr_plot.removeItem(s.curves["lr"])
        self.legend.removeItem(s.curves["lr"])
        self.loss_plot.removeItem(s.curves["raw"])
        self.loss_plot.removeItem(s.curves["smooth"])

    def clear(self) -> None:
        for trial_id in list(self.series):
            self.remove_trial(trial_id)

    def points(self, trial_id: str) -> int:
        s = self.series.get(trial_id)
        return s.n if s else 0

    def data(self, trial_id: str) -> dict[str, np.ndarray]:
        s = self.series[trial_id]
        return {"step": s.steps[: s.n].copy(), "lr": s.lrs[: s.n].copy(), "loss": s.losses[: s.n].copy(),
                "loss_smooth": s.smooth[: s.n].copy()}

    #: at most this many points per curve reach pyqtgraph; more cannot show on a screen anyway
    MAX_DRAWN = 1500

    def redraw(self) -> None:
        """Push new points to the curves, and adapt the redraw period to what painting costs: when
        the last period ran late (the paints of many trials' curves took the time), the timer backs
        off up to 250 ms so the event loop stays responsive, and speeds up again once they finish."""
        now = time.perf_counter()
        late_ms = (now - self._last_tick) * 1000.0 - self.timer.interval() if self._last_tick else 0.0
        self._last_tick = now
        interval = self.timer.interval()
        if late_ms > 15 and interval < 250:
            self.timer.setInterval(min(250, interval * 2))
        elif late_ms < 4 and interval > self._base_interval:
            self.timer.setInterval(max(self._base_interval, interval // 2))
        for s in self.series.values():
            if not s.dirty:
                continue
            s.dirty = False
            k = max(1, s.n // self.MAX_DRAWN)
            sl = slice(0, s.n, k)
            x = s.steps[sl]
            s.curves["lr"].setData(x, s.lrs[sl])
            if s.curves["raw"].isVisible():
                loss = s.losses[sl]
                finite = np.isfinite(loss)
                s.curves["raw"].setData(x[finite], loss[finite])
            smooth = s.smooth[sl]
            ok = np.isfinite(smooth)
            s.curves["smooth"].setData(x[ok], smooth[ok])

    def _toggle_raw(self, on: bool) -> None:
        for s in self.series.values():
            s.curves["raw"].setVisible(on)
            s.dirty = True

    def _mouse(self, plot: pg.PlotWidget, pos) -> None:
        if not self.series or not plot.sceneBoundingRect().contains(pos):
            return
        x = plot.getPlotItem().vb.mapSceneToView(pos).x()
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
        exporter_cls = exporters.SVGExporter if path.suffix.lower() == ".svg" else exporters.ImageExporter
        exporter_cls(self.loss_plot.getPlotItem()).export(str(path.with_name(path.stem + "-loss" + path.suffix)))
        exporter_cls(self.lr_plot.getPlotItem()).export(str(path))
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
