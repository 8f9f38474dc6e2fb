"""The views behind one tab bar, what they analyse (the selection's studies, the selected
trials, or one study), and the export of the view shown as PNG, SVG or CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QMenu, QMessageBox, QTabWidget, QToolButton, QVBoxLayout, QWidget

from lrbench_gui.qt.plot_style import is_dark
from lrbench_gui.qt.results.common import View
from lrbench_gui.qt.results.compare import CompareView
from lrbench_gui.qt.results.curves import CurvesView
from lrbench_gui.qt.results.lr_view import MetricVsLrView
from lrbench_gui.qt.results.parallel import ParallelView
from lrbench_gui.qt.results.param_view import MetricVsParamView

__all__ = ["ResultsViews", "SCOPE_SELECTION", "SCOPE_SELECTED"]

#: analyse every trial of the studies the selected trials belong to
SCOPE_SELECTION = "selection"
#: analyse the selected trials only
SCOPE_SELECTED = "selected"

#: the views, in their tabs' order: (attribute name, class)
_VIEWS: tuple[tuple[str, type[View]], ...] = (("curves", CurvesView), ("lr_view", MetricVsLrView),
                                             ("param_view", MetricVsParamView), ("parallel", ParallelView),
                                             ("compare", CompareView))


class ResultsViews(QWidget):
    """The analysis views. ``scopeChanged`` asks the panel to load the rows of :meth:`scope`;
    the panel answers with :meth:`set_selection` and :meth:`set_analysis`. A view that is not
    shown is brought up to date when its tab is opened (parameter importance costs seconds).
    Each view (its plots) is made when it is first needed: its tab shown, its data set while it
    is the current tab, or the attribute read; until then its tab holds an empty page."""

    scopeChanged = Signal()
    exported = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Analyse:", self))
        self.scope_combo = QComboBox(self)
        self.scope_combo.setMinimumContentsLength(16)
        self.scope_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scope_combo.setToolTip("What the Metric vs LR, Metric vs parameter and Parallel views analyse; "
                                    "Curves and Compare always show the selected trials")
        self.scope_combo.addItem("the selected trials' studies", SCOPE_SELECTION)
        self.scope_combo.addItem("only the selected trials", SCOPE_SELECTED)
        bar.addWidget(self.scope_combo, 1)
        self.export_button = QToolButton(self)
        self.export_button.setText("Export view")
        self.export_button.setToolTip("Save the view shown as an image (PNG, SVG) or its numbers (CSV)")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for text, suffix in (("PNG image…", ".png"), ("SVG image…", ".svg"), ("CSV data…", ".csv")):
            menu.addAction(text, lambda suffix=suffix: self._export_clicked(suffix))
        self.export_button.setMenu(menu)
        bar.addWidget(self.export_button)

        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self._pages: dict[str, QWidget] = {}  # the tab pages, by view name; each holds its view once made
        self._built: dict[str, View] = {}
        for name, cls in _VIEWS:
            page = self._pages[name] = QWidget(self.tabs)
            QVBoxLayout(page).setContentsMargins(0, 0, 0, 0)
            self.tabs.addTab(page, cls.title)
        self._pending: dict[str, Callable[[], None]] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.tabs, 1)
        self.scope_combo.currentIndexChanged.connect(lambda _: self.scopeChanged.emit())
        self.tabs.currentChanged.connect(self._tab_shown)

    # The views, made on first use.

    def _view(self, name: str) -> View:
        view = self._built.get(name)
        if view is None:
            page = self._pages[name]
            view = self._built[name] = dict(_VIEWS)[name](page)
            if is_dark():  # its plots follow the theme; its titles and text too
                view.theme_changed(True)
            page.layout().addWidget(view)
        return view

    curves = property(lambda self: self._view("curves"), doc="The :class:`CurvesView`.")
    lr_view = property(lambda self: self._view("lr_view"), doc="The :class:`MetricVsLrView`.")
    param_view = property(lambda self: self._view("param_view"), doc="The :class:`MetricVsParamView`.")
    parallel = property(lambda self: self._view("parallel"), doc="The :class:`ParallelView`.")
    compare = property(lambda self: self._view("compare"), doc="The :class:`CompareView`.")

    def views(self) -> list[View]:
        """Every view (made now if not yet)."""
        return [self._view(name) for name, _ in _VIEWS]

    def _current_name(self) -> str:
        page = self.tabs.currentWidget()
        return next(name for name, p in self._pages.items() if p is page)

    def show_view(self, view: View) -> None:
        self.tabs.setCurrentWidget(view.parentWidget())

    def current_view(self) -> View:
        return self._view(self._current_name())

    # What is analysed.

    def scope(self) -> str:
        """:data:`SCOPE_SELECTION`, :data:`SCOPE_SELECTED` or a study id."""
        return self.scope_combo.currentData()

    def set_scope(self, scope: str) -> None:
        i = self.scope_combo.findData(scope)
        if i >= 0:
            self.scope_combo.setCurrentIndex(i)

    def set_studies(self, studies: list[tuple[str, str]]) -> None:
        """The studies one can choose to analyse: (id, label), newest first."""
        current = self.scope()
        self.scope_combo.blockSignals(True)
        while self.scope_combo.count() > 2:
            self.scope_combo.removeItem(2)
        for sid, label in studies:
            self.scope_combo.addItem(f"study: {label}", sid)
            self.scope_combo.setItemData(self.scope_combo.count() - 1, sid, 3)  # the tooltip: its id
        i = self.scope_combo.findData(current)
        self.scope_combo.setCurrentIndex(i if i >= 0 else 0)
        self.scope_combo.blockSignals(False)

    # Data in.

    def _apply(self, name: str, update: Callable[[], None]) -> None:
        if name == self._current_name():
            self._pending.pop(name, None)
            update()
        else:
            self._pending[name] = update

    def set_selection(self, items: list[tuple[str, dict, dict]], labels: dict[str, str]) -> None:
        """The selected trials: (id, analysis row, curves) each, and their short labels."""
        self._apply("curves", lambda: self.curves.set_data(items, labels))
        self._apply("compare", lambda: self.compare.set_data(items, labels))

    def set_analysis(self, rows: list[dict[str, Any]], range_tests: list[dict[str, Any]]) -> None:
        """The rows (and the tasks' range tests) the across-trial views analyse."""
        self._apply("lr_view", lambda: self.lr_view.set_data(rows, range_tests))
        self._apply("param_view", lambda: self.param_view.set_data(rows))
        self._apply("parallel", lambda: self.parallel.set_data(rows))

    def flush(self) -> None:
        """Bring every view up to date now (exports of all views, tests)."""
        for name, update in list(self._pending.items()):
            self._pending.pop(name, None)
            update()

    def _tab_shown(self, _: int) -> None:
        name = self._current_name()
        self._view(name)  # the tab opened shows its view, with data or without
        update = self._pending.pop(name, None)
        if update is not None:
            update()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._tab_shown(self.tabs.currentIndex())

    # Export.

    def export_view(self, path: str | Path, view: View | None = None) -> Path:
        """``view`` (default: the one shown) to ``path``: CSV by a ``.csv`` suffix, else an image."""
        view = view or self.current_view()
        update = self._pending.pop(next((n for n, v in self._built.items() if v is view), ""), None)
        if update is not None:
            update()
        path = Path(path)
        out = view.export_csv(path) if path.suffix.lower() == ".csv" else view.export_image(path)
        self.exported.emit(str(out))
        return out

    def _export_clicked(self, suffix: str) -> None:
        view = self.current_view()
        title = view.title.replace("&&", "&")
        name = title.lower().replace(" & ", "-and-").replace(" ", "-")
        kinds = {".png": "PNG image (*.png)", ".svg": "SVG image (*.svg)", ".csv": "CSV (*.csv)"}
        path, _ = QFileDialog.getSaveFileName(self, f"Export {title}", f"lrbench-{name}{suffix}", kinds[suffix])
        if not path:
            return
        if not Path(path).suffix:
            path += suffix
        try:
            self.export_view(path, view)
        except OSError as exc:
            QMessageBox.warning(self, "Export", f"Could not write {path}: {exc}")
