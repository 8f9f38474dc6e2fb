"""The GUI's QProcess bridge: real trainer processes, read without blocking the event loop."""

from __future__ import annotations

import os
import signal

from lrbench_gui.core.runs.trial import load_trial
from lrbench_gui.qt.trial_runner import TrialRunner

BASE = {"task": "digits-mlp", "policy": {"name": "cosine", "params": {"lr": 0.05}}, "budget": {"steps": 40}}


def test_trials_stream_events_and_finish(qtbot, tmp_path):
    runner = TrialRunner(2, workdir=tmp_path)
    steps, finished = {}, {}
    runner.trialEvent.connect(lambda tid, e: steps.setdefault(tid, []).append(e["step"]) if e.type == "step" else None)
    runner.trialFinished.connect(lambda tid, rec: finished.__setitem__(tid, rec))
    a, b = load_trial(BASE), load_trial({**BASE, "seed": 1})
    with qtbot.waitSignal(runner.idle, timeout=60_000):
        runner.submit(a)
        runner.submit(b)
    assert steps[a.trial_id] == list(range(40)) and steps[b.trial_id] == list(range(40))
    assert finished[a.trial_id]["status"] == finished[b.trial_id]["status"] == "completed"
    assert finished[a.trial_id]["metrics"]["val_acc"] > 0.8


def test_cancel_and_kill(qtbot, tmp_path):
    runner = TrialRunner(2, workdir=tmp_path)
    finished = {}
    stop, kill = load_trial({**BASE, "budget": {"steps": 10**6}}), load_trial({**BASE, "budget": {"steps": 10**6}})

    def on_event(tid, event):
        if event.type == "step" and event["step"] == 3:
            if tid == stop.trial_id:
                runner.cancel(tid)
            elif tid == kill.trial_id and tid not in finished:
                os.kill(runner.trial(tid).proc.processId(), signal.SIGKILL)

    runner.trialEvent.connect(on_event)
    runner.trialFinished.connect(lambda tid, rec: finished.__setitem__(tid, rec))
    with qtbot.waitSignal(runner.idle, timeout=60_000):
        runner.submit(stop)
        runner.submit(kill)
    assert finished[stop.trial_id]["status"] == "stopped"
    assert finished[kill.trial_id]["status"] == "failed"
    assert "killed by signal 9" in finished[kill.trial_id]["notes"]
