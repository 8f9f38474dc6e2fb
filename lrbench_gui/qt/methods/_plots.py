"""What the Methods panel's views share: tolerant readers of a summary (a running study's summary
holds None values and empty lists), the compact log axes, a plot factory and the view base class.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QWidget

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.plot_style import LogAxis, is_dark, outside_legend, style_plot

__all__ = ["MethodView", "CompactAxis", "make_plot", "room_for_legend", "info_label", "num", "pos", "as_dict",
           "as_list", "tokens_text", "viridis", "fmt_g", "TEXT", "TEXT_DARK", "GRID_ALPHA"]

TEXT = "#374151"
TEXT_DARK = "#d1d5db"
GRID_ALPHA = 0.2


def num(x: Any) -> float | None:
    """``x`` as a finite float, or None (None, NaN, strings, booleans all read as missing)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def pos(x: Any) -> float | None:
    """``x`` as a positive finite float (a value a log axis can show), or None."""
    v = num(x)
    return v if v is not None and v > 0 else None


def as_dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else []


def tokens_text(tokens: float) -> str:
    """``20480`` -> ``20.5k``, ``3.2e6`` -> ``3.2M``."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if tokens >= scale:
            return f"{tokens / scale:.3g}{unit}"
    return f"{tokens:.0f}"


def viridis(i: int, n: int) -> str:
    """The i-th of n colours along viridis (its dark-to-green part: yellow does not read on white)."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    t = (i / max(1, n - 1)) * 0.85
    k = min(len(stops) - 2, int(t * (len(stops) - 1)))
    f = t * (len(stops) - 1) - k
    rgb = [round(a + (b - a) * f) for a, b in zip(stops[k], stops[k + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)



class CompactAxis(LogAxis):
    """The app's log axis (:class:`lrbench_gui.qt.plot_style.LogAxis`: decades, or 1-2-5 over a
    short span, as plain numbers such as ``0.003`` or ``40k``) with this view's formatter."""

    def __init__(self, orientation: str, fmt: Callable[[float], str] | None = None) -> None:
        super().__init__(orientation, fmt)


LEGEND_OFFSETS = {"top-right": (-8, 8), "top-left": (8, 8), "bottom-left": (8, -8), "bottom-right": (-8, -8)}


def make_plot(parent: QWidget, title: str, bottom: str, left: str, *, log_x: bool = False, log_y: bool = False,
          x_fmt: Callable[[float], str] | None = None, y_fmt: Callable[[float], str] | None = None,
          legend: str = "top-right") -> pg.PlotWidget:
    axes = {"bottom": CompactAxis("bottom", x_fmt), "left": CompactAxis("left", y_fmt)}
    plot = pg.PlotWidget(parent, axisItems=axes)
    plot.setTitle(title, size="10pt")
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)
    plot.setLabel("bottom", bottom)
    plot.setLabel("left", left)
    plot.setLogMode(x=log_x, y=log_y)
    # under the axis, not over the data: the plots keep their width in a 1024 px window
    # (``legend`` is kept for callers; "none": no legend)
    if legend != "none":
        outside_legend(plot, where="bottom", columns=2)
    plot.setMinimumSize(260, 200)
    style_plot(plot)
    return plot


def room_for_legend(plot: pg.PlotWidget, ys: list[float], top: float = 0.35) -> None:
    """Fit the y range to ``ys`` with a little room above (the legend sits beside the plot now,
    so ``top`` is at most 0.08 of the span)."""
    top = min(top, 0.08)
    ys = [y for y in ys if y is not None and math.isfinite(y)]
    if not ys:
        return
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    plot.setYRange(lo - 0.05 * span, hi + top * span, padding=0)


def info_label(parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setContentsMargins(6, 2, 6, 2)
    return label


class MethodView(QWidget):
    """Base of the Methods panel's views (one per ``Tuner.view`` key, :data:`lrbench_gui.qt.methods.VIEWS`):
    the summary drawn last, the info line, the guard against a summary it cannot read.

    A subclass builds its plots in ``__init__(registry, parent)``, lists them in :meth:`plots`
    and draws a summary in :meth:`_draw`, returning the info lines."""

    #: the ``Tuner.view`` key it draws
    key = ""

    # the user asked for the shown study again with some tuner parameters changed:
    # (tuner parameters to change, a suffix for the new study's name)
    repeatRequested = Signal(dict, str)

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.summary: dict[str, Any] = {}
        self.text_color = TEXT_DARK if is_dark() else TEXT  # a view made in the dark theme starts dark
        self.info = info_label(self)

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry

    def set_can_start(self, can: bool) -> None:
        """Whether a study can start now (a view with a "run again" button enables it)."""

    def set_summary(self, summary: dict[str, Any] | None) -> None:
        """Draw ``summary`` (the tuner's ``summary_json()``), as much of it as there is."""
        self.summary = summary if isinstance(summary, dict) else {}
        for plot in self.plots():
            plot.clear()
        try:
            lines = self._draw(self.summary)
        except Exception as exc:  # noqa: BLE001 - a tuner's summary of a newer version: say so, draw on
            lines = [f"Could not draw all of this summary: {type(exc).__name__}: {exc}"]
        warnings = [str(w) for w in as_list(self.summary.get("warnings"))]
        self.info.setText("\n".join([*lines, *(f"warning: {w}" for w in warnings)]))

    def theme_changed(self, dark: bool) -> None:
        self.text_color = TEXT_DARK if dark else TEXT
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



def fmt_g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"
