"""The evaluator: a scorer of the model being trained, run by the trainer next to the task's own
``evaluate()`` (a multiple-choice accuracy, a generation exact match, a benchmark harness).

Lifecycle, inside the trial subprocess (the app only validates ``Evaluator.Params``, torch-free):

1. ``ev = EvaluatorClass(params)`` once per trial, before training;
2. every ``eval_every`` steps and at the end, after ``task.evaluate(model)``, the trainer calls
   ``ev.evaluate(model, ctx)`` with the model in eval mode under ``torch.no_grad()``; it returns
   finite metrics whose names are among :attr:`Evaluator.metrics`. They join the task's metrics
   in the same ``eval`` event (so they stream, are stored as ``eval/NAME`` curves and can be a
   study's objective); their wall time is the end event's ``cost.eval_seconds``.

``ctx`` is an :class:`EvalContext`: the task, the step, and what the task's
:meth:`~lrbench_gui.core.task.Task.eval_context` gives (the tokenizer and the device of a
language-model task). An evaluator module must not import torch at module level.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrbench_gui.core.params import Params

__all__ = ["Evaluator", "EvalContext", "metric_directions"]


@dataclass
class EvalContext:
    """What an evaluator gets from the trial: the task object, the step evaluated at, and the
    task's :meth:`~lrbench_gui.core.task.Task.eval_context` (``tokenizer``, ``device``, and any
    other keys the task adds in ``extra``)."""

    task: Any = None
    step: int = 0
    tokenizer: Any = None
    device: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, task: Any, step: int = 0) -> "EvalContext":
        given = dict(task.eval_context() or {}) if hasattr(task, "eval_context") else {}
        return cls(task=task, step=step, tokenizer=given.pop("tokenizer", None),
                   device=given.pop("device", None), extra=given)


class Evaluator(abc.ABC):
    """Base of every evaluator. ``metrics`` maps each metric it may return to ``"max"`` (higher
    is better) or ``"min"``; a study takes an objective's direction from it."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    metrics: ClassVar[dict[str, str]] = {}
    #: whether it needs a tokenizer in its context (the language-model evaluators do)
    needs_tokenizer: ClassVar[bool] = False

    def __init__(self, params: Params) -> None:
        self.params = params

    @abc.abstractmethod
    def evaluate(self, model: Any, ctx: EvalContext) -> dict[str, float]:
        """Finite metrics of ``model`` (in eval mode, no gradients), named as in :attr:`metrics`."""

    def check(self, ctx: EvalContext) -> None:
        """Raise ``ValueError`` in one line when this evaluator cannot run on ``ctx`` (called once
        before training, so a missing data file fails the trial before it trains)."""
        if self.needs_tokenizer and ctx.tokenizer is None:
            task = getattr(ctx.task, "name", type(ctx.task).__name__)
            raise ValueError(f"evaluator {self.name} needs a language-model task (one whose eval_context() gives a "
                             f"tokenizer); task {task} gives none")


def metric_directions(evaluator_classes: list[type[Evaluator]]) -> dict[str, str]:
    """``{metric: "max" | "min"}`` over the metrics the given evaluators declare."""
    out: dict[str, str] = {}
    for cls in evaluator_classes:
        out.update(getattr(cls, "metrics", {}) or {})
    return out
