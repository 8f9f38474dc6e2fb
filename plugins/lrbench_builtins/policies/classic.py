"""The classic decay policies (Caffe, torch and LRBench's FIX, STEP, NSTEP, EXP, POLY, INV, SIG)."""

from __future__ import annotations

import bisect
import math

from pydantic import field_validator, model_validator

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import check_order, gamma_param, lr_param, min_lr_param, steps_param, torch_code


class Fixed(Policy):
    name = "fixed"
    summary = "The same learning rate at every step"
    family = "classic"
    reference = "LRBench FIX; torch ConstantLR(factor=1); HF get_constant_schedule (constant)"

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
        milestones: list[int] = param([100, 200], "Steps at which the LR is multiplied by gamma; as in torch, "
                                       "any order, and a milestone given twice multiplies twice.",
                                       derive=run_fractions(0.5, 0.75))
        gamma: float = gamma_param(0.1, "Factor applied at each milestone.", search=(0.05, 0.9), tune=True)

        @field_validator("milestones")
        @classmethod
        def _sorted(cls, v: list[int]) -> list[int]:
            if any(m < 0 for m in v):
                raise ValueError("milestones must be >= 0: torch would accept a negative one, but its step never "
                                 "comes, so it is refused as a likely mistake")
            if len(v) > 1000:
                raise ValueError("at most 1000 milestones")
            return sorted(v)  # torch counts them (a Counter): order does not matter, repeats do

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
            check_order("min_lr", self.min_lr, "lr", self.lr)
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

    def to_hf(self) -> Export | None:
        p = self.params
        if not p.min_lr < p.lr:
            return None  # HF refuses lr_end >= lr (a flat line: use fixed)
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
    # LRBench's SIG raises OverflowError once -gamma * (step - center) passes ~709; here the LR is
    # 0.0 there, which is the true value to double precision (docs/policies.md).
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


class ConstantFactor(Policy):
    name = "constant_factor"
    summary = "lr * factor for the first total_iters steps, then lr"
    family = "classic"
    reference = "torch ConstantLR"

    class Params(Params):
        lr: float = lr_param(0.1, "Learning rate after the first total_iters steps.")
        factor: float = param(1.0 / 3, "Factor applied before total_iters (torch's default 1/3).", ge=0, le=1,
                              search=(0.01, 1.0))
        total_iters: int = steps_param(5, "Steps run at lr * factor; 0 keeps the factor for ever, as torch does.",
                                       minimum=0, search=(1, 1000), derive=run_fraction(0.05, 1))

    def lr_at(self, step: int) -> float:
        p = self.params
        if step < p.total_iters or p.total_iters == 0:
            return p.lr * p.factor
        return p.lr

    def to_torch(self) -> Export | None:
        p = self.params
        if p.factor == 0 and 0 < p.total_iters <= self.total_steps:
            return None  # torch divides by the factor when total_iters is reached: ZeroDivisionError
        return Export(
            torch_code(
                p.lr,
                f"torch.optim.lr_scheduler.ConstantLR(optimizer, factor={p.factor!r}, total_iters={p.total_iters})",
            ),
            note="torch multiplies by factor, then by 1 / factor: equal to about 1e-16",
        )


class LinearFactor(Policy):
    name = "linear_factor"
    summary = "lr times a factor moving linearly from start_factor to end_factor over total_iters steps"
    family = "classic"
    reference = "torch LinearLR"

    class Params(Params):
        lr: float = lr_param(0.1, "The optimizer's learning rate; the factors scale it.")
        start_factor: float = param(1.0 / 3, "Factor of the first step (torch: in (0, 1]).", gt=0, le=1,
                                    search=(0.01, 1.0))
        end_factor: float = param(1.0, "Factor from total_iters on (torch: in [0, 1]).", ge=0, le=1,
                                  search=(0.0, 1.0))
        total_iters: int = steps_param(5, "Steps from start_factor to end_factor; 0 keeps start_factor for ever, "
                                       "as torch does.", minimum=0, search=(1, 1000), derive=run_fraction(0.05))

    def lr_at(self, step: int) -> float:
        p = self.params
        if p.total_iters == 0:
            return p.lr * p.start_factor
        return p.lr * (p.start_factor + (p.end_factor - p.start_factor) * min(p.total_iters, step) / p.total_iters)

    def to_torch(self) -> Export:
        p = self.params
        return Export(
            torch_code(
                p.lr,
                f"torch.optim.lr_scheduler.LinearLR(optimizer, start_factor={p.start_factor!r}, "
                f"end_factor={p.end_factor!r}, total_iters={p.total_iters})",
            ),
            note="torch computes it recursively: equal to about 1e-12 of the LR",
        )


class CosineAnnealing(Policy):
    name = "cosine_annealing"
    summary = "Cosine from lr to min_lr over t_max steps, then back up and down again (period 2 t_max)"
    family = "classic"
    reference = "torch CosineAnnealingLR (any T_max)"
    # the curve ignores the run's length, but the Hugging Face export names it (max_steps and
    # num_cycles), so `policy export` must ask for --steps
    uses_total_steps = True

    class Params(Params):
        lr: float = lr_param(0.01, "Learning rate of step 0 (and of every 2 t_max steps).")
        min_lr: float = min_lr_param()
        t_max: int = steps_param(1000, "Steps from lr down to min_lr (torch's T_max); the run's length gives "
                                 "one half cosine.", search=(10, 10_000), derive=run_fraction(1.0, 1))

        @model_validator(mode="after")
        def _order(self) -> "CosineAnnealing.Params":
            check_order("min_lr", self.min_lr, "lr", self.lr)
            return self

    def lr_at(self, step: int) -> float:
        p = self.params
        return p.min_lr + (p.lr - p.min_lr) * (1 + math.cos(math.pi * step / p.t_max)) / 2

    def to_torch(self) -> Export:
        p = self.params
        return Export(
            torch_code(
                p.lr, f"torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={p.t_max}, eta_min={p.min_lr!r})"
            ),
            note="torch computes it recursively: equal to about 1e-12 of the LR",
        )

    def to_hf(self) -> Export:
        p = self.params
        cycles = self.total_steps / (2 * p.t_max)
        out = {
            "learning_rate": p.lr,
            "lr_scheduler_type": "cosine" if p.min_lr == 0 else "cosine_with_min_lr",
            "warmup_steps": 0,
            "max_steps": self.total_steps,
            "lr_scheduler_kwargs": {"num_cycles": cycles, **({"min_lr": p.min_lr} if p.min_lr else {})},
        }
        return Export(out, note=f"HF counts cosine waves over the run: num_cycles = run length / (2 t_max) = "
                                f"{cycles!r}")


POLICIES = [Fixed, StepDecay, MultiStep, Exponential, Polynomial, InverseDecay, Sigmoid, ConstantFactor, LinearFactor,
            CosineAnnealing]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
