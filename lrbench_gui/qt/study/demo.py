"""The demo study and the box that runs it with one click."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QVBoxLayout, QWidget

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.study import StudyConfig

__all__ = ["DEMO_STUDY", "demo_config", "DemoBox"]

#: The demo: four classic shapes of LR schedule on the digits MLP, random search, two at a time.
#: About a minute on a laptop CPU (most of it is each trial's start-up).
DEMO_STUDY: dict[str, Any] = {
    "name": "demo: random search over four policy shapes on digits",
    "task": "digits-mlp",
    "method": "single",
    "tuner": "random",
    "policies": ["fixed", "step", "cosine", "triangle2"],
    "lr_range": (3e-4, 0.1),  # AdamW on the digits MLP: from too timid to nearly too bold
    "budget_steps": 200,
    "trials": 8,
    "parallel": 2,
    "seed": 0,
    "threads": 1,
}


def demo_config(**overrides: Any) -> StudyConfig:
    """The demo study; ``overrides`` change its size (tests use 2 short trials)."""
    return StudyConfig(**{**DEMO_STUDY, **overrides})


class DemoBox(QFrame):
    """"Run the demo study" and what it will do, or what it needs that is missing."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demoBox")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        self.demo_btn = QPushButton("▶  Run the demo study", self)
        self.demo_btn.setObjectName("demoButton")
        self.demo_btn.setMinimumHeight(38)
        self.demo_btn.setStyleSheet(
            "QPushButton#demoButton { background: #16a34a; color: white; font-weight: bold; font-size: 11pt;"
            " border: none; border-radius: 5px; padding: 6px 16px; }"
            "QPushButton#demoButton:hover { background: #15803d; }"
            "QPushButton#demoButton:disabled { background: #a7d7b5; }")
        self.demo_text = QLabel(self)
        self.demo_text.setWordWrap(True)
        layout.addWidget(self.demo_btn)
        layout.addWidget(self.demo_text)
        self.available = False

    def update_for(self, registry: Registry, demo: dict[str, Any], busy: bool) -> None:
        """Say what the demo ``demo`` does, or what of it ``registry`` lacks; enable the button."""
        missing = [p for p in demo["policies"] if p not in registry.policies]
        self.available = demo["task"] in registry.tasks and demo["tuner"] in registry.tuners and not missing
        self.demo_btn.setEnabled(self.available and not busy)
        if self.available:
            self.demo_text.setText(
                f"{demo['tuner'].capitalize()} search over {', '.join(demo['policies'])} on {demo['task']}: "
                f"{demo['trials']} trials of {demo['budget_steps']} steps, {demo['parallel']} at a time. "
                "About a minute on a laptop CPU; watch it in the Live panel.")
            return
        why = "the tuner plugins are not loaded" if demo["tuner"] not in registry.tuners else "some are missing"
        self.demo_text.setText(
            f"The demo needs the task {demo['task']!r}, the tuner {demo['tuner']!r} and the policies "
            f"{', '.join(demo['policies'])}; {why} (see the Plugins panel).")

    def set_busy(self, busy: bool) -> None:
        self.demo_btn.setEnabled(self.available and not busy)

    def theme_changed(self, dark: bool) -> None:
        bg, border, fg = ("#14291c", "#2f6b43", "#bbf7d0") if dark else ("#f0fdf4", "#bbe5c8", "#14532d")
        self.setStyleSheet(f"QFrame#demoBox {{ background: {bg}; border: 1px solid {border}; border-radius: 6px; }}")
        self.demo_text.setStyleSheet(f"color: {fg};")
