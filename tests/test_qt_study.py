"""Studies in the window, offscreen, with real trainer processes (CPU, tiny budgets): the demo
study from click to ranking, its trials in Results, export and import, recipes, closing with a
trial running, the resume offer, a failed trial's log, the range-test view, and settings."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from lrbench_gui.core.db import PolicyDB  # noqa: E402
from lrbench_gui.core.tuning.study import StudyConfig  # noqa: E402
from lrbench_gui.qt.db_panel import DatabasePanel  # noqa: E402
from lrbench_gui.qt.live import STATUS_COLORS, TrialStateModel  # noqa: E402
from lrbench_gui.qt.main_window import MainWindow  # noqa: E402
from lrbench_gui.qt.settings_dialog import AppSettings, apply_theme, parse_gpus  # noqa: E402

FINAL = {"completed", "stopped", "diverged", "failed", "pruned"}
TINY_DEMO = {"trials": 2, "budget_steps": 60}


@pytest.fixture
def settings(tmp_path):
    """QSettings on a temporary file: nothing of the user's is read or written."""
    return QSettings(str(tmp_path / "lrbench.ini"), QSettings.Format.IniFormat)


def open_window(qtbot, settings) -> MainWindow:
    win = MainWindow(settings=settings)
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def needs_tuner(win: MainWindow, name: str) -> None:
    if name not in win.registry.tuners:
        pytest.skip(f"the {name!r} tuner is not registered")


def test_demo_study_from_click_to_results_export_import_and_recipe(qtbot, settings, lrbench_env, tmp_path):
    win = open_window(qtbot, settings)
    needs_tuner(win, "random")
    assert win.panel_names() == ["Policies", "Run", "Study", "Live", "Watch", "Results", "Methods", "Recipes", "Plugins"]
    study, live, ctl = win.study_panel, win.live_panel, win.study_controller
    assert study.demo_btn.isEnabled() and "Run the demo study" in study.demo_btn.text()

    study.demo_size = TINY_DEMO
    with qtbot.waitSignal(ctl.studyStarted, timeout=5000) as started:
        qtbot.mouseClick(study.demo_btn, Qt.MouseButton.LeftButton)
    study_id, config = started.args
    assert config.task == "digits-mlp" and config.trials == 2 and config.parallel == 2
    assert win.current_panel() == "Live" and study_id in live.title.text()
    assert not study.start_btn.isEnabled() and live.stop_btn.isEnabled()

    # rows appear, progress moves, curves gain points, while the study runs
    qtbot.waitUntil(lambda: live.model.rowCount() == 2, timeout=10_000)
    ids = [r["trial"] for r in live.model.rows]
    qtbot.waitUntil(lambda: any(0 < r["progress"] for r in live.model.rows), timeout=30_000)
    qtbot.waitUntil(lambda: max(live.plot.points(t) for t in ids) >= 10, timeout=30_000)
    colors = {live.model.colors[t] for t in ids}
    assert colors == {live.plot.series[t].color for t in ids} and len(colors) == 2

    with qtbot.waitSignal(ctl.studyFinished, timeout=90_000) as finished:
        pass
    sid, status, result = finished.args
    assert (sid, status) == (study_id, "finished")
    rows = {r["trial"]: r for r in live.model.rows}
    assert set(rows) == set(ids) and all(r["status"] in FINAL for r in rows.values())
    for t in ids:
        if rows[t]["status"] == "completed":
            assert live.plot.points(t) == 60 and rows[t]["progress"] == 1.0 and rows[t]["value"] is not None
    assert live.ranking_table.rowCount() == 2 and len(result["ranking"]) == 2
    assert study.start_btn.isEnabled() and not live.stop_btn.isEnabled()

    # recorded: the study and its trials are in the database and in the Results view
    qtbot.waitUntil(lambda: set(ids) <= set(win.results_panel.visible_ids()), timeout=10_000)
    db = PolicyDB(lrbench_env["db"])
    assert db.get(study_id, "studies")["status"] == "finished"
    assert {t["id"] for t in db.trials(study=study_id)} == set(ids)

    # curves out of the Live panel
    png, curves = live.export_plot(tmp_path / "curves.png"), live.export_curves(tmp_path / "curves.csv")
    assert png.stat().st_size > 1000 and (tmp_path / "curves-loss.png").exists()
    with open(curves) as fh:
        lines = list(csv.DictReader(fh))
    assert {line["trial"] for line in lines} == set(ids)

    # the best trial becomes a recipe in the policies table (written on the jobs thread)
    best = result["ranking"][0]
    assert best["value"] is not None
    with qtbot.waitSignal(live.recipeSaved, timeout=10_000) as saved:
        live.save_recipe(name="digits demo best")
    recipe = PolicyDB(lrbench_env["db"]).get(f"recipe:{best['trial']}", "policies")
    assert recipe["kind"] == "recipe" and recipe["name"] == "digits demo best" == saved.args[0]["name"]
    assert recipe["spec"]["name"] == best["policy"]["name"] and recipe["lr"] > 0
    assert recipe["task"] == "digits-mlp" and study_id in recipe["source"]["title"]

    # export with the Results view, import into a second database through the same code as its dialog
    share = tmp_path / "share.json.gz"
    with qtbot.waitSignal(win.results_panel.exportFinished, timeout=10_000) as exported:
        win.results_panel.export_to(share, [study_id])
    assert exported.args[0]["counts"]["trials"] == 2
    other = DatabasePanel(tmp_path / "other.json")
    qtbot.addWidget(other)
    with qtbot.waitSignal(other.importFinished, timeout=10_000) as dry:
        other.import_from(share, dry_run=True)
    assert dry.args[0]["dry_run"] and dry.args[0]["added"]["trials"] == 2
    with qtbot.waitSignal(other.refreshed, timeout=10_000):
        other.import_from(share, dry_run=False)
    assert set(ids) <= set(other.visible_ids())
    other.shutdown()
    assert {t["id"] for t in PolicyDB(tmp_path / "other.json").trials(study=study_id)} == set(ids)
    win.close()


