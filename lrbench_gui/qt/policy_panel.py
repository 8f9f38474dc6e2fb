"""The policy visualizer: pick a policy or compose a sequence, tune it, and watch the LR curve.

The left column is the editor: a mode switch (one policy, or a sequence of segments), the policy
picker grouped by family, and the parameter form generated from the policy's schema. The right
side is the plot (LR against step, redrawn as the user types, optional log scale, a hover
readout), the overlay of pinned curves, and the spec JSON with Open/Save.

The editor always edits one *target*: the single policy, or the selected segment of the sequence.
The curve is recomputed from the whole spec through :func:`~lrbench_gui.core.spec.parse_spec`, so
what is drawn is exactly what a saved spec reproduces. Invalid parameters leave the last valid
curve on screen and show the problems under the form.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTabBar,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import ParamError, validate_params
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import PolicySpec, Schedule, SequenceSpec, Spec, SpecError, parse_spec, spec_label
from lrbench_gui.qt.param_form import ParamForm, format_float
from lrbench_gui.qt.widgets import MessageBanner, swatch_icon

__all__ = [
    "PolicyPanel",
    "PolicyPicker",
    "Segment",
    "MAX_POINTS",
    "CURRENT_COLOR",
    "OVERLAY_COLORS",
    "write_text_atomic",
    "sample_steps",
]

#: The most points computed for one curve; longer runs are sampled every k-th step.
MAX_POINTS = 20_000
MAX_TOTAL_STEPS = 100_000_000
CURRENT_COLOR = "#0b5cad"
#: Okabe-Ito and friends: distinguishable for colour-blind readers, readable on white.
OVERLAY_COLORS = ["#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f3c8d", "#8c564b", "#4d4d4d"]
FAMILY_TITLES = {
    "classic": "Classic decay",
    "llm": "LLM era",
    "cyclic": "Cyclic",
    "restart": "Warm restarts",
    "deepspeed": "DeepSpeed",
}
_ROLE_NAME = Qt.ItemDataRole.UserRole


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def sample_steps(total_steps: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """The steps a curve is computed at: every step, or every k-th plus the last one."""
    stride = max(1, math.ceil(total_steps / max_points))
    steps = np.arange(0, total_steps, stride, dtype=np.int64)
    if steps[-1] != total_steps - 1:
        steps = np.append(steps, total_steps - 1)
    return steps


@dataclass
class Segment:
    """One segment of a sequence being edited: a policy, its parameters and its length."""

    name: str
    params: dict[str, Any]
    steps: int


@dataclass
class _Overlay:
    label: str
    spec: dict[str, Any]
    total_steps: int
    x: np.ndarray
    y: np.ndarray
    color: str
    item: pg.PlotDataItem = field(repr=False)


def _defaults(registry: Registry, name: str) -> dict[str, Any]:
    return validate_params(registry.policy(name).Params, {}).model_dump(mode="json")


def _carry_params(registry: Registry, name: str, previous_name: str | None, previous: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``name``, keeping the values the user edited on the previous policy where a
    same-named parameter exists and accepts them (cosine with lr=0.01 -> linear keeps lr=0.01)."""
    values = _defaults(registry, name)
    if previous_name not in registry.policies:
        return values
    old_defaults = _defaults(registry, previous_name)
    model = registry.policy(name).Params
    edited = {k: v for k, v in previous.items() if k in model.model_fields and old_defaults.get(k) != v}
    if not edited:
        return values
    try:
        return validate_params(model, {**values, **edited}).model_dump(mode="json")
    except (ParamError, ValueError):
        return values


def _flatten(spec: Spec, length: int) -> list[Segment]:
    """A (possibly nested) spec as flat segments for a run of ``length`` steps."""
    if isinstance(spec, PolicySpec):
        return [Segment(spec.name, spec.params.model_dump(mode="json"), max(1, length))]
    starts = [0, *spec.boundaries]
    ends = [*spec.boundaries, max(length, spec.boundaries[-1] + 1)]
    out: list[Segment] = []
    for seg, start, end in zip(spec.segments, starts, ends):
        if start >= length and out:
            break
        out.extend(_flatten(seg, min(end, length) - start if end > start else 1))
    return out


