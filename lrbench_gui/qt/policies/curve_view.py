"""The Policies panel's plot: the current LR curve, the pinned ones, segment boundaries, a legend
and a hover readout of every drawn curve's LR at the step under the mouse. A reactive policy
(``reduce_on_plateau``, a sequence's ``switch``) is drawn against a loss curve picked under the
plot (a synthetic one, or a recorded trial's), its switch points marked."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from lrbench_gui.core.reactive import SYNTHETIC, Trace, drive
from lrbench_gui.core.spec import PolicySpec, SequenceSpec, Spec, read_json_file
from lrbench_gui.qt.plot_style import log_axes, outside_legend, style_plot

__all__ = ["CurveView", "sample_steps", "MAX_POINTS", "CURRENT_COLOR"]

#: The most points computed for one curve; longer runs are sampled every k-th step.
MAX_POINTS = 20_000
CURRENT_COLOR = "#3280dd"  # reads on the light and the dark background


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
    #: Fires when another loss curve is picked for a reactive policy: the curve must be recomputed.
    againstChanged = Signal()
    _RECORD = "record"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curves: Any = lambda: []
        self._x = np.zeros(0)
        self._y = np.zeros(0)
        self.boundary_lines: list[pg.InfiniteLine] = []
        self.switch_lines: list[pg.InfiniteLine] = []
        self.switches: list[dict] = []
        self._record_trace: Trace | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.plot = pg.PlotWidget(self, axisItems=log_axes())  # decade ticks on the log LR axis
        self.plot.setMinimumHeight(260)
        self.plot_item = pi = self.plot.getPlotItem()
        pi.showGrid(x=True, y=True, alpha=0.18)
        pi.setClipToView(True)
        pi.setDownsampling(auto=True, mode="peak")
        pi.setLabel("bottom", "step")
        pi.setLabel("left", "learning rate")
        pi.getAxis("left").setWidth(64)
        pi.getAxis("left").enableAutoSIPrefix(False)
        pi.getAxis("bottom").enableAutoSIPrefix(False)
        pi.ctrl.logYCheck.toggled.connect(self.logToggled.emit)
        self.legend = outside_legend(self.plot, where="bottom")  # under the axis: the curves keep the width
        style_plot(self.plot)
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
        self.against_row = QWidget(self)
        row = QHBoxLayout(self.against_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Reacts to a metric; drawn against", self.against_row))
        self.against = QComboBox(self.against_row)
        for key, text in SYNTHETIC.items():
            self.against.addItem(f"synthetic {key}", key)
            self.against.setItemData(self.against.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.against.addItem("a trial record file...", self._RECORD)
        self.against.setToolTip("The loss curve fed to the reactive policy (as its train loss, and as its eval "
                                "metric at every step)")
        self.against.activated.connect(self._against_picked)
        row.addWidget(self.against)
        self.against_info = QLabel("", self.against_row)
        self.against_info.setStyleSheet("color: #4b5563;")
        row.addWidget(self.against_info, 1)
        self.against_row.setVisible(False)
        layout.addWidget(self.against_row)
        self.readout = QLabel("Hover the plot to read step and learning rate", self)
        self.readout.setStyleSheet("color: #4b5563;")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.readout)

    def set_curve(self, x: np.ndarray, y: np.ndarray, spec: Spec) -> None:
        """Draw the current curve, the boundaries of ``spec``'s segments and the switch points
        :meth:`sample` found."""
        self._x, self._y = x, y
        self.current_item.setData(x, y)
        self._draw_boundaries(spec)
        self._draw_switches()
        self.plot_item.enableAutoRange()

    # a reactive policy: the loss curve it is drawn against

    def sample(self, schedule: Any, x: np.ndarray) -> np.ndarray:
        """The LRs of ``schedule`` at steps ``x``: a reactive one is fed the picked loss curve over
        the whole run first (its switches kept for :meth:`set_curve`)."""
        self.against_row.setVisible(bool(schedule.reactive))
        if not schedule.reactive:
            self.switches = []
            return np.fromiter((schedule.lr_at(int(s)) for s in x), dtype=float, count=len(x))
        trace = self.trace(schedule.total_steps)
        lrs = np.asarray(drive(schedule, trace, schedule.total_steps), dtype=float)
        self.switches = schedule.switches()
        self.against_info.setText(f"{len(self.switches)} switch{'es' if len(self.switches) != 1 else ''}")
        return lrs[np.asarray(x, dtype=np.int64)]

    def trace(self, steps: int) -> Trace:
        """The loss curve picked for a run of ``steps``."""
        key = self.against.currentData()
        if key == self._RECORD and self._record_trace is not None:
            return self._record_trace
        return Trace.synthetic(key if key in SYNTHETIC else "plateaus", steps)

    def set_against_record(self, record: dict) -> None:
        """Draw reactive policies against a recorded trial's curves (``ValueError`` when it has no
        loss curve; nothing changes then)."""
        self._record_trace = Trace.of_record(record)
        self.against.setCurrentIndex(self.against.findData(self._RECORD))
        self.against.setItemText(self.against.currentIndex(), self._record_trace.label)
        self.againstChanged.emit()

    def set_against(self, key: str) -> None:
        """Draw reactive policies against synthetic curve ``key`` (see ``core.reactive.SYNTHETIC``)."""
        i = self.against.findData(key)
        if i < 0:
            raise ValueError(f"unknown synthetic curve {key!r}")
        self.against.setCurrentIndex(i)
        self.againstChanged.emit()

    def _against_picked(self, index: int) -> None:
        if self.against.itemData(index) != self._RECORD:
            self.againstChanged.emit()
            return
        path, _ = QFileDialog.getOpenFileName(self, "A trial record (lrbench db export, or a record's JSON)", "",
                                              "JSON (*.json)")
        if not path:
            return
        try:
            obj = read_json_file(path, "trial record")
            if not isinstance(obj, dict):
                raise ValueError("not a trial record (a JSON object with curves)")
            self.set_against_record(obj)
        except ValueError as exc:
            self.against_info.setText(f"<span style='color:#b91c1c'>{exc}</span>")

    def _draw_switches(self) -> None:
        for line in self.switch_lines:
            self.plot_item.removeItem(line)
        self.switch_lines = []
        for sw in self.switches[:64]:
            line = pg.InfiniteLine(pos=int(sw["step"]), angle=90, movable=False,
                                   pen=pg.mkPen("#b45309", width=1, style=Qt.PenStyle.DotLine))
            line.setToolTip(f"step {int(sw['step'])}: lr {float(sw['lr']):.4g}\n{sw.get('reason', '')}")
            self.plot_item.addItem(line, ignoreBounds=True)
            self.switch_lines.append(line)

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
