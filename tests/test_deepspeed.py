"""The DeepSpeed backend on its CPU path (gloo), one process; two ranks through the ``deepspeed``
launcher are tests/test_gpus.py's DeepSpeed pairs (one stream per trial). The first run on a
machine compiles DeepSpeed's CPU comm op (~1 min, cached in the user cache folder); the GPU path
is marked ``gpu``."""

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


@pytest.mark.gpu
def test_deepspeed_on_a_gpu():
    record, events = _run(device="cuda", deepspeed={"zero_stage": 2})
    assert record["status"] == "completed", record["notes"]
    assert events[0]["device"].startswith("cuda")


#: the user's --deepspeed-config, Hugging Face style: "auto" where the trial decides, and the
#: user's own ZeRO, offload and communication settings
USER_CONFIG = {
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
    "gradient_clipping": "auto", "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto", "loss_scale": 0},
    "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}, "overlap_comm": False,
                          "reduce_bucket_size": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": "auto", "warmup_num_steps": "auto"}},
}


def test_the_users_config_file_reaches_the_engine(tmp_path):
    import json

    path = tmp_path / "ds.json"
    path.write_text(json.dumps(USER_CONFIG))
    record, events = _run(budget={"steps": 6}, batch_size=16, grad_accum=2, precision="bf16-mixed",
                          deepspeed={"config": json.loads(path.read_text())})
    assert record["status"] == "completed", record["notes"]
    hello = events[0]
    assert hello["precision"] == "bf16-mixed"
    # read back from the engine: the user's stage and offload, the trial's batch sizes and bf16
    assert hello["deepspeed"] == {"zero_stage": 2, "zero3_init": False, "bf16": True, "fp16": False,
                                  "offload": True, "train_batch_size": 32, "gradient_clipping": 1.0}
    assert [e["lr"] for e in events if e.type == "step"] == sample(POLICY, 6, get_registry())  # not WarmupLR


def test_a_contradicting_config_fails_the_trial_in_one_line():
    record, events = _run(budget={"steps": 6}, batch_size=16,
                          deepspeed={"config": {"train_micro_batch_size_per_gpu": 4}})
    assert record["status"] == "failed"
    error = next(e for e in events if e.type == "error")
    assert error["message"] == ("DeepSpeed config: train_micro_batch_size_per_gpu is 4, but the trial's batch size "
                                "(--batch-size) is 16: make them equal, or set train_micro_batch_size_per_gpu to "
                                "\"auto\"")


def test_zero3_builds_the_finetune_model_partitioned(tmp_path):
    """ZeRO-3 init on the CPU (1 rank, gloo): the weights are partitioned as they load."""
    import json

    import torch

    from lrbench_builtins.tasks import _corpus
    from lrbench_builtins.tasks.tinylm import TinyLMPretrain
    from lrbench_gui.core.params import validate_params
    from lrbench_gui.core.task import TaskContext

    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {
        "context": 32, "val_tokens": 256, "d_model": 32, "n_heads": 2, "n_layers": 1}))
    model = task.setup(TaskContext(0, torch.device("cpu"), 8, log=lambda *a: None))
    size = sum(p.numel() for p in model.parameters())
    task.save_model(model, tmp_path / "model")
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 80)))
    record, events = _run(
        task="causal-lm-finetune", budget={"steps": 2}, batch_size=4, output_dir=str(tmp_path / "trial"),
        task_params={"model_path": str(tmp_path / "model"), "data_path": str(tmp_path / "data.jsonl"),
                     "lora": False, "max_length": 64, "template": "alpaca-short", "max_val_samples": 8},
        deepspeed={"config": {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": "auto"}}})
    assert record["status"] == "completed", record["notes"]
    hello = events[0]
    assert hello["deepspeed"]["zero_stage"] == 3 and hello["deepspeed"]["zero3_init"] is True
    assert hello["params"] == size  # counted from ZeRO's partitions
    assert 0 < record["metrics"]["val_loss"] < 10


@pytest.mark.parametrize("fields, match", [
    ({"deepspeed": {"config": {"zero_optimization": {"stage": 2}}}},
     "deepspeed.config is given, but the trial's backend is torch"),
    ({"backend": "deepspeed", "save_model": True, "deepspeed": {"config": {"zero_optimization": {"stage": 3}}}},
     "ZeRO stage 3 keeps each weight partitioned .* lrbench does not gather them to save yet"),
])
def test_what_a_trial_cannot_do_with_deepspeed_is_refused_before_anything_runs(fields, match):
    import io

    from lrbench_gui.core.runs.trial import TrialError
    from lrbench_gui.trainer.run import Emitter, run_trial

    cfg = load_trial({"task": "digits-mlp", "policy": POLICY, "budget": {"steps": 2}, **fields})
    with pytest.raises(TrialError, match=match):  # raised before DeepSpeed or a process group is set up
        run_trial(cfg, Emitter(cfg.trial_id, stream=io.StringIO()), get_registry())
