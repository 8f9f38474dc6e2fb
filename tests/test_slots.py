"""The one slot queue: the CLI's scheduler and the GUI's runner place trials the same way, and
every scheduler meets the declared protocol."""

from __future__ import annotations

import pytest

from lrbench_gui.core.runs.ray_backend import RayScheduler
from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.core.runs.slots import BlockingScheduler, SlotQueue, TrialScheduler, slot_ids
from lrbench_gui.core.runs.trial import load_trial
from lrbench_gui.core.tuning.study import StudyConfig
from lrbench_gui.qt.trial_runner import TrialRunner

BASE = {"task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.05}}, "budget": {"steps": 5},
        "eval_every": 5}


def configs(n):
    return [load_trial({**BASE, "seed": i}) for i in range(n)]


def test_the_queue_places_in_order_on_free_slots_only():
    q: SlotQueue[str] = SlotQueue(["0", "1,2"])
    a, b, c = configs(3)
    for cfg in (a, b, c):
        q.submit(cfg)
    assert q.free() == 0  # two slots, three waiting: a feeder may add nothing
    placed = list(q.place())
    assert [(p.config.trial_id, p.slot, p.gpus) for p in placed] == [(a.trial_id, 0, "0"), (b.trial_id, 1, "1,2")]
    assert list(q.place()) == []  # both slots are held
    q.started(a.trial_id, "proc-a")
    assert q.handle(a.trial_id) == "proc-a" and q.slot_of(b.trial_id) == (1, "1,2")
    assert q.finished(a.trial_id) == "proc-a"
    (again,) = q.place()
    assert (again.config.trial_id, again.gpus) == (c.trial_id, "0")  # c takes the slot a left
    assert q.unqueue(c.trial_id) is None  # it is running now, not queued
    assert len(q) == 2 and q.is_busy()


def test_slot_ids_and_bad_slots():
    assert slot_ids(3) == [None, None, None]
    assert slot_ids(0) == [None]
    assert slot_ids(["0", 1]) == ["0", "1"]
    with pytest.raises(ValueError):
        slot_ids([])


def test_every_scheduler_meets_the_protocol(qtbot, tmp_path):
    local = LocalScheduler(1, workdir=tmp_path)
    ray = RayScheduler(StudyConfig(task="digits-mlp"))
    qt = TrialRunner(1, workdir=tmp_path)
    for sched in (local, ray, qt):
        assert isinstance(sched, TrialScheduler)
    assert isinstance(local, BlockingScheduler) and isinstance(ray, BlockingScheduler)
    assert not isinstance(qt, BlockingScheduler)  # the GUI's loop is Qt's


def test_cli_and_gui_runners_give_each_trial_the_same_slot(qtbot, tmp_path):
    import threading

    gpus = ["3", "5"]
    local_slots: dict[int, str | None] = {}
    sched = LocalScheduler(gpus, workdir=tmp_path / "cli",
                           on_started=lambda tid, cfg: local_slots.setdefault(cfg.seed, sched.slots.slot_of(tid)[1]))
    for cfg in configs(3):
        sched.submit(cfg)
    records: dict = {}
    # the CLI's blocking scheduler on a thread of its own, the GUI's runner on Qt's loop: both at once
    cli = threading.Thread(target=lambda: records.update(sched.run()))
    cli.start()

    runner = TrialRunner(gpus, workdir=tmp_path / "gui")
    qt_slots: dict[int, str | None] = {}
    runner.trialStarted.connect(lambda tid, cfg: qt_slots.setdefault(cfg.seed, runner.gpus_of(tid)))
    done = []
    runner.trialFinished.connect(lambda tid, rec: done.append(rec["status"]))
    try:
        with qtbot.waitSignal(runner.idle, timeout=120_000):
            for cfg in configs(3):
                runner.submit(cfg)
    finally:
        cli.join(timeout=120)
    assert not cli.is_alive()
    assert len(records) == 3 and {r["status"] for r in records.values()} == {"completed"}
    assert done == ["completed"] * 3
    assert qt_slots[0] == local_slots[0] == "3" and qt_slots[1] == local_slots[1] == "5"
    assert qt_slots[2] in gpus and local_slots[2] in gpus


