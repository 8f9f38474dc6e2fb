"""A study stopped while a trial runs (Ctrl-C, the app closed) continues that trial, on resume,
from its last resumable checkpoint (``StudyConfig.checkpoint_every``) instead of from step 0,
and the trial's stored record still holds its whole curve."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.records import curve_points
from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.core.tuning.driver import run_study
from lrbench_gui.core.tuning.study import INTERRUPTED, Study, StudyConfig
from lrbench_gui.plugins import get_registry

SLOW_TASK = '''
import time

from lrbench_builtins.tasks.digits import DigitsMLP
from lrbench_gui.hookspecs import hookimpl


class SlowDigits(DigitsMLP):
    """digits-mlp at 5 ms a step, so a stop lands mid-trial."""

    name = "slow-digits"

    def loss(self, model, batch):
        time.sleep(0.005)
        return super().loss(model, batch)


@hookimpl
def register_tasks(register):
    register(SlowDigits)
'''


def test_a_resumed_study_continues_the_interrupted_trial_from_its_last_checkpoint(lrbench_env):
    (lrbench_env["plugins"] / "slow.py").write_text(textwrap.dedent(SLOW_TASK))
    db = PolicyDB(lrbench_env["db"])
    config = StudyConfig(task="slow-digits", tuner="grid", tuner_params={"points": 1}, policies=["cosine"],
                         budget_steps=100, batch_size=16, eval_every=50, checkpoint_every=5)
    first = Study(config, registry=get_registry(), db=db)
    first.save("running")
    sched = LocalScheduler(1, on_finished=first.on_finished, feeder=first.next_trials)

    def on_event(trial_id, event):
        if event.type == "step" and event["step"] == 12:
            first.stop()  # Ctrl-C: the study stops and cancels what runs
            sched.cancel_all()
        return first.on_event(trial_id, event)

    sched.on_event = on_event
    sched.run()
    (stopped,) = db.trials(study=config.study_id)
    assert stopped["status"] == "stopped" and INTERRUPTED in stopped["tags"]
    before = curve_points(stopped["curves"]["loss"])
    reached = len(before)
    assert 12 < reached < 100

    again = Study(config, registry=get_registry(), db=PolicyDB(lrbench_env["db"]))
    again.resume()
    point = again.resume_points[stopped["id"]]
    step = int(Path(point).stem.split("-")[1])
    assert step % 5 == 0 and 10 <= step <= reached
    run_study(again)
    (record,) = PolicyDB(lrbench_env["db"]).trials(study=config.study_id)
    assert record["status"] == "completed" and record["cost"]["steps"] == 100
    after = curve_points(record["curves"]["loss"])
    assert [s for s, _ in after] == list(range(100))  # replayed up to the checkpoint, then new
    assert after[:step] == before[:step]
    trial_file = json.loads((Path(point).parent.parent / "trial.json").read_text())
    assert trial_file["resume_from"] == point and trial_file["checkpoint_every"] == 5
