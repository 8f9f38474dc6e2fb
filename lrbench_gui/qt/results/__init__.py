"""The Results panel's analysis views, one widget per view, behind one chooser.

* :class:`CurvesView`: the selected trials' LR, loss and evaluation curves (smoothing, x axis);
* :class:`MetricVsLrView`: the metric against the peak LR per family, seeds' spread, range test;
* :class:`MetricVsParamView`: any metric against any searched parameter;
* :class:`ParallelView`: parallel coordinates and parameter importance (Optuna's fANOVA or PED-ANOVA);
* :class:`CompareView`: the selected trials side by side.

The computation is :mod:`lrbench_gui.core.analysis` (Qt-free); the panel loads the records on
its database queue and hands the rows here.
"""

from lrbench_gui.qt.results.compare import CompareView
from lrbench_gui.qt.results.curves import CurvesView
from lrbench_gui.qt.results.lr_view import MetricVsLrView
from lrbench_gui.qt.results.parallel import ParallelView
from lrbench_gui.qt.results.param_view import MetricVsParamView
from lrbench_gui.qt.results.study_details import StudyDetails
from lrbench_gui.qt.results.views import ResultsViews

__all__ = ["ResultsViews", "CurvesView", "MetricVsLrView", "MetricVsParamView", "ParallelView", "CompareView", "StudyDetails"]
