"""The Live panel: a running study's trials, their curves as they stream, and the ranking.
:class:`LivePanel` composes the widgets of the modules here, one job each."""

from lrbench_gui.qt.live.panel import LivePanel
from lrbench_gui.qt.live.range_view import RangeView
from lrbench_gui.qt.live.ranking import RankingBox, recipe_record
from lrbench_gui.qt.live.trial_table import STATUS_COLORS, TrialStateModel

__all__ = ["LivePanel", "TrialStateModel", "RankingBox", "RangeView", "STATUS_COLORS", "recipe_record"]
