"""DeepSpeed's own schedulers (``deepspeed.runtime.lr_schedules``), as the engine applies them.

DeepSpeed sets the LR for iteration -1 when the scheduler is built and steps it after each
optimizer step, so the k-th optimizer step runs with the LR of iteration ``k - 1``. These policies
return exactly that, so ``lr_at(0)`` is the warmup's first value (or 0 for WarmupCosineLR).
"""

from __future__ import annotations

import math
from typing import Literal

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import lr_param, steps_param, torch_code


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
    # warmup_min_lr above warmup_max_lr is allowed, as DeepSpeed allows it: a decaying "warmup"


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


class OneCycleDS(Policy):
    name = "ds_onecycle"
    summary = "DeepSpeed OneCycle: up from cycle_min_lr to cycle_max_lr and back, then an optional decay"
    family = "deepspeed"
    reference = "DeepSpeed OneCycle"

    class Params(Params):
        cycle_min_lr: float = param(1e-4, "Learning rate at the start and the end of the cycle.", ge=0,
                                    search=(1e-6, 1e-3), role="min_lr")
        cycle_max_lr: float = lr_param(1e-3, "Learning rate at the cycle's peak.")
        decay_lr_rate: float = param(0.0, "After the cycle, LR = cycle_min_lr / (1 + rate * intervals); 0: no "
                                     "decay.", ge=0, search=(0.0, 1.0))
        cycle_first_step_size: int = steps_param(2000, "Steps of the rise.", search=(10, 5000),
                                                 derive=run_fraction(0.45, 1))
        cycle_second_step_size: int = steps_param(-1, "Steps of the fall; -1: the same as the rise (DeepSpeed's "
                                                  "None).", minimum=-1)
        cycle_first_stair_count: int = param(0, "Stairs of the rise; 0: a straight line.", ge=0)
        cycle_second_stair_count: int = param(-1, "Stairs of the fall; -1: as the rise (DeepSpeed's None).", ge=-1)
        decay_step_size: int = steps_param(0, "Steps per decay interval; 0: no decay.", minimum=0)

    def _sizes(self) -> tuple[float, float]:
        p = self.params
        first = float(p.cycle_first_step_size)
        return first, float(p.cycle_second_step_size) if p.cycle_second_step_size >= 0 else first

    def lr_at(self, step: int) -> float:
        p = self.params
        first, second = self._sizes()
        total = first + second
        if step - 1 < total:  # DeepSpeed's cycle at batch iteration `step` (iteration step - 1, plus one)
            cycle = math.floor(1 + step / total)
            x = 1.0 + step / total - cycle
            ratio = first / total
            if x <= ratio:
                scale, stairs = x / ratio, p.cycle_first_stair_count
            else:
                scale = (x - 1) / (ratio - 1)
                stairs = p.cycle_first_stair_count if p.cycle_second_stair_count < 0 else p.cycle_second_stair_count
            if stairs > 0:
                it = step % total
                pos = it * stairs / first if it <= first else (total - it) * stairs / second
                scale = math.floor(pos) / stairs
            return p.cycle_min_lr + (p.cycle_max_lr - p.cycle_min_lr) * scale
        if math.isclose(p.decay_step_size, 0) or math.isclose(p.decay_lr_rate, 0):
            return p.cycle_min_lr
        interval = (step - 1 - total + 1) / p.decay_step_size
        return p.cycle_min_lr / (1 + p.decay_lr_rate * interval)

    def to_torch(self) -> Export | None:
        # within its one cycle DeepSpeed's OneCycle is torch's CyclicLR, step for step
        p = self.params
        first, second = self._sizes()
        stairs = p.cycle_first_stair_count or (p.cycle_second_stair_count > 0)
        if stairs or self.total_steps > first + second + 1:
            return None
        return Export(
            torch_code(
                p.cycle_min_lr,
                "torch.optim.lr_scheduler.CyclicLR(optimizer, "
                f"base_lr={p.cycle_min_lr!r}, max_lr={p.cycle_max_lr!r}, step_size_up={int(first)}, "
                f"step_size_down={int(second)}, mode='triangular', cycle_momentum=False)",
            ),
            note="the run ends within DeepSpeed's one cycle, where it is torch's CyclicLR",
        )

    def to_deepspeed(self) -> Export:
        p = self.params
        params = {
            "cycle_min_lr": p.cycle_min_lr,
            "cycle_max_lr": p.cycle_max_lr,
            "decay_lr_rate": p.decay_lr_rate,
            "cycle_first_step_size": p.cycle_first_step_size,
            "cycle_first_stair_count": p.cycle_first_stair_count,
            "decay_step_size": p.decay_step_size,
        }
        if p.cycle_second_step_size >= 0:
            params["cycle_second_step_size"] = p.cycle_second_step_size
        if p.cycle_second_stair_count >= 0:
            params["cycle_second_stair_count"] = p.cycle_second_stair_count
        return Export({"scheduler": {"type": "OneCycle", "params": params}},
                      note="DeepSpeed's OneCycle also cycles an Adam-style optimizer's beta1 (cycle_min_mom, "
                           "cycle_max_mom); the LR is what lrbench follows")


POLICIES = [WarmupLR, WarmupDecayLR, WarmupCosineLR, LRRangeTest, OneCycleDS]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
