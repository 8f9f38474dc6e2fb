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

from lrbench_builtins.policies._common import check_order, lr_param, min_lr_param, steps_param, torch_code


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


def _ratio_note(p: Params) -> str:
    """The export's note when :func:`_hf_warmup` wrote the warmup as a ratio."""
    return _RATIO_NOTE.format(r=p.warmup_ratio) if p.warmup_steps == 0 and p.warmup_ratio > 0 else ""


def _cycles_param() -> float:
    return param(0.5, "Cosine waves over the decay (Hugging Face's num_cycles): 0.5 falls once from lr to min_lr, "
                 "1 falls and rises back.", gt=0, search=(0.25, 2.0))


class _MinBelowLr(Params):
    @model_validator(mode="after")
    def _order(self):
        check_order("min_lr", self.min_lr, "lr", self.lr)
        return self


class Cosine(Policy):
    name = "cosine"
    summary = "Linear warmup, then a half cosine from lr down to min_lr at the run's end"
    family = "llm"
    reference = (
        "HF get_cosine_schedule_with_warmup (min_lr = 0) / get_cosine_with_min_lr_schedule_with_warmup "
        "(cosine_with_min_lr), num_cycles too; torch CosineAnnealingLR(T_max=total) when warmup_steps = 0"
    )
    uses_total_steps = True

    class Params(_MinBelowLr):
        lr: float = lr_param(1e-3, "Peak learning rate, reached at the end of the warmup.")
        min_lr: float = min_lr_param()
        warmup_steps: int = steps_param(0, "Steps of linear warmup from 0.", minimum=0, search=(0, 500),
                                   derive=run_fraction(0.05), role="warmup")
        warmup_ratio: float = _ratio_param()
        num_cycles: float = _cycles_param()

    def lr_at(self, step: int) -> float:
        p = self.params
        warmup = warmup_of(p, self.total_steps)
        if step < warmup:
            return p.lr * _warmup_factor(step, warmup)
        progress = float(step - warmup) / float(max(1, self.total_steps - warmup))
        factor = 0.5 * (1.0 + math.cos(math.pi * float(p.num_cycles) * 2.0 * progress))
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
        kwargs = {**({"num_cycles": p.num_cycles} if p.num_cycles != 0.5 else {}),
                  **({"min_lr": p.min_lr} if p.min_lr else {})}
        if kwargs:
            out["lr_scheduler_kwargs"] = kwargs
        return Export(out, note=_RATIO_NOTE.format(r=p.warmup_ratio) if "warmup_steps" in out and 0 < out["warmup_steps"] < 1 else "")

    def to_torch(self) -> Export | None:
        p = self.params
        if warmup_of(p, self.total_steps) or p.num_cycles != 0.5:
            return None  # cosine_annealing is torch's CosineAnnealingLR with any T_max
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

    def to_torch(self) -> Export | None:
        p = self.params
        if warmup_of(p, self.total_steps):
            return None
        return Export(
            torch_code(
                p.lr,
                f"torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor={p.min_lr / p.lr!r}, "
                f"total_iters={self.total_steps})",
            ),
            note="torch computes it recursively: equal to about 1e-12 of the LR",
        )

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
    reference = "HF get_wsd_schedule (warmup_stable_decay), every warmup_type, num_cycles and num_stable_steps"
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
        warmup_type: Literal["linear", "cosine", "1-sqrt"] = param("linear", "Shape of the warmup.")
        num_cycles: float = _cycles_param()
        stable_steps: int = steps_param(-1, "Steps of the stable stage (Hugging Face's num_stable_steps); -1: what "
                                        "the warmup and the decay leave of the run. Past the three stages the LR is "
                                        "min_lr.", minimum=-1)

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
        if self.params.stable_steps >= 0:
            return self.params.stable_steps
        return self.total_steps - self._warmup() - self._decay()

    def lr_at(self, step: int) -> float:
        p = self.params
        ratio = p.min_lr / p.lr
        warmup, decay, stable = self._warmup(), self._decay(), self._stable()
        if step < warmup:
            progress = float(step) / float(max(1, warmup))
            if p.warmup_type == "linear":
                factor = progress
            elif p.warmup_type == "cosine":
                factor = 0.5 * (1.0 - math.cos(math.pi * progress))
            else:
                factor = 1.0 - math.sqrt(1.0 - progress)
            return p.lr * max(0.0, factor * (1.0 - ratio) + ratio)
        if step < warmup + stable:
            return p.lr
        if step < warmup + stable + decay:
            progress = float(step - warmup - stable) / float(max(1, decay))
            if p.decay_type == "linear":
                factor = 1.0 - progress
            elif p.decay_type == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * float(p.num_cycles) * 2.0 * progress))
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
                    **({"warmup_type": p.warmup_type} if p.warmup_type != "linear" else {}),
                    **({"num_cycles": p.num_cycles} if p.num_cycles != 0.5 else {}),
                    **({"num_stable_steps": p.stable_steps} if p.stable_steps >= 0 else {}),
                },
            },
            note=_ratio_note(p),
        )


