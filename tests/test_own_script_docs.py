"""docs/own-script.md is tested: its marked scripts (a ``python`` block after
``<!-- test: FILE -->``) are written to a folder and run the way a user would: on their own,
with the ``# lrbench`` lines taken out (the script the user started from), under a trial
environment set by hand (report file written, the policy followed, the stop file honoured), and
the plain torch one through ``lrbench tune --cmd``. The line counts the docs give are checked
against the examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.trial import Budget, TrialConfig, write_trial
from lrbench_gui.core.spec import build_schedule

DOCS = Path(__file__).resolve().parents[1] / "docs" / "own-script.md"
EXAMPLE = re.compile(r"<!-- test: (\S+) -->\n```python\n(.*?)```", re.S)
ENV = ("LRBENCH_TRIAL", "LRBENCH_REPORT", "LRBENCH_STOP", "LRBENCH_TRIAL_ID")
COMPOSITION = {
    "sequence": [
        {"name": "warmup", "params": {"warmup_max_lr": 0.05, "warmup_num_steps": 5, "warmup_type": "linear"}},
        {"name": "cosine", "params": {"lr": 0.05}},
    ],
    "boundaries": [5],
}


def examples() -> dict[str, str]:
    return dict(EXAMPLE.findall(DOCS.read_text(encoding="utf-8")))


def added(code: str) -> list[str]:
    return [line for line in code.splitlines() if line.rstrip().endswith("# lrbench")]


def without_lrbench(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if not line.rstrip().endswith("# lrbench")) + "\n"


@pytest.fixture
def scripts(tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name, code in examples().items():
        (folder / name).write_text(code)
        (folder / f"original_{name}").write_text(without_lrbench(code))
    return folder


def trial_env(tmp_path: Path, steps: int, stop: bool = False) -> tuple[dict[str, str], Path]:
    """The environment the runner gives a command trial, set by hand; and its report file."""
    folder = tmp_path / "trial-doc1"
    write_trial(TrialConfig(trial_id="doc1", task="command", policy=COMPOSITION, budget=Budget(steps=steps)),
                folder / "trial.json")
    if stop:
        (folder / "stop").write_text("")
    env = {**os.environ, "LRBENCH_TRIAL": str(folder / "trial.json"), "LRBENCH_REPORT": str(folder / "report.jsonl"),
           "LRBENCH_STOP": str(folder / "stop"), "LRBENCH_TRIAL_ID": "doc1"}
    return env, folder / "report.jsonl"


def side_by_side(*runs: tuple[Path, tuple[str, ...], dict[str, str] | None]) -> list[subprocess.CompletedProcess]:
    """Run each (script, args, env) as its own process, all at once (each waits on its imports,
    not on the others); each must exit 0."""
    procs = []
    for script, args, env in runs:
        if env is None:
            env = {k: v for k, v in os.environ.items() if k not in ENV}
        cmd = [sys.executable, str(script), *args]
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                            cwd=script.parent)))
    outs = []
    for cmd, proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        outs.append(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
    for out in outs:
        assert out.returncode == 0, out.stderr[-3000:]
    return outs


def events(report: Path) -> list:
    parsed = [parse_line(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert None not in parsed
    return parsed


def test_the_docs_mark_every_example_and_count_its_added_lines():
    docs = DOCS.read_text(encoding="utf-8")
    found = examples()
    assert set(found) == {"train_torch.py", "train_hf.py"}
    torch_lines, hf_lines = len(added(found["train_torch.py"])), len(added(found["train_hf.py"]))
    assert (torch_lines, hf_lines) == (6, 2)
    assert re.search(r"\| plain torch loop, tuned through `--lr \{lr\}` \| 4 \|", docs)
    assert re.search(rf"\| plain torch loop that follows the trial's whole policy \| {torch_lines} \|", docs)
    assert re.search(rf"\| Hugging Face `Trainer` \| {hf_lines} \|", docs)
    core = ("import report", "report.step(", "report.eval(", "report.should_stop()")
    assert sum(any(c in line for c in core) for line in added(found["train_torch.py"])) == 4


@pytest.mark.slow
def test_the_torch_script_runs_on_its_own_and_as_it_was_before(scripts):
    for out in side_by_side(*((scripts / name, ("--steps", "50"), None)
                              for name in ("train_torch.py", "original_train_torch.py"))):
        assert "step 50: val_loss" in out.stdout


@pytest.mark.slow
def test_the_torch_script_reports_follows_the_policy_and_stops(scripts, tmp_path, registry):
    env, report = trial_env(tmp_path / "a", steps=30)
    stop_env, stop_report = trial_env(tmp_path / "b", steps=30, stop=True)
    side_by_side((scripts / "train_torch.py", ("--steps", "30"), env),
                 (scripts / "train_torch.py", ("--steps", "30"), stop_env))
    got = events(report)
    steps = [e for e in got if e.type == "step"]
    assert got[0].type == "hello" and [e["step"] for e in steps] == list(range(30))
    assert [e["lr"] for e in steps] == build_schedule(COMPOSITION, 30, registry).lrs()
    assert [e.type for e in got][-1] == "eval" and got[-1]["metrics"]["val_loss"] > 0
    assert [e["step"] for e in events(stop_report) if e.type == "step"] == [0]  # the stop file was honoured


@pytest.mark.slow
def test_the_hf_script_reports_and_stops(scripts, tmp_path, registry):
    env, report = trial_env(tmp_path / "a", steps=6)
    stop_env, stop_report = trial_env(tmp_path / "b", steps=6, stop=True)
    side_by_side((scripts / "train_hf.py", ("--steps", "6", "--out", str(tmp_path / "hf-a")), env),
                 (scripts / "train_hf.py", ("--steps", "6", "--out", str(tmp_path / "hf-b")), stop_env))
    got = events(report)
    steps = [e for e in got if e.type == "step"]
    assert [e["step"] for e in steps] == list(range(6))
    assert [e["lr"] for e in steps] == pytest.approx(build_schedule(COMPOSITION, 6, registry).lrs(), rel=1e-12)
    evals = [e for e in got if e.type == "eval"]
    assert [e["step"] for e in evals] == [2, 5] and evals[-1]["metrics"]["val_loss"] > 0  # after steps 2 and 5 (0-based)
    assert [e["step"] for e in events(stop_report) if e.type == "step"] == [0]  # the stop file was honoured


@pytest.mark.slow
def test_the_torch_script_is_tuned_by_lrbench_tune_cmd(scripts, lrbench_env):
    command = f"{sys.executable} train_torch.py --lr {{lr}} --steps {{steps}} --seed {{seed}}"
    out = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "tune", "--cmd", command, "--cwd", str(scripts),
                          "--tuner", "random", "--policies", "cosine", "--trials", "2", "--budget-steps", "30",
                          "--parallel", "2", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert len(result["ranking"]) == 2 and all(r["status"] == "completed" for r in result["ranking"])
    assert all(r["metric"] == "val_loss" and r["value"] > 0 for r in result["ranking"])

    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.plugins import get_registry

    db = PolicyDB(lrbench_env["db"], registry=get_registry())
    trials = db.trials(study=result["study"])
    assert len(trials) == 2 and all(t["task"] == "command" for t in trials)
    for t in trials:
        steps, lrs = db.curves(t["id"])["lr"]
        assert len(steps) == 30 and max(lrs) == pytest.approx(t["policy"]["params"]["lr"])
