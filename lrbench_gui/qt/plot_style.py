"""How every plot of the app looks: the theme's colours, log axes whose ticks read, and legends
that stay off the data.

* :func:`new_plot` makes a ``PlotWidget`` in the current theme (no panel hard-codes a white
  background: a plot made after the theme was switched, such as a Methods view drawn later, is
  dark too); :func:`style_plot` restyles one, and
  :func:`lrbench_gui.qt.settings_dialog.apply_theme` calls it for every plot of the window.
* :class:`LogAxis` labels a log axis by its decades (``1e-4``, ``1e-3``, ``0.01``, ...) or, over less than
  a decade or two, by its 1-2-5 values, never every minor tick (pyqtgraph's ``1 0.9 0.8 0.7``).
* :func:`outside_legend` puts a plot's legend to the right of the data, in the plot's layout;
  :class:`CurveList` is the side list for plots with many curves (a swatch and a label per
  curve, the full label on hover, a check box that hides the curve), which a toggle shows or hides.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QWidget

__all__ = ["LIGHT", "DARK", "colours", "is_dark", "set_dark", "new_plot", "style_plot", "LogAxis", "log_axes",
           "outside_legend", "CurveList", "tick_text", "themed", "theme_style_sheets", "DARK_TWINS"]

#: the plots' colours per theme: background, text/axes, the legend's box and border, faint text
LIGHT = {"background": "#ffffff", "foreground": "#374151", "legend": (255, 255, 255, 225), "border": "#d1d5db",
         "muted": "#4b5563"}
DARK = {"background": "#15181c", "foreground": "#d1d5db", "legend": (30, 34, 40, 225), "border": "#4b5563",
        "muted": "#9ca3af"}

_state = {"dark": False}


def set_dark(dark: bool) -> None:
    """Remember the theme for plots made from now on (:func:`apply_theme` calls it)."""
    _state["dark"] = bool(dark)


def is_dark() -> bool:
    return _state["dark"]


def colours(dark: bool | None = None) -> dict[str, Any]:
    return DARK if (is_dark() if dark is None else dark) else LIGHT


def tick_text(x: float) -> str:
    """A tick value as a short plain number: ``0.05``, ``1e-3``, ``3e-5``, ``40k``, ``1.5M``."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    ax = abs(x)
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if ax >= scale * 10:
            return f"{x / scale:g}{unit}"
    if ax >= 1e-2:  # below, ``1e-3`` rather than ``0.001``: a log axis's labels keep one width
        return f"{x:.3g}"
    mantissa, exp = f"{x:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exp)}"


class LogAxis(pg.AxisItem):
    """An axis with plain tick labels (no SI prefix scaling) whose log mode is labelled by
    decades, or by 1-2-5 over a short span; the other minor ticks are drawn, unlabelled."""

    def __init__(self, orientation: str, fmt: Callable[[float], str] | None = None, **kwargs: Any) -> None:
        super().__init__(orientation, **kwargs)
        self.fmt = fmt or tick_text
        self.enableAutoSIPrefix(False)
        self._labelled: tuple[float, ...] = (1.0,)

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:
        lo, hi = sorted((minVal, maxVal))
        span = hi - lo
        if not (math.isfinite(lo) and math.isfinite(hi)) or span <= 0:
            return super().logTickValues(minVal, maxVal, size, stdTicks)
        # how many labels fit: one per ~60 px across, ~28 px up
        room = max(2, int(size / (60 if self.orientation in ("bottom", "top") else 28)))
        decades = list(range(math.floor(lo), math.ceil(hi) + 1))
        if span > room:  # many decades: every k-th decade
            k = math.ceil(span / room)
            major = [d for d in decades if d % k == 0 and lo <= d <= hi]
            return [(float(k), major), (None, [d for d in decades if lo <= d <= hi and d % k])]
        inside = len([d for d in decades if lo <= d <= hi])
        # three decades or more: the decades; less: 1-2-5; under half a decade: 1-2-3-5
        self._labelled = (1.0,) if inside >= 3 else (1.0, 2.0, 5.0) if span >= 0.5 else (1.0, 2.0, 3.0, 5.0)
        major, minor = [], []
        for d in decades:
            for m in range(1, 10):
                v = d + math.log10(m)
                if lo <= v <= hi:
                    (major if float(m) in self._labelled else minor).append(v)
        if len(major) < 2:  # less than a factor of two or three: round values, spaced evenly
            return self._linear_in_log(lo, hi, size)
        return [(1.0, major), (None, minor)]

    def _linear_in_log(self, lo: float, hi: float, size: float) -> list:
        """Ticks at round values (0.8, 0.9, 1) between ``10**lo`` and ``10**hi``, as log values."""
        a, b = 10.0 ** lo, 10.0 ** hi
        levels = []
        for i, (spacing, offset) in enumerate(self.tickSpacing(a, b, size)[:2]):
            start = math.ceil((a - offset) / spacing) * spacing + offset
            values = [start + k * spacing for k in range(int((b - start) / spacing) + 1)]
            levels.append((1.0 if i == 0 else None, [math.log10(v) for v in values if v > 0]))
        return levels

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if spacing is None:  # the minor ticks: marks only
            return [""] * len(values)
        return [self.fmt(10.0 ** v) for v in values]


