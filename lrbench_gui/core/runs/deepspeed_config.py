"""The user's DeepSpeed config merged with what a trial needs (torch-free, DeepSpeed-free).

``merge_deepspeed_config(user, trial, world_size)`` is the config a DeepSpeed trial runs under:
the trainer's engine setup uses it, and the CLI may call it before launching, so a bad file is
refused before anything starts. What comes from where:

- the trial: ``train_micro_batch_size_per_gpu`` (``batch_size``), ``gradient_accumulation_steps``
  (``grad_accum``), ``train_batch_size`` (their product with the ranks), ``gradient_clipping``
  (``max_grad_norm``), the ``bf16``/``fp16`` sections (``precision``), the optimizer (the trial's
  ``optimizer``: the same update as the torch backend) and the LR (the lrbench policy, at every
  step). Hugging Face's ``"auto"`` in these keys is filled; a concrete value that says otherwise
  is refused in one line naming the key and both values.
- the user: everything else, as written: ``zero_optimization`` (stage, offload, buckets),
  communication, activation checkpointing, ... ZeRO's hidden-size ``"auto"`` keys are filled by
  :func:`fill_model_autos` once the model is known (HF Trainer's rule).

Decisions: a ``scheduler`` section is dropped with a note when all its values are ``"auto"``
(an HF config) and refused when it sets a schedule (the LR comes from the policy); an
``optimizer`` section is checked against the trial's optimizer (type, betas, eps, weight decay;
its LR is ignored with a note) and dropped. ``--zero-stage 0`` (the default) means "the file's
stage"; another stage must equal the file's.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from lrbench_gui.core.runs.trial import TrialConfig, TrialError

__all__ = ["merge_deepspeed_config", "fill_model_autos", "zero_stage", "DeepSpeedConfigError", "AUTO"]

AUTO = "auto"
#: ZeRO keys whose "auto" depends on the model's hidden size (HF Trainer's formulas)
MODEL_AUTO_KEYS = ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold")
_DS_SCHEDULES = ("DeepSpeed's WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle and LRRangeTest are the policies "
                 "warmup, warmup_decay, warmup_cosine, onecycle and lr_range")


class DeepSpeedConfigError(TrialError):
    """The user's DeepSpeed config contradicts the trial, or is not a DeepSpeed config; one line."""


