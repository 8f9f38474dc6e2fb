"""bench/gpu.py: its no-GPU path (what CI runs), its bookkeeping, and the whole driver on the CPU
(``--cpu-smoke``: real trainer, DeepSpeed and HF Trainer processes on a tiny model), so the first
run on a lent GPU does not stop on a slip."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu.py"


def _bench():
    """bench/gpu.py as a module (its top level imports the standard library only)."""
    if "bench_gpu" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_gpu"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["bench_gpu"]


def _run(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the no-GPU answer even on a GPU machine
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                         timeout=timeout)
    last = out.stdout.strip().splitlines()[-1]
    return out, json.loads(last)


def test_without_a_gpu_it_prints_one_json_line_and_exits_0(tmp_path):
    out, result = _run(str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    assert result["gpu"] is None and result["ok"] is False
    assert "GPU" in result["reason"] or "NVIDIA" in result["reason"]
    assert json.loads((tmp_path / "out" / "gpu.json").read_text()) == result
    assert "runs" not in result


def test_what_it_installs_from_the_wheels():
    gpu = _bench()
    wheels = [Path(n) for n in (
        "tinydb-4.9.0-py3-none-any.whl", "typing_extensions-4.16.0-py3-none-any.whl",
        "psutil-7.2.2-cp36-abi3-manylinux2010_x86_64.whl", "msgpack-1.2.4-cp312-cp312-manylinux2014_x86_64.whl",
        "msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.whl", "pydantic-2.14.4-py3-none-any.whl",
        "pydantic_core-2.50.5-cp312-cp312-manylinux2014_x86_64.whl", "hjson-3.1.0-py3-none-any.whl",
    )]
    have = {"typing-extensions": "4.10.0", "psutil": "5.9.0", "msgpack": "1.0.0", "pydantic": "2.5.0",
            "pydantic-core": "2.50.5", "hjson": "3.1.0"}
    plan = gpu.plan_installs(wheels, installed=have.get)
    assert plan["tinydb"] == ("4.9.0", "missing")
    assert plan["typing-extensions"][0] == "4.16.0"  # pure Python and older: shadowed by the newer wheel
    assert "psutil" not in plan and "msgpack" not in plan and "hjson" not in plan  # binary ones stay, same is kept
    assert plan["pydantic"][0] == "2.14.4" and plan["pydantic-core"] == ("2.50.5", "goes with pydantic")


def test_lrbench_runs_from_its_source_tree_with_its_entry_points(tmp_path):
    gpu = _bench()
    assert gpu.ensure_lrbench_metadata(tmp_path, installed=lambda dist: None)
    (dist,) = list(metadata.distributions(path=[str(tmp_path)]))
    assert dist.metadata["Name"] == "lrbench-gui"
    points = {ep.name: ep.value for ep in dist.entry_points if ep.group == "lrbench"}
    assert points["builtin-tasks-finetune"] == "lrbench_builtins.tasks.finetune"
    assert len(points) >= 10


def test_the_figures_it_computes():
    gpu = _bench()
    # ZeRO steps its base optimizer once per parameter group: two calls make one training step
    check = gpu.applied_check([[0.1, 0.1], [0.1], [0.2], [0.2]], [0.1, 0.2])
    assert check["lr_applied_max_abs_diff"] == 0.0 and check["optimizer_step_calls_per_step"] == 2
    assert gpu.applied_check([[0.1], [0.25]], [0.1, 0.2])["lr_applied_max_abs_diff"] == pytest.approx(0.05)
    assert gpu.applied_check([[0.1]] * 3, [0.1, 0.2])["lr_applied_max_abs_diff"] is None
    # the first fifth of the steps is warm-up: tokens/s from step 1 (of 5) on
    rate, ms = gpu.steady_rate([5.0, 6.0, 7.0, 8.0, 9.0], [100] * 5)
    assert rate == 100.0 and ms == 1000.0
    runs = {"ds2-full": {"tokens_per_s": 96.0, "lr_max_abs_diff": 0.0}, "hf-ds2-full": {"tokens_per_s": 100.0},
            "torch-full": {"tokens_per_s": 300.0, "val_loss": 3.0}, "torch-full-fp32": {"tokens_per_s": 100.0}}
    summary = gpu.summarize(runs, cpu=False)
    assert summary["ds_vs_hf_tokens_per_s"]["zero2_full"] == 0.96 and summary["ds_vs_hf_goal_met"] is True
    assert summary["precision"]["bf16_speedup"] == 3.0 and summary["lr_runs_checked"] == 1


def test_cpu_smoke_runs_the_driver_end_to_end(tmp_path):
    out, result = _run(str(tmp_path / "out"), "--cpu-smoke", "--runs", "ds2-full,hf-ds2-full",
                       "--work", str(tmp_path / "work"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert result["mode"] == "cpu-smoke" and result["ok"], json.dumps(result)[:3000]
    ds, hf = result["runs"]["ds2-full"], result["runs"]["hf-ds2-full"]
    for run in (ds, hf):
        assert run["status"] == "completed" and run["steps"] == 3
        assert run["lr_applied_max_abs_diff"] == 0.0  # the optimizer applied the policy's LR at every step
        assert run["ds_zero_stage"] == 2 and run["tokens_per_s"] > 0
        assert run["peak_mem_gib"] is None  # needs CUDA, and the reasons say so
    assert ds["lr_max_abs_diff"] == 0.0 and ds["params"] == result["model"]["params"]
    assert result["summary"]["ds_vs_hf_tokens_per_s"]["zero2_full"] > 0
    assert any("need CUDA" in r for r in result["reasons"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu-log.txt", "gpu.json"]
