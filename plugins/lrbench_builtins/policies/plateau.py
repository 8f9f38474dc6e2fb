"""Policies that react to a monitored metric: ``reduce_on_plateau`` (torch's ReduceLROnPlateau).

Switching to the next segment of a composition on a plateau (LRBench's ChangeLROnPlateau) is a
sequence's ``switch`` (:mod:`lrbench_gui.core.spec`); both use the one plateau rule of
:mod:`lrbench_gui.core.reactive`.
"""

from __future__ import annotations

import bisect

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.core.reactive import MAX_SWITCHES, Feed, PlateauParams, PlateauRule
from lrbench_gui.hookspecs import hookimpl

from lrbench_builtins.policies._common import lr_param, min_lr_param


class _Reduction(Params):
    """How the LR starts and how it is reduced (first in the form; the plateau test follows)."""

    lr: float = lr_param(0.01, "The starting learning rate.")
    factor: float = param(0.1, "Factor applied at each plateau (new LR = max(LR x factor, min_lr)).",
                          gt=0, lt=1, search=(0.1, 0.7))
    min_lr: float = min_lr_param(0.0, "The LR is never reduced below this.")
    eps: float = param(1e-8, "A reduction smaller than this is not made.", ge=0)


class ReduceOnPlateau(Policy):
    name = "reduce_on_plateau"
    summary = "Multiply the LR by factor when the monitored metric stops improving"
    family = "reactive"
    reference = "torch ReduceLROnPlateau (the same rule: mode, threshold, patience, cooldown, min_lr, eps)"
    reactive = True

    class Params(PlateauParams, _Reduction):
        """lr, factor, min_lr, eps, then the plateau test (:class:`PlateauParams`)."""

    def __init__(self, params: Params, total_steps: int) -> None:
        super().__init__(params, total_steps)
        self._rule = PlateauRule(params)
        self._feed = Feed(params)
        self._starts = [0]
        self._values = [float(params.lr)]
        self._switches: list[dict] = []
        self._last = -1

    def lr_at(self, step: int) -> float:
        return self._values[max(0, bisect.bisect_right(self._starts, step) - 1)]

    def observe(self, step: int, value: float) -> None:
        step = int(step)
        if step < self._last:
            raise ValueError(f"reduce_on_plateau: observation at step {step} after one at step {self._last} "
                             "(observations go forward)")
        self._last = step
        if not self._rule.update(value):
            return
        p = self.params
        old = self._values[-1]
        new = max(old * p.factor, p.min_lr)
        if old - new <= p.eps:  # torch: a reduction this small is not made
            return
        event = {"step": step + 1, "lr": new, "reason": f"plateau: {self._rule.reason(float(value), p.monitor)}; "
                                                        f"lr x {p.factor:g}"}
        if self._starts[-1] == step + 1:  # a second observation of the same step
            self._values[-1] = new
            if self._switches:
                self._switches[-1] = event
        else:
            self._starts.append(step + 1)
            self._values.append(new)
            if len(self._switches) < MAX_SWITCHES:
                self._switches.append(event)

    def feed(self, step: int, loss: float | None = None, metrics: dict | None = None) -> None:
        for value in (self._feed.step(step, loss) if loss is not None else None,
                      self._feed.eval(step, metrics) if metrics else None):
            if value is not None:
                self.observe(step, value)

    def switches(self) -> list[dict]:
        return [dict(s) for s in self._switches]

    def to_hf(self) -> Export | None:
        """HF's ``reduce_lr_on_plateau`` steps after each evaluation with ``metric_for_best_model``:
        the same rule for an eval monitor (HF names the eval loss ``loss``); none for the train loss."""
        p = self.params
        if p.monitor == "loss":
            return None
        kwargs = {"mode": p.mode, "factor": p.factor, "patience": p.patience, "threshold": p.threshold,
                  "threshold_mode": p.threshold_mode, "cooldown": p.cooldown, "min_lr": p.min_lr, "eps": p.eps}
        metric = "loss" if p.monitor == "val_loss" else p.monitor
        return Export({"learning_rate": p.lr, "lr_scheduler_type": "reduce_lr_on_plateau",
                       "lr_scheduler_kwargs": kwargs, "metric_for_best_model": metric,
                       "greater_is_better": p.mode == "max", "eval_strategy": "steps"},
                      note=f"the same rule, stepped after each evaluation with eval_{metric}; set eval_steps to "
                           "your evaluation interval")

    def to_torch(self) -> Export:
        p = self.params
        when = f"after each evaluation with its {p.monitor}"
        if p.monitor == "loss":
            when = (f"every {p.every} steps with the train loss smoothed by an EMA (ema = {p.smoothing:g} x ema + "
                    f"{1 - p.smoothing:g} x loss)")
        code = (
            "import torch\n\n"
            f"# Create the optimizer with lr={p.lr!r}: the scheduler reduces it on a plateau.\n"
            "scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(\n"
            f"    optimizer, mode={p.mode!r}, factor={p.factor!r}, patience={p.patience}, threshold={p.threshold!r},\n"
            f"    threshold_mode={p.threshold_mode!r}, cooldown={p.cooldown}, min_lr={p.min_lr!r}, eps={p.eps!r})\n"
            f"# Call scheduler.step(value) {when}.\n"
        )
        return Export(code, note="the same rule: ReduceLROnPlateau changes the LR where this policy does when "
                                 "scheduler.step(value) gets the same observations")


POLICIES = [ReduceOnPlateau]


@hookimpl
def register_policies(register):
    for cls in POLICIES:
        register(cls)
