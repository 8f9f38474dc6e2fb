"""Studies end to end with real trial subprocesses: the three LRBench++ methods, early stopping,
resume after an interruption, the range test, the CLI, and a Ray Tune backed study against a local
Ray started by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lrbench_gui.cli.tune import run_study_blocking
from lrbench_gui.core.db import PolicyDB
from lrbench_gui.plugins import get_registry
from lrbench_gui.core.tuning.study import Study, StudyConfig

FAST = {"task": "digits-mlp", "budget_steps": 60, "batch_size": 32, "parallel": 2, "eval_every": 20}


def study(db, **overrides):
    return Study(StudyConfig(**{**FAST, **overrides}), registry=get_registry(), db=db)


def test_single_policy_selection_ranks_and_records_every_trial(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = study(db, tuner="grid", tuner_params={"points": 2}, policies=["fixed", "cosine"])
    run_study_blocking(s)
    ranking = s.ranking()
    assert len(ranking) == 4 and {r["family"] for r in ranking} == {"fixed", "cosine"}
    values = [r["value"] for r in ranking if r["value"] is not None]
    assert values and values == sorted(values)  # best (lowest val_loss) first
    assert all(r["value"] is None for r in ranking[len(values):])  # diverged ones last
    stored = db.trials(study=s.config.study_id)
    assert len(stored) == 4
    assert {t["id"]: t["status"] for t in stored} == {r["trial"]: r["status"] for r in ranking}
    record = db.get(s.config.study_id, "studies")
    assert record["status"] == "finished"
    assert record["extra"]["summary"]["best"]["trial"] == ranking[0]["trial"]


def test_composition_is_compared_with_the_best_single_policy(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = study(db, method="compose", tuner="random", tuner_params={"trials": 6}, policies=["fixed", "cosine"])
    run_study_blocking(s)
    summary = s.summary()
    assert summary["trials"] == 6
    composed = [r for r in s.ranking() if r["composed"]]
    assert composed, "the search space holds compositions"
    assert all("sequence" in r["policy"] for r in composed)
    assert summary["best_single"] is not None or summary["best_composition"] is not None


def test_cost_effective_tuning_ranks_by_steps_to_the_target(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = study(db, method="cost", tuner="grid", tuner_params={"points": 3}, policies=["fixed"],
              metric="val_acc", mode="max", target=0.9, eval_every=10, lr_range=(1e-3, 1e-1))
    run_study_blocking(s)
    rows = s.ranking()
    reached = [r for r in rows if r["cost_to_target"] is not None]
    assert reached, "at least one LR reaches 90% within 60 steps"
    assert [r["cost_to_target"] for r in reached] == sorted(r["cost_to_target"] for r in reached)
    assert rows[: len(reached)] == reached  # those that reached the target come first


def test_halving_spends_less_than_a_grid_and_stops_nothing_it_needs(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = study(db, tuner="halving", tuner_params={"n": 4}, policies=["fixed", "cosine"], budget_steps=90)
    run_study_blocking(s)
    assert s.compute_steps() < 4 * 90
    assert s.best() is not None and s.best()["steps"] == 90  # the winner ran the full budget


def test_interrupted_study_resumes_without_repeating_finished_trials(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    first = study(db, tuner="grid", tuner_params={"points": 3}, policies=["fixed"], parallel=1)
    finished = []
    first.on_stored = lambda record: finished.append(record["id"])

    from lrbench_gui.core.runs.runner import LocalScheduler

    def on_finished(trial_id, record):
        first.on_finished(trial_id, record)
        if len(first.results) == 1:
            first.stop()  # the app closed after one trial

    first.save("running")
    LocalScheduler(1, on_finished=on_finished, on_event=first.on_event, feeder=first.next_trials).run()
    assert len(finished) == 1

    again = Study(first.config, registry=get_registry(), db=PolicyDB(lrbench_env["db"]))
    assert again.resume() == 1
    ran = []
    again.on_stored = lambda record: ran.append(record["id"])
    run_study_blocking(again)
    assert len(ran) == 2 and finished[0] not in ran
    assert len(again.results) == 3
    assert len(db.trials(study=first.config.study_id)) == 3


def test_range_test_suggests_an_lr(lrbench_env):
    db = PolicyDB(lrbench_env["db"])
    s = study(db, tuner="range-test", policies=["fixed"], budget_steps=120, parallel=1,
              tuner_params={"start_lr": 1e-5, "end_lr": 10.0})
    run_study_blocking(s)
    summary = s.tuner.summary_json()
    chosen = summary["chosen"]
    lr = summary["suggestions"][chosen]["lr"]
    assert 1e-5 < lr < 10.0
    assert summary["why"]


def test_cli_tune_prints_a_ranked_table_and_saves_the_best(lrbench_env, tmp_path):
    best = tmp_path / "best.json"
    proc = subprocess.run(
        [sys.executable, "-m", "lrbench_gui.cli", "tune", "--task", "digits-mlp", "--method", "single",
         "--tuner", "halving", "--policies", "fixed,step,cosine,triangle2", "--budget-steps", "60",
         "--parallel", "2", "--set", "tuner.n=4", "--save-best", str(best)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    # without a terminal: one plain progress line per trial on stderr, completed / the tuner's
    # planned count (halving: 4 + 1 + 1 rungs) and an ETA; stdout is the answer alone
    progress = [ln for ln in proc.stderr.splitlines() if "trials done" in ln]
    assert "1 / 6 trials done" in progress[0] and "ETA" in progress[0], proc.stderr
    assert "6 / 6 trials done" in progress[-1] and "\x1b[" not in proc.stderr and "trials done" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["#", "trial", "policy", "status"]
    assert lines[1].startswith("1 ")
    spec = json.loads(best.read_text())
    out = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "policy", "export", "--spec", str(best),
                          "--to", "torch", "--steps", "60"], capture_output=True, text=True)
    assert out.returncode == 0 and "scheduler" in out.stdout
    assert spec in [t["policy"] for t in PolicyDB(lrbench_env["db"]).trials()]


def test_cli_refuses_bad_studies(lrbench_env):
    for argv, message in [
        (["--task", "digits-mlp", "--tuner", "nope"], "unknown tuner 'nope'"),
        (["--task", "digits-mlp", "--policies", "cosin"], "cosin"),
        (["--task", "digits-mlp", "--method", "cost"], "needs a target"),
        (["--task", "digits-mlp", "--target", "val_acc"], "expected METRIC=VALUE"),
        (["--resume", "s-missing"], "no study 's-missing'"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "tune", *argv],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_ray_tune_backed_study_reaches_the_app_and_the_database(lrbench_env):
    """`lrbench tune --backend ray --json`: every step event comes back through Ray (the stored
    curves hold every step), both trials are recorded, and stdout is one JSON document although
    Ray prints banners (issue 12's tune-json-ray case, run here so the suite starts Ray once);
    two trials at a time, as the app's Ray study runs them."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run(
        [sys.executable, "-m", "lrbench_gui.cli", "tune", "--task", "digits-mlp", "--tuner", "grid",
         "--set", "tuner.points=2", "--policies", "fixed", "--lr-range", "1e-3,3e-2", "--budget-steps", "40",
         "--eval-every", "20", "--backend", "ray", "--parallel", "2", "--json"],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)  # one JSON document, whatever Ray printed
    assert result["summary"]["trials"] == 2 and {r["status"] for r in result["ranking"]} == {"completed"}
    from lrbench_gui.core.records import curve_points

    stored = PolicyDB(lrbench_env["db"]).trials(study=result["study"])
    assert len(stored) == 2 and all(t["metrics"]["val_acc"] > 0.5 for t in stored)
    assert all(len(curve_points(t["curves"]["loss"])) == 40 for t in stored)  # every step came back
