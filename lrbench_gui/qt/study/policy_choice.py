"""The Study panel's policy box: the families to search, each with an optional LR range, and one
LR range for every policy."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QTreeWidgetItemIterator,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import ParamInfo
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.hints import policy_hints
from lrbench_gui.qt.param_form import format_float
from lrbench_gui.qt.plot_style import themed

__all__ = ["PolicyChoice", "lr_params", "parse_positive", "ranges_from_overrides"]

_FAMILY_ORDER = ("classic", "cyclic", "restart", "llm", "deepspeed")
_EDITED = Qt.ItemDataRole.UserRole + 1  # on an LR column: the user typed this range
_NAME = Qt.ItemDataRole.UserRole


def lr_params(policy_cls: Any) -> list[ParamInfo]:
    """The learning-rate parameters of a policy, the ones a policy's LR range narrows: those its
    schema gives the role ``lr`` or ``min_lr`` (or named like an LR, for a schema that declares
    no roles), as the study's search space reads them (:func:`lrbench_gui.core.tuning.hints.policy_hints`)."""
    hints = policy_hints(policy_cls)
    return [hints.row(name) for name in hints.lr_names]


def parse_positive(text: str) -> float | None:
    """A positive number typed in a field; None for an empty field, ValueError in words."""
    text = text.strip()
    if not text:
        return None
    value = float(text)  # ValueError names the text
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a positive number")
    return value


def ranges_from_overrides(overrides: dict[str, Any], policies: list[str],
                          registry: Registry | None = None) -> dict[str, tuple[float, float]]:
    """The per-policy LR ranges of a study's ``overrides`` (the widest of each policy's LR keys)."""
    out: dict[str, tuple[float, float]] = {}
    for key, value in (overrides or {}).items():
        policy, dot, pname = key.rpartition(".")
        if not dot or policy not in policies:
            continue
        if registry is not None and policy in registry.policies:
            if pname not in {i.name for i in lr_params(registry.policy(policy))}:
                continue
        elif not pname.endswith("lr"):
            continue
        if isinstance(value, (list, tuple)) and len(value) == 2:
            lo, hi = float(value[0]), float(value[1])
            if policy in out:
                lo, hi = min(lo, out[policy][0]), max(hi, out[policy][1])
            out[policy] = (lo, hi)
    return out


