"""The two LR tests: ``range-test`` (Smith's LR range test: one run with a growing LR, then the
suggested LRs) and ``value-range`` (LRBench's value range test: short fixed-LR runs over a log
grid, then the range that trains well).

Both plan their own trials (``uses_space = False``) and share the ``range-test`` view. The range
test's answer also belongs to its trial (:meth:`RangeTestTuner.record_trial`): the database's
LR-range query reads it there.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypedDict

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.tuner import TrialRequest, TrialResult, Tuner
from lrbench_gui.core.tuning.range_analysis import analyze_range_test
from lrbench_gui.core.tuning.search import coerce_params, finite
from lrbench_gui.hookspecs import hookimpl
from lrbench_builtins.policies.finder import RangeExp

__all__ = ["RangeTestTuner", "ValueRangeTuner", "RangeTestSummary", "ValueRangeSummary", "TUNERS"]


class RangeTestSummary(TypedDict, total=False):
    """``RangeTestTuner.summary_json()``: the analysis of
    :func:`~lrbench_gui.core.tuning.range_analysis.analyze_range_test` and the chosen answer."""

    tuner: str
    status: str | None  # the trial's status; None before it finished
    suggestions: dict[str, dict[str, Any] | None] | None  # balanced / halfway / valley / steepest / minimum
    rules: dict[str, float | None]  # every rule's LR (None: it could not be computed)
    chosen: str | None  # which suggestion is the answer (Params.choose)
    lr: float | None  # the chosen LR
    lr_range: list[float] | None  # [low, high] of the usable LRs
    lr_min: float
    lr_max: float
    curve: dict[str, list[float]]  # {"lr", "smoothed"}: the smoothed loss against LR
    diverged_at: float | None
    points: int
    why: str
    warnings: list[str]


class ValueRangeRow(TypedDict):
    lr: float
    status: str
    value: float | None
    loss_fell: bool | None
    good: bool


class ValueRangeSummary(TypedDict, total=False):
    """``ValueRangeTuner.summary_json()``."""

    tuner: str
    steps_per_trial: int
    lr_range: list[float] | None
    best_lr: float | None
    lr_min: float
    lr_max: float
    per_lr: list[ValueRangeRow]
    steps_asked: int
    why: str


def _finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float as None (a database record is strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


class RangeTestTuner(Tuner):
    """One trial whose LR grows from start_lr to end_lr (the ``range_exp`` policy), then the
    (LR, loss) curve's suggestions (see :mod:`lrbench_gui.core.tuning.range_analysis`).

    The request carries ``tags``: ``kind: "range_test"``, ``diverge_factor`` (for the trial file:
    a range test is meant to diverge, so it stops only far past the turn) and ``log_every: 1``
    (the analysis wants the loss of every step).
    """

    name = "range-test"
    version = "1"
    summary = "LR range test: one run with the LR growing from start_lr to end_lr, then suggested LRs"
    title = "LR range test"
    hint = ("One run whose LR grows from start_lr to end_lr; the loss against LR gives the suggested LRs "
            "(balanced, halfway down, valley, steepest, minimum/10; all are reported). It evaluates only at the end: "
            "mid-test the LR is still climbing.")
    uses_space = False
    study_defaults = {"budget_steps": 200}
    view = "range-test"
    Summary = RangeTestSummary

    class Params(Params):
        start_lr: float = param(1e-6, "First LR of the test.", gt=0, log=True, search=(1e-8, 1e-3))
        end_lr: float = param(1.0, "Last LR of the test.", gt=0, log=True, search=(1e-2, 10.0))
        mode: Literal["exp", "linear"] = param("exp", "Growth of the LR: exp (equal ratios, the usual) or linear.")
        steps: int = param(0, "Steps of the test; 0: the study's steps.", ge=0, unit="steps")
        choose: Literal["balanced", "halfway", "valley", "steepest", "minimum"] = param(
            "balanced", "Which suggestion becomes the answer: balanced (the geometric mean of halfway and "
            "minimum/10; the default, by the benchmark), halfway (where the loss made half its fall), valley "
            "(fastai's default), steepest, or minimum/10."
        )
        beta: float = param(0.98, "Smoothing of the loss (exponential moving average).", ge=0, lt=1)
        diverge: float = param(4.0, "The analysis ends where the smoothed loss exceeds this x its minimum.", gt=1)
        stop_factor: float = param(
            10.0, "The trial stops when its raw loss exceeds this x max(first, best) (the trial's diverge_factor).", gt=1
        )

    def __init__(self, params: Any = None, space: Any = None, objective: Any = None, budget: Any = None,
                 seed: int = 0) -> None:
        super().__init__(coerce_params(type(self), params), space, objective, budget, seed)
        p = self.params
        if p.start_lr >= p.end_lr:
            raise ValueError(f"range-test: start_lr ({p.start_lr}) must be below end_lr ({p.end_lr})")
        self.steps = p.steps or self.budget.steps
        self.request: TrialRequest | None = None
        self.result: TrialResult | None = None
        self.analysis: dict[str, Any] | None = None

    @classmethod
    def budget_steps(cls, params: Params) -> int | None:
        return int(params.steps) or None

    def ask(self) -> TrialRequest | None:
        if self.request is not None:
            return None
        p = self.params
        point = {"start_lr": p.start_lr, "end_lr": p.end_lr, "mode": p.mode}
        self.request = TrialRequest(
            key="range-test",
            policy={"name": RangeExp.name, "params": point},
            steps=self.steps,
            family=RangeExp.name,
            point=point,
            eval_every=self.steps,
            tags={"kind": "range_test", "diverge_factor": p.stop_factor, "log_every": 1, "asked_after_tells": 0},
        )
        return self.request

    def done(self) -> bool:
        return self.request is not None

    def planned_trials(self) -> int:
        return 1

    def planned_steps(self) -> int:
        return self.steps

    def tell(self, result: TrialResult) -> None:
        if self.request is None or result.key != self.request.key:
            raise KeyError(f"range-test: result for {result.key!r}, which was never asked")
        self.result = result
        p = self.params
        lr_by_step = {int(s): float(v) for s, v in result.lrs}
        policy = RangeExp(RangeExp.Params(start_lr=p.start_lr, end_lr=p.end_lr, mode=p.mode), self.steps)
        pairs = sorted((int(s), float(v)) for s, v in result.losses)
        lrs = [lr_by_step.get(s, policy.lr_at(s)) for s, _ in pairs]
        self.analysis = analyze_range_test(lrs, [v for _, v in pairs], beta=p.beta, diverge=p.diverge, choose=p.choose)

    def record_trial(self, request: TrialRequest, result: TrialResult, record: dict[str, Any]) -> dict[str, Any]:
        """The test's answer belongs to its trial: ``kind: "range_test"``, the suggested LRs as
        metrics (``lr``, ``lr_min``, ``lr_max``) and the analysis in ``extra.range_test``; the
        database's LR-range query reads them there."""
        if request.tags.get("kind") != "range_test":
            return record
        summary = self.summary_json()
        metrics = {**(record.get("metrics") or {}),
                   **{k: summary[k] for k in ("lr", "lr_min", "lr_max") if isinstance(summary.get(k), float)}}
        extra = {**(record.get("extra") or {}),
                 "range_test": _finite_json({k: v for k, v in summary.items() if k != "curve"})}
        return {**record, "kind": "range_test", "metrics": metrics, "extra": extra}

    def summary_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tuner": self.name, "status": self.result.status if self.result else None}
        if self.analysis is None:
            return {**out, "suggestions": None, "chosen": None, "lr": None, "why": "the test has not finished"}
        a = self.analysis
        out.update(a)
        if a["lr_range"]:
            out["lr_min"], out["lr_max"] = a["lr_range"]
        return out


