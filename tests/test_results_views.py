"""The Results panel's analysis views on a real database (pytest-qt, offscreen): the layout at
1024x700, the selected trials' curves with evaluation curves, smoothing and a legend that
toggles, metric vs LR per family with the seeds' spread and the range test, any parameter,
parallel coordinates and importance, the side-by-side comparison, the study's confidence, the
exports and the dark theme."""

from __future__ import annotations

import csv
import math

import numpy as np
import pyqtgraph as pg
import pytest

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_range_test, synthetic_study, synthetic_trial
from lrbench_gui.qt.db_panel import _COLUMNS, DatabasePanel
from lrbench_gui.qt.results.views import SCOPE_SELECTED

TIMEOUT = 20_000
CONFIDENCE = {"best": "t00004", "p_better_elsewhere": 0.12, "p_better_asked": 0.05,
              "predicted": {"mean": 0.31, "sd": 0.02}, "model": "gp+quadratic", "samples": 512,
              "seed_spread": {"runs": 3, "values": [0.3, 0.31, 0.33], "mean": 0.313, "sd": 0.015, "range": 0.03}}


def _trial(i: int, seed: int) -> dict:
    t = synthetic_trial(i, study="s1", points=60, total_steps=600, seed=seed)
    t["extra"] = {"family": t["policy"]["name"], "point": {k: v for k, v in t["policy"]["params"].items() if "lr" in k}}
    steps = list(range(60, 601, 60))
    base = t["metrics"]["eval_loss"]
    t["curves"]["eval/val_loss"] = {"steps": steps, "values": [base + 1.0 / (k + 1) for k in range(len(steps))]}
    t["curves"]["eval/val_acc"] = {"steps": steps, "values": [0.5 + 0.04 * k for k in range(len(steps))]}
    return t


def _two_dims(i: int, rng: np.random.Generator) -> dict:
    lr, gamma = float(10 ** rng.uniform(-4, -1)), float(rng.uniform(0.1, 0.9))
    return {"id": f"s2-r{i:04d}", "study": "s2", "kind": "train", "task": "digits", "status": "completed", "seed": 0,
            "policy": {"name": "step", "params": {"lr": lr, "gamma": gamma, "step_size": 100}},
            "metrics": {"eval_loss": abs(math.log10(lr) + 2.5) + 0.01 * rng.normal()},
            "objective": {"metric": "eval_loss", "mode": "min"}, "cost": {"steps": 100, "seconds": 2.0},
            "curves": {"loss": {"steps": [0, 50, 99], "values": [2.0, 1.0, 0.5]}},
            "extra": {"family": "step", "point": {"lr": lr, "gamma": gamma}}}


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    db = PolicyDB(tmp_path_factory.mktemp("results") / "db.json")
    rng = np.random.default_rng(0)
    s1 = synthetic_study("s1")
    s1["extra"] = {"summary": {"best": {"trial": "s1-t00004-s0", "value": 0.3, "policy": {"name": "cosine", "params": {"lr": 3e-4}}},
                               "tuner": {"confidence": CONFIDENCE}}}
    with db.batch():
        db.add_study(s1)
        db.add_study(synthetic_study("s2"))
        db.add_study(synthetic_study("rt"))
        db.add_many("trials", [_trial(i, s) for i in range(6) for s in range(3)])
        db.add_many("trials", [_two_dims(i, rng) for i in range(12)])
        db.add_trial(synthetic_range_test("rt1", study="rt"))
    return db.path


@pytest.fixture
def panel(qtbot, db_path):
    panel = DatabasePanel(db_path)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT):
        pass
    yield panel
    panel.shutdown()


def _select(qtbot, panel, ids):
    with qtbot.waitSignals([panel.curvesShown, panel.analysisShown], timeout=TIMEOUT):
        panel.select_trials(ids)


def test_layout_holds_at_1024x700(qtbot, panel):
    panel.resize(874, 640)  # the panel's share of a 1024x700 window (the sidebar takes the rest)
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.minimumSizeHint().width() <= 874
    curves = panel.views.curves
    for plot in (curves.lr_plot, curves.loss_plot, curves.eval_a_plot, curves.eval_b_plot):
        assert plot.height() >= 110 and plot.width() >= 140, "no plot is collapsed to a strip"
    value = [key for _, key, _ in _COLUMNS].index("value")
    right_edge = panel.table.columnViewportPosition(value) + panel.table.columnWidth(value)
    assert right_edge <= panel.table.viewport().width(), "the value column is in view without scrolling"
    assert panel.table.height() > 150


