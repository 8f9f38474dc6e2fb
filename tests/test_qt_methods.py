"""The Methods panel, offscreen: the horizon, path-switch and merge views drawn from real study
summaries (``tests/data/methods/*.json``, saved from real runs), partial summaries of running
studies, the list read from a real database, the "New..." forms (their study and their command
line, checked against the CLI's) and the live redraw of a running study. No training runs here."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from PySide6.QtCore import QObject, Signal

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.params import validate_params
from lrbench_gui.core.spec import build_schedule
from lrbench_gui.core.tuning.study import StudyConfig
from lrbench_gui.qt.methods import (
    VIEWS,
    HorizonView,
    MergeView,
    MethodsPanel,
    PathSwitchView,
)
from lrbench_gui.qt.study_controller import DatabaseJobs

DATA = Path(__file__).parent / "data" / "methods"
#: the tuner parameters of the studies the fixtures come from
PARAMS = {
    "horizon": {"horizons": [40, 80, 160], "lr_min": 0.003, "lr_max": 0.012, "points": 3, "seeds": 1, "widen": 1,
                "target_steps": 640, "check": True},
    "path-switch": {"versions": 3, "chunk_steps": 40, "lr": 0.007, "fractions": [0.25, 0.5], "branch_data": "both"},
    "merge": {"later": "/ckpt/step-0000120.safetensors", "earlier": "/ckpt/step-0000080.safetensors", "grid": 11},
}


def summary(kind: str) -> dict[str, Any]:
    return json.loads((DATA / f"{kind}.json").read_text())


def study_record(kind: str, tuner_summary: dict[str, Any], status: str = "finished", **cfg: Any) -> dict[str, Any]:
    """A study record shaped as ``Study.study_record`` writes it."""
    config = StudyConfig(task="tinylm-pretrain", tuner=kind, tuner_params=PARAMS.get(kind, {}), policies=["fixed"],
                         trials=1, name=f"{kind} study", **cfg)
    return {
        "id": config.study_id, "name": config.name, "task": config.task, "task_params": {},
        "tuner": {"name": kind, "params": config.tuner_params},
        "objective": {"metric": "val_loss", "mode": "min"}, "budget": {"steps": config.budget_steps},
        "status": status,
        "extra": {"config": config.model_dump(mode="json"),
                  "summary": {"trials": 3, "replayed": 0, "compute_steps": 100, "best": None, "tuner": tuner_summary}},
    }


def xy(item) -> tuple[np.ndarray, np.ndarray]:
    """A curve's data as given (before a log axis transforms it)."""
    return np.asarray(item.xData, dtype=float), np.asarray(item.yData, dtype=float)


# The views, from real summaries.


def test_horizon_view_draws_sweeps_fits_stars_and_the_power_law(qtbot):
    s = summary("horizon")
    view = HorizonView()
    qtbot.addWidget(view)
    view.set_summary(s)
    steps = [r["steps"] for r in s["horizons"]]
    assert sorted(view.point_items) == sorted(view.fit_items) == sorted(view.star_items) == steps
    for r in s["horizons"]:
        x, y = xy(view.point_items[r["steps"]])
        np.testing.assert_allclose(x, r["lrs"])
        np.testing.assert_allclose(y, r["loss_mean"])
        star_x, star_y = xy(view.star_items[r["steps"]])
        np.testing.assert_allclose(star_x, [r["lr_star"]])
        np.testing.assert_allclose(star_y, [r["loss_at_star"]])
        fx, fy = xy(view.fit_items[r["steps"]])
        a, b, c = r["coef"]
        assert fx.min() == pytest.approx(min(r["fit_lrs"])) and fx.max() == pytest.approx(max(r["fit_lrs"]))
        np.testing.assert_allclose(fy, a * np.log(fx) ** 2 + b * np.log(fx) + c)
    assert view.error_items == {}  # one seed: no spread to draw
    assert view.loss_plot.getPlotItem().ctrl.logXCheck.isChecked()
    assert "mean of 1 seeds" in view.loss_plot.getAxis("left").labelText

    # LR* against tokens: the fitted horizons, the held-out one, the law, prediction and rule
    law = s["power_law"]
    fx, fy = xy(view.measured_items["fit"])
    np.testing.assert_allclose(fx, [p[0] for p in law["points"]])
    hx, hy = xy(view.measured_items["held"])
    np.testing.assert_allclose([hx[0], hy[0]], [s["holdout"]["tokens"], s["horizons"][-1]["lr_star"]])
    lx, ly = xy(view.law_item)
    np.testing.assert_allclose(ly, law["B"] * lx ** -law["beta"])
    assert lx.max() >= s["target"]["tokens"]  # the line reaches the prediction
    px, py = xy(view.prediction_items["holdout"])
    assert (px[0], py[0]) == pytest.approx((s["holdout"]["tokens"], s["holdout"]["predicted_lr"]))
    px, py = xy(view.prediction_items["target"])
    assert (px[0], py[0]) == pytest.approx((s["target"]["tokens"], s["target"]["lr"]))
    zx, zy = xy(view.zero_overhead_items["holdout"])
    assert (zx[0], zy[0]) == pytest.approx((s["holdout"]["tokens"], s["holdout"]["zero_overhead_lr"]))
    plot = view.law_plot.getPlotItem()
    assert plot.ctrl.logXCheck.isChecked() and plot.ctrl.logYCheck.isChecked()
    text = view.info.text()
    assert "beta 0.000" in text and "no 90% band" in text
    assert "held-out 160 steps: predicted LR 0.003, measured LR* 0.00207 (x1.45)" in text