def test_closing_with_a_running_study_records_it_stopped_then_reopen_offers_resume(qtbot, settings, lrbench_env):
    win = open_window(qtbot, settings)
    needs_tuner(win, "random")
    ctl, live = win.study_controller, win.live_panel
    config = StudyConfig(task="digits-mlp", tuner="random", policies=["cosine"], budget_steps=1500, trials=2,
                         lr_range=(1e-3, 3e-3), parallel=1, name="closed half-way")
    ctl.start(config)
    qtbot.waitUntil(lambda: live.model.rowCount() == 1 and live.model.rows[0]["step"] > 20, timeout=30_000)
    first = live.model.rows[0]["trial"]
    assert win.trials_running()
    win.close()  # confirm_close says yes: stop, record, then close
    assert not win.isVisible() and not win.trials_running()
    db = PolicyDB(lrbench_env["db"])
    assert db.get(config.study_id, "studies")["status"] == "stopped"
    (trial,) = db.trials(study=config.study_id)
    assert trial["id"] == first and trial["status"] == "stopped" and 20 < trial["cost"]["steps"] < 1500
    assert "interrupted" in trial["tags"]  # stopped by the closing, not by the user: run again on resume

    # reopening offers to resume it; resuming runs the interrupted trial again, then the other one
    win2 = open_window(qtbot, settings)
    study = win2.study_panel
    qtbot.waitUntil(lambda: study.resume_banner.isVisibleTo(study), timeout=10_000)
    assert "unfinished" in win2.statusBar().currentMessage()
    win2.show_panel("Study")
    assert "closed half-way" in study.resume_label.text() and "0 of 2 trials" in study.resume_label.text()
    assert study.studies_table.rowCount() == 1
    with qtbot.waitSignal(win2.study_controller.studyStarted, timeout=10_000):
        qtbot.mouseClick(study.resume_btn, Qt.MouseButton.LeftButton)
    assert not study.resume_banner.isVisibleTo(study) and win2.current_panel() == "Live"
    qtbot.waitUntil(lambda: first in {r["trial"] for r in win2.live_panel.model.rows}, timeout=10_000)
    rows = {r["trial"]: r for r in win2.live_panel.model.rows}
    assert not rows[first]["replayed"]
    with qtbot.waitSignal(win2.study_controller.studyFinished, timeout=90_000) as finished:
        pass
    assert finished.args[1] == "finished" and finished.args[2]["summary"]["replayed"] == 0
    assert {r["trial"]: r for r in win2.live_panel.model.rows}[first]["status"] == "completed"
    db = PolicyDB(lrbench_env["db"])
    assert db.get(config.study_id, "studies")["status"] == "finished"
    assert len(db.trials(study=config.study_id)) == 2
    qtbot.waitUntil(lambda: study.studies and study.studies[0]["status"] == "finished", timeout=10_000)
    assert not study.resume_banner.isVisibleTo(study)
    win2.close()