def test_selected_trials_curves_eval_smoothing_legend_and_x_axis(qtbot, panel, tmp_path):
    ids = ["s1-t00001-s0", "s1-t00004-s1", "s2-r0003"]
    _select(qtbot, panel, ids)
    view = panel.views.curves
    assert sorted(panel.plotted_ids()) == sorted(ids)
    assert [view.eval_a.itemText(i) for i in range(view.eval_a.count())] == ["val_loss", "val_acc"]
    assert view.eval_a.currentText() == "val_loss" and view.eval_b.currentText() == "val_acc"
    names = lambda plot: sorted({i.name() for i in plot.plotItem.listDataItems() if i.name()})  # noqa: E731
    assert names(view.eval_a_plot) == sorted(ids[:2])  # s2's trial has no evaluation curve
    assert "1 without evaluation curves" in view.note.text()
    # smoothing: the training loss (60 points) gets a faint raw curve and the smoothed one
    loss_items = view.curve_items(ids[0])
    smoothed = [i for i in loss_items if i.name() == ids[0] and i.getViewBox() is view.loss_plot.plotItem.vb][0]
    raw_y = np.asarray(smoothed.yData)
    view.smoothing.setValue(0)
    plain = [i for i in view.curve_items(ids[0]) if i.name() == ids[0] and i.getViewBox() is view.loss_plot.plotItem.vb][0]
    assert np.std(np.diff(raw_y)) < np.std(np.diff(np.asarray(plain.yData))), "smoothing calms the curve"
    # the legend: one line per trial, in the trial's colour; unticking hides its curves
    assert view.legend.keys() == ids
    view.legend.item(0).setCheckState(pg.QtCore.Qt.CheckState.Unchecked)
    assert not any(i.isVisible() for i in view.curve_items(ids[0]))
    assert all(i.isVisible() for i in view.curve_items(ids[1]))
    # seconds: every selected trial recorded its time; tokens: one did not, so it is disabled
    model = view.x_combo.model()
    assert model.item(view.x_combo.findData("seconds")).isEnabled()
    assert not model.item(view.x_combo.findData("tokens")).isEnabled()
    view.x_combo.setCurrentIndex(view.x_combo.findData("seconds"))
    lr_items = [i for i in view.curve_items(ids[2]) if i.getViewBox() is view.lr_plot.plotItem.vb]
    assert view.loss_plot.getAxis("bottom").labelText.startswith("seconds")
    assert max(np.asarray([i for i in view.curve_items(ids[2]) if i.name()][0].xData)) == pytest.approx(2.0)
    assert not lr_items  # s2's trial has no LR curve
    out = panel.views.export_view(tmp_path / "curves.csv")
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["trial", "curve", "step", "seconds", "value", "smoothed"]
    assert {r[1] for r in rows[1:]} >= {"lr", "loss", "eval/val_loss"}


