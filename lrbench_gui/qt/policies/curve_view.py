"""The Policies panel's plot: the current LR curve, the pinned ones, segment boundaries, a legend
and a hover readout of every drawn curve's LR at the step under the mouse."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from lrbench_gui.core.spec import PolicySpec, SequenceSpec, Spec

__all__ = ["CurveView", "sample_steps", "MAX_POINTS", "CURRENT_COLOR"]

#: The most points computed for one curve; longer runs are sampled every k-th step.
MAX_POINTS = 20_000
CURRENT_COLOR = "#0b5cad"


def sample_steps(total_steps: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """The steps a curve is computed at: every step, or every k-th plus the last one."""
    stride = max(1, math.ceil(total_steps / max_points))
    steps = np.arange(0, total_steps, stride, dtype=np.int64)
    if steps[-1] != total_steps - 1:
        steps = np.append(steps, total_steps - 1)
    return steps


class CurveView(QWidget):
    """The plot of the current curve (``current_item``) over the pinned ones.

    ``curves`` (set by the panel) returns the pinned curves as ``(label, x, y, color)`` for the
    readout; the pinned items themselves are added to ``plot_item`` by the overlay box.
    """

    #: Fires when the log scale is switched from the plot's own context menu; carries the state.
    logToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curves: Any = lambda: []
        self._x = np.zeros(0)
        self._y = np.zeros(0)
        self.boundary_lines: list[pg.InfiniteLine] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.plot = pg.PlotWidget(self, background="w")
        self.plot.setMinimumHeight(260)
        self.plot_item = pi = self.plot.getPlotItem()
        pi.showGrid(x=True, y=True, alpha=0.18)
        pi.setClipToView(True)
        pi.setDownsampling(auto=True, mode="peak")
        for name in ("left", "bottom"):
            axis = pi.getAxis(name)
            axis.setPen(pg.mkPen("#9ca3af"))
            axis.setTextPen(pg.mkPen("#374151"))
        pi.setLabel("bottom", "step", color="#374151")
        pi.setLabel("left", "learning rate", color="#374151")
        pi.getAxis("left").setWidth(64)
        pi.getAxis("left").enableAutoSIPrefix(False)
        pi.getAxis("bottom").enableAutoSIPrefix(False)
        pi.ctrl.logYCheck.toggled.connect(self.logToggled.emit)
        self.legend = pi.addLegend(
            offset=(12, -12), brush=pg.mkBrush(255, 255, 255, 170), pen=pg.mkPen("#d1d5db"), labelTextColor="#1f2937"
        )
        self.current_item = pg.PlotDataItem(pen=pg.mkPen(CURRENT_COLOR, width=2.4), antialias=True)
        self.current_item.setZValue(10)
        pi.addItem(self.current_item)
        self._hover_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#9ca3af", style=Qt.PenStyle.DashLine))
        self._hover_dot = pg.PlotDataItem(
            symbol="o", symbolSize=8, symbolBrush=pg.mkBrush(CURRENT_COLOR), symbolPen=pg.mkPen("w", width=1.5), pen=None
        )
        self._hover_dot.setZValue(20)
        for item in (self._hover_line, self._hover_dot):
            item.setVisible(False)
            pi.addItem(item, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)
        layout.addWidget(self.plot, 1)
        self.readout = QLabel("Hover the plot to read step and learning rate", self)
        self.readout.setStyleSheet("color: #4b5563;")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.readout)

    def set_curve(self, x: np.ndarray, y: np.ndarray, spec: Spec) -> None:
        """Draw the current curve and the boundaries of ``spec``'s segments."""
        self._x, self._y = x, y
        self.current_item.setData(x, y)
        self._draw_boundaries(spec)
        self.plot_item.enableAutoRange()

    def _draw_boundaries(self, spec: Spec) -> None:
        for line in self.boundary_lines:
            self.plot_item.removeItem(line)
        self.boundary_lines = []
        if not isinstance(spec, SequenceSpec):
            return
        total = int(self._x[-1]) + 1 if len(self._x) else 1
        for bound, seg in zip(spec.steps(total), spec.segments[1:]):
            name = seg.name if isinstance(seg, PolicySpec) else "sequence"
            line = pg.InfiniteLine(
                pos=bound,
                angle=90,
                movable=False,
                pen=pg.mkPen("#6b7280", width=1, style=Qt.PenStyle.DashLine),
                label=f"→ {name}",
                labelOpts={"position": 0.96, "color": "#4b5563", "anchors": [(0, 0), (0, 0)]},
            )
            self.plot_item.addItem(line, ignoreBounds=True)
            self.boundary_lines.append(line)

    def rebuild_legend(self, current_label: str | None, pinned: Sequence[tuple[Any, str]]) -> None:
        """The legend: the current curve (when there is one), then the pinned ``(item, label)``."""
        self.legend.clear()
        if current_label is not None:
            self.legend.addItem(self.current_item, f"{current_label} (current)")
        for item, label in pinned:
            self.legend.addItem(item, label)

    def set_log_scale(self, on: bool) -> None:
        self.plot_item.setLogMode(x=False, y=on)
        self.plot_item.enableAutoRange()

    def is_log_scale(self) -> bool:
        return bool(self.plot_item.getAxis("left").logMode)

    def _mouse_moved(self, pos: Any) -> None:
        vb = self.plot_item.vb
        if len(self._x) == 0 or not vb.sceneBoundingRect().contains(pos):
            self._hover_line.setVisible(False)
            self._hover_dot.setVisible(False)
            return
        self.show_readout(vb.mapSceneToView(pos).x())

    def show_readout(self, step: float) -> None:
        """Put the crosshair at ``step`` and show the LR of every drawn curve there."""
        if len(self._x) == 0:
            return
        i = int(np.clip(np.searchsorted(self._x, step), 0, len(self._x) - 1))
        if i > 0 and abs(self._x[i - 1] - step) < abs(self._x[i] - step):
            i -= 1
        s, lr = int(self._x[i]), float(self._y[i])
        self._hover_line.setPos(s)
        self._hover_dot.setData([s], [lr])
        self._hover_line.setVisible(True)
        self._hover_dot.setVisible(True)
        parts = [f"step <b>{s:,}</b>", f"<span style='color:{CURRENT_COLOR}'>lr <b>{lr:.4g}</b></span>"]
        for label, x, y, color in list(self.curves())[:4]:
            if len(x) and x[0] <= s <= x[-1]:
                j = int(np.clip(np.searchsorted(x, s), 0, len(x) - 1))
                parts.append(f"<span style='color:{color}'>{label}: {y[j]:.4g}</span>")
        self.readout.setText(" &nbsp;·&nbsp; ".join(parts))
