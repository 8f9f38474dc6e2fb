"""The Policies panel's editor column: the mode switch, the sequence's segments, the policy
picker with a line about the chosen policy, and the parameter form generated from its schema."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.params import ParamError, validate_params
from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.param_form import ParamForm
from lrbench_gui.qt.policies.picker import FAMILY_TITLES, PolicyPicker
from lrbench_gui.qt.policies.sequence import SegmentEditor

__all__ = ["PolicyEditor", "default_params", "carry_params"]


def default_params(registry: Registry, name: str) -> dict[str, Any]:
    """Every parameter of policy ``name`` at its default."""
    return validate_params(registry.policy(name).Params, {}).model_dump(mode="json")


def carry_params(registry: Registry, name: str, previous_name: str | None, previous: dict[str, Any]) -> dict[str, Any]:
    """Defaults of ``name``, keeping the values the user edited on the previous policy where a
    same-named parameter exists and accepts them (cosine with lr=0.01 -> linear keeps lr=0.01)."""
    values = default_params(registry, name)
    if previous_name not in registry.policies:
        return values
    old_defaults = default_params(registry, previous_name)
    model = registry.policy(name).Params
    edited = {k: v for k, v in previous.items() if k in model.model_fields and old_defaults.get(k) != v}
    if not edited:
        return values
    try:
        return validate_params(model, {**values, **edited}).model_dump(mode="json")
    except (ParamError, ValueError):
        return values


class PolicyEditor(QScrollArea):
    """The editor's widgets, laid out in a scrolling column; the panel connects their signals."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        layout.addWidget(self.mode_bar)

        self.sequence = SegmentEditor(column)
        self.sequence.setVisible(False)
        layout.addWidget(self.sequence)

        self.picker_box = QGroupBox("Policy", column)
        pick = QVBoxLayout(self.picker_box)
        self.picker = PolicyPicker(self.picker_box)
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
        self.sequence.before_select = self.form.flush
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

        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setWidget(column)
        self.setMinimumWidth(300)  # room for the plot at 1024 px

    def show_policy_info(self, registry: Registry, name: str | None) -> None:
        """The chosen policy in one line: family, plugin, version, summary and reference."""
        if name is None or name not in registry.policies:
            self.policy_info.setText("<span style='color:#6b7280'>No policy selected.</span>")
            return
        reg = registry.policies[name]
        cls = reg.obj
        family = FAMILY_TITLES.get(cls.family, cls.family)
        facts = [family, f"plugin {reg.plugin}", f"v{reg.version}"]
        if cls.uses_total_steps:
            facts.append("depends on the run length")
        ref = f"<br><span style='color:#6b7280'>{cls.reference}</span>" if cls.reference else ""
        self.policy_info.setText(
            f"<b>{name}</b> <span style='color:#6b7280'>· {' · '.join(facts)}</span><br>{reg.summary}{ref}"
        )