class OneCycle(Policy):
    name = "onecycle"
    summary = "Rise from max_lr/div_factor to max_lr, then anneal far below (1cycle)"
    family = "llm"
    reference = "torch OneCycleLR (two or three phases)"
    uses_total_steps = True

    class Params(Params):
        max_lr: float = lr_param(1e-2, "Peak learning rate.")
        pct_start: float = param(0.3, "Fraction of the run spent rising (torch allows 0 and 1).", ge=0, le=1,
                                 search=(0.1, 0.5))
        div_factor: float = param(25.0, "Initial LR = max_lr / div_factor.", ge=1, log=True, search=(5.0, 100.0))
        final_div_factor: float = param(
            1e4, "Final LR = initial LR / final_div_factor.", ge=1, log=True, search=(10.0, 1e5)
        )
        anneal: Literal["cos", "linear"] = param("cos", "Shape of both phases.")
        three_phase: bool = param(False, "Fall back to the initial LR as fast as it rose, then anneal to the "
                                  "final LR (fastai's schedule, torch's three_phase).")

    def _phases(self) -> list[tuple[float, str, str]]:
        """torch's phases: (end step, start LR, end LR), in torch's float arithmetic."""
        p, total = self.params, self.total_steps
        if p.three_phase:
            return [(float(p.pct_start * total) - 1, "initial", "max"),
                    (float(2 * p.pct_start * total) - 2, "max", "initial"),
                    (total - 1, "initial", "min")]
        return [(float(p.pct_start * total) - 1, "initial", "max"), (total - 1, "max", "min")]

    def lr_at(self, step: int) -> float:
        p = self.params
        # torch refuses to step past the run; past its end the LR stays at the final value
        # (extrapolating the linear anneal would turn it negative)
        step = min(step, self.total_steps - 1)
        initial = p.max_lr / p.div_factor
        lrs = {"initial": initial, "max": p.max_lr, "min": initial / p.final_div_factor}
        phases = self._phases()
        start = 0.0
        for i, (end, lo_name, hi_name) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                # a phase of no length (pct_start * total = 1) is 0 / 0 in torch; here it is its start
                pct = (step - start) / (end - start) if end != start else 0.0
                lo, hi = lrs[lo_name], lrs[hi_name]
                if p.anneal == "cos":
                    return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (hi - lo) * pct + lo
            start = end
        raise AssertionError("unreachable")

    def _torch_divides_by_zero(self) -> bool:
        """Whether torch's OneCycleLR divides by a phase of no length at a step from 0 (its
        construction) to total_steps (the step() after the last optimizer step): it raises
        ZeroDivisionError there. Which phase a step falls in changes only at the phases' ends,
        so the steps next to them stand for all."""
        phases = self._phases()
        ends = [math.floor(e) + d for e, _, _ in phases for d in (0, 1)]
        for step in sorted({0, self.total_steps, *(e for e in ends if 0 <= e <= self.total_steps)}):
            start = 0.0
            for i, (end, _, _) in enumerate(phases):
                if step <= end or i == len(phases) - 1:
                    if end == start:
                        return True
                    break
                start = end
        return False

    def why_not(self, target: str) -> str:
        """Why ``to_torch`` gave no OneCycleLR (the exporter's note)."""
        if target == "torch" and self._torch_divides_by_zero():
            return (f"torch's OneCycleLR raises ZeroDivisionError for pct_start={self.params.pct_start} over "
                    f"{self.total_steps} steps (a phase of no length)")
        return ""

    def to_torch(self) -> Export | None:
        p = self.params
        if self._torch_divides_by_zero():
            return None  # the LambdaLR adapter follows the curve instead (why_not says so)
        three = ", three_phase=True" if p.three_phase else ""
        return Export(
            torch_code(
                p.max_lr,
                "torch.optim.lr_scheduler.OneCycleLR(optimizer, "
                f"max_lr={p.max_lr!r}, total_steps={self.total_steps}, pct_start={float(p.pct_start)!r}, "
                f"anneal_strategy={p.anneal!r}, div_factor={p.div_factor!r}, "
                f"final_div_factor={p.final_div_factor!r}{three}, cycle_momentum=False)",
            )
        )


class CosineHardRestarts(Policy):
    name = "cosine_hard_restarts"
    summary = "Linear warmup, then num_cycles cosines from lr to 0, each restarting at lr"
    family = "llm"
    reference = "HF get_cosine_with_hard_restarts_schedule_with_warmup (cosine_with_restarts)"
    uses_total_steps = True

    class Params(Params):
        lr: float = lr_param(1e-3, "Peak learning rate, reached at the end of the warmup and at each restart.")
        warmup_steps: int = steps_param(0, "Steps of linear warmup from 0.", minimum=0, search=(0, 500),
                                        derive=run_fraction(0.05), role="warmup")
        warmup_ratio: float = _ratio_param()
        num_cycles: int = param(1, "Cosines after the warmup (Hugging Face's num_cycles).", ge=1, search=(1, 10))

    def lr_at(self, step: int) -> float:
        p = self.params
        warmup = warmup_of(p, self.total_steps)
        if step < warmup:
            return p.lr * _warmup_factor(step, warmup)
        progress = float(step - warmup) / float(max(1, self.total_steps - warmup))
        if progress >= 1.0:
            return 0.0
        return p.lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(p.num_cycles) * progress) % 1.0))))

    def to_hf(self) -> Export:
        p = self.params
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "cosine_with_restarts",
                **_hf_warmup(p),
                "max_steps": self.total_steps,
                "lr_scheduler_kwargs": {"num_cycles": p.num_cycles},
            },
            note=_ratio_note(p),
        )


