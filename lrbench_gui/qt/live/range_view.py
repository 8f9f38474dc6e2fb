"""The Live panel's LR range view, for a study whose tuner's ``view`` is ``"range-test"``:
training loss against the LR as a range test sweeps it, or the metric of each short fixed-LR run
of a value range test, then what the tuner concluded marked on the plot.

Which of the two a trial is, the data says: a trial asked at one LR (its point has an ``lr``)
adds one (LR, metric) point when it ends; a trial that sweeps the LR adds its (LR, loss) steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from lrbench_gui.core.records import TrialStatus
from lrbench_gui.qt.identity import PALETTE
from lrbench_gui.qt.plot_style import new_plot, outside_legend

__all__ = ["RangeView", "RANGE_VIEW"]

#: the ``Tuner.view`` key of the studies this view draws
RANGE_VIEW = "range-test"
_AT_ONE_LR = "at one LR"  # the series of the short fixed-LR runs
_SUGGESTION_COLORS = {"steepest": "#d62728", "valley": "#2ca02c", "minimum": "#ff7f0e", "min_div_10": "#ff7f0e",
                      "balanced": "#9467bd", "halfway": "#17becf"}


class RangeView(QWidget):
    """The plot (log LR axis) and a note of the suggestions."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.metric_name = "metric"
        self._points: dict[str, list[tuple[float, float]]] = {}
        self._dirty = False
        self.range_plot = new_plot(bottom="learning rate (log)", left="training loss", log_x=True, grid=0.25)
        outside_legend(self.range_plot)
        self.range_note = QLabel("")
        self.range_note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.range_plot, 1)
        layout.addWidget(self.range_note)
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.redraw)

    def start(self, metric: str, live: bool) -> None:
        """A new study: clear; ``live`` redraws as points arrive (this view is shown)."""
        self.metric_name = metric
        self._points = {}
        self._dirty = False
        self.range_plot.clear()
        self.range_plot.setLabel("left", "training loss")
        self.range_note.setText("")
        if live:
            self._timer.start()
        else:
            self._timer.stop()

    def step(self, trial_id: str, point: dict[str, Any], event: Any) -> None:
        """A step of a trial that sweeps the LR: its (LR, loss) joins the curve."""
        if "lr" in (point or {}):
            return
        lr, loss = float(event["lr"]), event.get("loss")
        if lr > 0 and isinstance(loss, (int, float)) and math.isfinite(loss):
            self._points.setdefault(trial_id, []).append((lr, float(loss)))
            self._dirty = True

    def finished(self, point: dict[str, Any], record: dict[str, Any]) -> None:
        """A trial ended: a run at one LR adds its (LR, metric) point."""
        lr = (point or {}).get("lr")
        value = (record.get("metrics") or {}).get(self.metric_name)
        if isinstance(lr, (int, float)) and lr > 0 and isinstance(value, (int, float)) and math.isfinite(value):
            self._points.setdefault(_AT_ONE_LR, []).append((float(lr), float(value)))
            self._dirty = True
            self.range_plot.setLabel("left", self.metric_name)

    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for item in list(self.range_plot.listDataItems()):
            if getattr(item, "_lrbench_raw", False):
                self.range_plot.removeItem(item)
        for trial_id, pts in self._points.items():
            arr = np.asarray(sorted(pts))
            if trial_id == _AT_ONE_LR:
                item = self.range_plot.plot(arr[:, 0], arr[:, 1], pen=None, symbol="o", symbolSize=8,
                                            symbolBrush=pg.mkBrush("#6b7280"))
            else:
                item = self.range_plot.plot(arr[:, 0], arr[:, 1], pen=pg.mkPen("#9ca3af", width=1.2), name="loss")
            item._lrbench_raw = True

    def conclude(self, tuner: dict[str, Any]) -> None:
        """The study ended: mark what the tuner concluded (its summary)."""
        self._timer.stop()
        self.redraw()
        if "per_lr" in tuner:
            self._show_per_lr(tuner)
        else:
            self._show_suggestions(tuner)

    def _show_suggestions(self, tuner: dict[str, Any]) -> None:
        """A range test's suggested LRs on its smoothed loss."""
        curve = tuner.get("curve") or {}
        smoothed = curve.get("smoothed") or curve.get("loss")
        if curve.get("lr") and smoothed:
            lrs = np.asarray(curve["lr"], dtype=float)
            losses = np.asarray(smoothed, dtype=float)
            ok = (lrs > 0) & np.isfinite(losses)
            self.range_plot.plot(lrs[ok], losses[ok], pen=pg.mkPen("#1f77b4", width=2.5), name="smoothed loss")
        notes = []
        chosen = tuner.get("chosen")
        for i, (name, info) in enumerate((tuner.get("suggestions") or {}).items()):
            lr = info.get("lr") if isinstance(info, dict) else info
            why = (info.get("why") or info.get("rule") or "") if isinstance(info, dict) else ""
            if not isinstance(lr, (int, float)) or not lr > 0:
                notes.append(f"{name}: none")
                continue
            color = _SUGGESTION_COLORS.get(name, PALETTE[(i + 4) % len(PALETTE)])
            line = pg.InfiniteLine(pos=math.log10(lr), angle=90,
                                   pen=pg.mkPen(color, width=3 if name == chosen else 2, style=Qt.PenStyle.DashLine),
                                   label=f"{name} {lr:.2g}", labelOpts={"position": 0.92 - 0.08 * i, "color": color})
            self.range_plot.addItem(line)
            star = " ★ chosen" if name == chosen else ""
            notes.append(f"<b style='color:{color}'>{name}</b> {lr:.3g}{star}" + (f" — {why}" if why else ""))
        if tuner.get("why"):
            notes.append(str(tuner["why"]))
        for warning in tuner.get("warnings") or []:
            notes.append(f"<span style='color:#b45309'>{warning}</span>")
        self.range_note.setText("<br>".join(notes))

    def _show_per_lr(self, tuner: dict[str, Any]) -> None:
        """A value range test: the metric of each LR's run, the range that trains well shaded."""
        rows = [r for r in tuner.get("per_lr") or [] if isinstance(r.get("lr"), (int, float)) and r["lr"] > 0]
        self.range_plot.clear()
        self.range_plot.setLabel("left", self.metric_name)
        scored = [r for r in rows if isinstance(r.get("value"), (int, float))]
        if scored:
            xs = np.asarray([r["lr"] for r in scored])
            ys = np.asarray([r["value"] for r in scored])
            brushes = [pg.mkBrush("#2e7d32" if r.get("good") else "#9ca3af") for r in scored]
            self.range_plot.plot(xs, ys, pen=pg.mkPen("#6b7280", width=1), symbol="o", symbolSize=9,
                                 symbolBrush=brushes, name=f"{self.metric_name} after each short run")
        failed = [r["lr"] for r in rows if r.get("status") in (TrialStatus.DIVERGED, TrialStatus.FAILED)]
        if failed:
            top = max((r["value"] for r in scored), default=1.0)
            self.range_plot.plot(np.asarray(failed), np.full(len(failed), top), pen=None, symbol="x", symbolSize=12,
                                 symbolBrush=pg.mkBrush("#c62828"), symbolPen=pg.mkPen("#c62828"), name="diverged")
        rng = tuner.get("lr_range")
        notes = []
        if rng:
            region = pg.LinearRegionItem(values=(math.log10(rng[0]), math.log10(rng[1])), movable=False,
                                         brush=pg.mkBrush(46, 125, 50, 40))
            self.range_plot.addItem(region)
            best = tuner.get("best_lr")
            notes.append(f"<b style='color:#2e7d32'>trains well</b> from {rng[0]:.3g} to {rng[1]:.3g}"
                         + (f"; best {best:.3g}" if isinstance(best, (int, float)) else ""))
        if tuner.get("why"):
            notes.append(str(tuner["why"]))
        self.range_note.setText("<br>".join(notes))
