"""The ``merge`` study kind: checkpoint merging by Bayesian optimization (Liu et al., arXiv 2403.19390).

Two adjacent checkpoints of one run (same architecture) are averaged,
``theta = lambda * theta_t + (1 - lambda) * theta_(t-1)``, with ``lambda`` in ``[alpha, 1]``
chosen by Gaussian-process Bayesian optimization (Optuna's ``GPSampler``) on the held-out loss.
Each evaluation is a trial of zero training steps whose trial file carries ``merge`` (the trainer
loads both checkpoints, merges, evaluates); the endpoints (lambda = 1 and alpha) and the midpoint
go first and count as evaluations. Optionally a dense grid over ``[alpha, 1]`` is evaluated too
(to see the whole curve, or to check the BO), and the best merge is written as a model folder
(``save_pretrained``) by one last trial.
"""

from __future__ import annotations

from typing import Any, TypedDict

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.tuner import TrialRequest, TrialResult, Tuner
from lrbench_gui.core.tuning.search import coerce_params, finite
from lrbench_gui.hookspecs import hookimpl

__all__ = ["MergeTuner", "MergeSummary"]

#: a lambda this close to one already evaluated is not evaluated again
_SAME = 1e-4
#: within this relative distance of the grid's best, the BO "found" it (the issue's 0.01%)
REACH = 1e-4


class MergeSummary(TypedDict, total=False):
    """``MergeTuner.summary_json()``: the BO's evaluations, the optional grid, the best merge.
    Every point is ``{"lambda", "value", "trial"}`` (``order`` too for the BO's)."""

    tuner: str
    later: str
    earlier: str
    alpha: float
    metric: str
    evaluations: list[dict[str, Any]]
    grid: list[dict[str, Any]]
    best: dict[str, Any] | None  # lambda, value, trial
    endpoints: dict[str, float]  # "later" (lambda 1), "earlier" (lambda 0), when evaluated
    gain_vs_better_endpoint: float | None
    grid_best: dict[str, float]
    bo_vs_grid: float
    evaluations_to_reach_grid: int | None
    model_dir: str | None  # the merged model folder the write trial saved
    warnings: list[str]


