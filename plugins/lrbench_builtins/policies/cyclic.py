"""Cyclic learning rates (Smith's CLR and LRBench's sine and cosine cycles).

Every policy here moves between ``min_lr`` and ``max_lr`` with a half-cycle of ``half_cycle``
steps. The ``2`` variants halve the amplitude every full cycle; the ``_exp`` variants multiply it
by ``gamma ** step``.
"""

from __future__ import annotations

import math

from pydantic import model_validator

from lrbench_gui.core.params import Params, decay_over_run, run_divisor
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import check_order, gamma_param, lr_param, steps_param, torch_code


class CyclicParams(Params):
    min_lr: float = lr_param(1e-3, "Lowest learning rate of a cycle.", role="min_lr")
    max_lr: float = lr_param(1e-2, "Highest learning rate of a cycle.")
    half_cycle: int = steps_param(100, "Steps from the lowest to the highest LR (half a cycle).", search=(10, 2000),
                                  derive=run_divisor(8))

    @model_validator(mode="after")
    def _order(self) -> "CyclicParams":
        check_order("min_lr", self.min_lr, "max_lr", self.max_lr)
        return self


class CyclicExpParams(CyclicParams):
    gamma: float = gamma_param(0.999, "Amplitude factor per step.", search=(0.99, 1.0), derive=decay_over_run(0.1))


def _down_param() -> int:
    return steps_param(0, "Steps from the highest back to the lowest LR (torch's step_size_down); 0: the same "
                       "as half_cycle, as torch's None.", minimum=0, search=(0, 2000))


class TriangleParams(CyclicParams):
    half_cycle_down: int = _down_param()


class TriangleExpParams(CyclicExpParams):
    half_cycle_down: int = _down_param()


class _Cyclic(Policy):
    family = "cyclic"
    Params = CyclicParams
    #: "plain", "halving" or "exp": how the amplitude shrinks over the run.
    variant = "plain"

    def shape(self, step: int) -> float:
        """The cycle's shape in [0, 1] at ``step``."""
        raise NotImplementedError

    def scale(self, step: int) -> float:
        if self.variant == "halving":
            # ldexp(1, -n) is 1 / 2**n exactly, but 0.0 instead of an OverflowError for huge n
            return math.ldexp(1.0, -math.floor(step / (2 * self.params.half_cycle)))
        if self.variant == "exp":
            return self.params.gamma**step
        return 1.0

    def lr_at(self, step: int) -> float:
        p = self.params
        return p.min_lr + (p.max_lr - p.min_lr) * self.shape(step) * self.scale(step)


class Triangle(_Cyclic):
    name = "triangle"
    summary = "Triangular cycles between min_lr and max_lr (CLR)"
    reference = "torch CyclicLR(mode='triangular'), step_size_down too; LRBench TRI"
    Params = TriangleParams
    _mode = "triangular"

    def _total(self) -> float:
        p = self.params
        return float(p.half_cycle) + float(p.half_cycle_down or p.half_cycle)

    def shape(self, step: int) -> float:
        # torch CyclicLR's arithmetic, so that the two agree to the last bits
        total = self._total()
        ratio = float(self.params.half_cycle) / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        return x / ratio if x <= ratio else (x - 1) / (ratio - 1)

    def scale(self, step: int) -> float:
        if self.variant == "halving":
            cycle = math.floor(1 + step / self._total())
            return math.ldexp(1.0, -(cycle - 1))  # torch's 1 / 2.0 ** (cycle - 1), without overflow
        return super().scale(step)

    def to_torch(self) -> Export:
        p = self.params
        extra = f", gamma={p.gamma!r}" if self.variant == "exp" else ""
        down = f", step_size_down={p.half_cycle_down}" if p.half_cycle_down else ""
        return Export(
            torch_code(
                p.min_lr,
                "torch.optim.lr_scheduler.CyclicLR(optimizer, "
                f"base_lr={p.min_lr!r}, max_lr={p.max_lr!r}, step_size_up={p.half_cycle}{down}, "
                f"mode={self._mode!r}{extra}, cycle_momentum=False)",
            )
        )

    def to_deepspeed(self) -> Export | None:
        # DeepSpeed's OneCycle runs one such cycle (CyclicLR's arithmetic, not shifted), then holds
        # cycle_min_lr: the same curve while the run ends within the first cycle
        p = self.params
        if self.variant == "exp" or self.total_steps > self._total() + 1:
            return None
        return Export({"scheduler": {"type": "OneCycle", "params": {
            "cycle_min_lr": p.min_lr, "cycle_max_lr": p.max_lr, "decay_lr_rate": 0.0,
            "cycle_first_step_size": p.half_cycle, "cycle_second_step_size": p.half_cycle_down or p.half_cycle}}},
            note="DeepSpeed's OneCycle: one cycle, which is all of this run")


class Triangle2(Triangle):
    name = "triangle2"
    summary = "Triangular cycles whose amplitude halves every cycle"
    reference = "torch CyclicLR(mode='triangular2'), step_size_down too; LRBench TRI2"
    variant = "halving"
    _mode = "triangular2"