def log_axes(fmt_x: Callable[[float], str] | None = None, fmt_y: Callable[[float], str] | None = None) -> dict[str, LogAxis]:
    return {"bottom": LogAxis("bottom", fmt_x), "left": LogAxis("left", fmt_y)}


def new_plot(parent: QWidget | None = None, title: str | None = None, *, bottom: str | None = None,
             left: str | None = None, log_x: bool = False, log_y: bool = False,
             axisItems: dict[str, pg.AxisItem] | None = None, grid: float = 0.2) -> pg.PlotWidget:
    """A plot in the current theme with :class:`LogAxis` axes (unless ``axisItems`` says others)."""
    plot = pg.PlotWidget(parent, axisItems=axisItems or log_axes())
    if title:
        plot.setTitle(title, size="10pt")
    plot.showGrid(x=True, y=True, alpha=grid)
    if bottom:
        plot.setLabel("bottom", bottom)
    if left:
        plot.setLabel("left", left)
    plot.setLogMode(x=log_x, y=log_y)
    style_plot(plot)
    return plot


def style_plot(plot: pg.PlotWidget, dark: bool | None = None) -> None:
    """Give ``plot`` the theme's background, axes, title and legend colours."""
    c = colours(dark)
    plot.setBackground(c["background"])
    item = plot.getPlotItem()
    pen = pg.mkPen(c["foreground"])
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        if axis is not None:
            axis.setPen(pen)
            axis.setTextPen(pen)
            if axis.label is not None and axis.labelText:
                axis.setLabel(axis.labelText, axis.labelUnits, **{**axis.labelStyle, "color": c["foreground"]})
    title = item.titleLabel
    if title is not None and title.text:
        title.setText(title.text, color=c["foreground"], size=title.opts.get("size", "10pt"))
        _free_width(title)
    legend = getattr(item, "legend", None)
    if legend is not None:
        style_legend(legend, dark)


def _free_width(label: pg.LabelItem) -> None:
    """Let a plot's title be narrower than its text (it is cut at the edges) rather than push
    the plot past its widget: pyqtgraph makes the text's width the label's minimum at every
    ``setText``."""
    label.updateMin = lambda: label.setMinimumHeight(label.itemRect().height())
    label.setMinimumWidth(0)


def style_legend(legend: pg.LegendItem, dark: bool | None = None) -> None:
    c = colours(dark)
    legend.setBrush(pg.mkBrush(*c["legend"]))
    legend.setPen(pg.mkPen(c["border"]))
    legend.setLabelTextColor(c["foreground"])
    for _, label in legend.items:  # pyqtgraph only records the colour: draw the labels again in it
        label.setText(label.text, color=c["foreground"])


class _SideLegend(pg.LegendItem):
    """A legend that lives in a layout: it asks for its size instead of placing itself at the
    corner (pyqtgraph's ``updateSize`` sets its geometry to the origin)."""

    _outside = True

    def updateSize(self) -> None:  # noqa: N802 - pyqtgraph's name
        from PySide6.QtCore import QSizeF

        self.layout.invalidate()
        hint = self.layout.effectiveSizeHint(Qt.SizeHint.PreferredSize)
        width, height = hint.width() + 8, hint.height() + 4
        self.setMinimumSize(QSizeF(min(width, 60.0), 0))  # a narrow plot squeezes it, not its data
        self.setPreferredSize(QSizeF(width, height))
        self.setMaximumSize(QSizeF(width, max(height, 1.0)))
        self.updateGeometry()
        owner = self.parentLayoutItem()  # the plot's layout: lay it out again for the new size
        if owner is not None and owner.isLayout():
            owner.invalidate()
            owner.activate()


def outside_legend(plot: pg.PlotWidget, size: str = "8pt", where: str = "right", columns: int = 3) -> pg.LegendItem:
    """A legend beside the plot's data (in the plot's layout, so it never covers a curve): to
    the right, or below the axis in ``columns`` columns (for a plot that needs its width);
    curves added with a ``name`` join it, as with ``addLegend``."""
    item = plot.getPlotItem()
    if getattr(item, "legend", None) is not None and getattr(item.legend, "_outside", False):
        return item.legend
    legend = _SideLegend(offset=None, labelTextSize=size, verSpacing=-4)
    if where == "bottom":
        legend.setColumnCount(columns)
        item.layout.addItem(legend, 4, 1, Qt.AlignmentFlag.AlignLeft)
    else:
        item.layout.addItem(legend, 2, 3, Qt.AlignmentFlag.AlignTop)
        item.layout.setColumnStretchFactor(3, 0)
    item.legend = legend
    style_legend(legend)
    return legend