class ValueRangeTuner(Tuner):
    """LRBench's value range test: short runs of the ``fixed`` policy at LRs on a log grid.

    An LR *trains well* when its trial completed with a finite value within ``tolerance``
    (relative, of the best value's magnitude) of the best, and its training loss fell: the mean
    of the last 10 % of the logged losses is at most ``loss_ratio`` times the mean of the first
    5 % (skipped when no losses came back). The answer is the run of neighbouring grid LRs that
    train well around the best one: ``lr_range: [lowest, highest]``.
    """

    name = "value-range"
    version = "1"
    summary = "LRBench value range test: short fixed-LR runs over a log grid, then the range that trains well"
    title = "LR value range test"
    hint = ("Short runs of the fixed policy at LRs on a log grid; the answer is the run of neighbouring LRs "
            "that train well around the best one.")
    uses_space = False
    view = "range-test"
    Summary = ValueRangeSummary

    class Params(Params):
        low: float = param(1e-5, "Lowest LR of the grid.", gt=0, log=True, search=(1e-8, 1e-2))
        high: float = param(1.0, "Highest LR of the grid.", gt=0, log=True, search=(1e-3, 10.0))
        points: int = param(7, "LRs on the grid (geometric).", ge=2, le=100)
        fraction: float = param(0.2, "Steps of each run, as a fraction of the study's steps.", gt=0, le=1)
        tolerance: float = param(0.1, "An LR trains well within this relative distance of the best value.", ge=0)
        loss_ratio: float = param(1.0, "... and when its final training loss is at most this x its first.", gt=0)

    def __init__(self, params: Any = None, space: Any = None, objective: Any = None, budget: Any = None,
                 seed: int = 0) -> None:
        super().__init__(coerce_params(type(self), params), space, objective, budget, seed)
        p = self.params
        if p.low >= p.high:
            raise ValueError(f"value-range: low ({p.low}) must be below high ({p.high})")
        ratio = math.log(p.high / p.low)
        self.lrs = [p.low * math.exp(ratio * i / (p.points - 1)) for i in range(p.points)]
        self.lrs[-1] = p.high
        self.steps = max(1, int(round(p.fraction * self.budget.steps)))
        self.requests: dict[str, TrialRequest] = {}
        self.results: dict[str, TrialResult] = {}

    def ask(self) -> TrialRequest | None:
        if self.done():
            return None
        i = len(self.requests)
        lr = self.lrs[i]
        key = f"v{i:02d}"
        self.requests[key] = TrialRequest(
            key=key, policy={"name": "fixed", "params": {"lr": lr}}, steps=self.steps, family="fixed",
            point={"lr": lr}, tags={"kind": "value_range", "lr": lr, "asked_after_tells": len(self.results)},
        )
        return self.requests[key]

    def done(self) -> bool:
        return len(self.requests) >= len(self.lrs)

    def planned_trials(self) -> int:
        return len(self.lrs)

    def planned_steps(self) -> int:
        return self.steps * len(self.lrs)

    def tell(self, result: TrialResult) -> None:
        if result.key not in self.requests:
            raise KeyError(f"value-range: result for {result.key!r}, which was never asked")
        self.results[result.key] = result

    def _loss_fell(self, result: TrialResult) -> bool | None:
        losses = [float(v) for _, v in sorted(result.losses) if finite(v)]
        if len(losses) < 2:
            return None
        head = losses[: max(1, len(losses) // 20)]
        tail = losses[-max(1, len(losses) // 10):]
        return sum(tail) / len(tail) <= self.params.loss_ratio * (sum(head) / len(head))

    def summary_json(self) -> dict[str, Any]:
        p = self.params
        sign = 1.0 if self.objective.mode == "min" else -1.0
        rows = []
        for i, lr in enumerate(self.lrs):
            res = self.results.get(f"v{i:02d}")
            value = res.value if res is not None and res.status == "completed" and finite(res.value) else None
            rows.append({"lr": lr, "status": res.status if res else "pending", "value": value,
                         "loss_fell": self._loss_fell(res) if res else None, "good": False})
        scored = [r for r in rows if r["value"] is not None]
        out: dict[str, Any] = {"tuner": self.name, "steps_per_trial": self.steps, "lr_range": None, "best_lr": None,
                               "per_lr": rows, "steps_asked": self.steps * len(self.requests)}
        if not scored:
            out["why"] = "no LR completed with a value"
            return out
        best = min(scored, key=lambda r: sign * r["value"])
        margin = p.tolerance * abs(best["value"])
        for r in scored:
            r["good"] = sign * (r["value"] - best["value"]) <= margin and r["loss_fell"] is not False
        i_best = rows.index(best)
        lo = hi = i_best
        while lo > 0 and rows[lo - 1]["good"]:
            lo -= 1
        while hi < len(rows) - 1 and rows[hi + 1]["good"]:
            hi += 1
        out.update(
            best_lr=best["lr"],
            lr_range=[rows[lo]["lr"], rows[hi]["lr"]],
            lr_min=rows[lo]["lr"],
            lr_max=rows[hi]["lr"],
            why=(f"the best {self.objective.metric} ({best['value']:.4g}) was at LR {best['lr']:.3g}; the neighbouring "
                 f"LRs within {p.tolerance:.0%} of it whose training loss fell span {rows[lo]['lr']:.3g} to "
                 f"{rows[hi]['lr']:.3g}"),
        )
        if not best["good"]:
            out["why"] += " (the best LR's own training loss did not fall: the runs may be too short)"
        return out


TUNERS = [RangeTestTuner, ValueRangeTuner]


@hookimpl
def register_tuners(register):
    for cls in TUNERS:
        register(cls)
