"""The ``summary`` view: any tuner's summary as an indented tree of its keys and values, for a
study kind (a third party's) that has no drawing of its own but wants a place in the panel."""

from __future__ import annotations

import json
from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.methods._plots import MethodView

__all__ = ["SummaryView"]


class SummaryView(MethodView):
    """Keys and values of the summary; lists and dicts fold open. ``tree`` is the widget."""

    key = "summary"

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(registry, parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["key", "value"])
        self.tree.setColumnWidth(0, 260)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.info)

    def plots(self) -> list[pg.PlotWidget]:
        return []

    def _fill(self, parent: Any, key: str, value: Any) -> None:
        item = QTreeWidgetItem(parent, [key, ""])
        if isinstance(value, dict):
            for k, v in value.items():
                self._fill(item, str(k), v)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list)) for v in value):
            for i, v in enumerate(value):
                self._fill(item, f"[{i}]", v)
        else:
            item.setText(1, json.dumps(value, default=str) if not isinstance(value, str) else value)

    def _draw(self, summary: dict[str, Any]) -> list[str]:
        self.tree.clear()
        for key, value in summary.items():
            if key != "warnings":
                self._fill(self.tree.invisibleRootItem(), str(key), value)
        self.tree.expandToDepth(0)
        return [f"{len(summary)} entries in the tuner's summary." if summary else "No summary yet."]
