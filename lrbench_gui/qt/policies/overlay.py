"""Pinned curves: the overlay box that lists them and draws them under the current curve."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import validate_params
from lrbench_gui.core.records import spec_label
from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.widgets import swatch_icon

__all__ = ["OverlayBox", "Overlay", "OVERLAY_COLORS", "unique_label", "overlay_label", "changed_params"]

#: Okabe-Ito and friends: distinguishable for colour-blind readers, readable on the light and
#: the dark background (no near-black, no pale yellow)
OVERLAY_COLORS = ["#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#9065d0", "#b07a55", "#8a8f98"]


@dataclass
class Overlay:
    """One pinned curve: its label, spec and run length, its points and its plot item."""

    label: str
    spec: dict[str, Any]
    total_steps: int
    x: np.ndarray
    y: np.ndarray
    color: str
    item: pg.PlotDataItem = field(repr=False)


class OverlayBox(QGroupBox):
    """The pinned curves, each drawn on ``plot_item`` in a colour of its own: a list to select,
    edit again (double-click) or remove (Delete) them."""

    #: Fires when a pinned curve was added or removed (the legend is stale); carries nothing.
    overlaysChanged = Signal()
    #: Fires when the user asks to edit a pinned curve again; carries its index.
    editRequested = Signal(int)

    def __init__(self, plot_item: Any, parent: QWidget | None = None) -> None:
        super().__init__("Overlay", parent)
        self.plot_item = plot_item
        self.items: list[Overlay] = []
        layout = QVBoxLayout(self)
        self.list = QListWidget(self)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setToolTip("Pinned curves. Double-click one to edit it again; Delete removes it.")
        self.list.itemSelectionChanged.connect(self._selection_changed)
        self.list.itemDoubleClicked.connect(lambda item: self.editRequested.emit(self.list.row(item)))
        layout.addWidget(self.list, 1)
        self.hint = QLabel(
            "Press <b>Add to overlay</b> to pin the current curve, then change the policy or its "
            "parameters to compare. Pinned curves keep their own run length.",
            self,
        )
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.hint.setStyleSheet("color: #6b7280; padding: 6px;")
        layout.addWidget(self.hint, 1)
        remove_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.list)
        remove_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        remove_key.activated.connect(self.remove_selected)
        row = QHBoxLayout()
        self.edit_button = QPushButton("Edit", self)
        self.edit_button.setToolTip("Load the selected pinned curve into the editor")
        self.edit_button.clicked.connect(lambda: self.editRequested.emit(self.list.currentRow()))
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.clicked.connect(self.remove_selected)
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.clicked.connect(self.clear)
        row.addWidget(self.edit_button)
        row.addWidget(self.remove_button)
        row.addStretch(1)
        row.addWidget(self.clear_button)
        layout.addLayout(row)
        self._selection_changed()
        self._update_title()

    def labels(self) -> set[str]:
        return {o.label for o in self.items}

    def add(self, label: str, spec: dict[str, Any], total_steps: int, x: np.ndarray, y: np.ndarray) -> int:
        """Pin a curve in the first free colour; returns its index."""
        used = {o.color for o in self.items}
        color = next((c for c in OVERLAY_COLORS if c not in used), OVERLAY_COLORS[len(self.items) % len(OVERLAY_COLORS)])
        item = pg.PlotDataItem(x.copy(), y.copy(), pen=pg.mkPen(color, width=1.7), antialias=True)
        item.setZValue(5)
        self.plot_item.addItem(item)
        self.items.append(Overlay(label, spec, total_steps, x.copy(), y.copy(), color, item))
        entry = QListWidgetItem(swatch_icon(color), label)
        entry.setToolTip(json.dumps(spec))
        self.list.addItem(entry)
        self._update_title()
        self.overlaysChanged.emit()
        return len(self.items) - 1

    def remove(self, index: int) -> None:
        if not 0 <= index < len(self.items):
            return
        ov = self.items.pop(index)
        self.plot_item.removeItem(ov.item)
        self.list.takeItem(index)
        self._update_title()
        self.overlaysChanged.emit()

    def clear(self) -> None:
        for i in reversed(range(len(self.items))):
            self.remove(i)

    def remove_selected(self) -> None:
        for row in sorted({self.list.row(i) for i in self.list.selectedItems()}, reverse=True):
            self.remove(row)

    def _selection_changed(self) -> None:
        selected = self.list.selectedItems()
        self.remove_button.setEnabled(bool(selected))
        self.edit_button.setEnabled(len(selected) == 1)

    def _update_title(self) -> None:
        n = len(self.items)
        self.setTitle(f"Overlay ({n})" if n else "Overlay")
        self.clear_button.setEnabled(bool(n))
        self.list.setVisible(bool(n))
        self.hint.setVisible(not n)


def changed_params(spec: dict[str, Any] | None, registry: Registry) -> list[str]:
    """The parameters of a plain spec that differ from its policy's defaults."""
    spec = spec or {}
    if "name" not in spec or spec["name"] not in registry.policies:
        return []
    defaults = validate_params(registry.policy(spec["name"]).Params, {}).model_dump(mode="json")
    return [k for k, v in (spec.get("params") or {}).items() if defaults.get(k) != v]


def overlay_label(spec: dict[str, Any] | None, registry: Registry, limit: int = 4) -> str:
    """A pinned curve's label: the spec's label with the parameters it changed from the defaults
    (``step(lr=0.1, gamma=0.5)``: a curve never hides what makes it differ)."""
    return spec_label(spec or {}, registry, show=changed_params(spec, registry)[:limit])


def unique_label(label: str, spec: dict[str, Any] | None, total_steps: int, taken: set[str],
                 registry: Registry) -> str:
    """``label`` made unique among the pinned curves' labels ``taken``: the spec's label with its
    non-default parameters (:func:`overlay_label`), then its run length, then a number."""
    spec = spec or {}
    if "name" in spec and spec["name"] in registry.policies:
        label = overlay_label(spec, registry)
    if label in taken:
        label = f"{label} · {total_steps:,} steps"
    n, base = 2, label
    while label in taken:
        label, n = f"{base} #{n}", n + 1
    return label