def test_a_queued_trial_cancelled_is_recorded_as_stopped(tmp_path):
    finished = {}
    sched = LocalScheduler(1, workdir=tmp_path, on_finished=lambda tid, rec: finished.__setitem__(tid, rec))
    a, b = configs(2)
    sched.submit(a)
    sched.submit(b)
    sched.cancel(b.trial_id)
    assert finished[b.trial_id]["status"] == "stopped" and finished[b.trial_id]["cost"]["steps"] == 0
    sched.run()
    assert finished[a.trial_id]["status"] == "completed"


SILENT = ["-c", "import time; time.sleep(60)"]


def test_a_silent_trainer_is_killed_by_the_watchdog_and_recorded_as_failed(qtbot, tmp_path):
    import sys

    (cfg,) = configs(1)
    runner = TrialRunner(1, workdir=tmp_path, watchdog=1.0)
    finished = {}
    runner.trialFinished.connect(lambda tid, rec: finished.__setitem__(tid, rec))
    with qtbot.waitSignal(runner.idle, timeout=30_000):
        runner.submit(cfg, program=[sys.executable, *SILENT])
    record = finished[cfg.trial_id]
    assert record["status"] == "failed" and "watchdog" in record["notes"]


def test_the_cli_scheduler_has_the_same_watchdog(tmp_path, monkeypatch):
    # a trainer that hangs after its hello: the trial file names a task whose setup sleeps
    monkeypatch.setenv("LRBENCH_TRIAL_WATCHDOG", "1")
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    (plugin / "sleepy.py").write_text(
        "import time\n"
        "from lrbench_gui.api import Params, Task, hookimpl\n\n\n"
        "class Sleepy(Task):\n"
        "    name = 'sleepy'\n\n"
        "    class Params(Params):\n"
        "        pass\n\n"
        "    def setup(self, ctx):\n"
        "        time.sleep(120)\n\n"
        "    def train_batches(self):\n"
        "        raise AssertionError\n\n"
        "    def loss(self, model, batch):\n"
        "        raise AssertionError\n\n"
        "    def evaluate(self, model):\n"
        "        raise AssertionError\n\n\n"
        "@hookimpl\n"
        "def register_tasks(register):\n"
        "    register(Sleepy)\n"
    )
    monkeypatch.setenv("LRBENCH_PLUGINS_DIR", str(plugin))
    cfg = load_trial({**BASE, "task": "sleepy"})
    sched = LocalScheduler(1, workdir=tmp_path / "t")
    assert sched.watchdog == 1.0
    sched.submit(cfg)
    (record,) = sched.run().values()
    assert record["status"] == "failed" and "watchdog" in record["notes"]


def test_ctrl_c_while_a_trial_starts_leaves_no_phantom_slot(tmp_path, monkeypatch):
    """Ctrl-C that lands inside a trial's start (the child just spawned) must not leave the
    scheduler waiting forever for a trial that will never report, nor the child running."""
    import subprocess

    from lrbench_gui.core.runs import process

    real_popen = subprocess.Popen

    def popen_then_interrupt(*args, **kwargs):
        real_popen(*args, **kwargs)  # the child exists; start() is cut before it reads it
        raise KeyboardInterrupt

    monkeypatch.setattr(process.subprocess, "Popen", popen_then_interrupt)
    sched = LocalScheduler(2, workdir=tmp_path)
    for cfg in configs(2):
        sched.submit(cfg)
    with pytest.raises(KeyboardInterrupt):
        sched.run()
    monkeypatch.setattr(process.subprocess, "Popen", real_popen)
    assert not sched.slots.running  # both placements freed
    sched.cancel_all()
    assert sched.run(poll=0.05) == {}  # returns at once: nothing is waited for