def test_horizon_view_error_bars_band_and_diverged_lrs(qtbot):
    s = summary("horizon")
    row = s["horizons"][0]
    row["loss_sd"] = [0.01, 0.02, None, 0.04]
    row["loss_mean"][2] = None  # every seed diverged there
    row["diverged"][2] = 2
    s["power_law"]["beta_band"] = [0.21, 0.43]
    s["power_law"]["band_method"] = "bootstrap"
    s["holdout"]["band"] = [0.002, 0.004]
    view = HorizonView()
    qtbot.addWidget(view)
    view.set_summary(s)
    bars = view.error_items[40]
    np.testing.assert_allclose(bars.opts["x"], np.log10([0.0015, 0.003, 0.012]))  # log axis: log10 x
    np.testing.assert_allclose(bars.opts["height"], [0.02, 0.04, 0.08])
    assert len(xy(view.point_items[40])[0]) == 3
    assert [line.value() for line in view.diverged_lines[40]] == pytest.approx([math.log10(0.006)])
    bx, by = xy(view.band_items["holdout"])
    np.testing.assert_allclose(by, [0.002, 0.004])
    assert "beta 0.000, 90% band [0.210, 0.430] (bootstrap)" in view.info.text()


def test_path_switch_view_draws_the_tree_the_losses_and_the_cost(qtbot, registry):
    s = summary("path-switch")
    view = PathSwitchView(registry)
    qtbot.addWidget(view)
    view.set_summary(s)
    tree = [p for p in s["paths"] if p["method"] != "scratch"]
    assert sorted(view.path_items) == sorted(p["trial"] for p in tree)
    for p in tree:
        x, y = xy(view.path_items[p["trial"]])
        np.testing.assert_array_equal(x, np.arange(p["start"], p["start"] + p["steps"]))
        np.testing.assert_allclose(y, build_schedule(p["policy"], p["steps"], registry).lrs())
    assert xy(view.path_items["main"])[0][-1] == 119
    assert xy(view.path_items["branch-v2-f0.5-replay"])[0][0] == 120

    with_releases = [n for n, m in s["methods"].items() if m["releases"]]
    assert list(view.loss_items) == with_releases and "main" not in view.loss_items
    x, y = xy(view.loss_items["scratch"])
    np.testing.assert_allclose(y, [r["val_loss"] for r in s["methods"]["scratch"]["releases"]])
    np.testing.assert_array_equal(x, [0, 1, 2])

    assert view.cost_names == list(s["methods"])
    widths = [float(w) for w in view.cost_bars.opts["width"]]
    assert widths == [s["methods"][n]["total_steps"] for n in view.cost_names]
    labels = [item.toPlainText() for item in view.cost_labels]
    assert labels == [f" {s['methods'][n]['final_val_loss']:.4f}" for n in view.cost_names]
    names = [item.toPlainText() for item in view.cost_method_labels]
    assert names[:3] == ["from scratch", "continued (re-warm, cosine)", "main path only (no decay)"]
    assert names[3] == "switch f=0.25, replay"
    assert "switch f=0.5, replay -10.5% at 75% of the cost" in view.info.text()


