"""The policy picker: every registered policy, grouped by family, with a filter box."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QHeaderView, QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from lrbench_gui.core.registry import Registry

__all__ = ["PolicyPicker", "FAMILY_TITLES"]

FAMILY_TITLES = {
    "classic": "Classic decay",
    "llm": "LLM era",
    "cyclic": "Cyclic",
    "restart": "Warm restarts",
    "deepspeed": "DeepSpeed",
}
_ROLE_NAME = Qt.ItemDataRole.UserRole


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
