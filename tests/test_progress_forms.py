"""Progress you can plan with, the Study and Run forms, the first run, Help and Settings (issue 17,
items 4 and 6): completed / planned trials with an ETA in the core, the CLI and the app; the
Study form filled and sized on first open; the database the window uses, and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

from lrbench_gui.core.records import StudyStatus
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.tuning.study import Study, StudyConfig, format_duration
from lrbench_gui.plugins import get_registry
from lrbench_gui.qt.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "lrbench.ini"), QSettings.Format.IniFormat)


def window(qtbot, settings) -> MainWindow:
    win = MainWindow(settings=settings)
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    return win


# Progress in the core: completed / planned, the ETA, each trial's time left.


def test_a_study_counts_its_planned_trials_and_estimates_the_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("lrbench_gui.core.tuning.study.time.monotonic", lambda: clock[0])
    study = Study(StudyConfig(task="digits-mlp", tuner="random", policies=["cosine"], budget_steps=100, trials=4,
                              parallel=2), registry=get_registry())
    assert study.progress()["planned"] == 4 and study.progress()["eta_seconds"] is None
    a, b = study.next_trials(2)
    for cfg in (a, b):
        study.on_event(cfg.trial_id, Event("hello", cfg.trial_id, {"steps": 100}))
    clock[0] += 5  # start-up: left out of the rate
    for cfg in (a, b):
        study.on_event(cfg.trial_id, Event("step", cfg.trial_id, {"step": 0, "time": 0.0}))
    clock[0] += 10
    study.on_event(a.trial_id, Event("step", a.trial_id, {"step": 49, "time": 10.0}))
    study.on_event(b.trial_id, Event("step", b.trial_id, {"step": 24, "time": 10.0}))
    p = study.progress()
    assert (p["completed"], p["running"], p["planned"], p["estimate"]) == (0, 2, 4, False)
    assert p["trials"][a.trial_id]["eta_seconds"] == pytest.approx(10.0)  # 50 steps left at 5 steps/s
    assert p["trials"][b.trial_id]["step"] == 25 and p["trials"][b.trial_id]["steps"] == 100
    # 75 of 400 planned steps in 10 s of stepping: 325 steps left at 7.5 steps/s
    assert p["eta_seconds"] == pytest.approx(325 / 7.5, rel=1e-3)
    assert format_duration(p["eta_seconds"]) == "43 s" and format_duration(200) == "3 min 20 s"
    assert format_duration(None) == "?"


@pytest.mark.parametrize("tuner, params, planned", [
    ("grid", {"points": 3}, 3),
    ("halving", {"n": 9, "eta": 3}, 9 + 3 + 1),
    ("range-test", {}, 1),
    ("value-range", {"points": 5}, 5),
    ("horizon", {"horizons": [20, 40], "points": 3, "seeds": 2}, 12),
    ("path-switch", {"versions": 2, "chunk_steps": 10}, 1 + 2 + 1 + 2),
    ("merge", {"later": "b.safetensors", "earlier": "a.safetensors", "evaluations": 4}, 5),
])
def test_each_tuner_says_how_many_trials_it_plans(tuner, params, planned):
    registry = get_registry()
    task = "tinylm-pretrain" if tuner in ("horizon", "path-switch", "merge") else "digits-mlp"
    study = Study(StudyConfig(task=task, tuner=tuner, tuner_params=params, policies=["cosine"], budget_steps=90,
                              trials=1), registry=registry)
    # the study's trial budget (1) is not what these kinds run: their own plan is ("11 / 1" before)
    assert study.progress()["planned"] == planned
    assert study.study_record("running")["extra"]["planned"] == planned


def test_the_cli_progress_is_plain_lines_without_a_terminal(capsys):
    """``lrbench tune`` and ``lrbench study KIND`` without a TTY (the subprocess run is in
    test_study.py's ``lrbench tune`` test): plain lines, completed / planned and the ETA."""
    from lrbench_gui.cli.tune import StudyProgress

    study = Study(StudyConfig(task="digits-mlp", tuner="grid", tuner_params={"points": 3}, policies=["cosine"],
                              budget_steps=10), registry=get_registry())
    (cfg,) = study.next_trials(1)
    progress = StudyProgress(False, tty=False)
    progress.event(study, cfg.trial_id, Event("step", cfg.trial_id, {"step": 0}))  # no display drawn into a pipe
    progress(study)
    err = capsys.readouterr().err
    assert err == f"study {study.config.study_id}: 0 / 3 trials done, 1 running, ETA ?; no result yet\n"
    StudyProgress(True, tty=False)(study)  # --json: silent
    assert capsys.readouterr().err == ""


# The Study form, the Run panel, the Live table.


def test_the_study_form_is_complete_on_first_open_with_one_trials_field(qtbot, settings):
    win = window(qtbot, settings)
    panel = win.study_panel
    # filled at once, before any event is processed or anything is edited
    assert "Searched (1 family)" in panel.summary.text() and "16 trials" in panel.summary.text()
    # the usual LR range of the optimizer, not the policies' 1e-6..1
    assert (panel.lr_low.text(), panel.lr_high.text()) == ("1e-5", "0.1")
    panel.budget_box.optimizer.setCurrentText("sgd")
    assert (panel.lr_low.text(), panel.lr_high.text()) == ("0.0001", "1")
    panel.lr_low.setText("0.002")  # the user's own range is never replaced
    panel.budget_box.optimizer.setCurrentText("adamw")
    assert panel.lr_low.text() == "0.002"
    # one trials field: the tuner's own trials parameter is the Budget box's Trials
    assert "trials" in panel.tuner_form.names() and not panel.tuner_form.editor("trials").isVisibleTo(panel)
    panel.trials.setValue(7)
    assert panel.config().trials == 7 and "trials" not in panel.config().tuner_params
    panel.load_config(StudyConfig(task="digits-mlp", tuner="random", tuner_params={"trials": 5}, trials=16))
    assert panel.trials.value() == 5 and panel.config().trials == 5 and panel.lr_low.text() == ""
    # a kind that plans its own trials: the budget's Trials is off, the plan is in "What will run"
    panel.tuner_combo.setCurrentText("grid")
    panel._update_summary()
    assert not panel.trials.isEnabled() and "About 5 trials" in panel.summary.text()
    # many ticked families wrap instead of widening the form past a 1024-px window's share
    panel.set_policies(sorted(win.registry.policies))
    form = panel.policy_choice.parentWidget()
    assert form.minimumSizeHint().width() < 460


def test_the_run_panel_runs_the_policies_curve_over_its_previewed_length(qtbot, settings):
    win = window(qtbot, settings)
    win.policy_panel.set_total_steps(1100)
    win.policy_panel.redraw()
    run = win.run_panel
    assert run.steps.value() == 300
    run._take_spec()
    assert run.steps.value() == 1100 and "Steps set to 1,100 (from 300)" in run.composed_label.text()
    run.steps.setValue(300)  # shorter on purpose: said, not silent
    assert "draws it over 1,100 steps; this run has 300" in run.composed_label.text()


def test_the_live_table_shows_each_running_trials_time_left():
    from lrbench_gui.qt.live.trial_table import TrialStateModel

    model = TrialStateModel()
    model.clear("val_loss")
    model.add("t1", {"trial": "t1", "key": "r0", "status": "running", "step": 50, "steps": 200, "seconds": 10.0}, "#000")
    model.add("t2", {"trial": "t2", "key": "r1", "status": "completed", "step": 200, "steps": 200, "seconds": 9.0}, "#111")
    col = model.columnCount() - 1
    assert model.headerData(col, Qt.Orientation.Horizontal) == "ETA"
    assert model.data(model.index(0, col)) == "30 s" and model.data(model.index(1, col)) == ""


# The database: which one, why, and what Settings may change.


def test_the_window_says_which_database_is_open_and_settings_agree(qtbot, settings, lrbench_env, tmp_path):
    settings.setValue("paths/database", str(tmp_path / "chosen.json"))
    # a stopped study in the $LRBENCH_DB database: offered for resume there
    study = Study(StudyConfig(task="digits-mlp", policies=["cosine"], trials=3, name="left half-way"),
                  registry=get_registry())
    from lrbench_gui.core.db.policy_db import PolicyDB

    study.db = PolicyDB(lrbench_env["db"])
    study.save(StudyStatus.STOPPED)
    win = window(qtbot, settings)
    win.show()
    assert win.db_path == lrbench_env["db"]
    assert "policies.json (from LRBENCH_DB)" in win.windowTitle()
    assert win.db_label.text() == "Database: policies.json (from LRBENCH_DB)"
    qtbot.waitUntil(lambda: win.study_panel.resume_banner.isVisibleTo(win.study_panel), timeout=10_000)
    assert "left half-way" in win.study_panel.resume_label.text() and "0 of 3 trials" in win.study_panel.resume_label.text()
    dialog = win.open_settings()
    assert dialog.db_edit.isReadOnly() and dialog.db_edit.text() == str(lrbench_env["db"])
    assert "LRBENCH_DB" in dialog.db_note.text() and "chosen.json" in dialog.db_note.text()
    with qtbot.waitSignal(dialog.settingsApplied, timeout=3000):
        dialog.accept()
    assert win.db_path == lrbench_env["db"]  # the environment still wins, now as after a restart
    assert stored_db(settings) == str(tmp_path / "chosen.json")  # the setting itself is kept
    win.close()


def stored_db(settings: QSettings) -> str:
    """The database path the Settings dialog saved."""
    from lrbench_gui.qt.settings_dialog import AppSettings

    return AppSettings.load(settings).db_path


def test_without_the_variable_the_settings_database_is_named_and_help_opens_the_docs(qtbot, settings, monkeypatch,
                                                                                      tmp_path):
    monkeypatch.delenv("LRBENCH_DB")
    settings.setValue("paths/database", str(tmp_path / "chosen.json"))
    win = window(qtbot, settings)
    assert win.db_path == tmp_path / "chosen.json" and "chosen.json (from Settings)" in win.windowTitle()
    dialog = win.open_settings()
    assert not dialog.db_edit.isReadOnly() and not dialog.db_note.isVisibleTo(dialog)
    dialog.reject()

    # Help: the local docs, rendered in the app, and the shortcuts read from the menus
    from lrbench_gui.qt.help import shortcut_rows

    viewer = win.open_docs()
    assert viewer.current == ROOT / "docs" / "gui.md"
    assert "Studies in the desktop app" in viewer.browser.toPlainText()
    from PySide6.QtCore import QUrl

    viewer._link(QUrl("tuning.md"))  # a link between pages stays in the viewer
    assert viewer.current == ROOT / "docs" / "tuning.md" and viewer.page_list.currentItem().text() == "docs/tuning.md"
    viewer.close()
    rows = shortcut_rows(win.menuBar())
    assert ("Help", "Documentation", "F1") in rows and any(r[1] == "Study" and r[2] == "Ctrl+3" for r in rows)
    win.open_shortcuts().close()


def test_make_run_names_the_missing_qt_library_and_the_apt_line(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    ldd = fake / "ldd"  # a linker that lacks libxcb-cursor, as a stock Debian does
    ldd.write_text("#!/bin/sh\necho '\tlibxcb-cursor.so.0 => not found'\necho '\tlibc.so.6 => /lib/libc.so.6'\n")
    ldd.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "QT_QPA_PLATFORM": "xcb"}
    out = subprocess.run([sys.executable, str(ROOT / "packaging" / "check_qt_libs.py")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 1 and "sudo apt-get install -y libxcb-cursor0\n" in out.stderr
    env["QT_QPA_PLATFORM"] = "offscreen"  # no X11 plugin wanted: nothing to check
    assert subprocess.run([sys.executable, str(ROOT / "packaging" / "check_qt_libs.py")], env=env,
                          timeout=60).returncode == 0
    assert "check_qt_libs.py" in (ROOT / "Makefile").read_text()
    assert "libxcb-cursor0" in (ROOT / "README.md").read_text()