def _fail(msg: str) -> DeepSpeedConfigError:
    return DeepSpeedConfigError(f"DeepSpeed config: {msg}")


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, bool, type(None), list, dict)) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _section(config: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(f"{key} must be an object, got {_show(value)}")
    return value


def _whole(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(f"{key} must be a positive whole number or \"auto\", got {_show(value)}")
    return value


def _match(config: dict[str, Any], key: str, want: Any, what: str, fix: str) -> None:
    """Fill ``key`` with ``want`` when missing or "auto"; refuse another concrete value."""
    have = config.get(key, AUTO)
    if have != AUTO and have != want:
        raise _fail(f"{key} is {_show(have)}, but {what} is {_show(want)}: {fix}, or set {key} to \"auto\"")
    config[key] = want


def _enabled(section: dict[str, Any] | None, key: str) -> bool | None:
    """A precision section's ``enabled``: True/False, or None when absent or "auto"."""
    if section is None or section.get("enabled", AUTO) == AUTO:
        return None
    value = section["enabled"]
    if not isinstance(value, bool):
        raise _fail(f"{key}.enabled must be true, false or \"auto\", got {_show(value)}")
    return value


def _precision(config: dict[str, Any], trial: TrialConfig, stage: int) -> None:
    """The ``bf16``/``fp16`` sections that say the trial's precision (the user's other keys kept)."""
    if "bfloat16" in config:  # DeepSpeed's old name of the bf16 section
        if "bf16" in config:
            raise _fail("has both bf16 and bfloat16 (the old name of bf16): keep one")
        config["bf16"] = config.pop("bfloat16")
    bf16, fp16 = _section(config, "bf16"), _section(config, "fp16")
    for key in ("amp", "torch_autocast"):
        section = _section(config, key)
        if section is not None and _enabled(section, key):
            raise _fail(f"{key}.enabled is true, but lrbench sets the precision (--precision {trial.precision}): "
                        f"remove the {key} section and choose --precision")
        config.pop(key, None)
    p = trial.precision
    true_bf16_section = p == "bf16-true" and stage > 0
    want_bf16 = p == "bf16-mixed" or true_bf16_section
    want_fp16 = p == "fp16-mixed"
    for key, section, want in (("bf16", bf16, want_bf16), ("fp16", fp16, want_fp16)):
        have = _enabled(section, key)
        if have is not None and have != want:
            why = " (bf16-true at ZeRO stage 0 trains the bf16 model without DeepSpeed's fp32 master weights)" \
                if p == "bf16-true" and not want else ""
            raise _fail(f"{key}.enabled is {_show(have)}, but the trial's precision is {p}{why}: "
                        f"set --precision to match, or {key}.enabled to \"auto\"")
        if section is not None or want:
            config[key] = {**(section or {}), "enabled": want}
    if true_bf16_section:  # bf16 master weights, gradients and optimizer states in ZeRO
        for key in ("bf16_master_weights_and_grads", "bf16_optimizer_states"):
            if config["bf16"].get(key, AUTO) not in (AUTO, True):
                raise _fail(f"bf16.{key} is {_show(config['bf16'][key])}, but the trial's precision is bf16-true "
                            "(weights and optimizer in bfloat16): use --precision bf16-mixed, or remove the key")
            config["bf16"][key] = True


def _zero(config: dict[str, Any], trial: TrialConfig) -> int:
    zero = _section(config, "zero_optimization")
    zero = dict(zero) if zero is not None else {}
    asked = trial.deepspeed.zero_stage
    have = zero.get("stage", AUTO)
    if have == AUTO:
        stage = asked
    else:
        if isinstance(have, bool) or have not in (0, 1, 2, 3):
            raise _fail(f"zero_optimization.stage must be 0, 1, 2 or 3, got {_show(have)}")
        if asked and asked != have:
            raise _fail(f"zero_optimization.stage is {have}, but --zero-stage is {asked}: give one of them "
                        "(--zero-stage 0, the default, keeps the file's stage)")
        stage = have
    zero["stage"] = stage
    config["zero_optimization"] = zero
    return stage


def _offload(config: dict[str, Any]) -> None:
    """ZeRO-Offload with the trial's torch optimizer: DeepSpeed refuses a client optimizer there
    unless ``zero_force_ds_cpu_optimizer`` is false (the update then runs in torch on the CPU)."""
    zero = config["zero_optimization"]
    section = zero.get("offload_optimizer")
    if isinstance(section, dict) and section.get("device") in ("cpu", "nvme"):
        if config.get("zero_force_ds_cpu_optimizer", False) is not False:
            raise _fail("zero_force_ds_cpu_optimizer is true, but lrbench passes the trial's own optimizer "
                        "(the same update as the torch backend) to the offloaded ZeRO: set it to false or remove it")
        config["zero_force_ds_cpu_optimizer"] = False


def _all_auto(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_all_auto(v) for v in value.values())
    return value == AUTO


def _scheduler(config: dict[str, Any], notes: list[str]) -> None:
    section = _section(config, "scheduler")
    if section is None:
        config.pop("scheduler", None)
        return
    kind = section.get("type", "?")
    params = section.get("params") or {}
    if not isinstance(params, dict):
        raise _fail(f"scheduler.params must be an object, got {_show(params)}")
    concrete = {k: v for k, v in params.items() if not _all_auto(v)}
    if concrete:
        key, value = next(iter(concrete.items()))
        raise _fail(f"scheduler ({kind}) sets {key}={_show(value)}, but the LR comes from the lrbench policy "
                    f"(--policy): remove the scheduler section, or give its schedule as a policy ({_DS_SCHEDULES})")
    del config["scheduler"]
    notes.append(f"DeepSpeed config: scheduler ({kind}, all \"auto\") left out: the LR comes from the lrbench policy")


def _optimizer(config: dict[str, Any], trial: TrialConfig, notes: list[str]) -> None:
    section = _section(config, "optimizer")
    if section is None:
        config.pop("optimizer", None)
        return
    o = trial.optimizer
    params = section.get("params") or {}
    if not isinstance(params, dict):
        raise _fail(f"optimizer.params must be an object, got {_show(params)}")
    kind = str(section.get("type", AUTO))
    name = kind.lower()
    if name == "adam":  # DeepSpeed's Adam is AdamW unless adam_w_mode is false
        name = "adamw" if params.get("adam_w_mode", True) is not False else "adam"
    if kind != AUTO and name != o.name:
        raise _fail(f"optimizer.type is {_show(kind)}, but the trial's optimizer is {o.name} (--optimizer): lrbench "
                    "builds the optimizer, so set --optimizer to match or remove the section")
    trial_values: dict[str, Any] = {"weight_decay": o.weight_decay}
    if o.name == "sgd":
        trial_values["momentum"] = o.momentum
    else:
        trial_values.update(betas=list(o.betas), eps=o.eps)
    for key, want in trial_values.items():
        have = params.get(key, AUTO)
        if have == AUTO:
            continue
        same = list(have) == want if isinstance(have, (list, tuple)) else have == want
        if not same:
            raise _fail(f"optimizer.params.{key} is {_show(have)}, but the trial's optimizer has {key}={_show(want)}: "
                        f"set the trial's optimizer.{key} to match, or set it to \"auto\" in the file")
    del config["optimizer"]
    lr = params.get("lr", AUTO)
    ignored = f"; its lr {_show(lr)} is ignored, the LR comes from the lrbench policy" if lr != AUTO else ""
    notes.append(f"DeepSpeed config: the optimizer section agrees with the trial's {o.name}, which lrbench "
                 f"builds{ignored}")


def _leftover_auto(value: Any, path: str) -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if path == "zero_optimization" and key in MODEL_AUTO_KEYS:
                continue
            found = _leftover_auto(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _leftover_auto(item, f"{path}[{i}]")
            if found:
                return found
    elif value == AUTO:
        return path
    return None


def merge_deepspeed_config(user: dict[str, Any] | None, trial: TrialConfig, world_size: int,
                           *, notes: list[str] | None = None) -> dict[str, Any]:
    """The DeepSpeed config of ``trial`` on ``world_size`` ranks: ``user`` (the user's
    ``--deepspeed-config`` JSON, or None) with the trial's batch sizes, clipping and precision
    filled in, its scheduler and optimizer sections resolved (module docstring). Raises
    :class:`DeepSpeedConfigError` (a ``TrialError``) in one line on a contradiction; ``notes``
    receives a line for each section left out. ``user`` is not changed."""
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise _fail(f"must be a JSON object, got {type(user).__name__}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive whole number, got {world_size!r}")
    notes = notes if notes is not None else []
    config = copy.deepcopy(user)
    micro, accum = trial.batch_size, trial.grad_accum
    for key, want, what, fix in (
        ("train_micro_batch_size_per_gpu", micro, "the trial's batch size (--batch-size)", "make them equal"),
        ("gradient_accumulation_steps", accum, "the trial's gradient accumulation (--grad-accum)", "make them equal"),
    ):
        if config.get(key, AUTO) != AUTO:
            _whole(key, config[key])
        _match(config, key, want, what, fix)
    total = micro * accum * world_size
    if config.get("train_batch_size", AUTO) != AUTO:
        _whole("train_batch_size", config["train_batch_size"])
    _match(config, "train_batch_size", total,
           f"batch size {micro} x gradient accumulation {accum} x {world_size} rank{'s' * (world_size > 1)}",
           "change --batch-size, --grad-accum or the ranks")
    clip = trial.max_grad_norm or 0.0
    have = config.get("gradient_clipping", AUTO)
    if have != AUTO and (isinstance(have, bool) or not isinstance(have, (int, float)) or float(have) != clip):
        raise _fail(f"gradient_clipping is {_show(have)}, but the trial clips at {_show(clip)} (max_grad_norm; 0 is "
                    "off): set the trial's max_grad_norm to match, or gradient_clipping to \"auto\"")
    config["gradient_clipping"] = clip
    stage = _zero(config, trial)
    _offload(config)
    _precision(config, trial, stage)
    _scheduler(config, notes)
    _optimizer(config, trial, notes)
    config.setdefault("zero_allow_untested_optimizer", True)  # the trial's torch optimizer under ZeRO
    config.setdefault("steps_per_print", 10**9)  # the trainer reports progress itself
    config.setdefault("wall_clock_breakdown", False)
    left = _leftover_auto(config, "")
    if left:
        raise _fail(f"{left} is \"auto\", which lrbench cannot fill (it fills the batch sizes, gradient_clipping, "
                    "bf16/fp16.enabled and ZeRO's bucket sizes): give a value")
    return config


def zero_stage(config: dict[str, Any] | None) -> int:
    """The ZeRO stage of a (merged) DeepSpeed config; 0 without one."""
    zero = (config or {}).get("zero_optimization")
    stage = zero.get("stage", 0) if isinstance(zero, dict) else 0
    return stage if isinstance(stage, int) and not isinstance(stage, bool) else 0


def fill_model_autos(config: dict[str, Any], hidden_size: int | None,
                     *, notes: list[str] | None = None) -> dict[str, Any]:
    """``config`` with ZeRO's hidden-size ``"auto"`` keys filled as HF Trainer does
    (``reduce_bucket_size`` h*h; at stage 3 ``stage3_prefetch_bucket_size`` 0.9*h*h and
    ``stage3_param_persistence_threshold`` 10*h). Without a hidden size (a model with no
    ``config.hidden_size``) they are left out, so DeepSpeed's defaults apply, with a note."""
    zero = config.get("zero_optimization")
    autos = [k for k in MODEL_AUTO_KEYS if isinstance(zero, dict) and zero.get(k) == AUTO]
    if not autos:
        return config
    out = copy.deepcopy(config)
    zero = out["zero_optimization"]
    stage3 = zero_stage(out) == 3
    if hidden_size is None or isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        for key in autos:
            del zero[key]
        if notes is not None:
            notes.append(f"DeepSpeed config: {', '.join(autos)} \"auto\" left to DeepSpeed's defaults (the model "
                         "has no config.hidden_size)")
        return out
    h = hidden_size
    values = {"reduce_bucket_size": h * h, "stage3_prefetch_bucket_size": int(0.9 * h * h),
              "stage3_param_persistence_threshold": 10 * h}
    for key in autos:
        if key == "reduce_bucket_size" or stage3:
            zero[key] = values[key]
        else:
            del zero[key]  # a stage-3 key in a lower stage: DeepSpeed ignores it
    return out
