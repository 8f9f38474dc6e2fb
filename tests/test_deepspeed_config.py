"""The user's DeepSpeed config merged with the trial's needs: pure functions, no DeepSpeed import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lrbench_gui.core.runs.deepspeed_config import (
    DeepSpeedConfigError, fill_model_autos, merge_deepspeed_config, zero_stage,
)
from lrbench_gui.core.runs.trial import TrialError, load_trial

#: a Hugging Face Trainer style config: "auto" wherever the trainer decides
HF_STYLE = {
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
    "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16},
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu", "pin_memory": True},
                          "offload_param": {"device": "cpu"}, "overlap_comm": True, "reduce_bucket_size": "auto",
                          "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                          "stage3_gather_16bit_weights_on_model_save": True},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto",
                                                      "warmup_num_steps": "auto", "total_num_steps": "auto"}},
    "communication_data_type": "fp32", "activation_checkpointing": {"partition_activations": True},
}


def trial(**fields):
    return load_trial({"task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.01}},
                       "backend": "deepspeed", **fields})


def merge(user, world=1, notes=None, **fields):
    return merge_deepspeed_config(user, trial(**fields), world, notes=notes)


def refused(user, match, world=1, **fields):
    with pytest.raises(DeepSpeedConfigError, match=match) as info:
        merge(user, world, **fields)
    message = str(info.value)
    assert "\n" not in message and message.startswith("DeepSpeed config: ")
    return message


def test_an_hf_style_config_is_filled_and_the_users_sections_kept():
    notes: list[str] = []
    user = {k: (dict(v) if isinstance(v, dict) else v) for k, v in HF_STYLE.items()}
    out = merge(user, world=4, notes=notes, batch_size=8, grad_accum=2, precision="bf16-mixed", max_grad_norm=0.5)
    assert user == HF_STYLE  # the user's dict is not changed
    assert (out["train_micro_batch_size_per_gpu"], out["gradient_accumulation_steps"], out["train_batch_size"]) == (
        8, 2, 64)
    assert out["gradient_clipping"] == 0.5
    assert out["bf16"] == {"enabled": True}
    assert out["fp16"] == {"enabled": False, "loss_scale": 0, "initial_scale_power": 16}
    zero = out["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_param"] == {"device": "cpu"} and zero["overlap_comm"] is True
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert out["zero_force_ds_cpu_optimizer"] is False  # the trial's torch optimizer runs the offloaded step
    assert out["communication_data_type"] == "fp32" and out["activation_checkpointing"] == {"partition_activations": True}
    assert "scheduler" not in out and "optimizer" not in out
    assert any("scheduler (WarmupDecayLR" in n and "lrbench policy" in n for n in notes)
    assert any("optimizer section" in n for n in notes)
    assert zero["reduce_bucket_size"] == "auto"  # filled once the model is known
    filled = fill_model_autos(out, 64)
    assert filled["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    assert filled["zero_optimization"]["stage3_prefetch_bucket_size"] == int(0.9 * 64 * 64)
    assert filled["zero_optimization"]["stage3_param_persistence_threshold"] == 640
    assert out["zero_optimization"]["reduce_bucket_size"] == "auto"  # fill_model_autos copies


def test_no_user_config_gives_the_trials_own():
    out = merge(None, world=2, batch_size=4, deepspeed={"zero_stage": 1})
    assert out["train_batch_size"] == 8 and out["zero_optimization"] == {"stage": 1}
    assert "bf16" not in out and "fp16" not in out and out["gradient_clipping"] == 1.0
    assert zero_stage(out) == 1 and zero_stage(None) == 0


@pytest.mark.parametrize("precision, bf16, fp16", [
    ("fp32", None, None),
    ("bf16-mixed", True, None),
    ("fp16-mixed", None, True),
])
def test_the_precision_section_follows_the_trial(precision, bf16, fp16):
    out = merge({}, precision=precision)
    assert out.get("bf16", {}).get("enabled") == bf16 and out.get("fp16", {}).get("enabled") == fp16


def test_bf16_true_keeps_bf16_master_weights_under_zero_and_casts_at_stage_0():
    out = merge({}, precision="bf16-true", deepspeed={"zero_stage": 2})
    assert out["bf16"] == {"enabled": True, "bf16_master_weights_and_grads": True, "bf16_optimizer_states": True}
    assert "bf16" not in merge({}, precision="bf16-true")  # stage 0: the trainer casts the model itself
    refused({"bf16": {"enabled": True}}, r"bf16.enabled is true, but the trial's precision is bf16-true \(bf16-true "
            "at ZeRO stage 0 trains the bf16 model", precision="bf16-true")
    refused({"bf16": {"bf16_master_weights_and_grads": False}}, "bf16_master_weights_and_grads is false",
            precision="bf16-true", deepspeed={"zero_stage": 1})


@pytest.mark.parametrize("user, fields, match", [
    ({"train_micro_batch_size_per_gpu": 4}, {"batch_size": 8},
     r"train_micro_batch_size_per_gpu is 4, but the trial's batch size \(--batch-size\) is 8"),
    ({"gradient_accumulation_steps": 4}, {"grad_accum": 2},
     r"gradient_accumulation_steps is 4, but the trial's gradient accumulation \(--grad-accum\) is 2"),
    ({"train_batch_size": 100}, {"batch_size": 8, "grad_accum": 2},
     r"train_batch_size is 100, but batch size 8 x gradient accumulation 2 x 1 rank is 16"),
    ({"train_micro_batch_size_per_gpu": "8"}, {}, r"must be a positive whole number or \"auto\", got \"8\""),
    ({"gradient_clipping": 0.3}, {}, r"gradient_clipping is 0.3, but the trial clips at 1.0"),
    ({"bf16": {"enabled": True}}, {"precision": "fp16-mixed"},
     r"bf16.enabled is true, but the trial's precision is fp16-mixed"),
    ({"fp16": {"enabled": True}}, {}, r"fp16.enabled is true, but the trial's precision is fp32"),
    ({"bf16": {"enabled": False}}, {"precision": "bf16-mixed"},
     r"bf16.enabled is false, but the trial's precision is bf16-mixed"),
    ({"bf16": {}, "bfloat16": {}}, {}, "both bf16 and bfloat16"),
    ({"bf16": True}, {}, r"bf16 must be an object, got true"),
    ({"amp": {"enabled": True}}, {}, r"amp.enabled is true, but lrbench sets the precision"),
    ({"torch_autocast": {"enabled": True, "dtype": "bfloat16"}}, {}, r"torch_autocast.enabled is true"),
    ({"zero_optimization": {"stage": 3}}, {"deepspeed": {"zero_stage": 2}},
     r"zero_optimization.stage is 3, but --zero-stage is 2"),
    ({"zero_optimization": {"stage": 5}}, {}, r"zero_optimization.stage must be 0, 1, 2 or 3, got 5"),
    ({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}, "zero_force_ds_cpu_optimizer": True},
     {}, r"zero_force_ds_cpu_optimizer is true, but lrbench passes the trial's own optimizer"),
    ({"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 100, "warmup_max_lr": "auto"}}}, {},
     r"scheduler \(WarmupLR\) sets warmup_num_steps=100, but the LR comes from the lrbench policy"),
    ({"optimizer": {"type": "Lamb", "params": {}}}, {},
     r"optimizer.type is \"Lamb\", but the trial's optimizer is adamw"),
    ({"optimizer": {"type": "Adam", "params": {"adam_w_mode": False}}}, {},
     r"optimizer.type is \"Adam\", but the trial's optimizer is adamw"),
    ({"optimizer": {"type": "AdamW", "params": {"weight_decay": 0.1}}}, {},
     r"optimizer.params.weight_decay is 0.1, but the trial's optimizer has weight_decay=0.0"),
    ({"optimizer": {"type": "AdamW", "params": {"betas": [0.9, 0.95]}}}, {},
     r"optimizer.params.betas is \[0.9, 0.95\], but the trial's optimizer has betas=\[0.9, 0.999\]"),
    ({"optimizer": {"type": "SGD", "params": {"momentum": 0.0}}}, {"optimizer": {"name": "sgd"}},
     r"optimizer.params.momentum is 0.0, but the trial's optimizer has momentum=0.9"),
    ({"zero_optimization": {"stage": 2, "sub_group_size": "auto"}}, {},
     r"zero_optimization.sub_group_size is \"auto\", which lrbench cannot fill"),
])
def test_contradictions_are_refused_in_one_line_naming_the_key_and_both_values(user, fields, match):
    refused(user, match, **fields)


def test_the_refusal_is_a_trial_error_the_trainer_reports():
    with pytest.raises(TrialError):
        merge({"train_micro_batch_size_per_gpu": 3})
    with pytest.raises(DeepSpeedConfigError, match="must be a JSON object, got list"):
        merge([1, 2])  # type: ignore[arg-type]


def test_agreeing_values_pass_and_zero_stage_0_keeps_the_files_stage():
    out = merge({"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 2, "train_batch_size": 32,
                 "gradient_clipping": 1.0, "zero_optimization": {"stage": 3}, "bf16": {"enabled": True},
                 "optimizer": {"type": "Adam", "params": {"lr": 3e-4, "betas": [0.9, 0.999], "eps": 1e-8}}},
                world=2, notes=(notes := []), batch_size=8, grad_accum=2, precision="bf16-mixed")
    assert out["zero_optimization"]["stage"] == 3 and out["train_batch_size"] == 32
    assert any("its lr 0.0003 is ignored" in n for n in notes)  # DeepSpeed's Adam is AdamW by default
    assert merge({"zero_optimization": {"stage": 2}}, deepspeed={"zero_stage": 2})["zero_optimization"]["stage"] == 2


def test_model_autos_without_a_hidden_size_fall_back_to_deepspeeds_defaults():
    out = merge({"zero_optimization": {"stage": 2, "reduce_bucket_size": "auto",
                                       "stage3_prefetch_bucket_size": "auto"}})
    notes: list[str] = []
    assert "reduce_bucket_size" not in fill_model_autos(out, None, notes=notes)["zero_optimization"]
    assert notes and "no config.hidden_size" in notes[0]
    filled = fill_model_autos(out, 32)["zero_optimization"]  # stage 2: the stage-3 key is dropped
    assert filled["reduce_bucket_size"] == 1024 and "stage3_prefetch_bucket_size" not in filled


def test_the_module_imports_neither_torch_nor_deepspeed():
    code = ("import sys; import lrbench_gui.core.runs.deepspeed_config; "
            "print(sorted(m for m in ('torch', 'deepspeed', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