def test_merge_view_numbers_the_evaluations_and_stars_the_best(qtbot):
    s = summary("merge")
    view = MergeView()
    qtbot.addWidget(view)
    view.set_summary(s)
    x, y = xy(view.bo_item)
    np.testing.assert_allclose(x, [e["lambda"] for e in s["evaluations"]])
    np.testing.assert_allclose(y, [e["value"] for e in s["evaluations"]])
    assert [t.toPlainText() for t in view.order_labels] == ["1", "2", "3", "4", "5", "6"]
    gx, gy = xy(view.grid_item)
    assert len(gx) == 11 and list(gx) == sorted(gx)
    bx, by = xy(view.best_item)
    assert (bx[0], by[0]) == pytest.approx((s["best"]["lambda"], s["best"]["value"]))
    assert view.endpoint_line.value() == pytest.approx(s["endpoints"]["later"])
    assert "gain +0.047% vs the better checkpoint" in view.info.text()
    assert "step-0000080 → step-0000120" in view.plot.getPlotItem().titleLabel.text

    del s["grid"], s["grid_best"]
    view.set_summary(s)
    assert view.grid_item is None and len(xy(view.bo_item)[0]) == 6


def test_partial_and_empty_summaries_do_not_raise(qtbot, registry):
    from lrbench_gui.core.tuner import Objective, StudyBudget

    def fresh(kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """A running study's summary: the tuner was asked, nothing finished yet."""
        return registry.tuner(kind)(params, None, Objective("val_loss", "min"), StudyBudget(10, 1), 0).summary_json()

    h = summary("horizon")
    h["horizons"][0].update(lrs=[0.001, None, "x"], loss_mean=[2.0], loss_sd=None, coef=[1.0], lr_star=None)
    h["horizons"][1].update(coef=[0.1, None, 3.0], fit_lrs=[], loss_at_star=None, tokens=None)
    h["power_law"] = {"B": None, "beta": 0.3, "points": [[None, 1]]}
    h["holdout"] = {"tokens": 0, "predicted_lr": None}
    h["target"] = {"steps": 640}
    p = summary("path-switch")
    p["paths"][0]["policy"] = {"name": "no_such_policy", "params": {}}
    p["paths"][1] = {"method": "path_switch"}
    p["methods"]["scratch"]["releases"] = [{"version": 0, "val_loss": None}, {"val_loss": 2.0}]
    p["methods"]["continued"] = {"label": None, "total_steps": None}
    m = {"evaluations": [{"lambda": 0.5}, {"lambda": 0.2, "value": 2.0}], "grid": None, "best": {"lambda": None},
         "endpoints": {"later": None}, "gain_vs_better_endpoint": "?"}
    cases = {
        HorizonView: [{}, None, {"horizons": None}, {"horizons": [{}]},
                      fresh("horizon", {"horizons": [40, 80, 160]}), h],
        lambda: PathSwitchView(registry): [{}, None, {"paths": [None], "methods": {"a": None}},
                                           fresh("path-switch", {"versions": 3, "chunk_steps": 40}), p],
        MergeView: [{}, None, fresh("merge", {"later": "a", "earlier": "b"}), m],
    }
    for make, summaries in cases.items():
        view = make()
        qtbot.addWidget(view)
        for s in summaries:
            view.set_summary(s)
            assert view.info.text() and "Could not draw" not in view.info.text(), (type(view).__name__, s)
    view = HorizonView()
    qtbot.addWidget(view)
    view.set_summary(h)
    assert list(view.star_items) == [160] and 80 not in view.fit_items
    assert "No power law yet" in view.info.text()


# The panel.


class FakeController(QObject):
    """The StudyController's face as the panel sees it; ``start`` records the config."""

    studyStarted = Signal(str, object)
    trialFinished = Signal(str, dict)
    studyFinished = Signal(str, str, dict)
    recordStored = Signal(str, str)
    idle = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.started: list[StudyConfig] = []
        self.study: Any = None

    def is_busy(self) -> bool:
        return self.study is not None

    def start(self, config: StudyConfig) -> None:
        if self.study is not None:
            raise RuntimeError("a study is already running: stop it first")
        self.started.append(config)


class FakeStudy:
    def __init__(self, config: StudyConfig, tuner_summary: dict[str, Any]) -> None:
        self.config = config
        self.results: dict = {}
        self.tuner = type("T", (), {"summary_json": lambda _self: tuner_summary})()


@pytest.fixture
def method_db(lrbench_env):
    """A database with one study of each kind (from the fixtures) and a plain random-search study."""
    db = PolicyDB(lrbench_env["db"])
    records = [study_record("horizon", summary("horizon")), study_record("random", {"tuner": "random"}),
               study_record("path-switch", summary("path-switch")), study_record("merge", summary("merge"))]
    for r in records:
        db.add_study(r)
    return lrbench_env["db"], records


@pytest.fixture
def jobs(method_db):
    jobs = DatabaseJobs(method_db[0])
    yield jobs
    jobs.close()


def test_panel_lists_the_method_studies_newest_first_and_shows_their_views(qtbot, registry, method_db, jobs):
    _, records = method_db
    panel = MethodsPanel(registry, None, jobs)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.studiesLoaded, timeout=5000):
        panel.refresh()
    merge, path, horizon = records[3]["id"], records[2]["id"], records[0]["id"]
    assert panel.study_ids() == [merge, path, horizon]  # newest first, the random search left out
    # the kinds come from the registry: every tuner whose view has an entry in the one table
    assert panel.kinds() == ["horizon", "path-switch", "merge"]
    assert {k for k in registry.tuners if registry.tuner(k).view in VIEWS} == set(panel.kinds())
    assert panel.selected_study_id() == merge and isinstance(panel.current_widget(), MergeView)
    assert panel.select_study(horizon)
    view = panel.current_widget()
    assert isinstance(view, HorizonView) and len(view.star_items) == 3
    assert "horizon study" in panel.title_label.text() and "finished" in panel.title_label.text()
    assert panel.select_study(path) and isinstance(panel.current_widget(), PathSwitchView)
    assert not panel.select_study("s-none")

    form = panel.new_study("horizon")  # without a controller: the command line only
    assert panel.current_widget() is form and not form.start_btn.isEnabled()
    # every value is the kind's default (HorizonTuner.Params, its study_defaults): nothing to say but the db
    assert form.command_line() == f"lrbench study horizon --db {jobs.db_path}"


