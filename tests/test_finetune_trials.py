"""LoRA fine-tuning of a locally pre-trained tiny LM, as real trials through both backends.

The base model is pre-trained by a ``tinylm-pretrain`` trial that saves it with
``save_pretrained``; the fine-tune runs on a shifted version of the corpus (instruction data), so
the curves are those of fine-tuning a pretrained model."""

from __future__ import annotations

import json

import pytest

from lrbench_builtins.tasks import _corpus
from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.core.runs.trial import load_trial


def _run(cfg):
    events = []
    sched = LocalScheduler(1, on_event=lambda tid, e: events.append(e))
    sched.submit(load_trial(cfg))
    (record,) = sched.run().values()
    return record, events


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    record, events = _run({
        "task": "tinylm-pretrain", "task_params": {"context": 64, "val_tokens": 4096},
        "policy": {"name": "cosine", "params": {"lr": 5e-3, "warmup_steps": 10}}, "budget": {"steps": 120},
        "batch_size": 16, "save_model": True, "output_dir": str(out), "threads": 2,
    })
    assert record["status"] == "completed", record["notes"]
    model = next(e for e in events if e.type == "checkpoint" and e.get("kind") == "model")
    data = out / "shifted.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 300)))
    return model["path"], data


@pytest.mark.parametrize("backend", ["torch", "deepspeed"])
def test_lora_finetune_runs_through_both_backends(pretrained, backend, tmp_path):
    model_path, data = pretrained
    record, events = _run({
        "task": "causal-lm-finetune",
        "task_params": {"model_path": model_path, "data_path": str(data), "lora": True, "lora_r": 8,
                        "max_length": 96, "template": "alpaca-short"},
        "policy": {"name": "linear", "params": {"lr": 3e-3, "warmup_steps": 3}},
        "budget": {"steps": 24}, "batch_size": 8, "eval_every": 12, "backend": backend, "threads": 2,
        "output_dir": str(tmp_path),
    })
    assert record["status"] == "completed", record["notes"]
    hello = events[0]
    assert hello["backend"] == backend
    assert 0 < hello["trainable_params"] < hello["params"] / 5  # only the adapters train
    evals = [e["metrics"]["val_loss"] for e in events if e.type == "eval"]
    assert len(evals) == 2 and evals[-1] < evals[0]
    assert record["cost"]["tokens"] > 0
