"""The user's own training script as a trial (issue 14, the runner side): ``lrbench tune --cmd``,
``lrbench watch``, the report file, the stop file and the placeholders. Every script here is
written to a folder outside the project and run as a real subprocess; records go to a real
database."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.records import curve_points
from lrbench_gui.core.runs.command import NO_REPORT_NOTE, CommandError, ReportTail, fill_command
from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial

LRBENCH = [sys.executable, "-m", "lrbench_gui.cli"]

#: a plain torch script changed only by its lrbench calls: a 2-parameter regression that follows
#: the trial's policy (report.lr_at) and checks what the placeholders and the environment give it
TORCH_SCRIPT = """
    import argparse, json, os
    import torch
    from lrbench_gui import report

    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float); p.add_argument("--steps", type=int)
    p.add_argument("--spec"); p.add_argument("--log")
    args = p.parse_args()
    info = report.trial()
    with open(args.spec) as fh:
        assert json.load(fh) == info["policy"], "{spec} is not the trial's policy"
    with open(os.environ["LRBENCH_TRIAL"]) as fh:
        assert json.load(fh)["budget"]["steps"] == args.steps == info["steps"]
    assert abs(max(report.lr_at(s) for s in range(args.steps)) - args.lr) <= 1e-12 * args.lr, "{lr} is the peak"

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 2 * x + 1
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    for step in range(args.steps):
        lr = report.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        report.step(step, loss=loss.item(), lr=lr)
        if report.should_stop():
            break
    with torch.no_grad():
        report.eval(step, val_loss=((model(x) - y) ** 2).mean().item())
    with open(args.log, "a") as fh:
        fh.write(f"{os.environ['LRBENCH_TRIAL_ID']} {step + 1}\\n")
"""

#: a torch-free script that writes protocol lines by hand: a slow quadratic descent that polls its
#: stop file; argv: LR STEPS LOG [SLEEP]
HAND_SCRIPT = """
    import json, os, sys, time
    lr, steps, log = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    tid, stop = os.environ["LRBENCH_TRIAL_ID"], os.environ["LRBENCH_STOP"]
    print("plain output is log text")
    w, done = 0.0, "done"
    with open(os.environ["LRBENCH_REPORT"], "a") as fh:
        def send(kind, **fields):
            fh.write(json.dumps({"v": 1, "type": kind, "trial": tid, **fields}) + "\\n")
            fh.flush()
        for step in range(steps):
            if os.path.exists(stop):
                done = "stopped"
                break
            loss = (w - 3) ** 2
            w -= lr * 2 * (w - 3)
            send("step", step=step, lr=lr, loss=loss)
            if step % 2 == 1:
                send("eval", step=step, metrics={"val_loss": (w - 3) ** 2})
            time.sleep(pause)
    with open(log, "a") as out:
        out.write(f"{tid} {done} {step}\\n")
"""


@pytest.fixture
def user_dir(tmp_path):
    """The user's own project folder, outside this repository."""
    folder = tmp_path / "my-project"
    folder.mkdir()
    (folder / "train_torch.py").write_text(textwrap.dedent(TORCH_SCRIPT))
    (folder / "train.py").write_text(textwrap.dedent(HAND_SCRIPT))
    return folder


