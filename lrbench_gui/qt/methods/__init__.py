"""The Methods panel and its views, one file per view.

:data:`VIEWS` is the one table from a tuner's ``view`` key to the widget that draws its studies'
summaries; the panel lists every registered tuner whose key is in it. A plugin's study kind joins
the panel by naming one of these keys (``view = "summary"`` shows any summary as a tree).
"""

from __future__ import annotations

from lrbench_gui.qt.methods._plots import MethodView
from lrbench_gui.qt.methods.form import NewMethodStudyForm, NewStudyForm
from lrbench_gui.qt.methods.horizon import HorizonView
from lrbench_gui.qt.methods.merge import MergeView
from lrbench_gui.qt.methods.panel import MethodsPanel, methods_icon
from lrbench_gui.qt.methods.path_switch import PathSwitchView
from lrbench_gui.qt.methods.summary import SummaryView

#: ``Tuner.view`` -> the view class (built with ``(registry, parent)``)
VIEWS: dict[str, type[MethodView]] = {
    "horizon": HorizonView,
    "path-switch": PathSwitchView,
    "merge": MergeView,
    "summary": SummaryView,
}

__all__ = ["VIEWS", "MethodView", "HorizonView", "PathSwitchView", "MergeView", "SummaryView", "MethodsPanel",
           "NewStudyForm", "NewMethodStudyForm", "methods_icon"]
