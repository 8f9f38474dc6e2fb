"""The ``path-switch`` view: the LR paths as a tree, the release per version, the cost."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.methods._plots import GRID_ALPHA, MethodView, as_dict, as_list, make_plot, num, pos

__all__ = ["PathSwitchView"]

_METHOD_COLORS = {"main": "#6b7280", "scratch": "#d62728", "continued": "#ff7f0e", "path_switch": "#2ca02c"}
_BRANCH_GREENS = ["#2ca02c", "#0f766e", "#65a30d", "#15803d", "#4d7c0f"]
_PATH_NAMES = {"main": "main path (constant)", "continued": "continued pre-training",
               "path_switch": "branches (fast decay)"}
_BRANCH_NAME = re.compile(r"^branch_f([0-9.]+)_(\w+)$")


def _short_method(label: str) -> str:
    return (label.replace("path switching, ", "switch ").replace("continued pre-training", "continued")
            .replace("retrain from scratch", "from scratch").replace(" data", ""))


class PathSwitchView(MethodView):
    """The LR paths as a tree (main path, its branches, continued pre-training; x = global step),
    the released model's loss per version per method, and the cost of each method (total steps,
    labelled with the final val loss).

    After :meth:`set_summary`: ``path_items`` (trial -> curve), ``loss_items`` (method -> curve),
    ``cost_bars`` (one ``BarGraphItem``, ``cost_names`` its methods top to bottom) and
    ``cost_labels``.
    """

    key = "path-switch"

    def __init__(self, registry: Registry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(registry, parent)
        self._lrs_cache: dict[tuple[str, int], np.ndarray | None] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.tree_plot = make_plot(split, "LR paths: the main path and its branches (dashed: newest data only)",
                               "step (chunks in order)", "learning rate", legend="bottom-left")
        lower = QSplitter(Qt.Orientation.Horizontal, split)
        self.loss_plot = make_plot(lower, "Released model per version", "version", "val loss (versions so far)")
        self.cost_plot = make_plot(lower, "Cost, labelled with the final val loss", "total steps, all versions", "")
        self.cost_plot.getViewBox().invertY(True)
        self.cost_plot.showGrid(x=True, y=False, alpha=GRID_ALPHA)
        self.cost_plot.getPlotItem().legend.setVisible(False)
        self.cost_plot.getPlotItem().hideAxis("left")
        self.cost_plot.setMouseEnabled(x=True, y=False)
        lower.addWidget(self.loss_plot)
        lower.addWidget(self.cost_plot)
        split.addWidget(self.tree_plot)
        split.addWidget(lower)
        split.setSizes([330, 400])
        layout.addWidget(split, 1)
        layout.addWidget(self.info)
        self._reset_items()

    def plots(self) -> list[pg.PlotWidget]:
        return [self.tree_plot, self.loss_plot, self.cost_plot]

    def set_registry(self, registry: Registry) -> None:
        super().set_registry(registry)
        self._lrs_cache.clear()  # a policy's curve may come from a plugin that (un)loaded

    def _reset_items(self) -> None:
        self.path_items: dict[str, pg.PlotDataItem] = {}
        self.loss_items: dict[str, pg.PlotDataItem] = {}
        self.cost_bars: pg.BarGraphItem | None = None
        self.cost_names: list[str] = []
        self.cost_labels: list[pg.TextItem] = []
        self.cost_method_labels: list[pg.TextItem] = []

    def _lrs(self, policy: Any, steps: int) -> np.ndarray | None:
        key = (json.dumps(policy, sort_keys=True, default=str), steps)
        if key not in self._lrs_cache:
            from lrbench_gui.core.spec import build_schedule

            try:
                self._lrs_cache[key] = np.asarray(build_schedule(policy, steps, self.registry).lrs(), dtype=float)
            except Exception:  # noqa: BLE001 - a policy of a plugin not installed here: no curve
                self._lrs_cache[key] = None
        return self._lrs_cache[key]

    def _draw(self, s: dict[str, Any]) -> list[str]:
        self._reset_items()
        methods = {str(k): m for k, m in as_dict(s.get("methods")).items() if isinstance(m, dict)}
        fractions = sorted({float(m.group(1)) for m in (_BRANCH_NAME.match(n) for n in methods) if m}
                           | {f for f in (num(p.get("f")) for p in as_list(s.get("paths")) if isinstance(p, dict))
                              if f is not None})
        green = {f: _BRANCH_GREENS[i % len(_BRANCH_GREENS)] for i, f in enumerate(fractions)}

        def color_of(method: str, f: float | None = None) -> str:
            if method == "path_switch":
                return green.get(f, _METHOD_COLORS["path_switch"]) if f is not None else _METHOD_COLORS["path_switch"]
            return _METHOD_COLORS.get(method, "#1f77b4")

        named: set[str] = set()
        for path in as_list(s.get("paths")):
            if not isinstance(path, dict):
                continue
            method = str(path.get("method") or "")
            steps = int(num(path.get("steps")) or 0)
            if method == "scratch" or steps < 1 or not isinstance(path.get("policy"), (dict, str)):
                continue  # the from-scratch runs start over at step 0: drawn as cost, not in the tree
            lrs = self._lrs(path["policy"], steps)
            if lrs is None or not len(lrs):
                continue
            start = int(num(path.get("start")) or 0)
            f = num(path.get("f"))
            style = Qt.PenStyle.DashLine if path.get("data") == "newest" else Qt.PenStyle.SolidLine
            pen = pg.mkPen(color_of(method, f), width=2.4 if method == "main" else 1.4, style=style)
            name = None
            legend_key = f"{method} {f}" if method == "path_switch" else method
            if legend_key not in named:
                name = _PATH_NAMES.get(method, method) if method != "path_switch" or f is None else f"branch f={f:g}"
                named.add(legend_key)
            item = pg.PlotDataItem(np.arange(start, start + len(lrs)), lrs, pen=pen, name=name)
            if method == "main":
                item.setZValue(-1)
            self.tree_plot.addItem(item)
            self.path_items[str(path.get("trial") or f"{method}-{start}")] = item
        chunk = int(num(s.get("chunk_steps")) or 0)
        for v in range(int(num(s.get("versions")) or 0) if chunk else 0):
            line = pg.InfiniteLine(pos=chunk * (v + 1), angle=90,
                                   pen=pg.mkPen("#9ca3af", width=1, style=Qt.PenStyle.DotLine))
            self.tree_plot.addItem(line)

        for name, m in methods.items():
            rel = [r for r in as_list(m.get("releases")) if isinstance(r, dict)
                   and num(r.get("val_loss")) is not None and num(r.get("version")) is not None]
            if not rel:
                continue
            match = _BRANCH_NAME.match(name)
            color = color_of("path_switch", float(match.group(1))) if match else color_of(name)
            style = Qt.PenStyle.DashLine if name.endswith("newest") else Qt.PenStyle.SolidLine
            item = pg.PlotDataItem([r["version"] for r in rel], [r["val_loss"] for r in rel],
                                   pen=pg.mkPen(color, width=1.6, style=style), symbol="o", symbolSize=6,
                                   symbolBrush=pg.mkBrush(color), symbolPen=pg.mkPen(color),
                                   name=_short_method(str(m.get("label") or name)))
            self.loss_plot.addItem(item)
            self.loss_items[name] = item
        versions = int(num(s.get("versions")) or 0)
        self.loss_plot.getAxis("bottom").setTicks([[(v, str(v)) for v in range(versions)]] if versions else None)

        names = [n for n in methods if pos(methods[n].get("total_steps"))]
        self.cost_names = names
        if names:
            steps = [float(methods[n]["total_steps"]) for n in names]
            brushes = []
            for n in names:
                match = _BRANCH_NAME.match(n)
                brushes.append(pg.mkBrush(color_of("path_switch", float(match.group(1))) if match else color_of(n)))
            self.cost_bars = pg.BarGraphItem(x0=0, y=np.arange(len(names)) + 0.12, height=0.5, width=steps,
                                             brushes=brushes, pen=pg.mkPen(None))
            self.cost_plot.addItem(self.cost_bars)
            self.cost_method_labels = []
            for i, n in enumerate(names):
                # the method's name above its bar (an axis would cut long names), the loss after it
                self.cost_method_labels.append(self._text(
                    self.cost_plot, _short_method(str(methods[n].get("label") or n)), 0, i - 0.13, (0, 1)))
                loss = num(methods[n].get("final_val_loss"))
                if loss is not None:
                    self.cost_labels.append(self._text(self.cost_plot, f" {loss:.4f}", steps[i], i + 0.12,
                                                       (0, 0.5)))
            self.cost_plot.setXRange(0, max(steps) * 1.25, padding=0)
            self.cost_plot.setYRange(-0.55, len(names) - 0.3, padding=0)

        lines = []
        compared = [(n, m) for n, m in methods.items() if num(m.get("vs_scratch")) is not None and n != "scratch"]
        if compared:
            compared.sort(key=lambda nm: nm[1]["vs_scratch"])
            parts = []
            for n, m in compared:
                part = f"{_short_method(str(m.get('label') or n))} {m['vs_scratch']:+.1%}"
                if num(m.get("cost_vs_scratch")) is not None:
                    part += f" at {m['cost_vs_scratch']:.0%} of the cost"
                parts.append(part)
            lines.append("Final val loss against retraining from scratch: " + "; ".join(parts) + ".")
        elif not methods:
            lines.append("No version released yet: the main path and the baselines are running.")
        return lines
