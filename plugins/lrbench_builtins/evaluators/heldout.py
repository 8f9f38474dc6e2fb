"""``heldout-loss``: the task's own held-out loss and perplexity, as an evaluator (so a list of
evaluators can name it like any other)."""

from __future__ import annotations

from typing import Any

from lrbench_gui.core.evaluator import EvalContext, Evaluator
from lrbench_gui.core.params import Params

__all__ = ["HeldoutLoss"]


class HeldoutParams(Params):
    pass


class HeldoutLoss(Evaluator):
    name = "heldout-loss"
    summary = "The task's own held-out val_loss and val_ppl"
    Params = HeldoutParams
    metrics = {"val_loss": "min", "val_ppl": "min"}

    def evaluate(self, model: Any, ctx: EvalContext) -> dict[str, float]:
        got = ctx.extra.get("task_metrics")  # what the trainer's task.evaluate() just returned
        if got is None:
            got = ctx.task.evaluate(model)
        return {k: float(got[k]) for k in self.metrics if k in got}
