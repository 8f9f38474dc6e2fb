"""The LLM-era policies: warmup then cosine, linear, constant, inverse square root,
warmup-stable-decay, and the one-cycle policy. Formulas follow Hugging Face transformers'
schedulers (``transformers.optimization``) and torch's OneCycleLR, step for step."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import lr_param, min_lr_param, steps_param, torch_code


def _warmup_factor(step: int, warmup_steps: int) -> float:
    return float(step) / float(max(1, warmup_steps))


def _ratio_param() -> float:
    return param(0.0, "Warmup as a fraction of the run (Hugging Face's warmup_ratio), used when warmup_steps "
                 "is 0: ceil(ratio x run length) steps, so the warmup keeps its share at any length.", ge=0, lt=1)


def warmup_of(p: Params, total_steps: int) -> int:
    """The warmup in steps, as Hugging Face's Trainer computes it: ``warmup_steps`` when > 0,
    else ``ceil(total_steps * warmup_ratio)``."""
    return int(p.warmup_steps) if p.warmup_steps > 0 else int(math.ceil(total_steps * p.warmup_ratio))


def _hf_warmup(p: Params) -> dict:
    """The warmup as TrainingArguments takes it: transformers 5 reads a ``warmup_steps`` below 1
    as a ratio of the run (4.x called that ``warmup_ratio``; see the export's note)."""
    return {"warmup_steps": p.warmup_ratio} if p.warmup_steps == 0 and p.warmup_ratio > 0 else {"warmup_steps": p.warmup_steps}


_RATIO_NOTE = "transformers < 5 names a fractional warmup warmup_ratio: use warmup_ratio={r} there"


class _MinBelowLr(Params):
    @model_validator(mode="after")
    def _order(self):
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        return self


class Cosine(Policy):
    name = "cosine"
    summary = "Linear warmup, then a half cosine from lr down to min_lr at the run's end"
    family = "llm"
    reference = (
        "HF get_cosine_schedule_with_warmup (min_lr = 0) / cosine_with_min_lr; "
        "torch CosineAnnealingLR(T_max=total) when warmup_steps = 0"
    )
    uses_total_steps = True

    class Params(_MinBelowLr):
        lr: float = lr_param(1e-3, "Peak learning rate, reached at the end of the warmup.")
        min_lr: float = min_lr_param()
        warmup_steps: int = steps_param(0, "Steps of linear warmup from 0.", minimum=0, search=(0, 500),
                                   derive=run_fraction(0.05), role="warmup")
        warmup_ratio: float = _ratio_param()

    def lr_at(self, step: int) -> float:
        p = self.params
        warmup = warmup_of(p, self.total_steps)
        if step < warmup:
            return p.lr * _warmup_factor(step, warmup)
        progress = float(step - warmup) / float(max(1, self.total_steps - warmup))
        factor = 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))
        rate = p.min_lr / p.lr
        return p.lr * max(0.0, factor * (1 - rate) + rate)

    def to_hf(self) -> Export:
        p = self.params
        out = {
            "learning_rate": p.lr,
            "lr_scheduler_type": "cosine" if p.min_lr == 0 else "cosine_with_min_lr",
            **_hf_warmup(p),
            "max_steps": self.total_steps,
        }
        if p.min_lr:
            out["lr_scheduler_kwargs"] = {"min_lr": p.min_lr}
        return Export(out, note=_RATIO_NOTE.format(r=p.warmup_ratio) if "warmup_steps" in out and 0 < out["warmup_steps"] < 1 else "")

    def to_torch(self) -> Export | None:
        p = self.params
        if warmup_of(p, self.total_steps):
            return None
        return Export(
            torch_code(
                p.lr,
                f"torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={self.total_steps}, eta_min={p.min_lr!r})",
            ),
            note="torch computes it recursively: equal to about 1e-12 of the LR",
        )


