"""The classic decay policies (Caffe, torch and LRBench's FIX, STEP, NSTEP, EXP, POLY, INV, SIG)."""

from __future__ import annotations

import bisect
import math

from pydantic import field_validator, model_validator

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import gamma_param, lr_param, min_lr_param, steps_param, torch_code


class Fixed(Policy):
    name = "fixed"
    summary = "The same learning rate at every step"
    family = "classic"
    reference = "LRBench FIX; torch ConstantLR(factor=1)"

    class Params(Params):
        lr: float = lr_param(0.01)

    def lr_at(self, step: int) -> float:
        return self.params.lr

    def to_deepspeed(self) -> Export:
        return Export(
            {"optimizer": {"params": {"lr": self.params.lr}}},
            note="no scheduler block: without one DeepSpeed keeps the optimizer's learning rate",
        )

    def to_hf(self) -> Export:
        return Export({"learning_rate": self.params.lr, "lr_scheduler_type": "constant", "warmup_steps": 0})

    def to_torch(self) -> Export:
        return Export(torch_code(self.params.lr, "torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)"))


class StepDecay(Policy):
    name = "step"
    summary = "Multiply the LR by gamma every step_size steps"
    family = "classic"
    reference = "torch StepLR; LRBench STEP"

    class Params(Params):
        lr: float = lr_param(0.1)
        step_size: int = steps_param(100, "Steps between two decays.", search=(10, 1000), derive=run_divisor(3))
        gamma: float = gamma_param(0.1, "Factor applied at each decay.", search=(0.05, 0.9), tune=True)

    def lr_at(self, step: int) -> float:
        p = self.params
        return p.lr * p.gamma ** (step // p.step_size)

    def to_torch(self) -> Export:
        p = self.params
        return Export(
            torch_code(p.lr, f"torch.optim.lr_scheduler.StepLR(optimizer, step_size={p.step_size}, gamma={p.gamma!r})")
        )


class MultiStep(Policy):
    name = "multistep"
    summary = "Multiply the LR by gamma at each milestone step"
    family = "classic"
    reference = "torch MultiStepLR; LRBench NSTEP"

    class Params(Params):
        lr: float = lr_param(0.1)
        milestones: list[int] = param([100, 200], "Steps at which the LR is multiplied by gamma (increasing).",
                                       derive=run_fractions(0.5, 0.75))
        gamma: float = gamma_param(0.1, "Factor applied at each milestone.", search=(0.05, 0.9), tune=True)

        @field_validator("milestones")
        @classmethod
        def _increasing(cls, v: list[int]) -> list[int]:
            if any(m < 0 for m in v):
                raise ValueError("milestones must be >= 0")
            if any(b <= a for a, b in zip(v, v[1:])):
                raise ValueError("milestones must increase")
            if len(v) > 1000:
                raise ValueError("at most 1000 milestones")
            return v

    def lr_at(self, step: int) -> float:
        p = self.params
        return p.lr * p.gamma ** bisect.bisect_right(p.milestones, step)

    def to_torch(self) -> Export:
        p = self.params
        return Export(
            torch_code(
                p.lr,
                f"torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones={list(p.milestones)}, gamma={p.gamma!r})",
            )
        )


class Exponential(Policy):
    name = "exp"
    summary = "Multiply the LR by gamma at every step"
    family = "classic"
    reference = "torch ExponentialLR; LRBench EXP"

    class Params(Params):
        lr: float = lr_param(0.1)
        gamma: float = gamma_param(0.99, "Factor applied at every step.", search=(0.9, 0.9999),
                                   derive=decay_over_run(0.01))

    def lr_at(self, step: int) -> float:
        return self.params.lr * self.params.gamma**step

    def to_torch(self) -> Export:
        p = self.params
        return Export(torch_code(p.lr, f"torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma={p.gamma!r})"))


class Polynomial(Policy):
    name = "poly"
    summary = "Polynomial decay from lr to min_lr over the run"
    family = "classic"
    reference = "LRBench POLY; torch PolynomialLR(total_iters=total) and HF polynomial when min_lr = 0"
    uses_total_steps = True

    class Params(Params):
        lr: float = lr_param(0.1)
        min_lr: float = min_lr_param()
        power: float = param(1.0, "Exponent of the decay (1 = linear).", gt=0, search=(0.5, 3.0))

        @model_validator(mode="after")
        def _order(self) -> "Polynomial.Params":
            if self.min_lr > self.lr:
                raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
            return self

    def lr_at(self, step: int) -> float:
        p = self.params
        t = min(step, self.total_steps)
        return (p.lr - p.min_lr) * (1.0 - t / self.total_steps) ** p.power + p.min_lr

    def to_torch(self) -> Export | None:
        p = self.params
        if p.min_lr != 0:
            return None
        return Export(
            torch_code(
                p.lr,
                f"torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters={self.total_steps}, power={p.power!r})",
            ),
            note="torch computes it recursively: equal to about 1e-12",
        )

    def to_hf(self) -> Export:
        p = self.params
        return Export(
            {
                "learning_rate": p.lr,
                "lr_scheduler_type": "polynomial",
                "warmup_steps": 0,
                "max_steps": self.total_steps,
                "lr_scheduler_kwargs": {"lr_end": p.min_lr, "power": p.power},
            }
        )


class InverseDecay(Policy):
    name = "inv"
    summary = "lr * (1 + gamma * step) ** -power"
    family = "classic"
    reference = "Caffe inv; LRBench INV"

    class Params(Params):
        lr: float = lr_param(0.01)
        gamma: float = param(1e-3, "Speed of the decay.", ge=0, log=True, search=(1e-5, 1e-1),
                              derive=inverse_run(10.0))
        power: float = param(0.75, "Exponent of the decay.", ge=0, search=(0.25, 2.0))

    def lr_at(self, step: int) -> float:
        p = self.params
        return p.lr * (1.0 + p.gamma * step) ** (-p.power)


class Sigmoid(Policy):
    name = "sigmoid"
    summary = "lr / (1 + exp(-gamma * (step - center)))"
    family = "classic"
    reference = "Caffe sigmoid; LRBench SIG (negative gamma decays, positive gamma grows)"

    class Params(Params):
        lr: float = lr_param(0.01)
        gamma: float = param(-0.05, "Steepness; negative to decay, positive to grow.", search=(-0.1, 0.1),
                              derive=inverse_run(-10.0))
        center: int = steps_param(500, "Step at which the LR is lr / 2.", minimum=0, derive=run_divisor(2))

    def lr_at(self, step: int) -> float:
        p = self.params
        z = -p.gamma * (step - p.center)
        if z > 700:  # exp would overflow: the LR is 0 to double precision
            return 0.0
        return p.lr / (1.0 + math.exp(z))


POLICIES = [Fixed, StepDecay, MultiStep, Exponential, Polynomial, InverseDecay, Sigmoid]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