def test_metric_vs_lr_with_seed_spread_and_range_test(qtbot, panel, tmp_path):
    _select(qtbot, panel, ["s1-t00002-s0"])
    views = panel.views
    views.show_view(views.lr_view)
    view = views.lr_view
    assert view.metric == "eval_loss"
    assert set(view.curves) == {"fixed", "cosine", "warmup_decay"}
    assert all(p["n"] == 3 for pts in view.curves.values() for p in pts)
    bars = [i for i in view.plot.plotItem.items if isinstance(i, pg.ErrorBarItem)]
    assert len(bars) == 3, "one set of seed-spread bars per family"
    assert view.range_plot.isVisibleTo(view) and view.tests[0]["id"] == "rt1"
    regions = [i for i in view.range_plot.plotItem.items if isinstance(i, pg.LinearRegionItem)]
    lo, hi = view.tests[0]["suggested"]
    assert len(regions) == 1 and regions[0].getRegion() == pytest.approx((math.log10(lo), math.log10(hi)))
    assert view.legend.item(0).toolTip() == "cosine: 2 configurations, 6 trials"
    assert "6 with several seeds (bars: min to max)" in view.note.text()
    assert "Study" == panel.side_tabs.tabText(0) and "s1" in panel.study_details.text()
    png, svg, table = (views.export_view(tmp_path / f"lr.{ext}") for ext in ("png", "svg", "csv"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:400]
    rows = list(csv.reader(table.open()))
    assert rows[0][:3] == ["family", "lr", "eval_loss (mean)"] and len([r for r in rows if r[0] == "cosine"]) == 2


def test_metric_vs_parameter_parallel_and_importance(qtbot, panel):
    views = panel.views
    views.set_scope("s2")
    with qtbot.waitSignal(panel.analysisShown, timeout=TIMEOUT) as blocker:
        pass
    assert blocker.args[0]["trials"] == 12 and blocker.args[0]["studies"] == ["s2"]
    views.show_view(views.param_view)
    pv = views.param_view
    pv.param_combo.setCurrentText("gamma")
    assert pv.points["param"] == "gamma" and not pv.points["log_x"] and len(pv.points["x"]) == 12
    pv.param_combo.setCurrentText("lr")
    assert pv.points["log_x"] and pv.plot.plotItem.ctrl.logXCheck.isChecked()
    par = views.parallel
    par.evaluator_combo.setCurrentIndex(par.evaluator_combo.findData("ped-anova"))
    with qtbot.waitSignal(par.importanceReady, timeout=TIMEOUT) as blocker:
        views.show_view(par)
    result = blocker.args[0]
    assert result["evaluator"] == "PED-ANOVA" and result["importances"]["lr"] > result["importances"]["gamma"]
    assert par.table["axes"] == ["gamma", "lr", "eval_loss"]
    assert len([i for i in par.parallel_plot.plotItem.listDataItems()]) == 12
    assert "PED-ANOVA over 12 trials" in par.note.text()
    bars = [i for i in par.importance_plot.plotItem.items if isinstance(i, pg.BarGraphItem)]
    assert len(bars) == 1
    # a one-dimension study says so instead of drawing
    views.set_scope(SCOPE_SELECTED)
    _select(qtbot, panel, ["s1-t00000-s0", "s1-t00000-s1", "s1-t00000-s2"])
    assert "one dimension" in par.note.text() and not par.parallel_plot.plotItem.listDataItems()


def test_compare_and_confidence(qtbot, panel):
    ids = ["s1-t00000-s0", "s1-t00004-s0", "s1-t00005-s0"]
    _select(qtbot, panel, ids)
    cv = panel.views.compare
    panel.views.show_view(cv)
    assert cv.table.columnCount() == 3 and cv.fields[0] == "policy"
    row = cv.fields.index("eval_loss")
    values = [float(cv.table.item(row, j).text()) for j in range(3)]
    best = int(np.argmin(values))
    assert cv.table.item(row, best).font().bold() and not cv.table.item(row, (best + 1) % 3).font().bold()
    assert len([i for i in cv.plot.plotItem.listDataItems()]) == 3
    text = panel.study_details.text()
    assert "chance another point is truly better: 12% (gp+quadratic, 512 samples)" in text
    assert "over 3 seeds: mean 0.313, sd 0.015, range 0.03" in text
    # a study without one shows no confidence line
    panel.views.set_scope("s2")
    with qtbot.waitSignal(panel.analysisShown, timeout=TIMEOUT):
        pass
    assert "s2" in panel.study_details.text() and "confidence" not in panel.study_details.text()


def test_dark_theme_reaches_every_view(qtbot, panel):
    from lrbench_gui.qt.settings_dialog import apply_theme

    _select(qtbot, panel, ["s1-t00001-s0"])
    try:
        apply_theme("dark", panel)
        for view in panel.views.views():
            assert view.dark
            for plot in view.plots():
                assert plot.backgroundBrush().color().lightness() < 60
                assert plot.getAxis("left").textPen().color().lightness() > 150
        title = panel.views.curves.loss_plot.plotItem.titleLabel
        assert title.opts["color"] == "#d1d5db" and "Training loss" in title.text
    finally:
        apply_theme("light", panel)
    assert not panel.views.curves.dark
    assert panel.views.curves.loss_plot.plotItem.titleLabel.opts["color"] == "#374151"
