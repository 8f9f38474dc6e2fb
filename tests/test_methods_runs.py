"""The horizon, path-switch and merge study kinds with real trial subprocesses on a tiny
``tinylm-pretrain``: the trainer's merge and evaluation-only trials, the corpus version schedule,
and the three CLIs end to end against a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = {"d_model": 32, "n_heads": 2, "n_layers": 1, "context": 16, "val_tokens": 512}
SETS = [x for k, v in TINY.items() for x in ("--set", f"task.{k}={v}")]


def _cli(*argv: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", *argv], capture_output=True, text=True,
                          timeout=400)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _trials(tmp_path: Path, trials: dict[str, dict]) -> dict[str, dict]:
    """Run trial files through the trainer, side by side; each one's end event (with its events)."""
    procs = {}
    for name, fields in trials.items():
        obj = {"trial_id": name, "task": "tinylm-pretrain", "task_params": dict(TINY), "batch_size": 4,
               "policy": {"name": "fixed", "params": {"lr": 0.01}}, "output_dir": str(tmp_path / name), **fields}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(obj))
        procs[name] = subprocess.Popen([sys.executable, "-m", "lrbench_gui.trainer", str(path)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ends = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        ends[name] = next(e for e in events if e["type"] == "end") | {"_events": events, "_stderr": err}
    return ends


def _trial(tmp_path: Path, name: str, **fields) -> dict:
    return _trials(tmp_path, {name: fields})[name]


def test_merged_trial_evaluates_the_weighted_average_of_two_checkpoints(tmp_path):
    end = _trial(tmp_path, "run", budget={"steps": 6}, checkpoint_every=3)
    assert end["status"] == "completed"
    later = tmp_path / "run" / "checkpoints" / "step-0000006.safetensors"
    earlier = tmp_path / "run" / "checkpoints" / "step-0000003.safetensors"
    assert later.is_file() and earlier.is_file()

    m = {"later": str(later), "earlier": str(earlier)}
    ends = _trials(tmp_path, {
        "w1": {"budget": {"steps": 0}, "merge": {**m, "weight": 1.0}},
        "w05": {"budget": {"steps": 0}, "merge": {**m, "weight": 0.5}, "save_model": True},
        # a checkpoint that is not there: a failed trial that says what is missing
        "bad": {"budget": {"steps": 0}, "merge": {**m, "earlier": str(tmp_path / "nope.safetensors"), "weight": 0.5}},
    })
    for name in ("w1", "w05"):
        assert ends[name]["status"] == "completed", ends[name]["_stderr"][-2000:]
        assert ends[name]["cost"]["steps"] == 0
    # lambda = 1 is the later checkpoint itself: the run's own last evaluation saw the same weights
    plain_later = end["metrics"]["val_loss"]
    assert ends["w1"]["metrics"]["val_loss"] == pytest.approx(plain_later, abs=1e-5)
    assert ends["w05"]["metrics"]["val_loss"] != pytest.approx(plain_later, abs=1e-4)
    assert (tmp_path / "w05" / "model" / "config.json").is_file()
    bad = ends["bad"]
    assert bad["status"] == "failed"
    err = next(e for e in bad["_events"] if e["type"] == "error")
    assert "nope.safetensors does not exist" in err["message"]


def test_version_schedule_switches_the_training_data_at_its_boundaries(monkeypatch, tmp_path):
    import torch

    from lrbench_builtins.tasks import _corpus
    from lrbench_builtins.tasks.tinylm import TinyLMParams, TinyLMPretrain
    from lrbench_gui.core.task import TaskContext

    seen: list[int] = []
    real = _corpus.generate

    def spy(seed, version, n):
        if seed[1] == 1:  # the training stream
            seen.append(version)
        return real(seed, version, n)

    monkeypatch.setattr(_corpus, "generate", spy)
    task = TinyLMPretrain(TinyLMParams(**TINY, version_schedule=[2, 0, 5], version_steps=3))
    task.setup(TaskContext(0, torch.device("cpu"), 4, 0, 1, tmp_path, print))
    batches = task.train_batches()
    versions = []
    for _ in range(12):
        before = len(seen)
        next(batches)
        versions.append(seen[-1] if len(seen) > before else versions[-1])
    assert versions == [2, 2, 2, 0, 0, 0, 5, 5, 5, 5, 5, 5]
    assert sorted(task.val) == [0, 2, 5]  # validated on every scheduled version


def test_cli_horizon_path_switch_and_merge_end_to_end(lrbench_env, tmp_path):
    # token horizons: two horizons, three LRs, one seed
    out = _cli("horizon", "--horizons", "4,8", "--points", "3", "--seeds", "1", "--widen", "0", "--batch-size", "4",
               "--lr-min", "3e-3", "--lr-max", "1.2e-2", *SETS, "-o", str(tmp_path / "h.png"), "--json")
    h = json.loads(out.stdout)
    assert [r["steps"] for r in h["horizons"]] == [4, 8]
    assert h["horizons"][1]["tokens"] == 8 * 4 * 16 and len(h["horizons"][0]["lrs"]) == 3
    assert h["power_law"] is not None and (tmp_path / "h.png").stat().st_size > 10_000

    # path switching: two versions, one branch fraction, no continued baseline
    out = _cli("path-switch", "--versions", "2", "--chunk-steps", "6", "--no-continued", "--batch-size", "4",
               *SETS, "-o", str(tmp_path / "ps.png"), "--json")
    ps = json.loads(out.stdout)
    m = ps["methods"]
    assert m["scratch"]["total_steps"] == 6 + 12 and m["branch_f0.5_replay"]["total_steps"] == 12 + 2 * 3
    assert all(r["status"] == "completed" for r in m["branch_f0.5_replay"]["releases"])
    assert m["scratch"]["total_tokens"] == 18 * 4 * 16
    assert (tmp_path / "ps.png").stat().st_size > 10_000

    # merging: the path-switching study's main path has a checkpoint per chunk; its last pair,
    # merged by BO and written
    run_id = f"{ps['study']}-main"
    out = _cli("merge", "--trial", run_id, "--evaluations", "3", "--out", str(tmp_path / "merged"), "--json")
    mg = json.loads(out.stdout)
    assert [e["lambda"] for e in mg["evaluations"]] == [1.0, 0.0, 0.5]
    assert mg["best"]["value"] == min(e["value"] for e in mg["evaluations"])
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    report = json.loads((tmp_path / "merged" / "merge-report.json").read_text())
    assert report["best"] == mg["best"]

    # every study is in the database, with its summary
    out = _cli("db", "list", "studies", "--json")
    studies = json.loads(out.stdout)
    # (a study is named after its kind: "KIND on TASK", the same rule for every kind)
    assert sorted(s["name"].split(" on ")[0] for s in studies) == ["horizon", "merge", "path-switch"]

    # user errors: one line, exit 2
    bad = _cli("merge", "--trial", "nope", ok=False)
    assert bad.returncode == 2 and "no trial 'nope'" in bad.stderr
    bad = _cli("merge", "--trial", run_id, "--pair", "0", ok=False)
    assert bad.returncode == 2 and "no earlier neighbour" in bad.stderr
    bad = _cli("horizon", "--horizons", "4", ok=False)
    assert bad.returncode == 2 and "two different horizons" in bad.stderr