class Linear(Policy):
    name = "linear"
    summary = "Linear warmup, then a straight line from lr down to min_lr at the run's end"
    family = "llm"
    reference = "HF get_linear_schedule_with_warmup (min_lr = 0)"
    uses_total_steps = True

    class Params(_MinBelowLr):
        lr: float = lr_param(1e-3, "Peak learning rate, reached at the end of the warmup.")
        warmup_steps: int = steps_param(0, "Steps of linear warmup from 0.", minimum=0, search=(0, 500),
                                   derive=run_fraction(0.05), role="warmup")
        min_lr: float = min_lr_param()
        warmup_ratio: float = _ratio_param()

    def lr_at(self, step: int) -> float:
        p = self.params
        warmup = warmup_of(p, self.total_steps)
        if step < warmup:
            return p.lr * _warmup_factor(step, warmup)
        factor = max(0.0, float(self.total_steps - step) / float(max(1, self.total_steps - warmup)))
        return p.min_lr + (p.lr - p.min_lr) * factor

    def to_hf(self) -> Export | None:
        p = self.params
        if p.min_lr:
            return None
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "linear",
                **_hf_warmup(p),
                "max_steps": self.total_steps,
            }
        )


class ConstantWarmup(Policy):
    name = "constant_warmup"
    summary = "Linear warmup, then constant"
    family = "llm"
    reference = "HF get_constant_schedule_with_warmup"

    class Params(Params):
        lr: float = lr_param(1e-3, "Learning rate after the warmup.")
        warmup_steps: int = steps_param(100, "Steps of linear warmup from 0.", minimum=0, search=(0, 500),
                                   derive=run_fraction(0.05), role="warmup")

    def lr_at(self, step: int) -> float:
        p = self.params
        if step < p.warmup_steps:
            return p.lr * (float(step) / float(max(1.0, p.warmup_steps)))
        return p.lr

    def to_hf(self) -> Export:
        p = self.params
        return Export(
            {"learning_rate": p.lr, "lr_scheduler_type": "constant_with_warmup", "warmup_steps": p.warmup_steps}
        )


class InverseSqrt(Policy):
    name = "inverse_sqrt"
    summary = "Linear warmup, then lr / sqrt((step + shift) / timescale)"
    family = "llm"
    reference = "HF get_inverse_sqrt_schedule"

    class Params(Params):
        lr: float = lr_param(1e-3, "Learning rate at the end of the warmup.")
        warmup_steps: int = steps_param(100, "Steps of linear warmup from 0.", minimum=0, search=(0, 1000),
                                   derive=run_fraction(0.05), role="warmup")
        timescale: int = steps_param(
            0, "Time scale of the decay; 0 means warmup_steps (or 10000 without warmup), as in HF.", minimum=0
        )

    def _timescale(self) -> int:
        return self.params.timescale or self.params.warmup_steps or 10_000

    def lr_at(self, step: int) -> float:
        p = self.params
        if step < p.warmup_steps:
            return p.lr * _warmup_factor(step, p.warmup_steps)
        ts = self._timescale()
        shift = ts - p.warmup_steps
        return p.lr * (1.0 / math.sqrt((step + shift) / ts))

    def to_hf(self) -> Export:
        p = self.params
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "inverse_sqrt",
                "warmup_steps": p.warmup_steps,
                "lr_scheduler_kwargs": {"timescale": self._timescale()},
            }
        )