class PolicyPicker(QWidget):
    """Every registered policy, grouped by family, with a filter box and a summary line."""

    #: Fires when the current policy changes (a click, the keyboard, or :meth:`select`);
    #: carries the policy's registry name.
    policyPicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter by name, family or summary…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        layout.addWidget(self.filter)
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(2)
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setStretchLastSection(True)
        self.tree.setMinimumHeight(170)
        self.tree.currentItemChanged.connect(self._current_changed)
        layout.addWidget(self.tree, 1)
        self._items: dict[str, QTreeWidgetItem] = {}

    def set_registry(self, registry: Registry) -> None:
        """Rebuild the tree from ``registry``, keeping the current policy if it still exists."""
        keep = self.current_name()
        self.tree.blockSignals(True)
        self.tree.clear()
        self._items = {}
        families: dict[str, list] = {}
        for item in registry.policies.values():
            families.setdefault(getattr(item.obj, "family", "other") or "other", []).append(item)
        order = [f for f in FAMILY_TITLES if f in families] + sorted(f for f in families if f not in FAMILY_TITLES)
        bold = QFont(self.tree.font())
        bold.setBold(True)
        grey = QColor("#6b7280")
        for family in order:
            members = sorted(families[family], key=lambda r: r.name)
            title = FAMILY_TITLES.get(family, family.replace("_", " ").capitalize())
            top = QTreeWidgetItem([title, f"{len(members)}"])
            top.setFont(0, bold)
            top.setForeground(1, grey)
            top.setFlags(top.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            self.tree.addTopLevelItem(top)
            for reg in members:
                child = QTreeWidgetItem([reg.name, reg.summary])
                child.setData(0, _ROLE_NAME, reg.name)
                child.setForeground(1, grey)
                tip = f"<b>{reg.name}</b><br>{reg.summary}<br><span style='color:#6b7280'>plugin {reg.plugin}</span>"
                child.setToolTip(0, tip)
                child.setToolTip(1, tip)
                top.addChild(child)
                self._items[reg.name] = child
            top.setExpanded(True)
        self.tree.blockSignals(False)
        self._apply_filter(self.filter.text())
        if keep in self._items:
            self.select(keep, emit=False)

    def names(self) -> list[str]:
        return list(self._items)

    def current_name(self) -> str | None:
        item = self.tree.currentItem()
        return item.data(0, _ROLE_NAME) if item is not None else None

    def select(self, name: str, *, emit: bool = True) -> bool:
        """Make ``name`` current; False if no such policy. ``emit=False`` stays silent."""
        item = self._items.get(name)
        if item is None:
            return False
        if not emit:
            self.tree.blockSignals(True)
        try:
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
        finally:
            if not emit:
                self.tree.blockSignals(False)
        return True

    def _current_changed(self, current: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        name = current.data(0, _ROLE_NAME) if current is not None else None
        if name:
            self.policyPicked.emit(name)

    def _apply_filter(self, text: str) -> None:
        words = text.lower().split()
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            visible = 0
            for j in range(top.childCount()):
                child = top.child(j)
                hay = f"{child.text(0)} {child.text(1)} {top.text(0)}".lower()
                hide = bool(words) and not all(w in hay for w in words)
                child.setHidden(hide)
                visible += not hide
            top.setHidden(visible == 0)
            if words:
                top.setExpanded(True)


class PolicyPanel(QWidget):
    """The Policies panel; see the module docstring."""

    #: Fires after the current curve was recomputed and redrawn; carries the spec JSON drawn.
    curveChanged = Signal(dict)
    #: Fires when a user action completed (spec saved or opened); carries one line for a status bar.
    statusMessage = Signal(str)

    def __init__(
        self,
        registry: Registry | None = None,
        parent: QWidget | None = None,
        *,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(parent)
        if registry is None:
            from lrbench_gui.plugins import get_registry

            registry = get_registry()
        self._registry = registry
        self._settings = settings
        self._mode = "single"
        self._single_name: str | None = None
        self._single_params: dict[str, Any] = {}
        self._single_total = 1000
        self._segments: list[Segment] = []
        self._seg_index = -1
        self._syncing = False
        self._spec: dict[str, Any] | None = None
        self._label = ""
        self._x = np.zeros(0)
        self._y = np.zeros(0)
        self._overlays: list[_Overlay] = []
        self._boundary_lines: list[pg.InfiniteLine] = []
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(20)
        self._redraw_timer.timeout.connect(self.redraw)

        self._build_ui()
        self.set_registry(registry)

    # construction

    def _build_ui(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(8, 8, 8, 8)
        root.setSpacing(6)
        self.banner = MessageBanner(self)
        root.addWidget(self.banner)

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)
        root.addWidget(splitter, 1)
        splitter.addWidget(self._build_editor())
        splitter.addWidget(self._build_view())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 900])
        self.splitter = splitter

    def _build_editor(self) -> QWidget:
        column = QWidget(self)
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.setSpacing(8)

        self.mode_bar = QTabBar(column)
        self.mode_bar.addTab("Single policy")
        self.mode_bar.addTab("Sequence")
        self.mode_bar.setTabToolTip(0, "Plot one policy")
        self.mode_bar.setTabToolTip(1, "Chain policies: each segment restarts its own clock")
        self.mode_bar.setExpanding(True)
        self.mode_bar.setDrawBase(False)
        self.mode_bar.currentChanged.connect(lambda i: self.set_mode("sequence" if i == 1 else "single"))
        layout.addWidget(self.mode_bar)

        self.sequence_box = QGroupBox("Segments", column)
        seq = QVBoxLayout(self.sequence_box)
        self.segment_list = QTreeWidget(self.sequence_box)
        self.segment_list.setColumnCount(4)
        self.segment_list.setHeaderLabels(["#", "Policy", "Steps", "Starts at"])
        self.segment_list.setRootIsDecorated(False)
        self.segment_list.setUniformRowHeights(True)
        self.segment_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.segment_list.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        self.segment_list.setMaximumHeight(112)
        self.segment_list.currentItemChanged.connect(self._segment_selected)
        seq.addWidget(self.segment_list)
        row = QHBoxLayout()
        row.setSpacing(4)
        self.add_segment_button = QToolButton(self.sequence_box)
        self.add_segment_button.setText("+")
        self.add_segment_button.setToolTip("Add a segment after the last one (a copy of the selected segment)")
        self.add_segment_button.clicked.connect(lambda: self.add_segment())
        self.remove_segment_button = QToolButton(self.sequence_box)
        self.remove_segment_button.setText("−")
        self.remove_segment_button.setToolTip("Remove the selected segment")
        self.remove_segment_button.clicked.connect(lambda: self.remove_segment(self._seg_index))
        up = QToolButton(self.sequence_box)
        up.setText("▲")
        up.setToolTip("Move the segment earlier")
        up.clicked.connect(lambda: self.move_segment(self._seg_index, -1))
        down = QToolButton(self.sequence_box)
        down.setText("▼")
        down.setToolTip("Move the segment later")
        down.clicked.connect(lambda: self.move_segment(self._seg_index, 1))
        for button in (self.add_segment_button, self.remove_segment_button, up, down):
            button.setFixedWidth(28)
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(QLabel("Length", self.sequence_box))
        self.segment_length = QSpinBox(self.sequence_box)
        self.segment_length.setRange(1, MAX_TOTAL_STEPS)
        self.segment_length.setSuffix(" steps")
        self.segment_length.setToolTip(
            "Steps of the selected segment. Boundaries are the running sum of the lengths; the last\n"
            "segment lasts until the end of the run (its length sets the preview's run length)."
        )
        self.segment_length.valueChanged.connect(self._segment_length_changed)
        row.addWidget(self.segment_length)
        seq.addLayout(row)
        self.sequence_box.setVisible(False)
        layout.addWidget(self.sequence_box)

        self.picker_box = QGroupBox("Policy", column)
        pick = QVBoxLayout(self.picker_box)
        self.picker = PolicyPicker(self.picker_box)
        self.picker.policyPicked.connect(self._policy_picked)
        pick.addWidget(self.picker, 1)
        self.policy_info = QLabel(self.picker_box)
        self.policy_info.setWordWrap(True)
        self.policy_info.setTextFormat(Qt.TextFormat.RichText)
        self.policy_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.policy_info.setMinimumHeight(48)
        self.policy_info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        pick.addWidget(self.policy_info)
        layout.addWidget(self.picker_box, 1)

        self.params_box = QGroupBox("Parameters", column)
        params = QVBoxLayout(self.params_box)
        self.form = ParamForm(self.params_box)
        self.form.paramsChanged.connect(self._params_changed)
        self.form.paramsRejected.connect(self._params_rejected)
        params.addWidget(self.form)
        self.curve_error = QLabel(self.params_box)
        self.curve_error.setWordWrap(True)
        self.curve_error.setStyleSheet("color: #c62828;")
        self.curve_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.curve_error.setVisible(False)
        params.addWidget(self.curve_error)
        reset = QPushButton("Reset to defaults", self.params_box)
        reset.clicked.connect(self.form.reset_defaults)
        reset_row = QHBoxLayout()
        reset_row.addStretch(1)
        reset_row.addWidget(reset)
        params.addLayout(reset_row)
        layout.addWidget(self.params_box)

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(column)
        scroll.setMinimumWidth(340)
        return scroll

    def _build_view(self) -> QWidget:
        view = QWidget(self)
        layout = QVBoxLayout(view)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.setSpacing(6)

        bar = QHBoxLayout()
        self.curve_title = QLabel(view)
        self.curve_title.setTextFormat(Qt.TextFormat.RichText)
        self.curve_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.curve_title, 1)
        bar.addWidget(QLabel("Run length", view))
        self.total_steps_spin = QSpinBox(view)
        self.total_steps_spin.setRange(1, MAX_TOTAL_STEPS)
        self.total_steps_spin.setSingleStep(100)
        self.total_steps_spin.setSuffix(" steps")
        self.total_steps_spin.setGroupSeparatorShown(True)
        self.total_steps_spin.setAccelerated(True)
        self.total_steps_spin.setValue(self._single_total)
        self.total_steps_spin.setToolTip("Total optimizer steps of the run (policies like cosine depend on it)")
        self.total_steps_spin.valueChanged.connect(self._total_changed)
        bar.addWidget(self.total_steps_spin)
        self.log_check = QCheckBox("Log scale", view)
        self.log_check.setToolTip("Show the learning rate on a logarithmic axis")
        self.log_check.toggled.connect(self.set_log_scale)
        bar.addWidget(self.log_check)
        self.pin_button = QPushButton("Add to overlay", view)
        self.pin_button.setToolTip("Pin the current curve so that the next one is drawn over it")
        self.pin_button.clicked.connect(lambda: self.pin_current())
        bar.addWidget(self.pin_button)
        layout.addLayout(bar)

        vsplit = QSplitter(Qt.Orientation.Vertical, view)
        vsplit.setChildrenCollapsible(False)
        layout.addWidget(vsplit, 1)

        plot_frame = QWidget(vsplit)
        plot_layout = QVBoxLayout(plot_frame)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.setSpacing(2)
        self.plot = pg.PlotWidget(plot_frame, background="w")
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
        pi.ctrl.logYCheck.toggled.connect(self._log_toggled_from_menu)
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
        plot_layout.addWidget(self.plot, 1)
        self.readout = QLabel("Hover the plot to read step and learning rate", plot_frame)
        self.readout.setStyleSheet("color: #4b5563;")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        plot_layout.addWidget(self.readout)

        bottom = QSplitter(Qt.Orientation.Horizontal, vsplit)
        bottom.setChildrenCollapsible(False)
        overlay_box = QGroupBox("Overlay", bottom)
        ov = QVBoxLayout(overlay_box)
        self.overlay_list = QListWidget(overlay_box)
        self.overlay_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.overlay_list.setToolTip("Pinned curves. Double-click one to edit it again; Delete removes it.")
        self.overlay_list.itemSelectionChanged.connect(self._overlay_selection_changed)
        self.overlay_list.itemDoubleClicked.connect(lambda item: self.load_overlay(self.overlay_list.row(item)))
        ov.addWidget(self.overlay_list, 1)
        self.overlay_hint = QLabel(
            "Press <b>Add to overlay</b> to pin the current curve, then change the policy or its "
            "parameters to compare. Pinned curves keep their own run length.",
            overlay_box,
        )
        self.overlay_hint.setWordWrap(True)
        self.overlay_hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.overlay_hint.setStyleSheet("color: #6b7280; padding: 6px;")
        ov.addWidget(self.overlay_hint, 1)
        remove_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.overlay_list)
        remove_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        remove_key.activated.connect(self._remove_selected_overlays)
        ov_row = QHBoxLayout()
        self.load_overlay_button = QPushButton("Edit", overlay_box)
        self.load_overlay_button.setToolTip("Load the selected pinned curve into the editor")
        self.load_overlay_button.clicked.connect(lambda: self.load_overlay(self.overlay_list.currentRow()))
        self.remove_overlay_button = QPushButton("Remove", overlay_box)
        self.remove_overlay_button.clicked.connect(self._remove_selected_overlays)
        self.clear_overlay_button = QPushButton("Clear", overlay_box)
        self.clear_overlay_button.clicked.connect(self.clear_overlays)
        ov_row.addWidget(self.load_overlay_button)
        ov_row.addWidget(self.remove_overlay_button)
        ov_row.addStretch(1)
        ov_row.addWidget(self.clear_overlay_button)
        ov.addLayout(ov_row)
        self.overlay_box = overlay_box

        spec_box = QGroupBox("Spec (JSON)", bottom)
        sp = QVBoxLayout(spec_box)
        self.spec_view = QPlainTextEdit(spec_box)
        self.spec_view.setReadOnly(True)
        self.spec_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.spec_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        sp.addWidget(self.spec_view, 1)
        sp_row = QHBoxLayout()
        self.copy_button = QPushButton("Copy", spec_box)
        self.copy_button.clicked.connect(self.copy_spec)
        self.open_button = QPushButton("Open spec…", spec_box)
        self.open_button.clicked.connect(self.open_spec_dialog)
        self.save_button = QPushButton("Save spec…", spec_box)
        self.save_button.clicked.connect(self.save_spec_dialog)
        sp_row.addWidget(self.copy_button)
        sp_row.addStretch(1)
        sp_row.addWidget(self.open_button)
        sp_row.addWidget(self.save_button)
        sp.addLayout(sp_row)
        bottom.addWidget(overlay_box)
        bottom.addWidget(spec_box)
        bottom.setSizes([420, 480])
        vsplit.addWidget(plot_frame)
        vsplit.addWidget(bottom)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 1)
        vsplit.setSizes([560, 230])
        self._overlay_selection_changed()
        self._update_overlay_title()
        return view

    # registry

    @property
    def registry(self) -> Registry:
        return self._registry

    def set_registry(self, registry: Registry) -> None:
        """Use ``registry`` (after a plugin reload): rebuild the picker and redraw."""
        self._registry = registry
        self._syncing = True
        try:
            self.picker.set_registry(registry)
        finally:
            self._syncing = False
        names = self.picker.names()
        if self._single_name not in registry.policies:
            if self._single_name is not None:
                self.banner.show_message(
                    f"Policy {self._single_name!r} is no longer registered; showing another one.", "warning"
                )
            self._single_name = "cosine" if "cosine" in names else (names[0] if names else None)
            self._single_params = _defaults(registry, self._single_name) if self._single_name else {}
        self._load_target()
        self.request_redraw()

    # what is being edited

    def mode(self) -> str:
        """``"single"`` or ``"sequence"``."""
        return self._mode

    def _target(self) -> tuple[str | None, dict[str, Any]]:
        if self._mode == "sequence" and 0 <= self._seg_index < len(self._segments):
            seg = self._segments[self._seg_index]
            return seg.name, seg.params
        return self._single_name, self._single_params

    def _set_target(self, name: str, params: dict[str, Any]) -> None:
        if self._mode == "sequence" and 0 <= self._seg_index < len(self._segments):
            seg = self._segments[self._seg_index]
            seg.name, seg.params = name, params
            self._refresh_segment_list()
        else:
            self._single_name, self._single_params = name, params

    def _load_target(self) -> None:
        """Show the target's policy in the picker and its parameters in the form."""
        name, params = self._target()
        self._syncing = True
        try:
            if name is not None:
                self.picker.select(name, emit=False)
            model = None
            if name in self._registry.policies:
                model = self._registry.policy(name).Params
            self.form.set_schema(model, params)
        finally:
            self._syncing = False
        self._show_policy_info(name)
        if self._mode == "sequence":
            self.params_box.setTitle(f"Parameters · segment {self._seg_index + 1}")
        else:
            self.params_box.setTitle("Parameters")

    def _show_policy_info(self, name: str | None) -> None:
        if name is None or name not in self._registry.policies:
            self.policy_info.setText("<span style='color:#6b7280'>No policy selected.</span>")
            return
        reg = self._registry.policies[name]
        cls = reg.obj
        family = FAMILY_TITLES.get(cls.family, cls.family)
        facts = [family, f"plugin {reg.plugin}", f"v{reg.version}"]
        if cls.uses_total_steps:
            facts.append("depends on the run length")
        ref = f"<br><span style='color:#6b7280'>{cls.reference}</span>" if cls.reference else ""
        self.policy_info.setText(
            f"<b>{name}</b> <span style='color:#6b7280'>· {' · '.join(facts)}</span><br>{reg.summary}{ref}"
        )

    def select_policy(self, name: str) -> bool:
        """Edit policy ``name`` (for the single policy or the selected segment)."""
        return self.picker.select(name)

    def _policy_picked(self, name: str) -> None:
        if self._syncing:
            return
        old_name, old_params = self._target()
        if name == old_name:
            return
        self._set_target(name, _carry_params(self._registry, name, old_name, old_params))
        self._load_target()
        self.request_redraw()

    def _params_changed(self, values: dict[str, Any]) -> None:
        name, _ = self._target()
        if name is None:
            return
        self._set_target(name, values)
        self.request_redraw()

    def _params_rejected(self, _text: str) -> None:
        self._update_title()

    def _total_changed(self, value: int) -> None:
        if self._mode == "single":
            self._single_total = int(value)
            self.request_redraw()

    def total_steps(self) -> int:
        """The previewed run's length: the spin box, or the sum of the segments."""
        if self._mode == "sequence" and self._segments:
            return sum(s.steps for s in self._segments)
        return self._single_total

    def set_total_steps(self, steps: int) -> None:
        """Set the single policy's run length (the sequence's comes from its segments)."""
        self._single_total = max(1, int(steps))
        if self._mode == "single":
            self.total_steps_spin.setValue(self._single_total)
        self.request_redraw()

    # mode and segments

    def set_mode(self, mode: str) -> None:
        """Edit one policy (``"single"``) or a sequence of segments (``"sequence"``)."""
        if mode not in ("single", "sequence"):
            raise ValueError(f"mode must be 'single' or 'sequence', got {mode!r}")
        if self.mode_bar.currentIndex() != (mode == "sequence"):
            self.mode_bar.blockSignals(True)
            self.mode_bar.setCurrentIndex(1 if mode == "sequence" else 0)
            self.mode_bar.blockSignals(False)
        if mode == self._mode:
            return
        self._mode = mode
        if mode == "sequence" and not self._segments and self._single_name is not None:
            self._segments = [Segment(self._single_name, dict(self._single_params), self._single_total)]
            self._seg_index = 0
        self.sequence_box.setVisible(mode == "sequence")
        self._refresh_segment_list()
        self._sync_total_spin()
        self._load_target()
        self.request_redraw()

    def segments(self) -> list[Segment]:
        return [Segment(s.name, dict(s.params), s.steps) for s in self._segments]

    def set_segments(self, segments: list[Segment], selected: int = 0) -> None:
        """Replace the sequence (and switch to sequence mode)."""
        self._segments = [Segment(s.name, dict(s.params), max(1, int(s.steps))) for s in segments]
        self._seg_index = min(max(selected, 0), len(self._segments) - 1) if self._segments else -1
        if self._mode != "sequence":
            self.set_mode("sequence")
        else:
            self._refresh_segment_list()
            self._sync_total_spin()
            self._load_target()
            self.request_redraw()

    def add_segment(self, name: str | None = None, steps: int | None = None, params: dict | None = None) -> int:
        """Append a segment (a copy of the selected one unless ``name`` is given); returns its index."""
        if self._mode != "sequence":
            self.set_mode("sequence")
        base = self._segments[self._seg_index] if 0 <= self._seg_index < len(self._segments) else None
        if name is None:
            if base is None:
                name = self._single_name
                if name is None:
                    return -1
            else:
                name = base.name
        if params is None:
            params = dict(base.params) if base is not None and base.name == name else _defaults(self._registry, name)
        if steps is None:
            steps = base.steps if base is not None else self._single_total
        self._segments.append(Segment(name, dict(params), max(1, int(steps))))
        self._seg_index = len(self._segments) - 1
        self._refresh_segment_list()
        self._sync_total_spin()
        self._load_target()
        self.request_redraw()
        return self._seg_index

    def select_segment(self, index: int) -> None:
        if 0 <= index < len(self._segments):
            self._seg_index = index
            self._refresh_segment_list()
            self._load_target()

    def remove_segment(self, index: int) -> None:
        if len(self._segments) <= 1 or not 0 <= index < len(self._segments):
            return
        del self._segments[index]
        self._seg_index = min(index, len(self._segments) - 1)
        self._refresh_segment_list()
        self._sync_total_spin()
        self._load_target()
        self.request_redraw()

    def move_segment(self, index: int, delta: int) -> None:
        j = index + delta
        if not (0 <= index < len(self._segments) and 0 <= j < len(self._segments)):
            return
        self._segments[index], self._segments[j] = self._segments[j], self._segments[index]
        self._seg_index = j
        self._refresh_segment_list()
        self._load_target()
        self.request_redraw()

    def set_segment_length(self, steps: int) -> None:
        """Set the selected segment's length."""
        self.segment_length.setValue(int(steps))

    def _segment_length_changed(self, value: int) -> None:
        if self._syncing or not 0 <= self._seg_index < len(self._segments):
            return
        self._segments[self._seg_index].steps = int(value)
        self._refresh_segment_list()
        self._sync_total_spin()
        self.request_redraw()

    def _segment_selected(self, current: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        if self._syncing or current is None:
            return
        index = self.segment_list.indexOfTopLevelItem(current)
        if index != self._seg_index:
            self.form.flush()
            self._seg_index = index
            self._load_target()
            self._sync_length_spin()

    def _refresh_segment_list(self) -> None:
        self._syncing = True
        try:
            self.segment_list.clear()
            start = 0
            for i, seg in enumerate(self._segments):
                end = start + seg.steps
                last = i == len(self._segments) - 1
                item = QTreeWidgetItem([str(i + 1), seg.name, f"{seg.steps:,}", f"{start:,}"])
                item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setTextAlignment(3, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                span = f"steps {start:,} to the end of the run" if last else f"steps {start:,} to {end - 1:,}"
                item.setToolTip(3, span)
                item.setToolTip(1, json.dumps({"name": seg.name, "params": seg.params}))
                self.segment_list.addTopLevelItem(item)
                start = end
            if 0 <= self._seg_index < len(self._segments):
                self.segment_list.setCurrentItem(self.segment_list.topLevelItem(self._seg_index))
            self.remove_segment_button.setEnabled(len(self._segments) > 1)
        finally:
            self._syncing = False
        self._sync_length_spin()

    def _sync_length_spin(self) -> None:
        if 0 <= self._seg_index < len(self._segments):
            self._syncing = True
            try:
                self.segment_length.setValue(self._segments[self._seg_index].steps)
            finally:
                self._syncing = False

    def _sync_total_spin(self) -> None:
        sequence = self._mode == "sequence"
        self.total_steps_spin.blockSignals(True)
        self.total_steps_spin.setValue(min(self.total_steps(), MAX_TOTAL_STEPS))
        self.total_steps_spin.blockSignals(False)
        self.total_steps_spin.setEnabled(not sequence)
        self.total_steps_spin.setToolTip(
            "The sum of the segments' lengths (set each segment's length on the left)"
            if sequence
            else "Total optimizer steps of the run (policies like cosine depend on it)"
        )

    # the curve

    def spec_draft(self) -> dict[str, Any] | None:
        """The spec the editor describes now (not yet validated); None with no policy."""
        if self._mode == "sequence" and self._segments:
            bounds, start = [], 0
            for seg in self._segments[:-1]:
                start += seg.steps
                bounds.append(start)
            return {
                "sequence": [{"name": s.name, "params": dict(s.params)} for s in self._segments],
                "boundaries": bounds,
            }
        if self._single_name is None:
            return None
        return {"name": self._single_name, "params": dict(self._single_params)}

    def current_spec(self) -> dict[str, Any] | None:
        """The spec of the curve on screen (validated, every parameter written out)."""
        return None if self._spec is None else json.loads(json.dumps(self._spec))

    def current_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The (steps, learning rates) of the curve on screen."""
        return self._x.copy(), self._y.copy()

    def request_redraw(self) -> None:
        """Recompute the curve soon (changes within ~20 ms make one redraw)."""
        self._redraw_timer.start()

    def redraw(self) -> None:
        """Recompute and draw the current curve now. On a bad spec, keep the last curve."""
        self._redraw_timer.stop()
        draft = self.spec_draft()
        if draft is None:
            self._set_curve_error("No policy is registered: see the Plugins panel.")
            return
        total = self.total_steps()
        try:
            spec = parse_spec(draft, self._registry)
            schedule = Schedule(spec, total, self._registry)
            x = sample_steps(total)
            y = np.fromiter((schedule.lr_at(int(s)) for s in x), dtype=float, count=len(x))
        except SpecError as exc:
            self._set_curve_error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a third-party policy may raise anything
            self._set_curve_error(f"the policy failed: {type(exc).__name__}: {exc}")
            return
        if not np.all(np.isfinite(y)):
            bad = int(x[~np.isfinite(y)][0])
            self._set_curve_error(f"the policy returned a non-finite learning rate at step {bad}")
            return
        self._set_curve_error("")
        self._spec = spec.to_json()
        self._label = spec_label(spec)
        self._x, self._y = x, y
        self.current_item.setData(x, y)
        self._draw_boundaries(spec)
        self._rebuild_legend()
        self.spec_view.setPlainText(json.dumps(self._spec, indent=2))
        self._update_title()
        self.plot_item.enableAutoRange()
        self.curveChanged.emit(self.current_spec())

    def _set_curve_error(self, text: str) -> None:
        self.curve_error.setText(text)
        self.curve_error.setVisible(bool(text))
        self._update_title()

    def _update_title(self) -> None:
        stale = bool(self.curve_error.text()) or not self.form.is_valid()
        total = self.total_steps()
        stride = max(1, math.ceil(total / MAX_POINTS))
        parts = [f"<b>{self._label or '—'}</b>", f"<span style='color:#6b7280'>{total:,} steps"]
        if stride > 1:
            parts[-1] += f", every {stride}th step drawn"
        parts[-1] += "</span>"
        if stale:
            parts.append("<span style='color:#b45309'>⚠ last valid curve</span>")
        self.curve_title.setText(" &nbsp; ".join(parts))

    def _draw_boundaries(self, spec: Spec) -> None:
        for line in self._boundary_lines:
            self.plot_item.removeItem(line)
        self._boundary_lines = []
        if not isinstance(spec, SequenceSpec):
            return
        for bound, seg in zip(spec.boundaries, spec.segments[1:]):
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
            self._boundary_lines.append(line)

    def _rebuild_legend(self) -> None:
        self.legend.clear()
        if self._spec is not None:
            self.legend.addItem(self.current_item, f"{self._label} (current)")
        for ov in self._overlays:
            self.legend.addItem(ov.item, ov.label)

    def set_log_scale(self, on: bool) -> None:
        """Show the LR axis on a log scale (zeros are left out of a log plot)."""
        if self.log_check.isChecked() != on:
            self.log_check.setChecked(on)
            return
        self.plot_item.setLogMode(x=False, y=on)
        self.plot_item.enableAutoRange()

    def is_log_scale(self) -> bool:
        return bool(self.plot_item.getAxis("left").logMode)

    def _log_toggled_from_menu(self, on: bool) -> None:
        self.log_check.blockSignals(True)
        self.log_check.setChecked(on)
        self.log_check.blockSignals(False)

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
        for ov in self._overlays[:4]:
            if len(ov.x) and ov.x[0] <= s <= ov.x[-1]:
                j = int(np.clip(np.searchsorted(ov.x, s), 0, len(ov.x) - 1))
                parts.append(f"<span style='color:{ov.color}'>{ov.label}: {ov.y[j]:.4g}</span>")
        self.readout.setText(" &nbsp;·&nbsp; ".join(parts))

    # overlay

    def overlays(self) -> list[dict[str, Any]]:
        """The pinned curves: label, spec, total_steps and color of each."""
        return [
            {"label": o.label, "spec": o.spec, "total_steps": o.total_steps, "color": o.color} for o in self._overlays
        ]

    def pin_current(self) -> int:
        """Pin the current curve onto the plot; returns its overlay index (-1 with no curve)."""
        if self._spec is None or len(self._x) == 0:
            return -1
        used = {o.color for o in self._overlays}
        color = next((c for c in OVERLAY_COLORS if c not in used), OVERLAY_COLORS[len(self._overlays) % len(OVERLAY_COLORS)])
        label = self._overlay_label()
        item = pg.PlotDataItem(self._x.copy(), self._y.copy(), pen=pg.mkPen(color, width=1.7), antialias=True)
        item.setZValue(5)
        self.plot_item.addItem(item)
        self._overlays.append(
            _Overlay(label, self.current_spec(), self.total_steps(), self._x.copy(), self._y.copy(), color, item)
        )
        entry = QListWidgetItem(swatch_icon(color), label)
        entry.setToolTip(json.dumps(self._spec))
        self.overlay_list.addItem(entry)
        self._rebuild_legend()
        self._update_overlay_title()
        return len(self._overlays) - 1

    def _overlay_label(self) -> str:
        """The curve's label, made unique among the pinned ones by its non-default parameters."""
        taken = {o.label for o in self._overlays}
        label = self._label
        spec = self._spec or {}
        if label in taken and "name" in spec and spec["name"] in self._registry.policies:
            defaults = _defaults(self._registry, spec["name"])
            changed = [
                f"{k}={format_float(v) if isinstance(v, float) else v}"
                for k, v in spec["params"].items()
                if defaults.get(k) != v
            ]
            label = f"{spec['name']}({', '.join(changed)})"
        if label in taken:
            label = f"{label} · {self.total_steps():,} steps"
        n = 2
        base = label
        while label in taken:
            label, n = f"{base} #{n}", n + 1
        return label

    def remove_overlay(self, index: int) -> None:
        if not 0 <= index < len(self._overlays):
            return
        ov = self._overlays.pop(index)
        self.plot_item.removeItem(ov.item)
        self.overlay_list.takeItem(index)
        self._rebuild_legend()
        self._update_overlay_title()

    def clear_overlays(self) -> None:
        for i in reversed(range(len(self._overlays))):
            self.remove_overlay(i)

    def load_overlay(self, index: int) -> None:
        """Put a pinned curve's spec and run length back into the editor."""
        if 0 <= index < len(self._overlays):
            ov = self._overlays[index]
            self.load_spec(ov.spec, total_steps=ov.total_steps)

    def _remove_selected_overlays(self) -> None:
        rows = sorted({self.overlay_list.row(i) for i in self.overlay_list.selectedItems()}, reverse=True)
        for row in rows:
            self.remove_overlay(row)

    def _overlay_selection_changed(self) -> None:
        selected = bool(self.overlay_list.selectedItems())
        self.remove_overlay_button.setEnabled(selected)
        self.load_overlay_button.setEnabled(len(self.overlay_list.selectedItems()) == 1)

    def _update_overlay_title(self) -> None:
        n = len(self._overlays)
        self.overlay_box.setTitle(f"Overlay ({n})" if n else "Overlay")
        self.clear_overlay_button.setEnabled(bool(n))
        self.overlay_list.setVisible(bool(n))
        self.overlay_hint.setVisible(not n)

    # specs: load, open, save

    def load_spec(self, obj: Any, *, total_steps: int | None = None) -> None:
        """Edit the spec ``obj`` (a dict or JSON text). Raises :class:`SpecError` and changes
        nothing when it is invalid."""
        spec = parse_spec(obj, self._registry)
        if isinstance(spec, PolicySpec):
            self._single_name = spec.name
            self._single_params = spec.params.model_dump(mode="json")
            if total_steps is not None:
                self._single_total = max(1, int(total_steps))
            if self._mode != "single":
                self.set_mode("single")
            self._sync_total_spin()
            self._load_target()
            self.request_redraw()
            return
        last = spec.boundaries[-1]
        if total_steps is not None and total_steps > last:
            length = int(total_steps)
        elif self._single_total > last:
            length = self._single_total
        else:
            length = last + max(1, last // len(spec.boundaries))
        segments = _flatten(spec, length)
        nested = any(isinstance(s, SequenceSpec) for s in spec.segments)
        self.set_segments(segments)
        if nested:
            self.banner.show_message("The spec nests sequences: it is shown flattened into one sequence.", "info")

    def open_spec_file(self, path: str | os.PathLike[str]) -> bool:
        """Load a spec from a JSON file. A bad file shows a message and changes nothing."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            obj = json.loads(text)
            self.load_spec(obj)
        except OSError as exc:
            self.banner.show_message(f"Could not read {path}: {exc.strerror or exc}")
            return False
        except UnicodeDecodeError:
            self.banner.show_message(f"Could not open {path.name}: it is not a text (UTF-8) file.")
            return False
        except json.JSONDecodeError as exc:
            self.banner.show_message(
                f"Could not open {path.name}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
            )
            return False
        except SpecError as exc:
            where = f" at {exc.path}" if exc.path else ""
            self.banner.show_message(f"Could not open {path.name}: invalid spec{where}: {exc.message}")
            return False
        self.banner.dismiss()
        self._remember_dir(path)
        self.statusMessage.emit(f"Opened spec {path}")
        return True

    def save_spec_file(self, path: str | os.PathLike[str]) -> bool:
        """Write the current spec as JSON, atomically (a temporary file, then a rename)."""
        path = Path(path)
        if self._spec is None:
            self.banner.show_message("There is no valid curve to save yet.")
            return False
        try:
            write_text_atomic(path, json.dumps(self._spec, indent=2) + "\n")
        except OSError as exc:
            self.banner.show_message(f"Could not save {path}: {exc.strerror or exc}")
            return False
        self._remember_dir(path)
        self.statusMessage.emit(f"Saved spec to {path}")
        return True

    def copy_spec(self) -> None:
        if self._spec is not None:
            QGuiApplication.clipboard().setText(json.dumps(self._spec, indent=2))
            self.statusMessage.emit("Copied the spec JSON")

    def _start_dir(self) -> str:
        if self._settings is not None:
            value = self._settings.value("policies/spec_dir", "")
            if value and Path(str(value)).is_dir():
                return str(value)
        return str(Path.home())

    def _remember_dir(self, path: Path) -> None:
        if self._settings is not None:
            self._settings.setValue("policies/spec_dir", str(path.resolve().parent))

    def open_spec_dialog(self) -> None:
        """Ask for a spec file and open it."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Open policy spec", self._start_dir(), "Policy spec (*.json);;All files (*)"
        )
        if path:
            self.open_spec_file(path)

    def save_spec_dialog(self) -> None:
        """Ask where to save the current spec and save it."""
        if self._spec is None:
            self.banner.show_message("There is no valid curve to save yet.")
            return
        suggested = str(Path(self._start_dir()) / f"{self._label.split('(')[0].split(' ')[0] or 'policy'}.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save policy spec", suggested, "Policy spec (*.json)")
        if path:
            if not Path(path).suffix:
                path += ".json"
            self.save_spec_file(path)
