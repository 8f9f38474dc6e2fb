"""DeepSpeed's own schedulers (``deepspeed.runtime.lr_schedules``), as the engine applies them.

DeepSpeed sets the LR for iteration -1 when the scheduler is built and steps it after each
optimizer step, so the k-th optimizer step runs with the LR of iteration ``k - 1``. These policies
return exactly that, so ``lr_at(0)`` is the warmup's first value (or 0 for WarmupCosineLR).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import lr_param, steps_param


def _warmup_gamma(it: int, warmup_num_steps: int, warmup_type: str) -> float:
    if warmup_type == "log":
        return (1.0 / math.log(warmup_num_steps)) * math.log(it + 1)
    return it / warmup_num_steps


class WarmupParams(Params):
    warmup_min_lr: float = param(0.0, "Learning rate at the start of the warmup.", ge=0, search=(0.0, 1e-4),
                                role="min_lr")
    warmup_max_lr: float = lr_param(1e-3, "Learning rate at the end of the warmup.")
    warmup_num_steps: int = steps_param(1000, "Steps of warmup (DeepSpeed uses at least 2).", search=(10, 2000),
                                    derive=run_fraction(0.05, 1), role="warmup")
    warmup_type: Literal["log", "linear"] = param("log", "Shape of the warmup.")

    @model_validator(mode="after")
    def _order(self) -> "WarmupParams":
        if self.warmup_min_lr > self.warmup_max_lr:
            raise ValueError(f"warmup_min_lr ({self.warmup_min_lr}) must not exceed warmup_max_lr")
        return self


class WarmupLR(Policy):
    name = "warmup"
    summary = "Warm up from warmup_min_lr to warmup_max_lr, then constant (DeepSpeed WarmupLR)"
    family = "deepspeed"
    reference = "DeepSpeed WarmupLR"
    Params = WarmupParams
    _ds_type = "WarmupLR"

    def _n(self) -> int:
        return max(2, self.params.warmup_num_steps)

    def _gamma_after_warmup(self, it: int) -> float:
        return 1.0

    def lr_at(self, step: int) -> float:
        p = self.params
        it = step - 1
        if it < 0:
            return p.warmup_min_lr
        n = self._n()
        gamma = _warmup_gamma(it, n, p.warmup_type) if it < n else self._gamma_after_warmup(it)
        return p.warmup_min_lr + (p.warmup_max_lr - p.warmup_min_lr) * gamma

    def _ds_params(self) -> dict:
        p = self.params
        return {
            "warmup_min_lr": p.warmup_min_lr,
            "warmup_max_lr": p.warmup_max_lr,
            "warmup_num_steps": p.warmup_num_steps,
            "warmup_type": p.warmup_type,
        }

    def to_deepspeed(self) -> Export:
        return Export({"scheduler": {"type": self._ds_type, "params": self._ds_params()}})


class WarmupDecayLR(WarmupLR):
    name = "warmup_decay"
    summary = "DeepSpeed WarmupLR, then a linear decay to 0 at the run's end"
    reference = "DeepSpeed WarmupDecayLR(total_num_steps=total)"
    uses_total_steps = True
    _ds_type = "WarmupDecayLR"

    def _gamma_after_warmup(self, it: int) -> float:
        return max(0.0, float(self.total_steps - it) / float(max(1.0, self.total_steps - self._n())))

    def _ds_params(self) -> dict:
        return {**super()._ds_params(), "total_num_steps": self.total_steps}


class WarmupCosineLR(Policy):
    name = "warmup_cosine"
    summary = "Warm up as a ratio of lr, then cosine down to cos_min_ratio * lr (DeepSpeed)"
    family = "deepspeed"
    reference = "DeepSpeed WarmupCosineLR(total_num_steps=total)"
    uses_total_steps = True

    class Params(Params):
        lr: float = lr_param(1e-3, "The optimizer's learning rate; the ratios scale it.")
        warmup_min_ratio: float = param(0.0, "LR ratio at the start of the warmup.", ge=0, le=1)
        warmup_num_steps: int = steps_param(1000, "Steps of warmup (DeepSpeed uses at least 2).", search=(10, 2000),
                                    derive=run_fraction(0.05, 1), role="warmup")
        cos_min_ratio: float = param(1e-4, "LR ratio at the end of the cosine.", ge=0, le=1)
        warmup_type: Literal["log", "linear"] = param("log", "Shape of the warmup.")

    def lr_at(self, step: int) -> float:
        p = self.params
        it = step - 1
        if it < 0:
            return 0.0  # DeepSpeed's value before its first step
        n = max(2, p.warmup_num_steps)
        if it < n:
            ratio = _warmup_gamma(it, n, p.warmup_type)
            ratio = p.warmup_min_ratio + ratio * (1.0 - p.warmup_min_ratio)
            return p.lr * ratio
        real_last_step = it - n + 1
        real_total_steps = max(1, self.total_steps - n)
        progress = min(1.0, real_last_step / real_total_steps)
        ratio = (1 + math.cos(math.pi * progress)) / 2
        ratio = max(0.0, p.cos_min_ratio + (1.0 - p.cos_min_ratio) * ratio)
        return p.lr * ratio

    def to_deepspeed(self) -> Export:
        p = self.params
        return Export(
            {
                "optimizer": {"params": {"lr": p.lr}},
                "scheduler": {
                    "type": "WarmupCosineLR",
                    "params": {
                        "total_num_steps": self.total_steps,
                        "warmup_min_ratio": p.warmup_min_ratio,
                        "warmup_num_steps": p.warmup_num_steps,
                        "cos_min_ratio": p.cos_min_ratio,
                        "warmup_type": p.warmup_type,
                    },
                },
            }
        )


class LRRangeTest(Policy):
    name = "lr_range"
    summary = "LR range test: grow from min_lr by step_rate every step_size steps (DeepSpeed)"
    family = "deepspeed"
    reference = "DeepSpeed LRRangeTest"

    class Params(Params):
        min_lr: float = lr_param(1e-5, "Starting learning rate.")
        step_size: int = steps_param(100, "Steps per interval.", derive=run_divisor(3))
        step_rate: float = param(1.0, "Growth per interval (LR = min_lr * (1 + rate * interval)).", gt=0)
        staircase: bool = param(False, "Grow in steps rather than continuously.")

    def lr_at(self, step: int) -> float:
        p = self.params
        # after `step` DeepSpeed steps the iteration is step - 1; its interval counts iteration + 1
        interval = math.floor(float(step) / p.step_size) if p.staircase else float(step) / p.step_size
        return p.min_lr * (1 + p.step_rate * interval)

    def to_deepspeed(self) -> Export:
        p = self.params
        return Export(
            {
                "scheduler": {
                    "type": "LRRangeTest",
                    "params": {
                        "lr_range_test_min_lr": p.min_lr,
                        "lr_range_test_step_size": p.step_size,
                        "lr_range_test_step_rate": p.step_rate,
                        "lr_range_test_staircase": p.staircase,
                    },
                }
            }
        )


POLICIES = [WarmupLR, WarmupDecayLR, WarmupCosineLR, LRRangeTest]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
