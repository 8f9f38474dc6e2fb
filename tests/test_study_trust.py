"""Studies that lose no work and answer in the right direction: an interrupted study resumes to
the same trials and best as an uninterrupted one, the cost method's accuracy target is a maximum,
a study whose every trial failed says why, and a resumed record never chooses where work goes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.tuning.driver import run_study
from lrbench_gui.core.tuning.study import INTERRUPTED, Study, StudyConfig
from lrbench_gui.plugins import get_registry

FAST = {"task": "digits-mlp", "budget_steps": 40, "batch_size": 32, "eval_every": 20, "tuner": "grid",
        "tuner_params": {"points": 3}, "policies": ["fixed", "cosine"], "lr_range": (1e-2, 1e-1)}


def make(db, **kw):
    return Study(StudyConfig(**{**FAST, **kw}), registry=get_registry(), db=db)


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lrbench_gui.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_an_interrupted_study_resumes_to_the_same_trials_and_best(lrbench_env):
    four = {"tuner_params": {"points": 2}}  # two policies, two LRs: two finish, the rest are cut
    whole = make(PolicyDB(lrbench_env["db"]), study_id="s-whole", parallel=2, **four)
    run_study(whole)
    want = {tid.split("-", 2)[-1]: r["status"] for tid, r in whole.records.items()}

    db = PolicyDB(lrbench_env["db"])
    # fresh processes: a warm worker ends a 40-step trial before the interrupt lands, so none
    # would be interrupted (the whole and resumed runs are warm: the same results, to the bit)
    cut = make(db, study_id="s-cut", parallel=2, warm=False, **four)

    def stop_after_two(study):
        if len(study.results) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(cut, on_progress=stop_after_two)
    stored = db.trials(study="s-cut")
    interrupted = [t for t in stored if INTERRUPTED in (t.get("tags") or [])]
    assert interrupted and all(t["status"] == "stopped" for t in interrupted)
    assert db.get("s-cut", "studies")["status"] == "stopped"

    again = make(PolicyDB(lrbench_env["db"]), study_id="s-cut", parallel=2, **four)
    again.resume()
    assert again.resumed["completed"] == 2 and again.resumed["rerun"] >= len(interrupted)
    run_study(again)
    got = {tid.split("-", 2)[-1]: r["status"] for tid, r in again.records.items()}
    assert got == want  # every interrupted trial ran again; nothing was counted as done empty
    assert again.best()["value"] == pytest.approx(whole.best()["value"], rel=1e-9)
    final = PolicyDB(lrbench_env["db"]).trials(study="s-cut")
    assert not any(INTERRUPTED in (t.get("tags") or []) for t in final)
    assert len(final) == len(want)


def test_a_trial_cancelled_on_its_own_stays_cancelled(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = make(db, study_id="s-one", tuner_params={"points": 2}, policies=["fixed"])
    cancelled = []

    def on_event(trial_id, event):
        if event.type == "step" and event["step"] == 3 and not cancelled:
            cancelled.append(trial_id)
            return False  # the way a pruner, or the user's cancel of one trial, stops it

    s.on_event = lambda tid, ev, _orig=s.on_event: _orig(tid, ev) and on_event(tid, ev) is not False
    run_study(s)
    again = make(PolicyDB(lrbench_env["db"]), study_id="s-one", tuner_params={"points": 2}, policies=["fixed"])
    again.resume()
    assert again.resumed["rerun"] == 0 and again.resumed["replayed"] == 2


def test_the_cost_method_reaches_an_accuracy_target_as_a_maximum(lrbench_env):
    s = make(PolicyDB(lrbench_env["db"]), method="cost", metric="val_acc", target=0.9, eval_every=5,
             policies=["fixed"], lr_range=(1e-3, 1e-1))
    assert s.objective.mode == "max"  # val_acc is not the task's metric: by name, higher is better
    run_study(s)
    best = s.best()
    reached = [r for r in s.ranking() if r["cost_to_target"] is not None]
    assert best is not None and reached and best["trial"] == reached[0]["trial"]
    record = PolicyDB(lrbench_env["db"]).get(s.config.study_id, "studies")
    assert record["objective"] == {"metric": "val_acc", "mode": "max"}


def test_mode_flag_and_full_trial_ids(lrbench_env):
    out = cli("tune", "--task", "digits-mlp", "--tuner", "grid", "--set", "tuner.points=1", "--policies", "fixed",
              "--budget-steps", "20", "--mode", "max", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    study_id = result["study"]
    record = PolicyDB(lrbench_env["db"]).get(study_id, "studies")
    assert record["objective"]["mode"] == "max"
    table = cli("tune", "--task", "digits-mlp", "--tuner", "grid", "--set", "tuner.points=1", "--policies", "fixed",
                "--budget-steps", "20")
    assert table.returncode == 0, table.stderr
    trial_id = next(line.split()[1] for line in table.stdout.splitlines() if line.startswith("1 "))
    shown = cli("db", "show", trial_id, "--json")
    assert shown.returncode == 0, shown.stderr  # the id the table prints is the one db show takes


BROKEN_TASK = """
from lrbench_gui.api import Params, Task, hookimpl


class Broken(Task):
    name = "broken"
    summary = "a task whose data cannot be built"

    class Params(Params):
        pass

    def setup(self, ctx):
        raise FileNotFoundError("no such data file: /nowhere/train.jsonl")

    def train_batches(self):
        raise AssertionError

    def loss(self, model, batch):
        raise AssertionError

    def evaluate(self, model):
        raise AssertionError


@hookimpl
def register_tasks(register):
    register(Broken)
"""


def test_a_study_whose_trials_all_fail_exits_non_zero_with_the_reason(lrbench_env):
    (lrbench_env["plugins"] / "broken_task.py").write_text(BROKEN_TASK)
    out = cli("tune", "--task", "broken", "--tuner", "grid", "--set", "tuner.points=1", "--policies", "fixed,cosine",
              "--budget-steps", "20")
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "every trial" in last and "failed" in last and "/nowhere/train.jsonl" in last
    assert "Traceback" not in out.stderr


def test_resume_never_uses_the_stored_ray_address(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = make(db, study_id="s-shared", tuner_params={"points": 1}, policies=["fixed"])
    record = s.study_record("stopped")
    record["extra"]["config"].update(backend="ray", ray_address="10.1.2.3:6379")  # as a shared file could say
    db.add_study(record, replace=True)
    out = cli("tune", "--resume", "s-shared", "--json")
    assert out.returncode == 0, out.stderr
    assert "10.1.2.3" not in out.stderr + out.stdout
    assert json.loads(out.stdout)["summary"]["trials"] == 1  # it ran here, locally