class MergeTuner(Tuner):
    name = "merge"
    version = "1"
    summary = "Checkpoint merging: lambda*later + (1-lambda)*earlier, lambda by GP Bayesian optimization"
    title = "Checkpoint merging"
    hint = ("lambda·later + (1−lambda)·earlier, lambda chosen by GP Bayesian optimization on held-out loss. "
            "later and earlier are trainer .safetensors checkpoints of the same model (a trial run with "
            "checkpoints keeps them in its folder; lrbench study merge --trial ID finds them for you).")
    uses_space = False
    #: the LLM miniature's task, as for horizon and path-switch (``--trial`` takes its trial's task)
    study_defaults = {"task": "tinylm-pretrain", "batch_size": 32, "parallel": 2}
    view = "merge"
    Summary = MergeSummary

    @classmethod
    def budget_steps(cls, params: Params) -> int | None:
        """Evaluations train nothing: a merge trial runs zero steps."""
        return 1

    class Params(Params):
        later: str = param("", "The later checkpoint theta_t (a trainer .safetensors file).", unit="file")
        earlier: str = param("", "The earlier checkpoint theta_(t-1), same architecture.", unit="file")
        alpha: float = param(0.0, "Lowest lambda searched (the paper's alpha).", ge=0, lt=1)
        evaluations: int = param(6, "Held-out evaluations the BO may spend, the first points included.", ge=3,
                                 le=200)
        initial: list[float] = param([1.0, 0.0, 0.5], "Lambdas evaluated before the GP takes over (0 means "
                                     "alpha); they count as evaluations.")
        grid: int = param(0, "Also evaluate this many evenly spaced lambdas over [alpha, 1] (0: none).", ge=0,
                          le=401)
        write: bool = param(True, "Write the best merge as a model folder (one more trial, not an evaluation).")

    def __init__(self, params: Any = None, space: Any = None, objective: Any = None, budget: Any = None,
                 seed: int = 0) -> None:
        super().__init__(coerce_params(type(self), params), space, objective, budget, seed)
        p = self.params
        if not p.later or not p.earlier:
            raise ValueError("merge: give the two checkpoints (tuner params later and earlier)")
        if p.later == p.earlier:
            raise ValueError("merge: later and earlier are the same file")
        self.initial = []
        for x in p.initial:
            lam = min(1.0, max(p.alpha, float(x) if x > 0 else p.alpha))
            if all(abs(lam - y) > _SAME for y in self.initial):
                self.initial.append(lam)
        self.initial = self.initial[: p.evaluations]
        self.requests: dict[str, TrialRequest] = {}
        self.results: dict[str, TrialResult] = {}
        self._study: Any = None
        self._trials: dict[str, Any] = {}  # key -> optuna trial
        self._bo_asked = 0
        self._grid = ([p.alpha + (1 - p.alpha) * i / (p.grid - 1) for i in range(p.grid)] if p.grid > 1
                      else ([1.0] if p.grid == 1 else []))
        self._grid_asked = 0
        self._written = False

    def _optuna(self) -> Any:
        if self._study is None:
            import warnings

            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=len(self.initial),
                                                    deterministic_objective=True)
            self._study = optuna.create_study(direction="minimize" if self.objective.mode == "min" else "maximize",
                                              sampler=sampler)
            for lam in self.initial:
                self._study.enqueue_trial({"lambda": lam})
        return self._study

    def _request(self, key: str, lam: float, kind: str, write: bool = False) -> TrialRequest:
        p = self.params
        req = TrialRequest(
            key=key, policy={"name": "fixed", "params": {"lr": 1e-6}}, steps=0, family="merge",
            point={"lambda": lam}, tags={"kind": f"merge_{kind}", "lambda": lam, "asked_after_tells": len(self.results)},
            trial={"merge": {"later": p.later, "earlier": p.earlier, "weight": lam}, "save_model": write},
        )
        self.requests[key] = req
        return req

    def _bo_pending(self) -> bool:
        return any(k not in self.results for k in self._trials)

    def ask(self) -> TrialRequest | None:
        p = self.params
        if self._bo_asked < p.evaluations and (self._bo_asked < len(self.initial) or not self._bo_pending()):
            return self._ask_bo()
        if self._grid_asked < len(self._grid):
            lam = self._grid[self._grid_asked]
            self._grid_asked += 1
            return self._request(f"grid-{self._grid_asked - 1:03d}", lam, "grid")
        if p.write and not self._written and self._bo_finished():
            best = self._best("bo")
            if best is not None:
                self._written = True
                return self._request("write", best[0], "write", write=True)
        return None

    def _ask_bo(self) -> TrialRequest:
        from optuna.distributions import FloatDistribution

        study = self._optuna()
        dist = {"lambda": FloatDistribution(self.params.alpha, 1.0)}
        for _ in range(20):
            trial = study.ask(dist)
            lam = float(trial.params["lambda"])
            seen = self._value_near(lam)
            if seen is None:
                break
            study.tell(trial, seen)  # the GP proposed a lambda it already has: tell it, ask again
        key = f"bo-{self._bo_asked:02d}"
        self._bo_asked += 1
        self._trials[key] = trial
        return self._request(key, lam, "bo")

    def _value_near(self, lam: float) -> float | None:
        for key, req in self.requests.items():
            res = self.results.get(key)
            if key in self._trials and res is not None and finite(res.value) and abs(req.tags["lambda"] - lam) <= _SAME:
                return float(res.value)
        return None

    def tell(self, result: TrialResult) -> None:
        if result.key not in self.requests:
            raise KeyError(f"merge: result for {result.key!r}, which was never asked")
        self.results[result.key] = result
        trial = self._trials.get(result.key)
        if trial is not None:
            import optuna

            if result.status == "completed" and finite(result.value):
                self._optuna().tell(trial, float(result.value))
            else:
                self._optuna().tell(trial, state=optuna.trial.TrialState.FAIL)

    def _bo_finished(self) -> bool:
        return self._bo_asked >= self.params.evaluations and not self._bo_pending()

    def planned_trials(self) -> int:
        """The evaluations, the grid and the written merge (when asked for)."""
        p = self.params
        return max(len(self.requests), p.evaluations + len(self._grid) + (1 if p.write else 0))

    def planned_steps(self) -> int:
        return 0  # a merge trains nothing: progress counts trials

    def done(self) -> bool:
        p = self.params
        if self._grid_asked < len(self._grid) or not self._bo_finished():
            return False
        if p.write and not self._written and self._best("bo") is not None:
            return False
        return len(self.results) == len(self.requests)

    # results

    def _points(self, kind: str) -> list[tuple[float, float, str]]:
        out = []
        for key, req in self.requests.items():
            res = self.results.get(key)
            if req.tags["kind"] == f"merge_{kind}" and res is not None and res.status == "completed" and finite(res.value):
                out.append((float(req.tags["lambda"]), float(res.value), key))
        return out

    def _best(self, kind: str) -> tuple[float, float, str] | None:
        pts = self._points(kind)
        if not pts:
            return None
        sign = 1.0 if self.objective.mode == "min" else -1.0
        return min(pts, key=lambda t: sign * t[1])

    def summary_json(self) -> dict[str, Any]:
        p = self.params
        bo = sorted(self._points("bo"), key=lambda t: t[2])
        grid = sorted(self._points("grid"))
        everything = bo + grid
        out: dict[str, Any] = {
            "tuner": self.name, "later": p.later, "earlier": p.earlier, "alpha": p.alpha,
            "metric": self.objective.metric,
            "evaluations": [{"lambda": lam, "value": v, "trial": k, "order": i} for i, (lam, v, k) in enumerate(bo)],
            "grid": [{"lambda": lam, "value": v, "trial": k} for lam, v, k in grid],
            "best": None, "endpoints": {}, "gain_vs_better_endpoint": None, "model_dir": None, "warnings": [],
        }
        failed = [k for k, r in self.results.items() if r.status != "completed"]
        if failed:
            out["warnings"].append(f"{len(failed)} evaluation(s) did not complete: " + ", ".join(sorted(failed)[:5]))
        best = self._best("bo")
        if best is None:
            return out
        out["best"] = {"lambda": best[0], "value": best[1], "trial": best[2]}
        sign = 1.0 if self.objective.mode == "min" else -1.0
        for name, lam in (("later", 1.0), ("earlier", 0.0)):
            hit = [v for x, v, _ in everything if abs(x - lam) <= _SAME]
            if hit:
                out["endpoints"][name] = hit[0]
        if out["endpoints"]:
            better = min(out["endpoints"].values(), key=lambda v: sign * v)
            out["gain_vs_better_endpoint"] = (better - best[1]) / abs(better) * sign
        if grid:
            g = min(grid, key=lambda t: sign * t[1])
            out["grid_best"] = {"lambda": g[0], "value": g[1]}
            out["bo_vs_grid"] = sign * (best[1] - g[1]) / abs(g[1])
            running = None
            for i, (_, v, _) in enumerate(bo, 1):
                running = v if running is None or sign * v < sign * running else running
                if sign * (running - g[1]) / abs(g[1]) <= REACH:
                    out["evaluations_to_reach_grid"] = i
                    break
            else:
                out["evaluations_to_reach_grid"] = None
        w = self.results.get("write")
        if w is not None and w.status == "completed":
            out["model_dir"] = next((c for c in w.checkpoints if not c.endswith(".safetensors")), None)
        return out


@hookimpl
def register_tuners(register):
    register(MergeTuner)
