"""What the Results views share: the trial and family colours, themed plots, a side legend
that toggles curves, and the base of a view (its figure exported as PNG, SVG or CSV)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLayout, QListWidget, QListWidgetItem, QVBoxLayout,
                               QWidget)

from lrbench_gui.qt.plot_style import colours, new_plot

__all__ = ["trial_colour", "family_colours", "themed_plot", "LegendList", "View"]

_FALLBACK = ("#3280dd", "#d55753", "#399e43", "#9065d0", "#d77600", "#009ca6", "#c35aa4", "#939300")


def _palette() -> tuple[str, ...]:
    try:
        from lrbench_gui.qt.identity import PALETTE
    except ImportError:  # pragma: no cover - identity.py is part of the app
        return _FALLBACK
    return tuple(PALETTE)


def trial_colour(trial_id: str) -> str:
    """The trial's colour in every panel (:func:`lrbench_gui.qt.identity.trial_colour`)."""
    try:
        from lrbench_gui.qt.identity import trial_colour as colour
    except ImportError:  # pragma: no cover
        return _FALLBACK[hash(trial_id) % len(_FALLBACK)]
    return colour(trial_id)


def family_colours(families: Iterable[str]) -> dict[str, str]:
    """One colour per family, by its sorted place (the same families get the same colours)."""
    palette = _palette()
    return {f: palette[i % len(palette)] for i, f in enumerate(sorted(set(families)))}


def themed_plot(parent: QWidget | None, title: str = "", *, left: str = "", bottom: str = "",
                log_x: bool = False, log_y: bool = False) -> pg.PlotWidget:
    """A plot of :func:`lrbench_gui.qt.plot_style.new_plot` (the theme's colours, log axes
    labelled by decades; ``apply_theme`` restyles it on a switch); no legend on the data: the
    views list their curves beside the plot."""
    plot = new_plot(parent, None, bottom=bottom or None, left=left or None, log_x=log_x, log_y=log_y)
    plot.setMinimumSize(140, 110)
    plot._results_title = title  # re-set in the theme's text colour by View.theme_changed
    if title:
        plot.setTitle(title, color=colours()["foreground"], size="9pt")
    return plot


def _swatch(colour: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(colour))
    return QIcon(pix)


def _render_svg(widget: QWidget, path: Path) -> None:
    """``widget`` and its children drawn as vectors into an SVG file (a temporary name, then
    renamed): as the live plot's export, through Qt's generator (pyqtgraph's SVG exporter
    cannot read what this Qt writes), for a widget holding several plots."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    tmp = path.with_name(path.name + ".tmp")
    gen = QSvgGenerator()
    gen.setFileName(str(tmp))
    gen.setSize(widget.size())
    gen.setViewBox(widget.rect())
    gen.setTitle("lrbench results view")
    painter = QPainter(gen)
    try:
        QWidget.render(widget, painter, QPoint())
    finally:
        painter.end()
    tmp.replace(path)


class LegendList(QListWidget):
    """The legend beside a plot: one checkable line per curve, in its colour; unticking one
    hides it (``toggled``), and the full label is its tooltip."""

    toggled = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumWidth(180)
        self.setMinimumWidth(90)
        self.setUniformItemSizes(True)
        self.itemChanged.connect(lambda item: self.toggled.emit(item.data(Qt.ItemDataRole.UserRole),
                                                                item.checkState() == Qt.CheckState.Checked))

    def set_entries(self, entries: Iterable[tuple[str, str, str, str]]) -> None:
        """``(key, label, colour, tooltip)`` per curve; a key that was unticked stays unticked."""
        hidden = self.hidden_keys()
        self.blockSignals(True)
        self.clear()
        for key, label, colour, tip in entries:
            item = QListWidgetItem(_swatch(colour), label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(tip or label)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if key in hidden else Qt.CheckState.Checked)
            self.addItem(item)
        self.blockSignals(False)

    def hidden_keys(self) -> set[str]:
        return {self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())
                if self.item(i).checkState() != Qt.CheckState.Checked}

    def keys(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]


def refill_combo(combo: QComboBox, names: list[str], default: str | None = None) -> None:
    """``combo``'s items replaced by ``names`` without a signal: the current choice kept when it
    is still there, else ``default`` when it is there."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    elif default in names:
        combo.setCurrentText(default)
    combo.blockSignals(False)


class View(QWidget):
    """A Results view: ``figure`` (the widget exported as an image), ``csv_table()`` (what its
    CSV holds) and ``redraw()``; it redraws its text in the theme's colours on a switch."""

    title = ""
    #: emitted after each redraw (tests wait on it)
    drawn = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dark = False
        self.figure: QWidget = self

    def lay_out(self, bar: QLayout, body: QWidget, legend: QWidget | None = None, note: str = "") -> None:
        """The view's layout: ``bar`` on top, ``body`` (with ``legend`` at its right) and the
        wrapped ``self.note`` line under it."""
        self.note = QLabel(note, self)
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(body, 1)
        if legend is not None:
            row.addWidget(legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addLayout(row, 1)
        layout.addWidget(self.note)

    @property
    def text_colour(self) -> str:
        return colours(self.dark)["foreground"]

    def plots(self) -> list[pg.PlotWidget]:
        return self.figure.findChildren(pg.PlotWidget) if self.figure is not self else self.findChildren(pg.PlotWidget)

    def theme_changed(self, dark: bool) -> None:
        self.dark = dark
        for plot in self.plots():
            title = getattr(plot, "_results_title", "")
            if title:
                plot.setTitle(title, color=self.text_colour, size="9pt")
        self.redraw()

    def redraw(self) -> None:
        raise NotImplementedError

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        raise NotImplementedError

    def export_image(self, path: str | Path) -> Path:
        """The view's plots as one PNG (or another raster format by the suffix) or SVG."""
        path = Path(path)
        if path.suffix.lower() == ".svg":
            _render_svg(self.figure, path)
            return path
        tmp = path.with_name(path.name + ".tmp" + path.suffix)
        if not self.figure.grab().save(str(tmp)):
            raise OSError(f"cannot write an image to {path}; choose a .png, .jpg or .svg file in a folder you can write")
        tmp.replace(path)
        return path

    def export_csv(self, path: str | Path) -> Path:
        """The numbers the view draws, one row each."""
        path = Path(path)
        header, rows = self.csv_table()
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        tmp.replace(path)
        return path