def _cli_config(registry, argv: list[str]) -> StudyConfig:
    """The StudyConfig ``lrbench study KIND ...`` builds from ``argv`` (the study is not run)."""
    from lrbench_gui.cli.study import config_from_argv

    assert argv[:2] == ["lrbench", "study"]
    return config_from_argv(registry, argv[2], argv[3:], PolicyDB(registry=registry))


def _same_study(a: StudyConfig, b: StudyConfig, registry) -> None:
    cls = registry.tuner(a.tuner)
    assert validate_params(cls.Params, a.tuner_params) == validate_params(cls.Params, b.tuner_params)
    skip = {"study_id", "tuner_params"}
    assert a.model_dump(exclude=skip) == b.model_dump(exclude=skip)


@pytest.mark.parametrize("kind", ["horizon", "path-switch", "merge"])
def test_new_form_builds_the_study_and_the_same_command_line(qtbot, registry, method_db, jobs, tmp_path, kind):
    panel = MethodsPanel(registry, FakeController(), jobs)
    qtbot.addWidget(panel)
    form = panel.new_study(kind)
    edits = {"horizon": {"horizons": "40, 80, 160", "check": True, "window": 4},
             "path-switch": {"fractions": "0.25, 0.5", "scratch": False, "warmup": 0.1},
             "merge": {"later": str(tmp_path / "b.safetensors"), "earlier": str(tmp_path / "a b.safetensors"),
                       "grid": 5, "initial": "1, 0"}}[kind]
    for name, value in edits.items():
        editor = form.tuner_form.editor(name)
        if isinstance(value, bool):
            editor.setChecked(value)
        elif hasattr(editor, "setValue"):
            editor.setValue(value)
        else:
            editor.setText(str(value))
    form.task_form.editor("val_tokens").setValue(4096)
    form.parallel.setValue(3)
    form.seed.setValue(7)
    for path in (tmp_path / "a b.safetensors", tmp_path / "b.safetensors"):
        path.write_bytes(b"")
    config = form.config()
    assert config.tuner == kind and config.trials == 1 and config.policies == ["fixed"]
    assert config.task_params == {"val_tokens": 4096} and config.parallel == 3 and config.seed == 7
    if kind == "horizon":
        assert config.tuner_params["horizons"] == [40, 80, 160] and config.budget_steps == 160
    form.update_command()
    command = form.command_edit.toPlainText()
    assert command == form.command_line() and f"--db {jobs.db_path}" in command
    argv = shlex.split(command)
    assert argv[:3] == ["lrbench", "study", kind]
    _same_study(_cli_config(registry, argv), config, registry)

    with qtbot.waitSignal(panel.studyRequested, timeout=1000):
        form.start_btn.click()
    assert panel.controller.started[0].tuner_params == config.tuner_params