class PolicyChoice(QGroupBox):
    """Tick the policies to search; double-click *LR from* / *LR to* to narrow one's LR range
    (empty: the policy's own search range, in grey); or give one range for every LR."""

    #: Fires when a tick, a range or the all-LRs range changed; carries nothing.
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Policies", parent)
        self._registry: Registry | None = None
        self.policy_tree = tree = QTreeWidget(self)
        tree.setColumnCount(3)
        tree.setHeaderLabels(["Policy family", "LR from", "LR to"])
        tree.setRootIsDecorated(True)
        tree.setUniformRowHeights(True)
        tree.setMinimumHeight(230)
        header = tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)
            header.resizeSection(col, 72)
        header.setStretchLastSection(False)
        tree.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
                             | QAbstractItemView.EditTrigger.SelectedClicked)
        tree.setToolTip("Tick the policies to search. Double-click LR from/to to narrow a policy's "
                        "learning-rate range (empty: the policy's own search range, shown in grey).")
        self.lr_low = QLineEdit(self)
        self.lr_high = QLineEdit(self)
        for edit, tip in ((self.lr_low, "lowest"), (self.lr_high, "highest")):
            edit.setPlaceholderText("policy default")
            edit.setToolTip(f"The {tip} learning rate of every LR dimension of the search (all policies); "
                            "empty: each policy's own range")
            edit.textChanged.connect(self._all_range_changed)
        row = QHBoxLayout()
        row.addWidget(QLabel("All LRs from", self))
        row.addWidget(self.lr_low)
        row.addWidget(QLabel("to", self))
        row.addWidget(self.lr_high)
        self.policy_count = QLabel(self)
        self.policy_count.setStyleSheet("color: #6b7280;")
        self.policy_count.setWordWrap(True)  # many ticked families wrap instead of widening the form
        layout = QVBoxLayout(self)
        layout.addWidget(tree)
        layout.addLayout(row)
        layout.addWidget(self.policy_count)
        tree.itemChanged.connect(self._tree_changed)

    def set_registry(self, registry: Registry, checked: list[str]) -> None:
        """List ``registry``'s policies by family, ticking ``checked``."""
        self._registry = registry
        tree = self.policy_tree
        order = {f: i for i, f in enumerate(_FAMILY_ORDER)}

        def family_of(name: str) -> str:
            return getattr(registry.policies[name].obj, "family", "other") or "other"

        with QSignalBlocker(tree):
            tree.clear()
            families: dict[str, QTreeWidgetItem] = {}
            for name in sorted(registry.policies, key=lambda n: (order.get(family_of(n), len(order)), family_of(n), n)):
                family = family_of(name)
                parent = families.get(family)
                if parent is None:
                    parent = families[family] = QTreeWidgetItem(tree, [family])
                    parent.setFlags(parent.flags() | Qt.ItemFlag.ItemIsAutoTristate | Qt.ItemFlag.ItemIsUserCheckable)
                    parent.setCheckState(0, Qt.CheckState.Unchecked)
                    font = parent.font(0)
                    font.setBold(True)
                    parent.setFont(0, font)
                self._add_policy(parent, name, name in checked)
            for parent in families.values():
                parent.setExpanded(any(parent.child(i).checkState(0) == Qt.CheckState.Checked
                                       for i in range(parent.childCount())))
        self._show_default_ranges()
        self._update_count()

    def _add_policy(self, parent: QTreeWidgetItem, name: str, checked: bool) -> None:
        assert self._registry is not None
        item = QTreeWidgetItem(parent, [name, "", ""])
        item.setData(0, _NAME, name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEditable)
        item.setCheckState(0, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        item.setToolTip(0, self._registry.policies[name].summary)
        infos = lr_params(self._registry.policy(name))
        searched = [i.search for i in infos if i.search]
        lo = min((s[0] for s in searched if s[0] > 0), default=None)
        hi = max((s[1] for s in searched), default=None)
        item.setData(1, _NAME, lo)
        item.setData(2, _NAME, hi)
        grey = QBrush(QColor("#9ca3af"))
        for col, value in ((1, lo), (2, hi)):
            item.setText(col, format_float(value) if value else "")
            item.setForeground(col, grey)
            item.setToolTip(col, "the policy's own search range; double-click to narrow it"
                            if infos else "this policy has no learning-rate parameter to search")
        if not infos:
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def _tree_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column in (1, 2) and item.data(0, _NAME):
            text = item.text(column).strip()
            with QSignalBlocker(self.policy_tree):
                item.setData(column, _EDITED, bool(text))
                if text:
                    item.setForeground(column, QBrush(QColor(themed("#111827"))))
                    if item.checkState(0) != Qt.CheckState.Checked:
                        item.setCheckState(0, Qt.CheckState.Checked)
            self._show_default_ranges()
        self._update_count()
        self.changed.emit()

    def _all_range_changed(self, _text: str) -> None:
        self._show_default_ranges()
        self.changed.emit()

    def _valid_all_range(self) -> tuple[float, float] | None:
        try:
            lo, hi = parse_positive(self.lr_low.text()), parse_positive(self.lr_high.text())
        except ValueError:
            return None
        return (lo, hi) if lo is not None and hi is not None and lo <= hi else None

    def _show_default_ranges(self) -> None:
        """Grey text in the LR columns the user did not edit: the range the search will use
        (the "All LRs" range when set, else the policy's own)."""
        if self._registry is None:
            return
        rng = self._valid_all_range()
        grey = QBrush(QColor("#9ca3af"))
        with QSignalBlocker(self.policy_tree):
            for item in self._policy_items():
                if not lr_params(self._registry.policy(item.data(0, _NAME))):
                    continue
                for col in (1, 2):
                    if item.data(col, _EDITED):
                        continue
                    value = rng[col - 1] if rng else item.data(col, _NAME)
                    item.setText(col, format_float(value) if value else "")
                    item.setForeground(col, grey)

    def _policy_items(self) -> list[QTreeWidgetItem]:
        out = []
        it = QTreeWidgetItemIterator(self.policy_tree)
        while it.value() is not None:
            if it.value().data(0, _NAME):
                out.append(it.value())
            it += 1
        return out

    def checked_policies(self) -> list[str]:
        return [i.data(0, _NAME) for i in self._policy_items() if i.checkState(0) == Qt.CheckState.Checked]

    def set_policies(self, names: list[str], ranges: dict[str, tuple[float, float]] | None = None) -> None:
        """Tick exactly ``names``; ``ranges`` narrows some of their LR ranges."""
        ranges = ranges or {}
        with QSignalBlocker(self.policy_tree):
            for item in self._policy_items():
                name = item.data(0, _NAME)
                item.setCheckState(0, Qt.CheckState.Checked if name in names else Qt.CheckState.Unchecked)
                for col in (1, 2):
                    item.setData(col, _EDITED, name in ranges)
                if name in ranges:
                    for col, value in zip((1, 2), ranges[name]):
                        item.setText(col, format_float(value))
                        item.setForeground(col, QBrush(QColor(themed("#111827"))))
                if name in names:
                    item.parent().setExpanded(True)
        self._show_default_ranges()
        self._update_count()
        self.changed.emit()

    def policy_ranges(self) -> dict[str, tuple[float, float]]:
        """The LR ranges the user narrowed, per ticked policy (ValueError for text that is not a number)."""
        out = {}
        for item in self._policy_items():
            name = item.data(0, _NAME)
            if item.checkState(0) != Qt.CheckState.Checked or not (item.data(1, _EDITED) or item.data(2, _EDITED)):
                continue
            try:
                lo, hi = parse_positive(item.text(1)), parse_positive(item.text(2))
            except ValueError as exc:
                raise ValueError(f"policy {name}: LR range: {exc}") from None
            if lo is None or hi is None:
                continue
            if lo > hi:
                raise ValueError(f"policy {name}: LR from {lo:g} is above LR to {hi:g}")
            out[name] = (lo, hi)
        return out

    def lr_range(self) -> tuple[float, float] | None:
        """The all-LRs range, or None when both ends are empty (ValueError in words otherwise)."""
        try:
            lo, hi = parse_positive(self.lr_low.text()), parse_positive(self.lr_high.text())
        except ValueError as exc:
            raise ValueError(f"LR range: {exc}") from None
        if lo is None and hi is None:
            return None
        if lo is None or hi is None:
            raise ValueError("LR range: give both ends, or neither")
        if lo > hi:
            raise ValueError(f"LR range: {lo:g} is above {hi:g}")
        return lo, hi

    def set_lr_range(self, lr_range: tuple[float, float] | None) -> None:
        self.lr_low.setText(format_float(lr_range[0]) if lr_range else "")
        self.lr_high.setText(format_float(lr_range[1]) if lr_range else "")

    def overrides(self) -> dict[str, Any]:
        """The narrowed ranges as the study's ``overrides``: ``{"cosine.lr": [lo, hi],
        "triangle2.min_lr": [lo, hi], "triangle2.max_lr": [lo, hi]}`` (an ordered pair such as
        min_lr <= max_lr is kept in order by the space)."""
        assert self._registry is not None
        out: dict[str, Any] = {}
        for name, (lo, hi) in self.policy_ranges().items():
            for info in lr_params(self._registry.policy(name)):
                out[f"{name}.{info.name}"] = [lo, hi]
        return out

    def _update_count(self) -> None:
        names = self.checked_policies()
        self.policy_count.setText(f"{len(names)} selected: {', '.join(names)}" if names else "Tick at least one policy.")