def test_a_failed_trial_shows_its_log_one_click_away(qtbot, settings, lrbench_env):
    (lrbench_env["plugins"] / "crashy.py").write_text(
        "from lrbench_gui.hookspecs import hookimpl\n"
        "from lrbench_builtins.tasks.digits import DigitsMLP\n"
        "class Crashy(DigitsMLP):\n"
        "    name = 'crashy'\n"
        "    def loss(self, model, batch):\n"
        "        raise RuntimeError('bad batch in the loader')\n"
        "@hookimpl\n"
        "def register_tasks(register):\n"
        "    register(Crashy)\n"
    )
    win = open_window(qtbot, settings)
    needs_tuner(win, "random")
    ctl, live = win.study_controller, win.live_panel
    ctl.start(StudyConfig(task="crashy", tuner="random", policies=["cosine"], budget_steps=20, trials=1))
    with qtbot.waitSignal(ctl.studyFinished, timeout=60_000):
        pass
    (row,) = live.model.rows
    assert row["status"] == "failed"
    assert "failed" in live.banner.text() and live.banner.isVisible()
    index = live.model.index(0, 2)
    assert live.model.data(index, Qt.ItemDataRole.ForegroundRole).color().name() == STATUS_COLORS["failed"]
    rect = live.table.visualRect(live.model.index(0, 0))
    qtbot.mouseClick(live.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert live.selected_trials() == [row["trial"]]
    assert "RuntimeError: bad batch in the loader" in live.details_text()
    win.close()


def test_range_test_study_gets_the_loss_vs_lr_plot(qtbot, settings):
    win = open_window(qtbot, settings)
    needs_tuner(win, "range-test")
    ctl, live = win.study_controller, win.live_panel
    ctl.start(StudyConfig(task="digits-mlp", tuner="range-test", policies=["fixed"], budget_steps=80, trials=1,
                          eval_every=80, name="range test"))
    assert live.tabs.isTabVisible(1) and live.tabs.currentIndex() == 1
    with qtbot.waitSignal(ctl.studyFinished, timeout=60_000) as finished:
        pass
    tuner = finished.args[2]["summary"]["tuner"]
    assert live.range_plot.getPlotItem().ctrl.logXCheck.isChecked()
    assert live.range_plot.listDataItems()  # loss against LR
    marked = [i for i in live.range_plot.getPlotItem().items if type(i).__name__ == "InfiniteLine"]
    wanted = [n for n, info in (tuner.get("suggestions") or {}).items()
              if isinstance(info, dict) and isinstance(info.get("lr"), (int, float)) and info["lr"] > 0]
    assert wanted and len(marked) == len(wanted)
    for name in wanted:
        assert name in live.range_note.text()
    assert f"{tuner['chosen']}</b>" in live.range_note.text() and "chosen" in live.range_note.text()
    win.close()


def test_settings_persist_and_apply(qtbot, settings, tmp_path, monkeypatch):
    monkeypatch.delenv("LRBENCH_DB")  # $LRBENCH_DB would win over the dialog's database (test_progress_forms)
    win = open_window(qtbot, settings)
    try:
        dialog = win.open_settings()
        qtbot.waitExposed(dialog)
        dialog.workers.setValue(3)
        dialog.gpus_edit.setText("0, 2")
        dialog.backend.setCurrentIndex(dialog.backend.findData("ray"))
        dialog.ray_edit.setText("ray://head:10001")
        dialog.theme.setCurrentText("dark")
        dialog.plugins_edit.setText(str(tmp_path / "my-plugins"))
        dialog.db_edit.setText(str(tmp_path / "elsewhere.json"))
        with qtbot.waitSignal(dialog.settingsApplied, timeout=3000):
            dialog.accept()
        # applied at once
        assert win.study_controller.gpus == ["0", "2"]
        assert win.runner.slot_ids == ["0", "2"]
        assert win.study_panel.parallel.value() == 2
        assert win.study_panel.backend_combo.currentData() == "ray"
        assert win.study_panel.ray_address.text() == "ray://head:10001"
        assert win.live_panel.plot.lr_plot.backgroundBrush().color().name() == "#15181c"
        assert win.db_path == tmp_path / "elsewhere.json" and win.db_jobs.db_path == win.db_path
        assert win.results_panel is win.panel("Results")
        qtbot.waitUntil(lambda: str(tmp_path / "elsewhere.json") in win.results_panel.status_label.text(), timeout=5000)
        # and stored
        again = AppSettings.load(QSettings(str(tmp_path / "lrbench.ini"), QSettings.Format.IniFormat))
        assert (again.cpu_workers, again.gpus, again.backend, again.ray_address, again.theme) == (
            3, ["0", "2"], "ray", "ray://head:10001", "dark")
        assert again.db_path == str(tmp_path / "elsewhere.json")

        # a bad GPU list is refused in the dialog, which stays open
        dialog = win.open_settings()
        dialog.gpus_edit.setText("0, first")
        dialog.accept()
        assert dialog.isVisible() and "'first' is not a GPU number" in dialog.error.text()
        dialog.reject()
    finally:
        apply_theme("light", win)
    win.close()
    assert parse_gpus("1;3 3") == ["1", "3"]


def test_trial_table_marks_early_stopped_trials():
    model = TrialStateModel()
    model.clear("val_loss")
    state = {"trial": "s-1-t1", "key": "t1", "label": "cosine(lr=0.1)", "status": "pruned", "progress": 0.3,
             "step": 30, "steps": 100, "loss": 0.5, "value": 0.7, "cost_steps": 30, "seconds": 1.0,
             "policy": {"name": "cosine"}, "notes": "stopped early by the tuner at step 30", "rung": 0}
    model.add("s-1-t1", state, "#123456")
    cell = lambda col, role=Qt.ItemDataRole.DisplayRole: model.data(model.index(0, col), role)  # noqa: E731
    assert cell(2) == "pruned ✂" and "tuner" in cell(2, Qt.ItemDataRole.ToolTipRole)
    assert cell(2, Qt.ItemDataRole.ForegroundRole).color().name() == STATUS_COLORS["pruned"]
    assert cell(3) == "30%" and cell(4) == "30 / 100"
    assert model.headerData(6, Qt.Orientation.Horizontal) == "val_loss"
    full, spec = cell(1, Qt.ItemDataRole.ToolTipRole).split("\n", 1)  # the full label, then the spec
    assert full.startswith("cosine") and json.loads(spec) == {"name": "cosine"}


@pytest.mark.slow
def test_a_ray_study_streams_into_the_same_views(qtbot, settings, lrbench_env):
    win = open_window(qtbot, settings)
    ctl, live = win.study_controller, win.live_panel
    ctl.start(StudyConfig(task="digits-mlp", tuner="random", policies=["cosine"], lr_range=(1e-3, 1e-2),
                          budget_steps=50, trials=2, parallel=2, backend="ray"))
    with qtbot.waitSignal(ctl.studyFinished, timeout=180_000) as finished:
        pass
    assert finished.args[1] == "finished"
    assert [r["status"] for r in live.model.rows] == ["completed", "completed"]
    assert all(live.plot.points(r["trial"]) == 50 for r in live.model.rows)
    assert len(PolicyDB(lrbench_env["db"]).trials(study=finished.args[0])) == 2
    win.close()


@pytest.mark.parametrize("method", ["single", "compose", "cost"])
@pytest.mark.parametrize("policies", [["cosine"], ["cosine", "step"], ["fixed", "cosine", "triangle2"]])
def test_the_preview_shows_the_space_the_study_runs(qtbot, settings, method, policies):
    from lrbench_gui.core.tuning.study import Study

    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    panel = win.study_panel
    needs_tuner(win, "random")
    panel.tuner_combo.setCurrentText("random")
    panel.method_combo.setCurrentText(method)
    if method == "cost":
        panel.metric_combo.setCurrentText("val_acc")
        panel.target_edit.setText("0.9")
    panel.lr_low.setText("1e-4")
    panel.lr_high.setText("0.1")
    panel.set_policies(policies, {policies[0]: (1e-3, 1e-2)})  # a per-policy range: an override
    config = panel.config()
    assert config.overrides and config.lr_range == (1e-4, 0.1)
    study = Study(config, registry=win.registry)
    assert panel.preview_families() == list(study.space.names)
    if method == "compose" and len(policies) > 1:
        assert len(study.space.names) > len(policies)  # the compositions are in both
    n = len(study.space.names)
    qtbot.waitUntil(lambda: f"Searched ({n} famil" in panel.summary.text(), timeout=3000)  # filled from the start
    assert f"Searched ({n} famil" in panel.summary.text()
    for name in study.space.names[:12]:
        assert f"<b>{name}</b>" in panel.summary.text()


def test_the_study_panel_starts_and_resumes_a_study_of_the_users_script(qtbot, settings, lrbench_env, tmp_path):
    """A command in the Study panel becomes the study's command trials (the preview says so); a
    bad placeholder is one line; resuming it takes the command from the form, not the record."""
    win = open_window(qtbot, settings)
    panel = win.study_panel
    panel.command_box.command_edit.setText("python train.py --lr {learning_rate}")
    with pytest.raises(ValueError, match="learning_rate"):
        panel.config()
    panel.command_box.command_edit.setText("python train.py --lr {lr} --steps {steps}")
    panel.command_box.cwd_edit.setText(str(tmp_path))
    panel.task_combo.setCurrentText("command")
    cfg = panel.config()
    assert cfg.command == ["python", "train.py", "--lr", "{lr}", "--steps", "{steps}"] and cfg.cwd == str(tmp_path)
    from lrbench_gui.qt.study.preview import preview_html

    assert "Each trial runs your command" in preview_html(cfg, win.registry)
    panel.command_box.command_edit.setText("")
    assert panel.config().command is None
    panel.load_config(cfg)
    assert panel.command_box.command_edit.text() == "python train.py --lr {lr} --steps {steps}"
    win.close()