class CurveList(QListWidget):
    """The side list of a plot's curves: a swatch and a short label per curve, the full label
    on hover; unticking a curve hides it (``toggled(key, shown)``)."""

    toggled = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("curveList")
        self.setMinimumWidth(150)
        self.setMaximumWidth(280)
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._items: dict[str, QListWidgetItem] = {}
        self.itemChanged.connect(self._changed)

    def add(self, key: str, label: str, colour: str, tooltip: str | None = None) -> None:
        from lrbench_gui.qt.widgets import swatch_icon

        item = self._items.get(key)
        if item is None:
            item = QListWidgetItem(swatch_icon(colour), label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.blockSignals(True)
            self.addItem(item)
            self.blockSignals(False)
            self._items[key] = item
        else:
            self.set_label(key, label)
        item.setToolTip(tooltip or label)

    def set_label(self, key: str, label: str, tooltip: str | None = None) -> None:
        item = self._items.get(key)
        if item is not None and item.text() != label:
            self.blockSignals(True)
            item.setText(label)
            if tooltip:
                item.setToolTip(tooltip)
            self.blockSignals(False)

    def remove(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.takeItem(self.row(item))

    def clear(self) -> None:  # noqa: D102 - QListWidget's, plus the index
        self._items = {}
        super().clear()

    def labels(self) -> dict[str, str]:
        return {k: item.text() for k, item in self._items.items()}

    def _changed(self, item: QListWidgetItem) -> None:
        self.toggled.emit(str(item.data(Qt.ItemDataRole.UserRole)), item.checkState() == Qt.CheckState.Checked)


#: light-theme text colours (style sheets, status colours) and their twins on the dark theme
DARK_TWINS = {
    "#111827": "#e5e7eb", "#1f2937": "#e5e7eb", "#374151": "#d1d5db", "#4b5563": "#9ca3af", "#6b7280": "#9ca3af",
    "#c62828": "#f87171", "#b45309": "#fbbf24", "#2e7d32": "#4ade80", "#1d4ed8": "#93c5fd", "#ef6c00": "#fb923c",
    "#0b5cad": "#7ab7ff",
}
_LIGHT_TWINS = {v: k for k, v in DARK_TWINS.items()}


def themed(colour: str, dark: bool | None = None) -> str:
    """``colour`` (a light-theme text colour) as the theme shows it."""
    if is_dark() if dark is None else dark:
        return DARK_TWINS.get(colour.lower(), colour)
    return colour


def _swap(text: str) -> str:
    import re

    return re.sub(r"#[0-9a-fA-F]{6}\b", lambda m: DARK_TWINS.get(m.group(0).lower(), m.group(0)), text)


def _darken(widget: QWidget) -> None:
    """Give ``widget`` the dark twin of its style sheet, keeping the light one to go back to."""
    sheet = widget.styleSheet()
    if not sheet or sheet == widget.property("_darkSheet"):
        return
    swapped = _swap(sheet)
    if swapped != sheet:
        widget.setProperty("_lightSheet", sheet)
        widget.setProperty("_darkSheet", swapped)
        widget.setStyleSheet(swapped)


def _lighten(widget: QWidget) -> None:
    light = widget.property("_lightSheet")
    if light is not None and widget.styleSheet() == widget.property("_darkSheet"):
        widget.setStyleSheet(light)
    widget.setProperty("_lightSheet", None)
    widget.setProperty("_darkSheet", None)


class _StyleSheetWatch(QObject):
    """Keeps a label's style-sheet colours in the dark theme when it sets a new sheet later (a
    status line coloured per status)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.StyleChange and is_dark() and isinstance(obj, QWidget):
            _darken(obj)  # the second StyleChange this causes finds the sheet already dark
        return False


_watch: list[_StyleSheetWatch] = []
_status_light: list[dict[str, str]] = []


def theme_style_sheets(root: QWidget, dark: bool) -> None:
    """Swap the light-theme colours in the style sheets of ``root``'s widgets for their dark
    twins (and back), now and when a label sets a sheet later; the status colours of
    :mod:`lrbench_gui.qt.widgets` follow too."""
    from lrbench_gui.qt import widgets

    tables = (widgets.STATUS_COLORS, widgets.STUDY_STATUS_COLORS)
    if not _status_light:
        _status_light.extend(dict(t) for t in tables)
    for table, light in zip(tables, _status_light):
        table.update({k: DARK_TWINS.get(v.lower(), v) if dark else v for k, v in light.items()})
    if not _watch:
        _watch.append(_StyleSheetWatch())
    for widget in [root, *root.findChildren(QWidget)]:
        if isinstance(widget, QLabel) and not widget.property("_themeWatched"):
            widget.installEventFilter(_watch[0])
            widget.setProperty("_themeWatched", True)
        (_darken if dark else _lighten)(widget)


def _light_defaults() -> None:
    """pyqtgraph's own default is a black plot: the app's plots start light (the theme switch
    sets the options again)."""
    if pg.getConfigOption("background") == "k":
        pg.setConfigOptions(background=LIGHT["background"], foreground=LIGHT["foreground"])


_light_defaults()
