"""Resumable trial checkpoints: a trial stopped part-way and resumed from its last checkpoint
continues with the same steps, LRs and losses as a run that was never interrupted (exactly: the
built-in tasks' batch iterators are restored by replaying their seeded generators, and the RNG
states are restored after that), for a full model and for LoRA (whose checkpoints hold only the
adapters and their optimizer state). Trials run in this process; test_resume_study.py resumes
one through the real trainer subprocess."""

from __future__ import annotations

import io
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

torch = pytest.importorskip("torch")

from lrbench_gui.core.runs.protocol import parse_line  # noqa: E402
from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial  # noqa: E402
from lrbench_gui.trainer import run as trainer  # noqa: E402

DIGITS = {"task": "digits-mlp", "policy": {"name": "cosine", "params": {"lr": 0.05, "warmup_steps": 3}},
          "budget": {"steps": 24}, "batch_size": 16, "optimizer": {"name": "adamw", "weight_decay": 0.01}}


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    trainer._Stop.requested = False


class _StopAfter(io.StringIO):
    """The trainer's stdout; asks the trial to stop (as SIGINT does) once step ``last`` is out."""

    def __init__(self, last: int | None) -> None:
        super().__init__()
        self.last = last

    def write(self, text: str) -> int:
        event = parse_line(text.strip())
        if event is not None and event.type == "step" and event["step"] == self.last:
            trainer._Stop.requested = True
        return super().write(text)


def run(spec, stop_after=None, **fields):
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    cfg = validate_trial(load_trial({**spec, **fields}), reg)
    stream = _StopAfter(stop_after)
    try:
        status = trainer.run_trial(cfg, trainer.Emitter(cfg.trial_id, stream=stream), reg)
    finally:
        trainer._Stop.requested = False
    return status, [parse_line(line) for line in stream.getvalue().splitlines()]


def steps_of(events):
    return [(e["step"], e["lr"], e["loss"], e["samples"], e["tokens"]) for e in events if e.type == "step"]


def end_of(events):
    return next(e for e in events if e.type == "end")


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """An uninterrupted run, and one stopped after step 13 with checkpoints every 5 steps."""
    root = tmp_path_factory.mktemp("digits")
    whole = run(DIGITS, output_dir=str(root / "whole"))
    stopped = run(DIGITS, stop_after=13, checkpoint_every=5, output_dir=str(root / "stopped"))
    return root, whole, stopped


def test_a_stopped_trial_resumed_continues_exactly(digits_runs, tmp_path):
    from lrbench_gui.core.runs.recorder import TrialRecorder

    root, (_, whole), (status, stopped) = digits_runs
    assert status == "stopped" and end_of(stopped)["cost"]["steps"] == 14
    last = [e for e in stopped if e.type == "checkpoint"][-1]
    assert last["step"] == 10
    status, events = run(DIGITS, resume_from=last["path"], output_dir=str(tmp_path))
    assert status == "completed"
    recorder = TrialRecorder(load_trial({**DIGITS, "resume_from": last["path"]}))
    for event in events:
        recorder.feed(event)
    recorder.finish(0, [])
    record = recorder.record()
    # the steps before are not rerun but re-reported (replayed), so the record is whole; the LR
    # curve, losses and counts pick up at step 10
    replayed = [e for e in events if e.get("replayed")]
    assert [e["step"] for e in replayed] == list(range(10)) and all(e.type == "step" for e in replayed)
    assert steps_of(events) == steps_of(whole)
    assert record["curves"]["loss"]["steps"] == list(range(24))
    assert end_of(events)["metrics"] == end_of(whole)["metrics"]
    assert end_of(events)["cost"]["steps"] == 24 and end_of(events)["cost"]["samples"] == 24 * 16