def test_a_running_study_is_listed_and_redrawn_as_its_trials_finish(qtbot, registry, method_db, jobs):
    controller = FakeController()
    panel = MethodsPanel(registry, controller, jobs)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.studiesLoaded, timeout=5000):
        panel.refresh()
    form = panel.new_study("horizon")
    form.tuner_form.editor("horizons").setText("40, 80, 160")
    assert panel.start_form(form)
    config = controller.started[-1]
    running: dict[str, Any] = {"tuner": "horizon", "horizons": []}
    controller.study = FakeStudy(config, running)
    controller.studyStarted.emit(config.study_id, config)
    assert panel.study_ids()[0] == config.study_id and panel.selected_study_id() == config.study_id
    view = panel.current_widget()
    assert isinstance(view, HorizonView) and view.star_items == {}
    assert not form.start_btn.isEnabled()  # one study at a time

    running.update(summary("horizon"))  # trials finished: the tuner now has its fits
    with qtbot.waitSignal(panel.viewUpdated, timeout=1000):
        controller.trialFinished.emit(f"{config.study_id}-h40", {})
    assert sorted(view.star_items) == [40, 80, 160]
    assert "running" in panel.title_label.text()

    controller.study = None  # it ended; its record is in the database
    with qtbot.waitSignal(panel.studiesLoaded, timeout=5000):
        controller.studyFinished.emit(config.study_id, "finished", {"config": config.model_dump(mode="json")})
    assert config.study_id not in panel.study_ids()  # (the fake never wrote it)
    assert form.start_btn.isEnabled()


def test_dense_grid_repeats_the_merge_study_with_a_grid(qtbot, registry, method_db, jobs):
    _, records = method_db
    controller = FakeController()
    panel = MethodsPanel(registry, controller, jobs)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.studiesLoaded, timeout=5000):
        panel.refresh()
    assert panel.select_study(records[3]["id"])
    view = panel.current_widget()
    assert isinstance(view, MergeView) and view.grid_button.isEnabled()
    view.grid_spin.setValue(41)
    view.grid_button.click()
    (config,) = controller.started
    old = StudyConfig.model_validate(records[3]["extra"]["config"])
    assert config.study_id != old.study_id and config.tuner == "merge"
    assert config.tuner_params == {**old.tuner_params, "grid": 41}
    assert config.name == "merge study (grid of 41)"


def test_window_has_methods_after_results(qtbot, method_db):
    from lrbench_gui.qt.main_window import MainWindow

    win = MainWindow()
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    names = win.panel_names()
    assert names[names.index("Results") + 1] == "Methods" and names[-1] == "Plugins"
    assert win.panel("Methods") is win.methods_panel and win.methods_panel._views == {}  # built when needed
    win.show()
    with qtbot.waitSignal(win.methods_panel.studiesLoaded, timeout=5000):
        win.show_panel("Methods")
    assert len(win.methods_panel.study_ids()) == 3
    win.close()


def test_new_form_says_what_is_wrong_before_starting(qtbot, registry, method_db, jobs):
    controller = FakeController()
    panel = MethodsPanel(registry, controller, jobs)
    qtbot.addWidget(panel)
    form = panel.new_study("merge")
    with pytest.raises(ValueError, match="give the two checkpoints"):
        form.config()
    form.update_command()
    assert "give the two checkpoints" in form.error_label.text()
    assert not panel.start_form(form) and controller.started == []
    assert "Cannot start the study: merge: give the two checkpoints" in panel.banner.text()

    form = panel.new_study("horizon")
    form.tuner_form.editor("lr_min").setText("0.05")
    with pytest.raises(ValueError, match="lr_min"):
        form.config()
