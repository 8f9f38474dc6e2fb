"""The Study panel: design a study, preview what will run, start it or the demo, resume one.
:class:`StudyPanel` composes the boxes of the modules here, one job each."""

from lrbench_gui.qt.study.demo import DEMO_STUDY, demo_config
from lrbench_gui.qt.study.panel import StudyPanel
from lrbench_gui.qt.study.policy_choice import PolicyChoice, lr_params
from lrbench_gui.qt.study.preview import preview_html, preview_space
from lrbench_gui.qt.study.recent import RecentStudies, ResumeBanner

__all__ = [
    "StudyPanel",
    "PolicyChoice",
    "RecentStudies",
    "ResumeBanner",
    "DEMO_STUDY",
    "demo_config",
    "lr_params",
    "preview_space",
    "preview_html",
]
