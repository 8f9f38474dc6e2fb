"""The Live panel's Metric vs LR and Metric vs parameter tabs: built from the study's finished
trial records as they arrive, left alone while hidden and brought up to date when shown."""

from __future__ import annotations

import pyqtgraph as pg

from lrbench_gui.core.db.sample import synthetic_range_test, synthetic_trial
from lrbench_gui.qt.db_jobs import DatabaseJobs
from lrbench_gui.qt.live.panel import LivePanel
from lrbench_gui.qt.study_controller import StudyController
from lrbench_gui.qt.trial_runner import TrialRunner


def _finish(panel: LivePanel, record: dict) -> None:
    """A trial as the controller reports it: added, then finished with its stored record."""
    tid = record["id"]
    panel._trial_added(tid, {"trial": tid, "key": tid[-2:], "label": "", "policy": record["policy"],
                             "steps": 100, "point": {}})
    panel._trial_finished(tid, record)


def _family_lines(view) -> dict[str, int]:
    return {item.name(): len(item.xData) for item in view.plot.getPlotItem().items
            if isinstance(item, pg.PlotDataItem) and item.name()}


def test_the_live_lr_tab_builds_up_as_trials_finish_and_costs_nothing_hidden(qtbot, lrbench_env, registry, tmp_path):
    jobs = DatabaseJobs(tmp_path / "db.json", registry=registry)
    panel = LivePanel(StudyController(TrialRunner(1, workdir=tmp_path / "trials"), jobs, registry), jobs, registry)
    qtbot.addWidget(panel)
    panel.resize(1200, 700)
    panel.show()
    qtbot.waitExposed(panel)
    # 3 families (fixed, cosine, warmup_decay), a new peak LR every 3 trials
    trials = [synthetic_trial(i, points=40) for i in range(9)]
    for record in trials[:6]:
        _finish(panel, record)
    assert panel.tabs.currentWidget() is panel.plot
    assert panel.lr_view.rows == [] and panel._rows == {}  # hidden: nothing computed yet

    panel.tabs.setCurrentWidget(panel.lr_view)
    assert _family_lines(panel.lr_view) == {"cosine": 2, "fixed": 2, "warmup_decay": 2}
    assert panel.lr_view.metric == "eval_loss"

    with qtbot.waitSignal(panel.lr_view.drawn, timeout=2000):  # shown: each finished trial redraws it
        _finish(panel, trials[6])
    for record in [*trials[7:], synthetic_range_test("s1-rt", points=60)]:
        _finish(panel, record)
    assert _family_lines(panel.lr_view) == {"cosine": 3, "fixed": 3, "warmup_decay": 3}
    assert len(panel.lr_view.tests) == 1 and not panel.lr_view.range_plot.isHidden()
    assert panel.param_view.rows == []  # the other tab still waits

    panel.tabs.setCurrentWidget(panel.param_view)
    assert len(panel.param_view.points["x"]) == 9
    csv = panel.export_curves(tmp_path / "live-param.csv")  # the export takes the view shown
    assert csv.read_text().splitlines()[0].startswith("trial,family")
