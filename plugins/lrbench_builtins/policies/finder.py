"""The LR finder's curve: the learning rate grows from ``start_lr`` to ``end_lr`` over the run.

The ``range-test`` tuner runs one trial with this policy and reads the (LR, loss) curve back
(Smith's LR range test, fastai's ``lr_find``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from lrbench_gui.core.params import Params, decay_over_run, inverse_run, param, run_divisor, run_fraction, run_fractions
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import check_order, lr_param, torch_code


class RangeExp(Policy):
    name = "range_exp"
    summary = "LR range test: grow from start_lr to end_lr over the run, exponentially or linearly"
    family = "finder"
    # no ``reference``: it reproduces no implementation step for step (fastai's lr_find reaches
    # end_lr one step after its last; DeepSpeed's LRRangeTest grows without an end)
    uses_total_steps = True

    class Params(Params):
        start_lr: float = lr_param(1e-6, "Learning rate of the first step.", role="min_lr")
        end_lr: float = lr_param(1.0, "Learning rate of the last step (and after it).")
        mode: Literal["exp", "linear"] = param("exp", "exp: equal ratios per step (a straight line on a log axis); linear: equal increments.")

        @model_validator(mode="after")
        def _order(self) -> "RangeExp.Params":
            check_order("start_lr", self.start_lr, "end_lr", self.end_lr)
            return self

    def lr_at(self, step: int) -> float:
        # step 0 is start_lr and step total-1 is end_lr exactly; past the run the LR stays at end_lr
        p = self.params
        last = self.total_steps - 1
        if step >= last:
            return p.end_lr if last > 0 else p.start_lr
        t = step / last
        if p.mode == "exp":
            return p.start_lr * (p.end_lr / p.start_lr) ** t
        return p.start_lr + (p.end_lr - p.start_lr) * t

    def to_torch(self) -> Export:
        p = self.params
        last = self.total_steps - 1
        if last <= 0:
            factor = "1.0"
        elif p.mode == "exp":
            factor = f"{p.end_lr / p.start_lr!r} ** (min(step, {last}) / {last})"
        else:
            factor = f"1.0 + {(p.end_lr - p.start_lr) / p.start_lr!r} * min(step, {last}) / {last}"
        return Export(
            torch_code(p.start_lr, f"torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: {factor})"),
            note="equal to rounding (about 1e-15 of the LR): torch multiplies start_lr by the factor",
        )


POLICIES = [RangeExp]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