def test_the_resume_state_is_safetensors_and_json_beside_the_weights(digits_runs):
    from safetensors import safe_open

    root, _, (_, stopped) = digits_runs
    folder = root / "stopped" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        "step-0000005.resume", "step-0000005.safetensors", "step-0000010.resume", "step-0000010.safetensors"]
    state = json.loads((folder / "step-0000010.resume" / "state.json").read_text())
    assert state["step"] == 10 and state["micro_batches"] == 10 and state["optimizer_name"] == "adamw"
    assert state["progress"]["samples"] == 160 and state["optimizer"]["param_groups"][0]["weight_decay"] == 0.01
    with safe_open(str(folder / "step-0000010.resume" / "tensors.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
    assert {"rng/torch", "optimizer/0/exp_avg", "optimizer/3/exp_avg_sq", "optimizer/3/step"} <= keys
    with safe_open(str(folder / "step-0000010.safetensors"), framework="pt") as fh:
        assert fh.metadata()["weights"] == "all" and set(fh.keys()) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_resume_refuses_what_it_cannot_continue_in_one_line(digits_runs, tmp_path):
    import shutil

    root, _, _ = digits_runs
    ckpt = root / "stopped" / "checkpoints" / "step-0000010.safetensors"
    bare = tmp_path / "step-0000010.safetensors"
    shutil.copy(ckpt, bare)  # weights without their resume state
    cases = [
        ({"resume_from": str(tmp_path / "nowhere.safetensors")}, "does not exist"),
        ({"resume_from": str(bare)}, "has no resume state beside it"),
        ({"resume_from": str(ckpt), "optimizer": {"name": "sgd"}}, "trained with optimizer adamw, this trial uses sgd"),
        ({"resume_from": str(ckpt), "task_params": {"hidden": 32}}, "does not fit this task's model"),
        ({"resume_from": str(ckpt), "backend": "deepspeed"}, "with the torch backend"),
    ]
    for fields, message in cases:
        with pytest.raises(TrialError, match=message) as info:
            run(DIGITS, **fields)
        assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def lora_folders(tmp_path_factory):
    pytest.importorskip("peft")
    from lrbench_builtins.tasks import _corpus
    from lrbench_builtins.tasks.tinylm import TinyLMPretrain
    from lrbench_gui.core.params import validate_params
    from lrbench_gui.core.task import TaskContext

    root = tmp_path_factory.mktemp("lora")
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {
        "context": 32, "val_tokens": 256, "d_model": 32, "n_heads": 2, "n_layers": 1}))
    task.save_model(task.setup(TaskContext(0, torch.device("cpu"), 8, log=lambda *a: None)), root / "model")
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 80)))
    return root


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_lora_checkpoints_hold_the_adapters_and_resume_exactly(lora_folders, tmp_path):
    from safetensors import safe_open

    spec = {"task": "causal-lm-finetune", "task_params": {
        "model_path": str(lora_folders / "model"), "data_path": str(lora_folders / "data.jsonl"), "max_length": 64,
        "template": "alpaca-short", "lora_r": 4, "lora_dropout": 0.1, "max_val_samples": 16},  # dropout: torch's RNG
        "policy": {"name": "linear", "params": {"lr": 1e-2, "warmup_steps": 2}}, "budget": {"steps": 10},
        "batch_size": 4, "grad_accum": 2, "eval_every": 4, "threads": 2}
    _, whole = run(spec, checkpoint_steps=[4], output_dir=str(tmp_path / "whole"))
    (ckpt,) = [e for e in whole if e.type == "checkpoint"]
    with safe_open(ckpt["path"], framework="pt") as fh:
        keys, meta = set(fh.keys()), fh.metadata()
    assert meta["weights"] == "trainable" and len(keys) == 8 and all(".lora_" in k for k in keys)  # q k v o, A and B
    with safe_open(str(tmp_path / "whole/checkpoints/step-0000004.resume/tensors.safetensors"), framework="pt") as fh:
        assert sum(k.startswith("optimizer/") for k in fh.keys()) == 3 * 8  # step, exp_avg, exp_avg_sq per adapter
    status, resumed = run(spec, resume_from=ckpt["path"], output_dir=str(tmp_path / "resumed"))
    assert status == "completed"
    assert steps_of(resumed) == steps_of(whole)
    fresh = [e for e in resumed if not e.get("replayed")]
    assert steps_of(fresh) == steps_of(whole)[4:]
    assert [e["metrics"] for e in resumed if e.type == "eval"] == [e["metrics"] for e in whole if e.type == "eval"]
    # a trainable-only checkpoint also seeds a merge: weight 1 is the checkpoint's model
    merged = {**spec, "budget": {"steps": 0}, "merge": {"later": ckpt["path"], "earlier": ckpt["path"], "weight": 1.0}}
    _, events = run(merged, output_dir=str(tmp_path / "merged"))
    assert end_of(events)["metrics"]["val_loss"] == [e for e in whole if e.type == "eval"][0]["metrics"]["val_loss"]
