"""The evaluator contract: what every evaluator must satisfy.

* it registers (a subclass of :class:`~lrbench_gui.core.evaluator.Evaluator`, a one-line
  summary), describes its parameters, and declares at least one metric with its direction;
* ``evaluate(model, ctx)`` on a real model returns a dict of finite numbers, each named as a
  declared metric (or ``DECLARED_SUFFIX``, as ``mc_acc_words`` under ``mc_acc``), every declared
  metric present unless its name says it is per-part;
* evaluating the same model twice gives the same metrics (a study compares trials by them);
* ``check(ctx)`` accepts the context it will be evaluated with.

The model and the context are the plugin author's (a tiny model is enough): the checks import
no torch themselves; ``evaluate`` runs under ``torch.no_grad()`` when torch is importable, as the
trainer runs it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from lrbench_gui.core.evaluator import EvalContext, Evaluator
from lrbench_gui.core.params import validate_params
from lrbench_gui.testing._common import check_registers, check_schema, fail

__all__ = ["EvaluatorContract", "check_evaluator", "check_evaluator_metrics", "check_evaluator_deterministic",
           "run_evaluator"]


def check_evaluator(cls: type[Evaluator]) -> None:
    """It registers, its schema describes every parameter, its metrics have a direction."""
    check_registers("evaluator", cls)
    check_schema(cls)
    if not cls.metrics:
        raise fail(cls, "declares no metrics: set metrics = {'NAME': 'max' or 'min'}")


def _no_grad() -> Any:
    try:
        import torch
    except ImportError:
        return contextlib.nullcontext()
    return torch.no_grad()


def run_evaluator(cls: type[Evaluator], params: dict[str, Any], model: Any, ctx: EvalContext) -> dict[str, float]:
    """One evaluation as the trainer does it: built from ``params``, checked, evaluated."""
    ev = cls(validate_params(cls.Params, params))
    try:
        ev.check(ctx)
    except ValueError as exc:
        raise fail(cls, f"check() refused the context it is evaluated with: {exc}") from None
    with _no_grad():
        got = ev.evaluate(model, ctx)
    if not isinstance(got, dict):
        raise fail(cls, f"evaluate() returned {type(got).__name__}, not a dict of metrics")
    return got


def check_evaluator_metrics(cls: type[Evaluator], params: dict[str, Any], model: Any, ctx: EvalContext) -> dict:
    """Finite numbers, named as declared; returns them."""
    got = run_evaluator(cls, params, model, ctx)
    declared = cls.metrics
    for key, value in got.items():
        if key not in declared and not any(key.startswith(d + "_") for d in declared):
            raise fail(cls, f"evaluate() returned {key!r}, which it does not declare (metrics: {sorted(declared)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise fail(cls, f"evaluate() returned {key}={value!r}, not a finite number")
    if not set(declared) & set(got):
        raise fail(cls, f"evaluate() returned none of its declared metrics {sorted(declared)} (got {sorted(got)})")
    return got


def check_evaluator_deterministic(cls: type[Evaluator], params: dict[str, Any], model: Any, ctx: EvalContext) -> None:
    """The same model evaluated twice gives the same metrics."""
    first = run_evaluator(cls, params, model, ctx)
    second = run_evaluator(cls, params, model, ctx)
    for key in first:
        if not math.isclose(float(first[key]), float(second.get(key, math.nan)), rel_tol=1e-6, abs_tol=1e-9):
            raise fail(cls, f"two evaluations of the same model disagree on {key}: {first[key]} vs {second.get(key)}")


class EvaluatorContract:
    """The evaluator contract as pytest tests. Subclass it (``Test...``) and provide two
    fixtures: ``evaluator_class`` and ``evaluator_inputs`` (a ``(model, EvalContext)`` pair, e.g.
    a tiny untrained model and its tokenizer); set ``evaluator_params`` if the defaults need a file."""

    evaluator_params: dict[str, Any] = {}

    def test_registers_and_describes(self, evaluator_class: type[Evaluator]) -> None:
        check_evaluator(evaluator_class)

    def test_metrics_are_declared_and_finite(self, evaluator_class: type[Evaluator], evaluator_inputs: Any) -> None:
        model, ctx = evaluator_inputs
        check_evaluator_metrics(evaluator_class, self.evaluator_params, model, ctx)

    def test_same_model_same_metrics(self, evaluator_class: type[Evaluator], evaluator_inputs: Any) -> None:
        model, ctx = evaluator_inputs
        check_evaluator_deterministic(evaluator_class, self.evaluator_params, model, ctx)