class PolyWarmup(Policy):
    name = "poly_warmup"
    summary = "Linear warmup, then a polynomial decay from lr to min_lr at the run's end"
    family = "llm"
    reference = "HF get_polynomial_decay_schedule_with_warmup (polynomial)"
    uses_total_steps = True

    class Params(_MinBelowLr):
        lr: float = lr_param(1e-3, "Peak learning rate, reached at the end of the warmup.")
        min_lr: float = min_lr_param(1e-7, "Learning rate at the run's end (Hugging Face's lr_end).")
        power: float = param(1.0, "Exponent of the decay (1 = linear).", gt=0, search=(0.5, 3.0))
        warmup_steps: int = steps_param(0, "Steps of linear warmup from 0.", minimum=0, search=(0, 500),
                                        derive=run_fraction(0.05), role="warmup")
        warmup_ratio: float = _ratio_param()

    def lr_at(self, step: int) -> float:
        p = self.params
        warmup, total = warmup_of(p, self.total_steps), self.total_steps
        if step < warmup:
            return p.lr * _warmup_factor(step, warmup)
        if step > total or total == warmup:  # past the run (HF would divide by zero at the second)
            return p.lr * (p.min_lr / p.lr)
        # HF's arithmetic: the decay is divided by lr and LambdaLR multiplies it back
        pct_remaining = 1 - (step - warmup) / (total - warmup)
        return p.lr * (((p.lr - p.min_lr) * pct_remaining**p.power + p.min_lr) / p.lr)

    def to_hf(self) -> Export | None:
        p = self.params
        if not p.min_lr < p.lr or warmup_of(p, self.total_steps) == self.total_steps:
            # HF refuses lr_end >= lr, and divides by zero at the run's end when the warmup is all of it
            return None
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "polynomial",
                **_hf_warmup(p),
                "max_steps": self.total_steps,
                "lr_scheduler_kwargs": {"lr_end": p.min_lr, "power": p.power},
            },
            note=_ratio_note(p),
        )


class CosineWarmupMinLr(Policy):
    name = "cosine_warmup_with_min_lr"
    summary = "Warmup from warmup_lr_rate * lr, then a cosine to min_lr ending on the run's last step"
    family = "llm"
    reference = "HF get_cosine_with_min_lr_schedule_with_warmup_lr_rate (cosine_warmup_with_min_lr)"
    uses_total_steps = True

    class Params(_MinBelowLr):
        lr: float = lr_param(1e-3, "Peak learning rate.")
        min_lr: float = min_lr_param()
        warmup_steps: int = steps_param(0, "Steps of warmup.", minimum=0, search=(0, 500),
                                        derive=run_fraction(0.05), role="warmup")
        warmup_ratio: float = _ratio_param()
        warmup_lr_rate: float = param(-1.0, "LR of the first warmup step as a share of lr; -1 leaves it unset as "
                                      "Hugging Face does: (step + 1) / warmup_steps.", ge=-1, le=1)
        num_cycles: float = _cycles_param()

        @model_validator(mode="after")
        def _unset_or_share(self):
            if -1 < self.warmup_lr_rate < 0:
                raise ValueError(f"warmup_lr_rate must be -1 (unset) or in [0, 1], got {self.warmup_lr_rate}")
            return self

    def lr_at(self, step: int) -> float:
        p = self.params
        t, warmup, total = float(step), float(warmup_of(p, self.total_steps)), float(self.total_steps)
        if t < warmup:
            if p.warmup_lr_rate < 0:
                return p.lr * ((t + 1.0) / max(1.0, warmup))
            r = float(p.warmup_lr_rate)
            return p.lr * (r + (1.0 - r) * t / (max(1, warmup - 1)))
        progress = (t - warmup + 1.0) / (max(1.0, total - warmup))
        factor = 0.5 * (1.0 + math.cos(math.pi * p.num_cycles * 2.0 * progress))
        rate = p.min_lr / p.lr
        return p.lr * max(0, factor * (1 - rate) + rate)

    def to_hf(self) -> Export:
        p = self.params
        kwargs: dict = {"min_lr": p.min_lr, "num_cycles": p.num_cycles}
        if p.warmup_lr_rate >= 0:
            kwargs["warmup_lr_rate"] = p.warmup_lr_rate
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "cosine_warmup_with_min_lr",
                **_hf_warmup(p),
                "max_steps": self.total_steps,
                "lr_scheduler_kwargs": kwargs,
            },
            note=_ratio_note(p),
        )


POLICIES = [Cosine, Linear, ConstantWarmup, InverseSqrt, WarmupStableDecay, OneCycle, CosineHardRestarts, PolyWarmup,
            CosineWarmupMinLr]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
