"""The Policies panel: draw a policy or a sequence of them, compare pinned curves, open and save
specs. :class:`PolicyPanel` composes the widgets of the modules here, one job each."""

from lrbench_gui.qt.policies.curve_view import CURRENT_COLOR, MAX_POINTS, CurveView, sample_steps
from lrbench_gui.qt.policies.overlay import OVERLAY_COLORS, OverlayBox
from lrbench_gui.qt.policies.panel import PolicyPanel
from lrbench_gui.qt.policies.picker import PolicyPicker
from lrbench_gui.qt.policies.sequence import Segment, SegmentEditor
from lrbench_gui.qt.policies.spec_box import SpecBox, write_text_atomic

__all__ = [
    "PolicyPanel",
    "PolicyPicker",
    "CurveView",
    "OverlayBox",
    "SegmentEditor",
    "SpecBox",
    "Segment",
    "MAX_POINTS",
    "CURRENT_COLOR",
    "OVERLAY_COLORS",
    "write_text_atomic",
    "sample_steps",
]
