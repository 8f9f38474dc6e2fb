"""The DeepSpeed backend on its CPU path (gloo): one process, and two ranks through the
``deepspeed`` launcher. The first run on a machine compiles DeepSpeed's CPU comm op (~1 min,
cached in the user cache folder); the GPU path is marked ``gpu``."""

from __future__ import annotations

import pytest

from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.core.spec import sample
from lrbench_gui.plugins import get_registry
from lrbench_gui.core.runs.trial import load_trial

POLICY = {"name": "warmup_decay", "params": {"warmup_max_lr": 0.02, "warmup_num_steps": 10, "warmup_type": "linear"}}


def _run(**overrides):
    cfg = load_trial({
        "task": "digits-mlp", "policy": POLICY, "budget": {"steps": 40}, "backend": "deepspeed", **overrides,
    })
    events = []
    sched = LocalScheduler(1, on_event=lambda tid, e: events.append(e))
    sched.submit(cfg)
    (record,) = sched.run().values()
    return record, events


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_single_process_deepspeed_follows_the_policy(zero_stage):
    record, events = _run(deepspeed={"zero_stage": zero_stage})
    assert record["status"] == "completed", record["notes"]
    hello = events[0]
    assert hello.type == "hello" and hello["backend"] == "deepspeed" and hello["world_size"] == 1
    steps = [e for e in events if e.type == "step"]
    assert [e["lr"] for e in steps] == sample(POLICY, 40, get_registry())  # the policy drives DeepSpeed's optimizer
    assert steps[-1]["loss"] < steps[0]["loss"]


def test_two_ranks_over_gloo_write_one_stream():
    record, events = _run(deepspeed={"num_gpus": 2})
    assert record["status"] == "completed", record["notes"]
    assert events[0]["world_size"] == 2
    steps = [e["step"] for e in events if e.type == "step"]
    assert steps == list(range(40))  # rank 0 alone writes: no duplicated or interleaved lines
    assert sum(e.type == "end" for e in events) == 1
    assert record["extra"]["samples"] == 40 * 32 * 2


@pytest.mark.gpu
def test_deepspeed_on_a_gpu():
    record, events = _run(device="cuda", deepspeed={"zero_stage": 2})
    assert record["status"] == "completed", record["notes"]
    assert events[0]["device"].startswith("cuda")
