"""The sequence being edited: its segments, the box that lists and reorders them, and its
optional plateau switch.

A sequence restarts each segment's clock at its boundary; the boundaries are the running sum of
the segments' lengths, and the last segment lasts until the end of the run. With a switch
(:class:`SwitchBox`) a segment also ends early where the monitored metric plateaus, by torch
``ReduceLROnPlateau``'s rule (see docs/format.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.reactive import PlateauParams
from lrbench_gui.core.spec import PolicySpec, Spec
from lrbench_gui.qt.param_form import ParamForm

__all__ = ["Segment", "SegmentEditor", "SwitchBox", "flatten", "MAX_TOTAL_STEPS"]

MAX_TOTAL_STEPS = 100_000_000


@dataclass
class Segment:
    """One segment of a sequence being edited: a policy, its parameters and its length."""

    name: str
    params: dict[str, Any]
    steps: int


def flatten(spec: Spec, length: int) -> list[Segment]:
    """A (possibly nested) spec as flat segments for a run of ``length`` steps."""
    if isinstance(spec, PolicySpec):
        return [Segment(spec.name, spec.params.model_dump(mode="json"), max(1, length))]
    bounds = spec.steps(length)  # shares of the run become steps of this run
    starts = [0, *bounds]
    ends = [*bounds, max(length, bounds[-1] + 1)]
    out: list[Segment] = []
    for seg, start, end in zip(spec.segments, starts, ends):
        if start >= length and out:
            break
        out.extend(flatten(seg, min(end, length) - start if end > start else 1))
    return out


class SwitchBox(QWidget):
    """The sequence's ``switch``: a "Switch on a plateau" check box and, when ticked, a form for
    the plateau rule's fields (:class:`~lrbench_gui.core.reactive.PlateauParams`: monitor, every,
    smoothing, mode, threshold, threshold_mode, patience, cooldown)."""

    #: Fires when the switch was ticked, unticked or one of its fields changed to a valid value.
    switchChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        self.check = QCheckBox("Switch on a plateau", self)
        self.check.setToolTip(
            "Also move to the next segment when the monitored metric stops improving (torch\n"
            "ReduceLROnPlateau's rule); a boundary is then the latest step its segment may end at.\n"
            "Needs at least two segments."
        )
        self.check.toggled.connect(self._toggled)
        layout.addWidget(self.check)
        self.form = ParamForm(self)
        self.form.set_schema(PlateauParams)
        self.form.setVisible(False)
        self.form.paramsChanged.connect(lambda _values: self.switchChanged.emit())
        layout.addWidget(self.form)

    def switch(self) -> dict[str, Any] | None:
        """The switch as a spec writes it (every field), or None when it is off."""
        return self.form.last_valid_values() if self.check.isChecked() else None

    def set_switch(self, switch: dict[str, Any] | None) -> None:
        """Show ``switch`` (None: no switch; fields left out take their defaults). Emits nothing."""
        self.check.blockSignals(True)
        try:
            self.check.setChecked(switch is not None)
        finally:
            self.check.blockSignals(False)
        self.form.set_schema(PlateauParams, dict(switch or {}))
        self.form.setVisible(switch is not None)

    def _toggled(self, on: bool) -> None:
        self.form.setVisible(on)
        self.switchChanged.emit()


class SegmentEditor(QGroupBox):
    """The segments of the sequence: a list (policy, length, start), buttons to add, remove and
    move one, the selected segment's length, and the plateau switch (``switch_box``). It owns the
    segments and the switch; the Policies panel edits the selected one's policy and parameters."""

    #: Fires when the segments or a length changed (the curve is stale); carries nothing.
    segmentsChanged = Signal()
    #: Fires when the user selects another segment in the list; carries its index.
    segmentSelected = Signal(int)
    #: Fires when the + button is pressed (the panel decides what the new segment is).
    addRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Segments", parent)
        self.segments: list[Segment] = []
        self.index = -1
        #: called before the user's selection moves to another segment (the panel flushes its form
        #: into the segment being left)
        self.before_select: Callable[[], None] = lambda: None
        self._syncing = False
        layout = QVBoxLayout(self)
        self.segment_list = QTreeWidget(self)
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
        self.segment_list.currentItemChanged.connect(self._row_selected)
        layout.addWidget(self.segment_list)
        row = QHBoxLayout()
        row.setSpacing(4)
        self.add_button = self._button("+", "Add a segment after the last one (a copy of the selected segment)",
                                       self.addRequested.emit)
        self.remove_button = self._button("−", "Remove the selected segment", lambda: self.remove(self.index))
        up = self._button("▲", "Move the segment earlier", lambda: self.move(self.index, -1))
        down = self._button("▼", "Move the segment later", lambda: self.move(self.index, 1))
        for button in (self.add_button, self.remove_button, up, down):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(QLabel("Length", self))
        self.length = QSpinBox(self)
        self.length.setRange(1, MAX_TOTAL_STEPS)
        self.length.setSuffix(" steps")
        self.length.setToolTip(
            "Steps of the selected segment. Boundaries are the running sum of the lengths; the last\n"
            "segment lasts until the end of the run (its length sets the preview's run length)."
        )
        self.length.valueChanged.connect(self._length_changed)
        row.addWidget(self.length)
        layout.addLayout(row)
        self.switch_box = SwitchBox(self)
        layout.addWidget(self.switch_box)

    def _button(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setFixedWidth(28)
        button.clicked.connect(lambda: slot())
        return button

    def current(self) -> Segment | None:
        return self.segments[self.index] if 0 <= self.index < len(self.segments) else None

    def total_steps(self) -> int:
        return sum(s.steps for s in self.segments)

    def boundaries(self) -> list[int]:
        out, start = [], 0
        for seg in self.segments[:-1]:
            start += seg.steps
            out.append(start)
        return out

    def set_segments(self, segments: list[Segment], selected: int = 0) -> None:
        """Replace the segments (copies) and select one."""
        self.segments = [Segment(s.name, dict(s.params), max(1, int(s.steps))) for s in segments]
        self.index = min(max(selected, 0), len(self.segments) - 1) if self.segments else -1
        self.refresh()

    def append(self, segment: Segment) -> int:
        """Add ``segment`` at the end and select it; returns its index."""
        self.segments.append(Segment(segment.name, dict(segment.params), max(1, int(segment.steps))))
        self.index = len(self.segments) - 1
        self.refresh()
        self.segmentsChanged.emit()
        return self.index

    def select(self, index: int) -> bool:
        if not 0 <= index < len(self.segments):
            return False
        self.index = index
        self.refresh()
        return True

    def remove(self, index: int) -> None:
        if len(self.segments) <= 1 or not 0 <= index < len(self.segments):
            return
        del self.segments[index]
        self.index = min(index, len(self.segments) - 1)
        self.refresh()
        self.segmentSelected.emit(self.index)
        self.segmentsChanged.emit()

    def move(self, index: int, delta: int) -> None:
        j = index + delta
        if not (0 <= index < len(self.segments) and 0 <= j < len(self.segments)):
            return
        self.segments[index], self.segments[j] = self.segments[j], self.segments[index]
        self.index = j
        self.refresh()
        self.segmentSelected.emit(self.index)
        self.segmentsChanged.emit()

    def _length_changed(self, value: int) -> None:
        seg = self.current()
        if self._syncing or seg is None:
            return
        seg.steps = int(value)
        self.refresh()
        self.segmentsChanged.emit()

    def _row_selected(self, current: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        if self._syncing or current is None:
            return
        index = self.segment_list.indexOfTopLevelItem(current)
        if index != self.index:
            self.before_select()
            self.index = index
            self._sync_length()
            self.segmentSelected.emit(index)

    def refresh(self) -> None:
        """Redraw the list from the segments (the selected one highlighted)."""
        self._syncing = True
        try:
            self.segment_list.clear()
            start = 0
            for i, seg in enumerate(self.segments):
                end = start + seg.steps
                last = i == len(self.segments) - 1
                item = QTreeWidgetItem([str(i + 1), seg.name, f"{seg.steps:,}", f"{start:,}"])
                item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setTextAlignment(3, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                span = f"steps {start:,} to the end of the run" if last else f"steps {start:,} to {end - 1:,}"
                item.setToolTip(3, span)
                item.setToolTip(1, json.dumps({"name": seg.name, "params": seg.params}))
                self.segment_list.addTopLevelItem(item)
                start = end
            if self.current() is not None:
                self.segment_list.setCurrentItem(self.segment_list.topLevelItem(self.index))
            self.remove_button.setEnabled(len(self.segments) > 1)
        finally:
            self._syncing = False
        self._sync_length()

    def _sync_length(self) -> None:
        seg = self.current()
        if seg is not None:
            self._syncing = True
            try:
                self.length.setValue(seg.steps)
            finally:
                self._syncing = False
