"""The public bases of tuners: :class:`SearchTuner` (search a policy space) and
:class:`PlannedTuner` (plan trials of one's own). Every built-in tuner but ``merge`` and the two LR
tests derives from one of them, and a third-party tuner should too: the bookkeeping a study's
resume relies on (unique keys, the ``asked_after_tells`` tag, refusing a result never asked for)
is here, once. Both are exported by :mod:`lrbench_gui.api`; docs/plugins.md shows a complete
subclass.

Scoring: a result counts when its status is ``completed`` and its value is finite. Every other
result (diverged, failed, stopped by the user, pruned, no value) ranks below every counted one.
Each tuner decides what else it does with such a result (``bayes`` tells Optuna a penalty).

Names: the methods without an underscore are for anyone (the study calls ``ask``, ``tell``,
``done``, ``report``, ``summary_json``; a subclass or a view may read ``requests``, ``results``,
``score``, ``ranked``, ``best_key``, ``running``); those with one underscore (``_request``,
``_told``, ``_counts``, ``_plan``, ``_trial_json``) are the subclass API: call or override them
in a subclass, never from outside it.
"""

from __future__ import annotations

import math
from typing import Any

from lrbench_gui.core.params import Params, validate_params
from lrbench_gui.core.tuning.space import SearchSpace, as_space
from lrbench_gui.core.tuner import Objective, StudyBudget, TrialRequest, TrialResult, Tuner

__all__ = ["SearchTuner", "PlannedTuner", "coerce_params", "finite"]


def finite(value: Any) -> bool:
    """Whether ``value`` is a real, finite number (not a bool, None, NaN or an infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def coerce_params(cls: type[Tuner], params: Any) -> Params:
    """A tuner's parameters from an instance, a dict (validated) or None (the defaults)."""
    if params is None:
        return cls.Params()
    if isinstance(params, dict):
        return validate_params(cls.Params, params, where=f"tuner {cls.name}")
    return params


class SearchTuner(Tuner):
    """Base of the tuners that search a :class:`SearchSpace` (grid, random, bayes, halving).

    A subclass implements :meth:`ask` (build each request with :meth:`_request`, under a key that
    follows only from the seed and the results told so far, such as a counter: ``f"g{i:04d}"``)
    and :meth:`done`; it may override :meth:`_told` (react to a result), :meth:`_counts` (which
    results compete for the best) and :meth:`summary_json` (add to the summary). :meth:`tell`
    is done here: it refuses a key never asked or told twice, records the result, sets
    :attr:`target_reached`, then calls :meth:`_told`.

    Attributes (read them, do not replace them):

    * ``space``: the :class:`SearchSpace` (the study passes one; ``None`` is refused);
    * ``requests``: key -> :class:`TrialRequest`, in asking order;
    * ``results``: key -> :class:`TrialResult`, in telling order;
    * ``target_reached``: a counted result reached ``objective.target`` (a tuner usually stops
      asking then: ``done()`` returns ``... or self.target_reached``);
    * and those of :class:`Tuner`: ``params`` (the validated ``Params``), ``objective``,
      ``budget`` (``steps`` of one full trial, ``trials`` the study may run), ``seed``.
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

    def _request(self, key: str, family: str, point: dict[str, Any], steps: int, **tags: Any) -> TrialRequest:
        """Record and return the request of ``point`` of ``family`` for a run of ``steps`` steps
        (its spec is ``space.build(family, point, steps)``). ``tags`` go to the request (and the
        trial's record), with ``asked_after_tells``: how many results had been told when it was
        asked, which lets a resumed study replay parallel trials in their original interleaving.
        A key asked twice is a bug: RuntimeError."""
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
        """Keys asked and not told yet, in asking order."""
        return [k for k in self.requests if k not in self.results]

    def tell(self, result: TrialResult) -> None:
        """Record ``result``: KeyError for a key never asked, ValueError for one told twice."""
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
        """Hook: ``result`` was just recorded in :attr:`results` (default: nothing)."""

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
        """The key of the best counted result (see :meth:`_counts`), or None."""
        pool = [k for k in self.results if self._counts(k) and self.score(self.results[k]) is not None]
        return self.ranked(pool)[0] if pool else None

    def _trial_json(self, key: str) -> dict[str, Any]:
        """One trial for the summary: key, family, point, policy, steps, status and value."""
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
        """The search's summary: the tuner, the objective, the ``best`` trial, trials asked and
        told, their statuses, steps asked and run, ``full_trial_equivalents`` and whether the
        target was reached. Subclasses add their own keys to it."""
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
    ``path-switch``; set ``uses_space = False`` on such a kind so the study passes no space).

    A subclass appends :class:`TrialRequest` objects to :attr:`queue` (in ``__init__`` for the
    initial plan) and overrides :meth:`_plan` to queue more from the results told so far; the
    plan must be a deterministic function of :attr:`results`, so a resumed study gets the same
    keys. :meth:`ask` pops the queue (planning first when it is empty, or always with
    :attr:`plan_eagerly`) and tags each request with ``asked_after_tells``; :meth:`tell` records
    a result (KeyError for a key never asked); the tuner is :meth:`done` when everything asked was
    told and the plan adds nothing. ``requests`` and ``results`` are as on :class:`SearchTuner`.
    """

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
        """The next queued request, or None while the plan waits for results."""
        if self.plan_eagerly or not self.queue:
            self._plan()
        if not self.queue:
            return None
        req = self.queue.pop(0)
        req.tags["asked_after_tells"] = len(self.results)
        self.requests[req.key] = req
        return req

    def tell(self, result: TrialResult) -> None:
        """Record ``result``; KeyError for a key never asked."""
        if result.key not in self.requests:
            raise KeyError(f"{self.name}: result for {result.key!r}, which was never asked")
        self.results[result.key] = result

    def planned_trials(self) -> int | None:
        """The trials asked and queued so far (a subclass whose plan grows adds what it expects)."""
        return len(self.requests) + len(self.queue)

    def planned_steps(self) -> int | None:
        return sum(r.steps for r in self.requests.values()) + sum(r.steps for r in self.queue)

    def done(self) -> bool:
        """Everything asked was told, and :meth:`_plan` queues nothing more."""
        if self.queue or len(self.results) < len(self.requests):
            return False
        self._plan()
        return not self.queue