class WarmupStableDecay(Policy):
    name = "wsd"
    summary = "Warmup, a long constant stage, then a short decay to min_lr (WSD)"
    family = "llm"
    reference = "HF get_wsd_schedule (linear warmup, stable = total - warmup - decay)"
    uses_total_steps = True

    class Params(_MinBelowLr):
        lr: float = lr_param(1e-3, "Learning rate of the stable stage.")
        warmup_steps: int = steps_param(100, "Steps of warmup from min_lr.", minimum=0, search=(0, 1000),
                                   derive=run_fraction(0.05), role="warmup")
        decay_steps: int = steps_param(200, "Steps of the final decay.", minimum=0, search=(10, 2000),
                                  derive=run_fraction(0.2))
        min_lr: float = min_lr_param()
        decay_type: Literal["cosine", "linear", "1-sqrt"] = param("cosine", "Shape of the final decay.")
        warmup_ratio: float = _ratio_param()
        decay_ratio: float = param(0.0, "Decay as a fraction of the run, used when decay_steps is 0: "
                                   "ceil(ratio x run length) steps; the stable stage is what is left.", ge=0, lt=1)

        @model_validator(mode="after")
        def _shares(self):
            if self.warmup_steps == 0 and self.decay_steps == 0 and self.warmup_ratio + self.decay_ratio >= 1:
                raise ValueError(f"warmup_ratio + decay_ratio must stay below 1 (got {self.warmup_ratio} + "
                                 f"{self.decay_ratio}): the rest of the run is the stable stage")
            return self

    def _warmup(self) -> int:
        return warmup_of(self.params, self.total_steps)

    def _decay(self) -> int:
        p = self.params
        return int(p.decay_steps) if p.decay_steps > 0 else int(math.ceil(self.total_steps * p.decay_ratio))

    def _stable(self) -> int:
        return self.total_steps - self._warmup() - self._decay()

    def lr_at(self, step: int) -> float:
        p = self.params
        ratio = p.min_lr / p.lr
        warmup, decay, stable = self._warmup(), self._decay(), self._stable()
        if step < warmup:
            progress = float(step) / float(max(1, warmup))
            return p.lr * max(0.0, progress * (1.0 - ratio) + ratio)
        if step < warmup + stable:
            return p.lr
        if step < warmup + stable + decay:
            progress = float(step - warmup - stable) / float(max(1, decay))
            if p.decay_type == "linear":
                factor = 1.0 - progress
            elif p.decay_type == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))
            else:
                factor = 1.0 - math.sqrt(progress)
            return p.lr * max(0.0, factor * (1.0 - ratio) + ratio)
        return p.lr * ratio

    def to_hf(self) -> Export:
        p = self.params
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "warmup_stable_decay",
                **_hf_warmup(p),
                "max_steps": self.total_steps,
                "lr_scheduler_kwargs": {
                    "num_decay_steps": self._decay(),
                    "decay_type": p.decay_type,
                    "min_lr_ratio": p.min_lr / p.lr,
                },
            },
            note=_RATIO_NOTE.format(r=p.warmup_ratio) if p.warmup_steps == 0 and p.warmup_ratio > 0 else "",
        )


class OneCycle(Policy):
    name = "onecycle"
    summary = "Rise from max_lr/div_factor to max_lr, then anneal far below (1cycle)"
    family = "llm"
    reference = "torch OneCycleLR (two phases)"
    uses_total_steps = True

    class Params(Params):
        max_lr: float = lr_param(1e-2, "Peak learning rate.")
        pct_start: float = param(0.3, "Fraction of the run spent rising.", gt=0, lt=1, search=(0.1, 0.5))
        div_factor: float = param(25.0, "Initial LR = max_lr / div_factor.", ge=1, log=True, search=(5.0, 100.0))
        final_div_factor: float = param(
            1e4, "Final LR = initial LR / final_div_factor.", ge=1, log=True, search=(10.0, 1e5)
        )
        anneal: Literal["cos", "linear"] = param("cos", "Shape of both phases.")

    def lr_at(self, step: int) -> float:
        p = self.params
        # torch refuses to step past the run; past its end the LR stays at the final value
        # (extrapolating the linear anneal would turn it negative)
        step = min(step, self.total_steps - 1)
        initial = p.max_lr / p.div_factor
        final = initial / p.final_div_factor
        phases = [(float(p.pct_start * self.total_steps) - 1, initial, p.max_lr), (self.total_steps - 1, p.max_lr, final)]
        start = 0.0
        for i, (end, lo, hi) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start) if end != start else 0.0
                if p.anneal == "cos":
                    return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (hi - lo) * pct + lo
            start = end
        raise AssertionError("unreachable")

    def to_torch(self) -> Export:
        p = self.params
        return Export(
            torch_code(
                p.max_lr,
                "torch.optim.lr_scheduler.OneCycleLR(optimizer, "
                f"max_lr={p.max_lr!r}, total_steps={self.total_steps}, pct_start={p.pct_start!r}, "
                f"anneal_strategy={p.anneal!r}, div_factor={p.div_factor!r}, "
                f"final_div_factor={p.final_div_factor!r}, cycle_momentum=False)",
            )
        )


POLICIES = [Cosine, Linear, ConstantWarmup, InverseSqrt, WarmupStableDecay, OneCycle]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
