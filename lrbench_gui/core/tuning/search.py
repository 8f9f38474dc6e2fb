"""What the built-in search tuners share: bookkeeping of asked and told trials, scoring, the best
trial and the compute spent, and the summary every search tuner writes.

Scoring: a result counts when its status is ``completed`` and its value is finite. Every other
result (diverged, failed, stopped by the user, pruned, no value) ranks below every counted one.
Each tuner decides what else it does with such a result (``bayes`` tells Optuna a penalty).
"""

from __future__ import annotations

import math
from typing import Any

from lrbench_gui.core.params import Params, validate_params
from lrbench_gui.core.tuning.space import SearchSpace, as_space
from lrbench_gui.core.tuner import Objective, StudyBudget, TrialRequest, TrialResult, Tuner

__all__ = ["SearchTuner", "PlannedTuner", "coerce_params", "finite"]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def coerce_params(cls: type[Tuner], params: Any) -> Params:
    """A tuner's parameters from an instance, a dict (validated) or None (the defaults)."""
    if params is None:
        return cls.Params()
    if isinstance(params, dict):
        return validate_params(cls.Params, params, where=f"tuner {cls.name}")
    return params


class SearchTuner(Tuner):
    """Base of the tuners that search a :class:`SearchSpace`.

    Subclasses call :meth:`_request` to make a request (it records the request and adds the tag
    ``asked_after_tells``: how many results had been told when it was asked, which lets a study
    replay parallel trials in their original interleaving) and may override :meth:`_counts` to
    say which results compete for "best" (halving: only full-budget ones).
    """

    def __init__(self, params: Any, space: Any, objective: Objective | None = None,
                 budget: StudyBudget | None = None, seed: int = 0) -> None:
        super().__init__(coerce_params(type(self), params), None, objective, budget, seed)
        if space is None:
            raise ValueError(f"tuner {self.name} needs a search space")
        self.space: SearchSpace = as_space(space)
        self.requests: dict[str, TrialRequest] = {}
        self.results: dict[str, TrialResult] = {}
        self.target_reached = False

    # bookkeeping

    def _request(self, key: str, family: str, point: dict[str, Any], steps: int, **tags: Any) -> TrialRequest:
        if key in self.requests:
            raise RuntimeError(f"{self.name}: key {key!r} asked twice")
        request = TrialRequest(
            key=key,
            policy=self.space.build(family, point, steps),
            steps=int(steps),
            family=family,
            point=dict(point),
            tags={**tags, "asked_after_tells": len(self.results)},
        )
        self.requests[key] = request
        return request

    def running(self) -> list[str]:
        return [k for k in self.requests if k not in self.results]

    def tell(self, result: TrialResult) -> None:
        if result.key not in self.requests:
            raise KeyError(f"{self.name}: result for {result.key!r}, which was never asked")
        if result.key in self.results:
            raise ValueError(f"{self.name}: result for {result.key!r} told twice")
        self.results[result.key] = result
        value = self.score(result)
        if value is not None and self._counts(result.key) and self.objective.reached(result.value):
            self.target_reached = True
        self._told(result)

    def _told(self, result: TrialResult) -> None:
        """Hook: a result was recorded."""

    def _counts(self, key: str) -> bool:
        """Whether the result of ``key`` competes for the best trial (a full-budget one)."""
        return True

    def score(self, result: TrialResult | None) -> float | None:
        """The result's value oriented so that lower is better; None if it does not count."""
        if result is None or result.status != "completed" or not finite(result.value):
            return None
        return float(result.value) if self.objective.mode == "min" else -float(result.value)

    def ranked(self, keys: list[str]) -> list[str]:
        """``keys`` best first: counted results by score, then the rest in asking order."""
        order = {k: i for i, k in enumerate(self.requests)}

        def key(k: str) -> tuple:
            s = self.score(self.results.get(k))
            return (s is None, s if s is not None else 0.0, order.get(k, 0))

        return sorted(keys, key=key)

    def best_key(self) -> str | None:
        pool = [k for k in self.results if self._counts(k) and self.score(self.results[k]) is not None]
        return self.ranked(pool)[0] if pool else None

    # summary

    def _trial_json(self, key: str) -> dict[str, Any]:
        req, res = self.requests[key], self.results.get(key)
        return {
            "key": key,
            "family": req.family,
            "point": req.point,
            "policy": req.policy,
            "steps": req.steps,
            "status": res.status if res else "running",
            "value": res.value if res else None,
        }

    def summary_json(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for r in self.results.values():
            statuses[r.status] = statuses.get(r.status, 0) + 1
        asked = sum(r.steps for r in self.requests.values())
        run = 0.0
        for k, r in self.results.items():
            steps = r.cost.get("steps") if r.cost else None
            run += float(steps) if finite(steps) else self.requests[k].steps
        best = self.best_key()
        return {
            "tuner": self.name,
            "objective": {"metric": self.objective.metric, "mode": self.objective.mode, "target": self.objective.target},
            "best": self._trial_json(best) if best else None,
            "trials_asked": len(self.requests),
            "trials_told": len(self.results),
            "statuses": statuses,
            "steps_asked": asked,
            "steps_run": run,
            "full_trial_equivalents": asked / max(1, self.budget.steps),
            "target_reached": self.target_reached,
        }


class PlannedTuner(Tuner):
    """Base of the tuners that plan their trials rather than search a space (``horizon``,
    ``path-switch``): requests wait in ``queue``; :meth:`_plan` may add more from what has been
    told (it must be deterministic, for resume); the tuner is done when everything asked was told
    and the plan adds nothing."""

    def __init__(self, params: Any = None, space: Any = None, objective: Objective | None = None,
                 budget: StudyBudget | None = None, seed: int = 0) -> None:
        super().__init__(coerce_params(type(self), params), space, objective, budget, seed)
        self.requests: dict[str, TrialRequest] = {}
        self.results: dict[str, TrialResult] = {}
        self.queue: list[TrialRequest] = []

    #: plan before every ask (True), or only when the queue is empty (False: planned requests wait
    #: for the initial ones)
    plan_eagerly = False

    def _plan(self) -> None:
        """Queue the requests that the results told so far make possible (default: none)."""

    def ask(self) -> TrialRequest | None:
        if self.plan_eagerly or not self.queue:
            self._plan()
        if not self.queue:
            return None
        req = self.queue.pop(0)
        req.tags["asked_after_tells"] = len(self.results)
        self.requests[req.key] = req
        return req

    def tell(self, result: TrialResult) -> None:
        if result.key not in self.requests:
            raise KeyError(f"{self.name}: result for {result.key!r}, which was never asked")
        self.results[result.key] = result

    def done(self) -> bool:
        if self.queue or len(self.results) < len(self.requests):
            return False
        self._plan()
        return not self.queue
