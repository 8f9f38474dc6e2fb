"""The built-in search tuners: grid, random, bayes (Optuna) and halving (successive halving /
ASHA), and ``lrsearch`` (:mod:`lrbench_builtins.tuners.lr_model`), registered with them. The two
LR tests (range-test, value-range) are in :mod:`lrbench_builtins.tuners.range_test`.

Every tuner follows :mod:`lrbench_gui.core.tuner`: the study asks, runs, reports and tells; a
tuner never runs anything. Keys are stable (``g0003``, ``r0012``, ``b0007``, ``h012.r1``) and,
given the seed and the same tells in the same order, so are the requests. docs/tuning.md
describes each one.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from typing import Any, Literal

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.tuner import TrialRequest, TrialResult
from lrbench_gui.core.tuning.search import SearchTuner, finite
from lrbench_gui.hookspecs import hookimpl
from lrbench_builtins.tuners.lr_model import LRModelTuner

__all__ = ["GridTuner", "RandomTuner", "BayesTuner", "HalvingTuner", "LRModelTuner", "TUNERS", "auto_startup"]


def _trials(requested: int, budget_trials: int) -> int:
    return requested if requested > 0 else max(1, budget_trials)


def auto_startup(trials: int, families: int) -> int:
    """``bayes``' default count of random start-up trials: one per family but at most half of
    the trials, or a quarter of the trials (at most 10) when that is more; never all of them
    (6 trials over 4 families: 3 random, 3 from the model; 40 trials: 10)."""
    startup = max(min(families, trials // 2), min(10, trials // 4), 1)
    return max(1, min(startup, trials - 1)) if trials > 1 else 1


class GridTuner(SearchTuner):
    name = "grid"
    version = "1"
    summary = "Every family x a grid of each dimension (log-spaced for LRs), each at the full budget"
    title = "Grid search"
    hint = "Every policy family times a grid of each searched parameter, every trial at the full budget."

    class Params(Params):
        points: int = param(5, "Grid points per dimension (geometric for log-scale ones); a choice uses all its values.", ge=1, le=50)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for family in self.space.families:
            for point in family.grid(self.params.points):
                # the same spec twice (a cyclic pair sorted into one already there) runs once
                spec = json.dumps(family.build(point, self.budget.steps), sort_keys=True)
                if spec not in seen:
                    seen.add(spec)
                    self.plan.append((family.name, point))
        self._next = 0

    def ask(self) -> TrialRequest | None:
        if self.done():
            return None
        family, point = self.plan[self._next]
        key = f"g{self._next:04d}"
        self._next += 1
        return self._request(key, family, point, self.budget.steps)

    def done(self) -> bool:
        return self._next >= len(self.plan) or self.target_reached

    def planned_trials(self) -> int:
        return self._next if self.target_reached else len(self.plan)

    def summary_json(self) -> dict[str, Any]:
        return {**super().summary_json(), "grid_size": len(self.plan), "points": self.params.points}


class RandomTuner(SearchTuner):
    name = "random"
    version = "1"
    summary = "Random points (log-uniform for LRs) across the families, each at the full budget"
    title = "Random search"
    hint = "Random points across the families (log-uniform for LRs), every trial at the full budget."

    class Params(Params):
        trials: int = param(0, "Trials to run; 0: the study's trial budget.", ge=0, le=100_000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n = _trials(self.params.trials, self.budget.trials)
        self._rng = random.Random(self.seed)
        self._next = 0

    def ask(self) -> TrialRequest | None:
        if self.done():
            return None
        family = self._rng.choice(self.space.families)
        point = family.sample(self._rng)
        key = f"r{self._next:04d}"
        self._next += 1
        return self._request(key, family.name, point, self.budget.steps)

    def done(self) -> bool:
        return self._next >= self.n or self.target_reached

    def planned_trials(self) -> int:
        return self._next if self.target_reached else self.n


class BayesTuner(SearchTuner):
    """Optuna's ask/tell, with the family as a categorical. A dimension that has the same name
    and range in every family that has it (``lr`` of cosine and of fixed) is one Optuna parameter,
    so the model learns where good LRs lie from every family's trials (optimal peak LRs of
    different schedules are rarely far apart); other dimensions are ``<family>:<dim>``,
    conditional on the family (TPE is multivariate and grouped for that). The random start
    visits the families in turn.

    What Optuna is told: a completed trial's value; a diverged trial (or one that completed
    without a finite value) a penalty, the worst value told so far plus the spread between the
    best and the worst (so a too-high LR teaches TPE where not to go), or a failure while no
    finite value exists yet; a trial stopped by :meth:`report` (or told ``pruned``) is pruned; a
    failed trial (a crash) or one the user stopped is a failure, which Optuna ignores.
    """

    name = "bayes"
    version = "1"
    summary = "Bayesian optimization with Optuna (TPE or GP), optionally pruning by intermediate values"
    title = "Bayesian optimization"
    hint = "Optuna's TPE (or GP) sampler over the families and their parameters; median pruning optional."

    class Params(Params):
        trials: int = param(0, "Trials to run; 0: the study's trial budget.", ge=0, le=100_000)
        sampler: Literal["tpe", "gp"] = param("tpe", "tpe: Optuna's TPESampler (multivariate, grouped); gp: its GPSampler.")
        startup_trials: int = param(
            0, "Random trials before the model is used (visiting the families in turn); 0: one per family "
            "but at most half of the trials, or a quarter of the trials (at most 10) when that is more; "
            "the model always gets at least one trial.", ge=0, le=1000)
        pruner: Literal["none", "median"] = param(
            "none",
            "median: stop a trial whose intermediate value is worse than the median of earlier trials at "
            "the same step. Off by default: a decaying schedule looks worse mid-run than it ends.",
        )
        prune_after: float = param(0.25, "Never prune before this fraction of a trial's steps.", ge=0, le=1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        p = self.params
        self.n = _trials(p.trials, self.budget.trials)
        families = len(self.space.families)
        self.startup = startup = min(p.startup_trials, self.n) if p.startup_trials else auto_startup(self.n, families)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if p.sampler == "gp":
                sampler = optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=startup,
                                                    warn_independent_sampling=False)
            else:
                sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=startup,
                                                     multivariate=True, group=True)
        if p.pruner == "median":
            pruner = optuna.pruners.MedianPruner(
                n_startup_trials=5, n_warmup_steps=int(p.prune_after * self.budget.steps)
            )
        else:
            pruner = optuna.pruners.NopPruner()
        direction = "minimize" if self.objective.mode == "min" else "maximize"
        self.study = optuna.create_study(sampler=sampler, pruner=pruner, direction=direction)
        self._trials: dict[str, Any] = {}
        self._reported: dict[str, set[int]] = {}
        self._pruned: set[str] = set()
        self._names = self._param_names()
        if families > 1:  # the random start visits the families in turn, so TPE sees each of them
            for i in range(startup):
                self.study.enqueue_trial({"family": self.space.families[i % families].name})

    def _param_names(self) -> dict[tuple[str, str], str]:
        """Optuna's name of each (family, dimension): the dimension's own name when every family
        that has it gives it the same range, else ``family:dim``."""
        forms: dict[str, set[str]] = {}
        for f in self.space.families:
            for d in f.dims:
                forms.setdefault(d.name, set()).add(json.dumps(d.to_json(), sort_keys=True))
        return {
            (f.name, d.name): d.name if len(forms[d.name]) == 1 else f"{f.name}:{d.name}"
            for f in self.space.families for d in f.dims
        }

    def ask(self) -> TrialRequest | None:
        if self.done():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", self._optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask()
            families = self.space.names
            family = trial.suggest_categorical("family", families) if len(families) > 1 else families[0]
            point: dict[str, Any] = {}
            for d in self.space.family(family).dims:
                name = self._names[(family, d.name)]
                if d.kind == "choice":
                    point[d.name] = trial.suggest_categorical(name, list(d.choices))
                elif d.kind == "int":
                    point[d.name] = trial.suggest_int(name, int(d.low), int(d.high), log=d.log)
                else:
                    point[d.name] = trial.suggest_float(name, d.low, d.high, log=d.log)
        key = f"b{trial.number:04d}"
        self._trials[key] = trial
        self._reported[key] = set()
        return self._request(key, family, point, self.budget.steps)

    def done(self) -> bool:
        return len(self.requests) >= self.n or self.target_reached

    def planned_trials(self) -> int:
        return len(self.requests) if self.target_reached else self.n

    def report(self, key: str, step: int, value: float) -> bool:
        trial = self._trials.get(key)
        if trial is None or key in self.results or self.params.pruner == "none":
            return True
        if not finite(value) or step in self._reported[key]:
            return True  # a non-finite loss is the trainer's to call diverged
        self._reported[key].add(int(step))
        trial.report(float(value), int(step))
        if trial.should_prune():
            self._pruned.add(key)
            return False
        return True

    def _penalty(self) -> float | None:
        values = [t.value for t in self.study.get_trials(deepcopy=False)
                  if t.state == self._optuna.trial.TrialState.COMPLETE and t.value is not None]
        if not values:
            return None
        best, worst = (min(values), max(values)) if self.objective.mode == "min" else (max(values), min(values))
        spread = abs(worst - best) or abs(worst) * 0.1 or 1.0
        return worst + spread if self.objective.mode == "min" else worst - spread

    def _told(self, result: TrialResult) -> None:
        TrialState = self._optuna.trial.TrialState
        trial = self._trials[result.key]
        if self.params.pruner != "none":  # a replayed trial: give the pruner its curve
            for step, value in result.evals:
                if finite(value) and int(step) not in self._reported[result.key]:
                    self._reported[result.key].add(int(step))
                    trial.report(float(value), int(step))
        if result.key in self._pruned or result.status == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        elif result.status == "completed" and finite(result.value):
            self.study.tell(trial, float(result.value))
        elif result.status in ("diverged", "completed") and (penalty := self._penalty()) is not None:
            trial.set_user_attr("penalty", True)
            self.study.tell(trial, penalty)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def summary_json(self) -> dict[str, Any]:
        return {**super().summary_json(), "sampler": self.params.sampler, "pruned": len(self._pruned),
                "startup_trials": self.startup}


class HalvingTuner(SearchTuner):
    """Successive halving, asynchronous by default (ASHA, Li et al. 2020).

    ``n`` configurations start on the bottom rung. Rung ``r`` runs ``steps * min_fraction *
    eta**r`` steps (the top rung the study's full ``steps``). A policy's curve depends on its run
    length, so a rung's trial is a fresh run of that many steps with the schedule fitted to it
    (derived parameters follow the length), not a continuation of the rung below.

    async: ``ask`` promotes a configuration to the next rung as soon as it is in the top
    ``1/eta`` of the results at its rung, else starts a new bottom-rung configuration, else
    returns None. Once a rung can receive no more results, its final top ``1/eta`` (at least one)
    is promoted too, so the synchronous survivors always run on. sync: a rung is promoted only
    when it is complete.
    """

    name = "halving"
    version = "1"
    summary = "Successive halving / ASHA: many short runs, the best 1/eta re-run at eta times the budget"
    title = "Successive halving (ASHA)"
    hint = "Many short runs; the best 1/eta of each rung run again eta times longer, up to the full budget."

    class Params(Params):
        n: int = param(0, "Configurations on the bottom rung; 0: as many as cost about the study's trial budget.", ge=0, le=100_000)
        eta: int = param(3, "Keep the top 1/eta of a rung; the next rung runs eta times longer.", ge=2, le=10)
        min_fraction: float = param(1 / 9, "Budget of the bottom rung, as a fraction of the study's steps.", gt=0, le=1)
        sampler: Literal["random", "grid"] = param("random", "How the configurations are drawn.")
        points: int = param(5, "Grid points per dimension (sampler: grid).", ge=1, le=50)
        mode: Literal["async", "sync"] = param("async", "async (ASHA): promote as soon as possible; sync: rung by rung.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        steps = self.budget.steps
        top = max(0, int(math.floor(math.log(1.0 / p.min_fraction) / math.log(p.eta) + 1e-9)))
        budgets: list[int] = []
        for r in range(top + 1):
            b = steps if r == top else max(1, int(round(steps * p.min_fraction * p.eta**r)))
            if budgets and b <= budgets[-1]:
                continue
            budgets.append(min(b, steps))
        if budgets[-1] != steps:
            budgets.append(steps)
        self.rung_steps = budgets
        cost_per_config = sum(b / steps * p.eta ** (-r) for r, b in enumerate(budgets))
        rng = random.Random(self.seed)
        if p.sampler == "grid":
            configs = [(f.name, pt) for f in self.space.families for pt in f.grid(p.points)]
            if p.n:
                configs = configs[: p.n]
        else:
            n = p.n or max(p.eta, int(self.budget.trials / cost_per_config))
            configs = []
            for _ in range(n):
                family = rng.choice(self.space.families)
                configs.append((family.name, family.sample(rng)))
        self.configs = configs
        self._next = 0
        self._by_rung: list[dict[int, str]] = [{} for _ in budgets]  # rung -> config -> key
        self._promoted: list[set[int]] = [set() for _ in budgets]
        # the study's trial budget caps the steps asked (at least one configuration's climb)
        self.cap_steps = max(self.budget.trials * steps, sum(budgets))
        self._asked_steps = 0

    def _key(self, config: int, rung: int) -> str:
        return f"h{config:03d}.r{rung}"

    def _fits(self, rung: int) -> bool:
        """Whether a trial at ``rung`` fits in the cap, keeping room for one climb to the top rung
        until a top-rung trial was asked (so the answer is a full-budget run)."""
        top = len(self.rung_steps) - 1
        reserve = 0 if self._by_rung[top] or rung == top else sum(self.rung_steps[rung + 1:])
        return self._asked_steps + self.rung_steps[rung] + reserve <= self.cap_steps

    def _can_start(self) -> bool:
        """Whether a new bottom-rung configuration can still be started."""
        return self._next < len(self.configs) and self._fits(0)

    def _ask(self, config: int, rung: int) -> TrialRequest:
        family, point = self.configs[config]
        self._by_rung[rung][config] = self._key(config, rung)
        steps = self.rung_steps[rung]
        self._asked_steps += steps
        return self._request(self._key(config, rung), family, point, steps,
                             rung=rung, config=config, rung_steps=steps, budget_fraction=steps / self.budget.steps)

    def _complete(self, rung: int) -> bool:
        """Whether ``rung`` can receive no more results."""
        keys = self._by_rung[rung].values()
        if any(k not in self.results for k in keys):
            return False
        if rung == 0:
            return not self._can_start()
        return self._complete(rung - 1) and self._candidate(rung - 1) is None

    def _candidate(self, rung: int) -> int | None:
        """The best configuration of ``rung`` due for promotion, if any."""
        if rung >= len(self.rung_steps) - 1:
            return None
        told = {c: k for c, k in self._by_rung[rung].items() if k in self.results}
        complete = self._complete(rung)
        if self.params.mode == "sync" and not complete:
            return None
        quota = len(told) // self.params.eta
        if complete and told:
            quota = max(1, quota)
        ranked = self.ranked(list(told.values()))[:quota]
        if not self._fits(rung + 1):
            return None
        for key in ranked:
            config = next(c for c, k in told.items() if k == key)
            if config not in self._promoted[rung] and self.score(self.results[key]) is not None:
                return config
        return None

    def ask(self) -> TrialRequest | None:
        if self.target_reached:
            return None
        for rung in range(len(self.rung_steps) - 2, -1, -1):
            config = self._candidate(rung)
            if config is not None:
                self._promoted[rung].add(config)
                return self._ask(config, rung + 1)
        if self._can_start():
            self._next += 1
            return self._ask(self._next - 1, 0)
        return None

    def done(self) -> bool:
        if self.target_reached:
            return True
        if self._can_start() or self.running():
            return False
        return all(self._candidate(r) is None for r in range(len(self.rung_steps) - 1))

    def _counts(self, key: str) -> bool:
        return int(self.requests[key].tags["rung"]) == len(self.rung_steps) - 1

    def _rung_plan(self) -> list[int]:
        """Trials expected on each rung: the configurations on the bottom one, then the top
        ``1/eta`` of the rung below (at least one), or more where more were promoted already."""
        counts = [len(self.configs)]
        for r in range(1, len(self.rung_steps)):
            counts.append(max(len(self._by_rung[r]), 1 if counts[-1] else 0, counts[-1] // self.params.eta))
        return counts

    def planned_trials(self) -> int:
        if self.target_reached or self.done():
            return len(self.requests)
        return sum(self._rung_plan())

    def planned_steps(self) -> int:
        if self.target_reached or self.done():
            return sum(r.steps for r in self.requests.values())
        return sum(n * s for n, s in zip(self._rung_plan(), self.rung_steps))

    def summary_json(self) -> dict[str, Any]:
        out = super().summary_json()
        top = len(self.rung_steps) - 1
        if out["best"] is None:  # nothing finished the top rung: the best of the highest rung reached
            for rung in range(top, -1, -1):
                pool = [k for k in self._by_rung[rung].values() if self.score(self.results.get(k)) is not None]
                if pool:
                    out["best"] = {**self._trial_json(self.ranked(pool)[0]), "partial": True}
                    break
        full = len(self.configs) * self.budget.steps
        out.update(
            rungs=[
                {"rung": r, "steps": s, "trials": len(self._by_rung[r]),
                 "told": sum(1 for k in self._by_rung[r].values() if k in self.results),
                 "promoted": len(self._promoted[r]) if r < top else 0}
                for r, s in enumerate(self.rung_steps)
            ],
            configs=len(self.configs),
            eta=self.params.eta,
            grid_equivalent_steps=full,
            cap_steps=self.cap_steps,
            fraction_of_grid=out["steps_asked"] / max(1, full),
        )
        return out


TUNERS = [GridTuner, RandomTuner, BayesTuner, HalvingTuner, LRModelTuner]


@hookimpl
def register_tuners(register):
    for cls in TUNERS:
        register(cls)
