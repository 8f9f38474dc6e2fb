"""Restart policies: SGDR (cosine with warm restarts) and LRBench's sawtooth family.

A sawtooth starts each cycle of ``cycle_steps`` at ``max_lr`` and falls to ``min_lr``, then
restarts; the ``sin_`` and ``cos_`` shapes fall along a sine or a cosine instead of a line.
"""

from __future__ import annotations

import math

from pydantic import model_validator

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import check_order, gamma_param, lr_param, min_lr_param, steps_param, torch_code


class CosineRestarts(Policy):
    name = "cosine_restarts"
    summary = "Cosine annealing to min_lr, restarting every cycle (SGDR)"
    family = "restart"
    reference = "torch CosineAnnealingWarmRestarts"

    class Params(Params):
        lr: float = lr_param(0.01, "Learning rate at the start of each cycle.")
        min_lr: float = min_lr_param()
        cycle_steps: int = steps_param(100, "Steps of the first cycle.", search=(10, 2000), derive=run_divisor(4))
        cycle_mult: int = param(1, "Each cycle is this many times longer than the one before (torch's T_mult).",
                                ge=1)

        @model_validator(mode="after")
        def _order(self) -> "CosineRestarts.Params":
            check_order("min_lr", self.min_lr, "lr", self.lr)
            return self

    def lr_at(self, step: int) -> float:
        p = self.params
        t_i, t_cur = p.cycle_steps, step
        if p.cycle_mult == 1:
            t_cur = step % t_i
        while t_cur >= t_i:  # closed form would need a log; cycles grow geometrically, so this is short
            t_cur -= t_i
            t_i *= p.cycle_mult
        return p.min_lr + (p.lr - p.min_lr) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    def to_torch(self) -> Export:
        p = self.params
        return Export(
            torch_code(
                p.lr,
                "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, "
                f"T_0={p.cycle_steps}, T_mult={p.cycle_mult}, eta_min={p.min_lr!r})",
            )
        )

    def to_hf(self) -> Export | None:
        p = self.params
        if p.cycle_mult != 1 or p.min_lr != 0 or self.total_steps % p.cycle_steps:
            return None
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "cosine_with_restarts",
                "warmup_steps": 0,
                "max_steps": self.total_steps,
                "lr_scheduler_kwargs": {"num_cycles": self.total_steps // p.cycle_steps},
            }
        )


class SawtoothParams(Params):
    min_lr: float = lr_param(1e-3, "Learning rate at the end of each cycle.", role="min_lr")
    max_lr: float = lr_param(1e-2, "Learning rate at the start of each cycle.")
    cycle_steps: int = steps_param(100, "Steps of one cycle.", search=(10, 2000), derive=run_divisor(4))

    @model_validator(mode="after")
    def _order(self) -> "SawtoothParams":
        check_order("min_lr", self.min_lr, "max_lr", self.max_lr)
        return self


class SawtoothExpParams(SawtoothParams):
    gamma: float = gamma_param(0.999, "Amplitude factor per step.", search=(0.99, 1.0), derive=decay_over_run(0.1))


class _Sawtooth(Policy):
    family = "restart"
    Params = SawtoothParams
    variant = "plain"

    def shape(self, phase: float) -> float:
        """``phase`` runs from 1 down to 0 through a cycle (LRBench's ``-t/l - floor(-t/l)``)."""
        return phase

    def lr_at(self, step: int) -> float:
        p = self.params
        x = -1.0 * step / p.cycle_steps
        phase = x - math.floor(x)
        if self.variant == "halving":
            # 1 / 2**n exactly, but 0.0 instead of an OverflowError for huge n
            scale = math.ldexp(1.0, -math.floor(1.0 * step / p.cycle_steps))
        elif self.variant == "exp":
            scale = p.gamma**step
        else:
            scale = 1.0
        return p.min_lr + (p.max_lr - p.min_lr) * self.shape(phase) * scale


def _sawtooth_family(prefix: str, shape, what: str, lrbench: str) -> list[type[Policy]]:
    out = []
    for suffix, variant, params, extra in [
        ("", "plain", SawtoothParams, ""),
        ("2", "halving", SawtoothParams, ", amplitude halving every cycle"),
        ("_exp", "exp", SawtoothExpParams, ", amplitude decaying by gamma per step"),
    ]:
        attrs = {
            "name": f"{prefix}sawtooth{suffix}",
            "summary": f"Restarts at max_lr, falls {what} to min_lr each cycle{extra}",
            "reference": f"LRBench {lrbench}{suffix.upper().replace('_', '')}",
            "Params": params,
            "variant": variant,
            "shape": shape,
            "__module__": __name__,
        }
        out.append(type(f"{prefix.title().rstrip('_')}Sawtooth{suffix.title().replace('_', '')}", (_Sawtooth,), attrs))
    return out


POLICIES = [
    CosineRestarts,
    *_sawtooth_family("", lambda self, ph: ph, "linearly", "RSW"),
    *_sawtooth_family("sin_", lambda self, ph: math.sin(math.pi / 2.0 * ph), "along a sine", "SINRSW"),
    *_sawtooth_family("cos_", lambda self, ph: 0.5 * (1 - math.cos(math.pi * ph)), "along a cosine", "COSRSW"),
]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
