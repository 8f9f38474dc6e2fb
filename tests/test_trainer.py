"""Trials as real subprocesses: the protocol, the faults (diverged, failed, killed, stopped), the
checkpoints, the scheduler's slots, and the ``lrbench run`` command end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.runs.protocol import encode, parse_line
from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.plugins import get_registry
from lrbench_gui.core.runs.trial import TrialConfig, TrialError, load_trial

DIGITS = {"task": "digits-mlp", "policy": {"name": "cosine", "params": {"lr": 0.05}}, "budget": {"steps": 60}}


def trial(**overrides):
    return load_trial({**DIGITS, **overrides})


def run_all(configs, slots=1, **callbacks):
    sched = LocalScheduler(slots, **callbacks)
    for cfg in configs:
        sched.submit(cfg)
    return sched.run()


def test_protocol_round_trip_and_log_text():
    line = encode("step", "t1", step=3, lr=0.1, loss=float("nan"), tokens=0)
    event = parse_line(line)
    assert event.type == "step" and event["step"] == 3 and event["loss"] != event["loss"]  # NaN survives
    assert json.loads(line)["loss"] == "nan"  # and the line stays strict JSON
    for junk in ["hello world", "{not json", '{"v": 99, "type": "step", "trial": "t"}', '{"v": 1, "type": "step"}',
                 '{"v": 1, "type": "end", "trial": "t", "status": "exploded"}', "[1, 2]", ""]:
        assert parse_line(junk) is None


def test_events_with_fields_of_the_wrong_type_are_log_text():
    good = {"v": 1, "type": "step", "trial": "t", "step": 1, "lr": 0.1, "loss": "inf"}
    assert parse_line(json.dumps(good))["loss"] == float("inf")
    for field, value in [("step", "1"), ("step", -1), ("step", True), ("step", 1.5), ("lr", "fast"), ("loss", [1.0])]:
        assert parse_line(json.dumps({**good, field: value})) is None, (field, value)
    assert parse_line(json.dumps({"v": 1, "type": "eval", "trial": "t", "step": 2, "metrics": [1]})) is None
    assert parse_line('{"v": 1, "type": "hello", "trial": "t", "pid": 1, "pad": "' + "x" * (1 << 20) + '"}') is None


def test_the_first_end_event_is_the_trials_end_and_non_finite_points_are_left_out():
    from lrbench_gui.core.runs.recorder import TrialRecorder

    rec = TrialRecorder(trial())
    for line in [encode("hello", "t", pid=1, steps=3), encode("step", "t", step=0, lr=0.1, loss=2.0),
                 encode("step", "t", step=1, lr=float("inf"), loss=float("nan")),
                 encode("end", "t", status="diverged", metrics={"val_loss": float("inf"), "best_loss": None}),
                 encode("end", "t", status="completed", metrics={"val_loss": 0.5})]:
        rec.feed(parse_line(line))
    rec.finish(0, [])
    record = rec.record()
    assert record["status"] == "diverged" and "val_loss" not in record["metrics"]
    assert record["curves"]["lr"] == {"steps": [0], "values": [0.1]}
    assert record["curves"]["loss"] == {"steps": [0], "values": [2.0]}
    notes = record["notes"]
    assert "a second end event (status completed) was ignored" in notes
    assert "step 1: the trainer reported a non-finite LR (inf)" in notes and "metric val_loss" in notes
    assert "best_loss" not in notes  # None means "not measured", not a bad value


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"threads": 1025}, "threads: Input should be less than or equal to 1024"),
        ({"trial_id": "a/b"}, "trial_id: must be 1 to 128"),
        ({"trial_id": "a..b"}, "without '..'"),
        ({"trial_id": "x" * 129}, "trial_id"),
        ({"study_id": "../s"}, "study_id"),
        ({"optimizer": {"betas": [0.9, 1.0]}}, "optimizer.betas: betas[1] must be in [0, 1)"),
        ({"optimizer": {"eps": float("inf")}}, "optimizer.eps: must be a finite number (got inf)"),
        ({"optimizer": {"weight_decay": 1e6}}, "optimizer.weight_decay"),
        ({"max_grad_norm": float("nan")}, "max_grad_norm: must be a finite number"),
        ({"budget": {"steps": 10**12}}, "budget.steps"),
        ({"checkpoint_steps": [0]}, "checkpoint_steps: every checkpoint step must be in [1,"),
        ({"device": "cuda; rm -rf /"}, "device"),
        ({"task": None}, "task"),
    ],
)
def test_trial_fields_are_bounded(fields, message):
    with pytest.raises(TrialError) as info:
        trial(**fields)
    assert message in str(info.value) and len(str(info.value)) < 400


def test_trial_files_are_read_bounded(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"task": "digits-mlp", "task": "x", "policy": {}}')
    with pytest.raises(TrialError, match="names the key 'task' more than once"):
        load_trial(path)
    path.write_text('{"task": "digits-mlp", "policy": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(TrialError, match="nests deeper than 64 levels"):
        load_trial(path)
    path.write_bytes(b'{"task": "d\xffigits"}')
    with pytest.raises(TrialError, match="not UTF-8"):
        load_trial(path)
    with pytest.raises(TrialError, match="task: required"):
        load_trial('{"policy": {"name": "fixed"}}')


def test_trial_file_validation_names_the_field():
    with pytest.raises(TrialError, match="^budget: give exactly one of steps, epochs or tokens"):
        trial(budget={"steps": 10, "epochs": 1})
    with pytest.raises(TrialError, match="optimizer.name"):
        trial(optimizer={"name": "lion"})
    from lrbench_gui.core.runs.trial import validate_trial

    with pytest.raises(TrialError, match="task: unknown task 'digits'"):
        validate_trial(trial(task="digits"), get_registry())
    with pytest.raises(TrialError, match="task_params.hidden: must be >= 4"):
        validate_trial(trial(task_params={"hidden": 1}), get_registry())
    with pytest.raises(TrialError, match="policy.params.lr: must be > 0"):
        validate_trial(trial(policy={"name": "cosine", "params": {"lr": 0}}), get_registry())


def test_digits_trial_streams_every_step_and_learns():
    events = []
    records = run_all([trial(eval_every=20)], on_event=lambda tid, e: events.append(e))
    kinds = [e.type for e in events]
    assert kinds[0] == "hello" and kinds[-1] == "end"
    steps = [e for e in events if e.type == "step"]
    assert [e["step"] for e in steps] == list(range(60))
    # the policy is the only source of the LR: the streamed LR is the policy's
    from lrbench_gui.core.spec import sample

    assert [e["lr"] for e in steps] == sample(DIGITS["policy"], 60, get_registry())
    assert [e["step"] for e in events if e.type == "eval"] == [19, 39, 59]
    (rec,) = records.values()
    assert rec["status"] == "completed"
    assert rec["metrics"]["val_acc"] > 0.85
    assert rec["cost"]["steps"] == 60 and rec["extra"]["samples"] == 60 * 32
    assert len(rec["curves"]["lr"]["steps"]) == 60


def test_huge_lr_diverges_without_a_traceback():
    (rec,) = run_all([trial(policy={"name": "fixed", "params": {"lr": 1000.0}})]).values()
    assert rec["status"] == "diverged"
    assert rec["cost"]["steps"] < 10
    assert "Traceback" not in rec["notes"]


def test_bad_trial_file_fails_cleanly(tmp_path):
    path = tmp_path / "trial.json"
    path.write_text(json.dumps({**DIGITS, "trial_id": "bad1", "batch_size": 0}))
    proc = subprocess.run([sys.executable, "-m", "lrbench_gui.trainer", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    events = [parse_line(x) for x in proc.stdout.splitlines()]
    assert [e.type for e in events] == ["error", "end"]
    assert events[0].trial == "bad1" and "batch_size" in events[0]["message"]
    assert events[1]["status"] == "failed"


def test_checkpoints_are_safetensors_with_step_and_lr(tmp_path):
    from safetensors import safe_open

    cfg = trial(checkpoint_steps=[20, 60], output_dir=str(tmp_path / "out"))
    events = []
    run_all([cfg], on_event=lambda tid, e: events.append(e))
    ckpts = [e for e in events if e.type == "checkpoint"]
    assert [c["step"] for c in ckpts] == [20, 60]
    with safe_open(ckpts[0]["path"], framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    from lrbench_gui.core.spec import sample

    assert meta["step"] == "20" and float(meta["lr"]) == sample(DIGITS["policy"], 60, get_registry())[19]


def test_epoch_budget_becomes_steps():
    events = []
    run_all([trial(budget={"epochs": 1}, batch_size=64)], on_event=lambda tid, e: events.append(e))
    hello = next(e for e in events if e.type == "hello")
    assert hello["steps"] == 23  # ceil(1438 training images / 64)


NOISY_TASK = '''
import sys
from lrbench_gui.core.params import Params, param
from lrbench_gui.hookspecs import hookimpl
from lrbench_builtins.tasks.digits import DigitsMLP


class Noisy(DigitsMLP):
    name = "noisy-digits"

    def loss(self, model, batch):
        print("a stray print from the task")
        print("{not json either")
        return super().loss(model, batch)


class Crashy(DigitsMLP):
    name = "crashy-digits"

    def loss(self, model, batch):
        raise RuntimeError("the data loader broke")


@hookimpl
def register_tasks(register):
    register(Noisy)
    register(Crashy)
'''


def test_stray_stdout_is_log_text_and_a_crash_is_failed(lrbench_env):
    (lrbench_env["plugins"] / "noisy.py").write_text(textwrap.dedent(NOISY_TASK))
    logs = []
    configs = [trial(task="noisy-digits", budget={"steps": 5}), trial(task="crashy-digits", budget={"steps": 5})]
    records = run_all(configs, slots=2, on_log=lambda tid, line: logs.append(line))  # side by side
    noisy, crashy = (records[c.trial_id] for c in configs)
    assert noisy["status"] == "completed"
    assert "a stray print from the task" in logs and "{not json either" in logs
    assert crashy["status"] == "failed"
    assert "RuntimeError: the data loader broke" in crashy["notes"]


def test_sigkill_leaves_a_failed_trial_and_the_scheduler_goes_on(lrbench_env):
    killed = {}

    def on_event(trial_id, event):
        if event.type == "step" and event["step"] == 3 and trial_id == first.trial_id and not killed:
            killed[trial_id] = True
            os.kill(sched.slots.handle(trial_id).proc.pid, signal.SIGKILL)

    sched = LocalScheduler(1, on_event=on_event)
    first = trial(budget={"steps": 100000})
    second = trial(budget={"steps": 10})
    sched.submit(first)
    sched.submit(second)
    records = sched.run()
    assert records[first.trial_id]["status"] == "failed"
    assert "killed by signal 9" in records[first.trial_id]["notes"]
    assert records[second.trial_id]["status"] == "completed"
    # both are recorded by the app process alone
    db = PolicyDB(lrbench_env["db"])
    db.add_many("trials", list(records.values()))
    assert {t["id"]: t["status"] for t in db.trials()} == {first.trial_id: "failed", second.trial_id: "completed"}


def test_cancel_stops_at_the_next_step_with_an_end_event():
    ends = []

    def on_event(trial_id, event):
        if event.type == "step" and event["step"] == 5:
            sched.cancel(trial_id)
        if event.type == "end":
            ends.append(event)

    sched = LocalScheduler(1, on_event=on_event)
    cfg = trial(budget={"steps": 100000})
    queued = trial(budget={"steps": 10})
    sched.submit(cfg)
    sched.submit(queued)
    sched.cancel(queued.trial_id)  # a queued trial is cancelled without starting
    records = sched.run()
    assert records[cfg.trial_id]["status"] == "stopped"
    assert ends and ends[0]["status"] == "stopped"  # the trainer said so itself
    assert 5 <= records[cfg.trial_id]["cost"]["steps"] < 1000
    assert records[queued.trial_id]["status"] == "stopped" and records[queued.trial_id]["cost"]["steps"] == 0


def test_slots_run_trials_side_by_side():
    live, peak = set(), [0]

    def on_started(trial_id, cfg):
        live.add(trial_id)
        peak[0] = max(peak[0], len(live))

    def on_finished(trial_id, record):
        live.discard(trial_id)

    configs = [trial(budget={"steps": 150}, seed=i) for i in range(3)]
    records = run_all(configs, slots=2, on_started=on_started, on_finished=on_finished)
    assert peak[0] == 2
    assert [records[c.trial_id]["status"] for c in configs] == ["completed"] * 3


def test_lrbench_run_acceptance(lrbench_env):
    """The issue's check: 300 steps of cosine at 0.05 pass 90% validation accuracy and are recorded;
    a diverging run beside it (both at once, one database) ends diverged and is recorded too."""
    base = [sys.executable, "-m", "lrbench_gui.cli", "run", "--task", "digits-mlp", "--policy", "cosine"]
    good = subprocess.Popen([*base, "--set", "policy.lr=0.05", "--steps", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad = subprocess.Popen([*base, "--set", "policy.lr=1000", "--steps", "300", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    good_out, good_err = good.communicate(timeout=120)
    bad_out, bad_err = bad.communicate(timeout=120)
    assert good.returncode == 0, good_err
    assert good_out.startswith("completed: digits-mlp")
    assert "300/300" in good_err  # the progress bar reached the end
    assert bad.returncode == 0 and "Traceback" not in bad_err
    events = [parse_line(x) for x in bad_out.splitlines()]
    assert events[-1].type == "end" and events[-1]["status"] == "diverged"
    stored = PolicyDB(lrbench_env["db"]).trials()
    assert sorted(t["status"] for t in stored) == ["completed", "diverged"]
    (rec,) = [t for t in stored if t["status"] == "completed"]
    assert rec["metrics"]["val_acc"] > 0.9 and rec["policy"]["params"]["lr"] == 0.05


def test_a_repeated_evaluation_step_is_recorded_once(lrbench_env):
    """A trial stopped right after an evaluation must still give a record the database accepts."""
    from lrbench_gui.core.runs.protocol import Event
    from lrbench_gui.core.runs.recorder import TrialRecorder

    rec = TrialRecorder(trial(budget={"steps": 10}))
    rec.feed(Event("hello", rec.config.trial_id, {"pid": 1, "steps": 10}))
    for step in range(5):
        rec.feed(Event("step", rec.config.trial_id, {"step": step, "lr": 0.1, "loss": 1.0 / (step + 1)}))
    rec.feed(Event("eval", rec.config.trial_id, {"step": 4, "metrics": {"val_loss": 0.5}}))
    rec.feed(Event("eval", rec.config.trial_id, {"step": 4, "metrics": {"val_loss": 0.4}}))
    rec.finish(None, [], cancelled=True)
    record = rec.record()
    assert record["curves"]["eval/val_loss"] == {"steps": [4], "values": [0.4]}
    stored = PolicyDB(lrbench_env["db"]).add_trial(record)
    assert stored["status"] == "stopped"