def _lrbench(args, cwd, timeout=120, **kw):
    return subprocess.run([*LRBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)


def _db(env):
    from lrbench_gui.plugins import get_registry

    return PolicyDB(env["db"], registry=get_registry())


def _curve(trial, name):
    """(steps, values) of a stored curve, plain or packed."""
    points = curve_points(trial["curves"].get(name))
    return [s for s, _ in points], [v for _, v in points]


def _log(path):
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_tune_cmd_halving_tunes_a_torch_script(user_dir, lrbench_env, registry):
    log = user_dir / "runs.log"
    cmd = (f"{shlex.quote(sys.executable)} train_torch.py --lr {{lr}} --steps {{steps}} --spec {{spec}} "
           f"--log {shlex.quote(str(log))}")
    out = _lrbench(["tune", "--cmd", cmd, "--tuner", "halving", "--policies", "fixed,cosine", "--budget-steps", "40",
                    "--set", "tuner.n=3", "--parallel", "2", "--json", "--save-best", "best.json"], cwd=user_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout)
    rows = answer["ranking"]
    assert all(r["status"] == "completed" for r in rows), rows
    # halving: the configurations left behind ran the short rung only; one ran the whole budget
    steps = sorted(r["steps"] for r in rows)
    assert steps[0] == 4 and steps[-1] == 40 and steps.count(4) >= 2
    assert sorted(int(n) for _, n in _log(log)) == steps  # the script ran exactly the steps lrbench asked
    stored = {t["id"]: t for t in _db(lrbench_env).trials(study=answer["study"])}
    assert set(stored) == {r["trial"] for r in rows}
    for trial in stored.values():
        assert trial["task"] == "command" and trial["status"] == "completed"
        n = trial["cost"]["steps"]
        for curve in ("lr", "loss"):
            assert _curve(trial, curve)[0] == list(range(n))
        assert _curve(trial, "eval/val_loss")[0] == [n - 1]
    best = min((r for r in rows if r["value"] is not None), key=lambda r: r["value"])
    assert answer["summary"]["best"]["trial"] == best["trial"]
    saved = json.loads((user_dir / "best.json").read_text())  # the warmup as a share: the same curve
    from lrbench_gui.core.spec import sample

    assert sample(saved, 40, registry) == sample(best["policy"], 40, registry)


def test_a_stopped_command_trial_exits_by_itself(user_dir, tmp_path, monkeypatch, registry):
    monkeypatch.setenv("LRBENCH_STOP_GRACE", "20")
    log = tmp_path / "stop.log"
    cfg = validate_trial(load_trial({
        "task": "command", "policy": {"name": "fixed", "params": {"lr": 0.01}}, "budget": {"steps": 1000},
        "command": [sys.executable, "train.py", "{lr}", "{steps}", str(log), "0.02"], "cwd": str(user_dir),
    }), registry)

    def prune_at_first_eval(trial_id, event):
        return event.type != "eval"

    t0 = time.monotonic()
    records = LocalScheduler(1, workdir=tmp_path / "trials", on_event=prune_at_first_eval, registry=registry)
    records.submit(cfg)
    record = records.run()[cfg.trial_id]
    assert time.monotonic() - t0 < 15  # well inside the grace: no SIGTERM was needed
    assert record["status"] == "stopped"
    assert _log(log)[0][1] == "stopped"
    assert 2 <= record["cost"]["steps"] < 20
    assert (tmp_path / "trials" / cfg.trial_id / "stop").exists()


def test_ctrl_c_then_resume_finishes_without_rerunning(user_dir, lrbench_env):
    log = user_dir / "runs.log"
    cmd = f"{shlex.quote(sys.executable)} train.py {{lr}} {{steps}} {shlex.quote(str(log))} 0.05"
    args = ["tune", "--cmd", cmd, "--tuner", "random", "--policies", "cosine", "--trials", "4",
            "--budget-steps", "16"]
    proc = subprocess.Popen([*LRBENCH, *args], cwd=user_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not any(row[1] == "done" for row in _log(log)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # the second trial is running now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    resume = next(line for line in err.splitlines() if "resume with:" in line).split("resume with: ", 1)[1]
    study_id = shlex.split(resume)[3]
    first = _log(log)
    assert 1 <= sum(row[1] == "done" for row in first) < 4

    refused = _lrbench(["tune", "--resume", study_id], cwd=user_dir)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--cmd" in refused.stderr

    again = _lrbench(shlex.split(resume)[1:], cwd=user_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    done = [row[0] for row in _log(log) if row[1] == "done"]
    assert len(done) == len(set(done)) == 4  # no finished trial ran twice
    trials = _db(lrbench_env).trials(study=study_id)
    assert sorted(t["status"] for t in trials) == ["completed"] * 4


def test_watch_records_one_trial_with_its_curves(user_dir, lrbench_env):
    spec_check = user_dir / "check.py"
    spec_check.write_text(textwrap.dedent("""
        import json, os, runpy, sys
        spec = json.load(open(sys.argv.pop(1)))
        trial = json.load(open(os.environ["LRBENCH_TRIAL"]))
        assert spec == trial["policy"] and spec["name"] == "cosine", (spec, trial["policy"])
        sys.argv[0] = "train.py"
        runpy.run_path("train.py", run_name="__main__")
    """))
    out = _lrbench(["watch", "--policy", "cosine", "--steps", "10", "--name", "my run", "--",
                    sys.executable, "check.py", "{spec}", "0.1", "{steps}", str(user_dir / "w.log")], cwd=user_dir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("completed:")
    (trial,) = _db(lrbench_env).trials()
    assert trial["status"] == "completed" and trial["task"] == "command"
    assert _curve(trial, "loss")[0] == list(range(10))
    assert _curve(trial, "lr")[1] == pytest.approx([0.1] * 10)
    assert _curve(trial, "eval/val_loss")[0] == [1, 3, 5, 7, 9]
    assert trial["metrics"]["val_loss"] < _curve(trial, "loss")[1][0]
    assert trial["extra"]["command"][1] == "check.py" and trial["extra"]["name"] == "my run"
    assert NO_REPORT_NOTE not in trial["notes"]


def test_a_script_that_reports_nothing_is_recorded_from_its_exit_code(user_dir, lrbench_env):
    quiet = _lrbench(["watch", "--", sys.executable, "-c", "print('hello')"], cwd=user_dir)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    broken = _lrbench(["watch", "--", sys.executable, "-c",
                       "import sys; print('it broke here', file=sys.stderr); sys.exit(3)"], cwd=user_dir)
    assert broken.returncode == 1
    by_status = {t["status"]: t for t in _db(lrbench_env).trials()}
    assert set(by_status) == {"completed", "failed"}
    assert NO_REPORT_NOTE in by_status["completed"]["notes"]
    failed = by_status["failed"]["notes"]
    assert NO_REPORT_NOTE in failed and "exit status 3" in failed and "it broke here" in failed


def test_an_unknown_placeholder_is_one_line_before_anything_runs(user_dir, lrbench_env):
    out = _lrbench(["tune", "--cmd", f"{sys.executable} train.py {{lr}} {{nope}}", "--trials", "1"], cwd=user_dir)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("lrbench: error: --cmd:") and "{nope}" in line
    assert not lrbench_env["db"].exists()
    policy_param = _lrbench(["tune", "--cmd", "python train.py {policy.nosuch}"], cwd=user_dir)
    assert policy_param.returncode == 2 and "not a parameter of policy cosine" in policy_param.stderr


def test_placeholders_are_filled_from_the_trial_and_its_folder(tmp_path, registry):
    cfg = validate_trial(load_trial({
        "trial_id": "t1", "task": "digits-mlp", "task_params": {"hidden": 32}, "seed": 7,
        "policy": {"name": "cosine", "params": {"lr": 0.3}}, "budget": {"steps": 50},
        "command": "run --lr {lr} --n {steps} --seed={seed} {out} {spec} {trial} {trial_id} "
                   "{policy.lr:.2f} {task.hidden} '{{literal}}'",
    }), registry)
    argv = fill_command(cfg, tmp_path, registry)
    folder = tmp_path.resolve()
    assert argv == ["run", "--lr", "0.3", "--n", "50", "--seed=7", str(folder), str(folder / "policy.json"),
                    str(folder / "trial.json"), "t1", "0.30", "32", "{literal}"]
    composed = cfg.model_copy(update={"policy": {"sequence": [{"name": "fixed"}, {"name": "cosine"}],
                                                 "boundaries": [10]}})
    with pytest.raises(CommandError, match="composition"):
        fill_command(composed.model_copy(update={"command": ["run", "{policy.lr}"]}), tmp_path, registry)
    with pytest.raises(TrialError, match="command: .*unknown placeholder"):
        load_trial({"task": "command", "policy": {"name": "fixed"}, "command": ["run", "{lrr}"]})
    with pytest.raises(TrialError, match="no task parameter"):
        validate_trial(load_trial({"task": "command", "policy": {"name": "fixed"}, "command": ["run", "{task.x}"]}),
                       registry)


def test_report_tail_reads_complete_lines_only(tmp_path):
    path = tmp_path / "report.jsonl"
    tail = ReportTail(path)
    assert tail.read() == []  # no file yet
    with open(path, "ab") as fh:
        fh.write(b'{"a": 1}\n{"b"')
    assert tail.read() == ['{"a": 1}']
    with open(path, "ab") as fh:
        fh.write(b': 2}\n')
    assert tail.read() == ['{"b": 2}'] and tail.read() == []
    path.write_bytes(b'{"c": 3}')  # a new run of the trial: the file starts again
    assert tail.read() == [] and tail.read(final=True) == ['{"c": 3}']


def test_the_command_task_only_runs_as_a_command(registry):
    from lrbench_builtins.tasks.command import CommandTask

    from lrbench_gui.core.params import validate_params
    from lrbench_gui.core.task import TaskContext
    from lrbench_gui.testing import check_task

    check_task(CommandTask)
    assert registry.task("command") is CommandTask and registry.tasks["command"].source.startswith("builtin")
    with pytest.raises(RuntimeError, match="only runs as a command"):
        CommandTask(validate_params(CommandTask.Params, {})).setup(TaskContext(seed=0, device="cpu", batch_size=1))


def test_the_gui_runner_tails_the_report_and_honours_the_stop_file(qtbot, user_dir, tmp_path, monkeypatch, registry):
    from lrbench_gui.qt.trial_runner import TrialRunner

    monkeypatch.setenv("LRBENCH_STOP_GRACE", "20")
    log = tmp_path / "qt.log"
    runner = TrialRunner(1, workdir=tmp_path / "trials", registry=registry)
    cfg = load_trial({"task": "command", "policy": {"name": "fixed", "params": {"lr": 0.01}}, "budget": {"steps": 1000},
                      "command": [sys.executable, "train.py", "{lr}", "{steps}", str(log), "0.02"],
                      "cwd": str(user_dir)})
    events, logs, finished = [], [], {}
    runner.trialEvent.connect(lambda tid, e: (events.append(e.type),
                                              runner.cancel(tid) if e.type == "eval" else None))
    runner.trialLog.connect(lambda tid, line: logs.append(line))
    runner.trialFinished.connect(lambda tid, rec: finished.__setitem__(tid, rec))
    t0 = time.monotonic()
    with qtbot.waitSignal(runner.idle, timeout=30_000):
        runner.submit(cfg)
    record = finished[cfg.trial_id]
    assert time.monotonic() - t0 < 15 and record["status"] == "stopped"
    assert "step" in events and "eval" in events and "plain output is log text" in logs
    assert _log(log)[0][1] == "stopped" and record["cost"]["steps"] < 20
    assert len(curve_points(record["curves"]["lr"])) == record["cost"]["steps"]
