"""Warm workers in the app: a GUI study's trials reuse one trainer process per slot through the
CLI's worker classes, and are recorded as in a fresh process. Real workers, real digits trials,
real Qt signals (offscreen); one simulated GPU (``LRBENCH_GPUS``) so the slot's GPU placement and
the record's ``resources`` are checked too."""

from __future__ import annotations

import dataclasses
import os

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from lrbench_gui.core.runs import gpus as gpus_mod  # noqa: E402
from lrbench_gui.core.runs.trial import load_trial  # noqa: E402
from lrbench_gui.core.tuning.study import Study, StudyConfig  # noqa: E402
from lrbench_gui.qt.settings_dialog import AppSettings, SettingsDialog  # noqa: E402
from lrbench_gui.qt.study_controller import DatabaseJobs, StudyController  # noqa: E402
from lrbench_gui.qt.trial_runner import QtTrial, TrialRunner, WarmTrial  # noqa: E402


@pytest.fixture
def one_gpu(monkeypatch):
    """One simulated GPU, id 3: every trial of a slot gets ``CUDA_VISIBLE_DEVICES=3`` (and runs on
    the CPU here)."""
    monkeypatch.setenv("LRBENCH_GPUS", "3")
    gpus_mod.clear_cache()
    yield
    gpus_mod.clear_cache()


def test_a_gui_study_reuses_one_worker_through_a_cancel_and_records_what_a_fresh_process_does(
        qtbot, tmp_path, registry, one_gpu):
    config = StudyConfig(task="digits-mlp", tuner="random", policies=["cosine"], budget_steps=24, trials=3,
                         parallel=1, batch_size=16, eval_every=12, lr_range=(1e-3, 1e-1), seed=5)
    # the trials the study will ask for (a tuner is deterministic for a seed): the third one also
    # runs in a fresh process on a runner whose settings say no to warm workers, at the same time
    first, second, third = Study(config, registry=registry, db=None).next_trials(3)
    fresh = TrialRunner(["3"], workdir=tmp_path / "fresh")
    fresh.warm = False
    fresh_records: dict[str, dict] = {}
    fresh.trialFinished.connect(fresh_records.__setitem__)
    fresh.submit(third, warm=True, registry=registry)
    assert isinstance(fresh.trial(third.trial_id), QtTrial)

    runner = TrialRunner(1, workdir=tmp_path / "warm")
    jobs = DatabaseJobs(tmp_path / "db.json", registry=registry)
    ctl = StudyController(runner, jobs, registry)
    started, workers, hellos, finished, logs = {}, {}, {}, {}, []

    def on_started(tid, cfg):
        started[tid] = cfg
        workers[tid] = runner.trial(tid).pid  # a WarmTrial: the worker it was handed to
        if tid == first.trial_id:
            runner.cancel(tid)  # the first trial is cancelled at once (as a tuner prunes one)

    runner.trialStarted.connect(on_started)
    ctl.trialEvent.connect(lambda tid, e: hellos.__setitem__(tid, e["pid"]) if e.type == "hello" else None)
    ctl.trialLog.connect(lambda tid, line: logs.append(tid))
    ctl.trialFinished.connect(finished.__setitem__)
    with qtbot.waitSignal(ctl.studyFinished, timeout=60_000) as done:
        ctl.start(config)
    qtbot.waitUntil(lambda: bool(fresh_records) and not fresh.is_busy(), timeout=60_000)

    assert done.args[1] == "finished" and len(finished) == 3
    assert finished[first.trial_id]["status"] == "stopped" and finished[first.trial_id]["cost"]["steps"] < 24
    assert started[third.trial_id].model_copy(update={"output_dir": None}) == third
    # one worker ran the three trials, on the slot's GPU, and was closed when the runner went idle
    assert len(set(workers.values()) | set(hellos.values())) == 1 and len(hellos) >= 2
    assert runner.pool.started == 1 and runner.pool.workers == {}
    warm, cold = finished[third.trial_id], fresh_records[third.trial_id]
    assert warm["status"] == cold["status"] == "completed", (warm["notes"], cold["notes"])
    assert warm["curves"] == cold["curves"] and warm["metrics"] == cold["metrics"]
    assert warm["resources"] == cold["resources"] and warm["resources"]["gpus"] == [3]
    assert warm["curves"] != finished[second.trial_id]["curves"]  # another LR, another curve
    assert set(logs) <= set(finished)
    jobs.close()


def test_the_watchdog_kills_a_silent_warm_trial_and_its_worker(qtbot, tmp_path, registry):
    silent = load_trial({"task": "digits-mlp", "policy": {"name": "cosine", "params": {"lr": 0.05}},
                         "budget": {"steps": 10**6}, "threads": 1})
    # the trial's new worker is still importing torch after half a second: silent
    runner = TrialRunner(1, workdir=tmp_path, watchdog=0.5)
    finished = {}
    runner.trialFinished.connect(finished.__setitem__)
    with qtbot.waitSignal(runner.idle, timeout=30_000):
        runner.submit(silent, warm=True, registry=registry)
        trial = runner.trial(silent.trial_id)
        assert isinstance(trial, WarmTrial)
    record = finished[silent.trial_id]
    assert record["status"] == "failed" and "watchdog" in record["notes"] and "signal 9" in record["notes"]
    with pytest.raises(ProcessLookupError):
        os.kill(trial.pid, 0)


def test_the_settings_choice_and_the_study_field_turn_warm_workers_off(qtbot, tmp_path, registry):
    settings = QSettings(str(tmp_path / "lrbench.ini"), QSettings.Format.IniFormat)
    assert AppSettings.load(settings).warm is True  # on by default
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.warm.isChecked() and "warm workers" in dialog.warm.text()
    dialog.warm.setChecked(False)
    dialog.accept()
    assert AppSettings.load(settings).warm is False
    from lrbench_gui.qt.main_window import MainWindow

    win = MainWindow(registry, settings=settings)  # the window hands the choice to its runner
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    assert win.runner.warm is False
    win.apply_settings(dataclasses.replace(AppSettings.load(settings), warm=True))
    assert win.runner.warm is True

    # a study with warm=False gets fresh processes from a runner that would run it warm
    runner = TrialRunner(1, workdir=tmp_path / "trials")
    jobs = DatabaseJobs(tmp_path / "db.json", registry=registry)
    ctl = StudyController(runner, jobs, registry)
    kinds = []
    runner.trialStarted.connect(lambda tid, cfg: kinds.append(type(runner.trial(tid))))
    with qtbot.waitSignal(ctl.studyFinished, timeout=30_000) as done:
        ctl.start(StudyConfig(task="digits-mlp", tuner="random", budget_steps=10**6, trials=1, warm=False))
        ctl.stop()  # at once: the trainer never gets going
    assert kinds == [QtTrial] and done.args[1] == "stopped" and runner.pool.started == 0
    jobs.close()
