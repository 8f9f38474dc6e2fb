"""docs/plugins.md is tested: its marked examples (a ``python`` block after
``<!-- test: FILE -->``) are written to a plugins folder and used the way a reader would: the
golden-section tuner runs a real study through ``lrbench tune`` (and resumes after an interrupt
like a built-in), the regression task a real trial through ``lrbench run``, the policy through
``lrbench policy``, and the docs' own contract test file passes under pytest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
EXAMPLE = re.compile(r"<!-- test: (\S+) -->\n```python\n(.*?)```", re.S)
PLUGINS = ("halving.py", "golden_section.py", "diabetes_regression.py")


def examples() -> dict[str, str]:
    return dict(EXAMPLE.findall(DOCS.read_text(encoding="utf-8")))


@pytest.fixture
def plugins(lrbench_env):
    """The docs' plugin examples in the test's plugins folder."""
    for name in PLUGINS:
        (lrbench_env["plugins"] / name).write_text(examples()[name])
    return lrbench_env


def lrbench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrbench_gui.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_the_docs_mark_every_example_they_promise():
    assert set(examples()) == {*PLUGINS, "test_my_plugins.py"}


def test_the_examples_load_without_problems(plugins):
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    assert reg.problems == []
    assert reg.policies["halving-lr"].plugin == "user:halving"
    assert reg.tuners["golden"].plugin == "user:golden_section"
    assert reg.tasks["diabetes-mlp"].plugin == "user:diabetes_regression"


def test_the_policy_example_samples_and_exports(plugins):
    out = lrbench("policy", "sample", "halving-lr", "--steps", "5", "--set", "every=2", "--json")
    assert json.loads(out.stdout) == [0.1, 0.1, 0.05, 0.05, 0.025]
    out = lrbench("policy", "export", "halving-lr", "--to", "torch")
    assert out.returncode == 0 and "StepLR(optimizer, step_size=100, gamma=0.5)" in out.stdout


def _db(lrbench_env):
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.plugins import get_registry

    return PolicyDB(lrbench_env["db"], registry=get_registry())


@pytest.mark.slow
def test_a_third_party_search_tuner_resumes_like_a_builtin_after_an_interrupt(plugins):
    """``lrbench tune`` with the docs' tuner, interrupted by Ctrl-C after two trials finished,
    then ``lrbench tune --resume`` (two at a time): the finished trials are replayed, not run
    again, and the whole study finds an LR the way the docs say (the bracket narrowed)."""
    args = ["--tuner", "golden", "--task", "digits-mlp", "--policies", "cosine", "--trials", "5",
            "--budget-steps", "30", "--parallel", "1", "--lr-range", "1e-4,1"]
    proc = subprocess.Popen([sys.executable, "-m", "lrbench_gui.cli", "tune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            done = [t for t in _db(plugins).trials() if t["status"] == "completed"] if plugins["db"].exists() else []
            if len(done) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    study_id = re.search(r"lrbench tune --resume (\S+)", err).group(1)
    before = {t["id"]: t for t in _db(plugins).trials(study=study_id)}
    interrupted = {k for k, t in before.items() if "interrupted" in (t.get("tags") or [])}
    finished = {k for k, t in before.items() if t["status"] in ("completed", "diverged", "failed", "stopped")} - interrupted
    completed = {k for k in finished if before[k]["status"] == "completed"}
    assert len(completed) >= 2

    out = lrbench("tune", "--resume", study_id, "--parallel", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert f"{len(completed)} completed trials kept" in out.stderr
    after = {t["id"]: t for t in _db(plugins).trials(study=study_id)}
    assert sorted(k.rsplit("-", 1)[-1] for k in after) == [f"gs{i:03d}" for i in range(5)]
    for key in finished:  # replayed, not run again: the stored record is untouched
        assert after[key] == before[key]
    for key in interrupted:  # stopped with the study: run again to the end
        assert after[key]["status"] != "stopped" and "interrupted" not in (after[key].get("tags") or [])
    report = json.loads(out.stdout)
    assert report["summary"]["replayed"] == len(finished)

    # the golden-section search over the whole study: an LR in the range, a narrowed bracket
    tuner = report["summary"]["tuner"]
    assert tuner["tuner"] == "golden" and tuner["trials_told"] == 5
    assert 1e-4 <= tuner["lr"] <= 1.0
    low, high = tuner["bracket"]
    assert 1e-4 <= low < high <= 1.0 and high / low < 1e4 * 0.618 ** 2  # the bracket narrowed
    assert all(isinstance(t["extra"]["tuner_tags"]["log_lr"], float) for t in after.values())
    best = report["summary"]["best"]
    assert best is not None and best["policy"]["params"]["lr"] == pytest.approx(tuner["lr"])


def test_the_golden_section_tuner_passes_the_tuner_contract(plugins, tmp_path):
    from lrbench_gui.plugins import get_registry
    from lrbench_gui.testing import check_tuner, check_tuner_refuses_unknown_tell, check_tuner_replay, check_tuner_resume

    golden = get_registry().tuner("golden")
    check_tuner(golden)
    check_tuner_replay(golden, {"trials": 7}, policies=("cosine",))
    check_tuner_resume(golden, {"trials": 7}, folder=tmp_path, policies=("cosine",), stop_after=4)
    check_tuner_refuses_unknown_tell(golden, policies=("cosine",))


def test_the_regression_task_trains_through_lrbench_run_and_records_val_mse(plugins):
    out = lrbench("run", "--task", "diabetes-mlp", "--policy", "cosine", "--set", "policy.lr=0.01", "--steps", "40",
                  "--batch-size", "64")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("completed: diabetes-mlp")
    (trial,) = _db(plugins).trials(task="diabetes-mlp")
    assert trial["objective"] == {"metric": "val_mse", "mode": "min"}
    assert 0 < trial["metrics"]["val_mse"] < 1.5
    assert "eval/val_mse" in trial["curves"]


def test_the_regression_task_passes_the_task_contract(plugins, tmp_path):
    from lrbench_gui.plugins import get_registry
    from lrbench_gui.testing import check_task, check_task_deterministic, check_task_diverged, check_task_metric

    task = get_registry().task("diabetes-mlp")
    check_task(task)
    check_task_metric(task, steps=6, batch_size=64, folder=tmp_path)
    check_task_diverged(task, batch_size=64, folder=tmp_path)
    check_task_deterministic(task, steps=6, batch_size=64, folder=tmp_path)


@pytest.mark.slow
def test_the_docs_contract_test_file_passes_under_pytest(plugins, tmp_path):
    folder = tmp_path / "authors-tests"
    folder.mkdir()
    for name in PLUGINS:
        (folder / name).write_text(examples()[name])
    (folder / "test_my_plugins.py").write_text(examples()["test_my_plugins.py"])
    env = {**os.environ, "PYTHONPATH": str(folder)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_plugins.py"],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", out.stdout).group(1))
    assert passed >= 18 and "failed" not in out.stdout