class TriangleExp(Triangle):
    name = "triangle_exp"
    summary = "Triangular cycles whose amplitude decays by gamma per step"
    reference = "torch CyclicLR(mode='exp_range'); LRBench TRIEXP"
    Params = TriangleExpParams
    variant = "exp"
    _mode = "exp_range"


class Sine(_Cyclic):
    name = "sin"
    summary = "Sine cycles from min_lr up to max_lr and back"
    reference = "LRBench SIN"

    def shape(self, step: int) -> float:
        return abs(math.sin(math.pi * step / (2 * self.params.half_cycle)))


class Sine2(Sine):
    name = "sin2"
    summary = "Sine cycles whose amplitude halves every cycle"
    reference = "LRBench SIN2"
    variant = "halving"


class SineExp(Sine):
    name = "sin_exp"
    summary = "Sine cycles whose amplitude decays by gamma per step"
    reference = "LRBench SINEXP"
    Params = CyclicExpParams
    variant = "exp"


class CosCyclic(_Cyclic):
    name = "cos_cyclic"
    summary = "Cosine cycles from max_lr down to min_lr and back"
    reference = "LRBench COS"

    def shape(self, step: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * step / self.params.half_cycle))

    def scale(self, step: int) -> float:
        if self.variant == "halving":  # LRBench halves at the troughs of the cosine
            hc = self.params.half_cycle
            return math.ldexp(1.0, -math.floor((step + hc) / (2 * hc)))
        return super().scale(step)


class CosCyclic2(CosCyclic):
    name = "cos_cyclic2"
    summary = "Cosine cycles whose amplitude halves every cycle"
    reference = "LRBench COS2"
    variant = "halving"


class CosCyclicExp(CosCyclic):
    name = "cos_cyclic_exp"
    summary = "Cosine cycles whose amplitude decays by gamma per step"
    reference = "LRBench COSEXP"
    Params = CyclicExpParams
    variant = "exp"


# LRBench's D (down-first) and UP (up-first) variants: another policy's cycle started half a
# cycle later. The halving counts the shifted cycles; gamma ** step still counts from step 0.
class TriangleDown(_Cyclic):
    name = "triangle_down"
    summary = "Triangular cycles that start at max_lr and fall first"
    reference = "LRBench DTRI"

    def shape(self, step: int) -> float:
        total = 2.0 * self.params.half_cycle
        t = step + self.params.half_cycle
        x = 1.0 + t / total - math.floor(1 + t / total)
        return x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)

    def scale(self, step: int) -> float:
        if self.variant == "halving":
            hc = self.params.half_cycle
            return math.ldexp(1.0, -math.floor((step + hc) / (2 * hc)))
        return super().scale(step)


class TriangleDown2(TriangleDown):
    name = "triangle_down2"
    summary = "Down-first triangular cycles whose amplitude halves every cycle"
    reference = "LRBench DTRI2"
    variant = "halving"


class TriangleDownExp(TriangleDown):
    name = "triangle_down_exp"
    summary = "Down-first triangular cycles whose amplitude decays by gamma per step"
    reference = "LRBench DTRIEXP"
    Params = CyclicExpParams
    variant = "exp"


class SineDown(TriangleDown):
    name = "sin_down"
    summary = "Sine cycles that start at max_lr and fall first"
    reference = "LRBench DSIN"

    def shape(self, step: int) -> float:
        hc = self.params.half_cycle
        return abs(math.sin(math.pi * (step + hc) / (2 * hc)))


class SineDown2(SineDown):
    name = "sin_down2"
    summary = "Down-first sine cycles whose amplitude halves every cycle"
    reference = "LRBench DSIN2"
    variant = "halving"


class SineDownExp(SineDown):
    name = "sin_down_exp"
    summary = "Down-first sine cycles whose amplitude decays by gamma per step"
    reference = "LRBench DSINEXP"
    Params = CyclicExpParams
    variant = "exp"


class CosCyclicUp(_Cyclic):
    name = "cos_cyclic_up"
    summary = "Cosine cycles from min_lr up to max_lr and back"
    reference = "LRBench UPCOS"

    def shape(self, step: int) -> float:  # halving: the base's floor(step / (2 half_cycle)), as UPCOS2
        return 0.5 * (1 + math.cos(math.pi * (1.0 * step / self.params.half_cycle + 1.0)))


class CosCyclicUp2(CosCyclicUp):
    name = "cos_cyclic_up2"
    summary = "Rising-first cosine cycles whose amplitude halves every cycle"
    reference = "LRBench UPCOS2"
    variant = "halving"


class CosCyclicUpExp(CosCyclicUp):
    name = "cos_cyclic_up_exp"
    summary = "Rising-first cosine cycles whose amplitude decays by gamma per step"
    reference = "LRBench UPCOSEXP"
    Params = CyclicExpParams
    variant = "exp"


POLICIES = [Triangle, Triangle2, TriangleExp, Sine, Sine2, SineExp, CosCyclic, CosCyclic2, CosCyclicExp,
            TriangleDown, TriangleDown2, TriangleDownExp, SineDown, SineDown2, SineDownExp,
            CosCyclicUp, CosCyclicUp2, CosCyclicUpExp]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
