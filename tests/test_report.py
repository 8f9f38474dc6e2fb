"""lrbench_gui.report, the calls a user's script makes: each writes the protocol lines the runner
reads back (parsed here with the runner's own parser), only to the report file, from any thread;
should_stop follows the stop file; lr_at is the trial's policy; outside lrbench nothing happens;
importing it loads only the standard library."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from lrbench_gui import report
from lrbench_gui.core.runs.protocol import PROTOCOL_VERSION, parse_line
from lrbench_gui.core.runs.trial import TrialConfig, Budget, write_trial
from lrbench_gui.core.spec import build_schedule

COMPOSITION = {
    "sequence": [
        {"name": "warmup", "params": {"warmup_max_lr": 0.05, "warmup_num_steps": 10, "warmup_type": "linear"}},
        {"name": "cosine", "params": {"lr": 0.05}},
    ],
    "boundaries": [10],
}
ENV = ("LRBENCH_TRIAL", "LRBENCH_REPORT", "LRBENCH_STOP", "LRBENCH_TRIAL_ID")


@pytest.fixture
def trial_env(tmp_path, monkeypatch):
    """A trial folder as the runner prepares it, and the environment it gives the script."""
    folder = tmp_path / "trial-r1"
    cfg = TrialConfig(trial_id="r1", task="command", policy=COMPOSITION, budget=Budget(steps=40), seed=7,
                      task_params={"width": 3})
    write_trial(cfg, folder / "trial.json")
    paths = {"trial": folder / "trial.json", "report": folder / "report.jsonl", "stop": folder / "stop"}
    monkeypatch.setenv("LRBENCH_TRIAL", str(paths["trial"]))
    monkeypatch.setenv("LRBENCH_REPORT", str(paths["report"]))
    monkeypatch.setenv("LRBENCH_STOP", str(paths["stop"]))
    monkeypatch.setenv("LRBENCH_TRIAL_ID", "r1")
    yield paths
    report._close()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_call_writes_its_protocol_line(trial_env):
    assert report.active()
    report.step(0, loss=2.5, lr=0.01, tokens=64, samples=8)
    report.step(1, loss=float("nan"), lr=0.02)
    report.step(2)
    report.eval(2, val_loss=1.25, val_acc=0.5)
    report.end("completed", val_loss=1.25)
    raw = lines(trial_env["report"])
    assert [r["type"] for r in raw] == ["hello", "step", "step", "step", "eval", "end"]
    assert all(r["v"] == PROTOCOL_VERSION and r["trial"] == "r1" for r in raw)
    hello = raw[0]
    assert hello["device"] == "script" and hello["world_size"] == 1 and hello["steps"] == 40
    assert isinstance(hello["pid"], int)
    events = [parse_line(line) for line in trial_env["report"].read_text().splitlines()]
    assert None not in events  # every line is a protocol event the runner reads, a step without numbers too
    first = events[1]
    assert (first["step"], first["lr"], first["loss"], first["tokens"], first["samples"]) == (0, 0.01, 2.5, 64, 8)
    assert 0 <= first["wall"] <= raw[2]["wall"] and first["time"] == first["wall"]
    assert raw[2]["loss"] == "nan" and math.isnan(events[2]["loss"])  # non-finite as the protocol's string
    assert raw[3]["lr"] is None and raw[3]["loss"] is None and raw[3]["tokens"] == 0  # nothing given: null
    assert events[4].data["metrics"] == {"val_loss": 1.25, "val_acc": 0.5} and events[4]["step"] == 2
    end = events[5]
    assert end["status"] == "completed" and end["metrics"] == {"val_loss": 1.25}
    assert end["cost"]["steps"] == 3 and end["cost"]["seconds"] >= 0


def test_a_bad_call_is_refused_before_anything_is_written(trial_env):
    with pytest.raises(ValueError, match="whole number"):
        report.step(1.5, loss=1.0)
    with pytest.raises(TypeError, match="trial"):
        report.step(1, trial=3)
    with pytest.raises(ValueError, match="status"):
        report.end("great")
    assert not trial_env["report"].exists()


def test_trial_describes_the_running_trial(trial_env):
    info = report.trial()
    assert info == {"trial_id": "r1", "policy": COMPOSITION, "steps": 40, "seed": 7,
                    "out": str(trial_env["trial"].parent), "task_params": {"width": 3}}


def test_lr_at_is_the_trial_policy_compositions_included(trial_env, registry):
    expected = build_schedule(COMPOSITION, 40, registry).lrs()
    assert [report.lr_at(k) for k in range(40)] == expected
    assert expected[0] < expected[9] and expected[10] > expected[39]  # warmup then decay: not a constant


def test_should_stop_follows_the_stop_file(trial_env):
    assert report.should_stop() is False
    trial_env["stop"].write_text("")
    assert report.should_stop() is True
    trial_env["stop"].unlink()
    assert report.should_stop() is False


def test_outside_lrbench_every_call_is_a_silent_no_op(tmp_path, monkeypatch, capsys):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert report.active() is False and report.trial() is None and report.lr_at(5) is None
    report.step(0, loss=1.0, lr=0.1)
    report.eval(0, val_loss=1.0)
    report.end()
    assert report.should_stop() is False
    assert list(work.iterdir()) == [] and capsys.readouterr() == ("", "")


def test_four_threads_write_whole_lines(trial_env):
    def work(offset: int) -> None:
        for k in range(500):
            report.step(offset * 1000 + k, loss=float(k), lr=1e-3, samples=k)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = trial_env["report"].read_text().splitlines()
    events = [parse_line(line) for line in text]
    assert len(events) == 1 + 4 * 500 and None not in events
    assert [e.type for e in events].count("hello") == 1 and events[0].type == "hello"
    assert sorted(e["step"] for e in events[1:]) == sorted(i * 1000 + k for i in range(4) for k in range(500))


SCRIPT = textwrap.dedent(
    """
    from lrbench_gui import report
    print("step 0 loss 1.0 (the script's own log)")
    print('{"v": 1, "type": "step", "trial": "spoof", "step": 9, "lr": 1, "loss": 1}')
    for step in range(3):
        report.step(step, loss=1.0 / (step + 1), lr=report.lr_at(step))
        print("still printing", step)
    report.eval(2, val_loss=0.3)
    """
)


def test_a_script_prints_never_land_in_the_report_file(trial_env, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "still printing 2" in out.stdout and '"spoof"' in out.stdout
    events = [parse_line(line) for line in trial_env["report"].read_text().splitlines()]
    assert [e.type for e in events] == ["hello", "step", "step", "step", "eval"]
    assert {e.trial for e in events} == {"r1"}
    assert [e["lr"] for e in events[1:4]] == [report.lr_at(k) for k in range(3)]


def test_importing_report_loads_only_the_standard_library():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import lrbench_gui.report"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "lrbench_gui" in loaded
    assert not loaded & {"pydantic", "pydantic_core", "numpy", "torch", "PySide6", "pyqtgraph", "tinydb", "pluggy"}


def test_a_script_lrbench_did_not_start_reports_into_the_file_it_is_given(tmp_path):
    """Only LRBENCH_REPORT set: lines go to that file under the file's name, and the app's Cancel
    (the file's .stop beside it) reaches should_stop."""
    report_file = tmp_path / "lr-3e-4.jsonl"
    code = ("from lrbench_gui import report\n"
            "assert report.active() and report.trial() is None\n"
            "report.step(0, loss=2.5, lr=3e-4)\n"
            "open(r'%s.stop', 'w').close()\n"
            "assert report.should_stop()\n"
            "report.eval(0, val_loss=2.0)\n" % report_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRBENCH_")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "LRBENCH_REPORT": str(report_file)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    events = [parse_line(line) for line in report_file.read_text().splitlines()]
    assert [e.type for e in events] == ["hello", "step", "eval"]
    assert {e.trial for e in events} == {"lr-3e-4"}
