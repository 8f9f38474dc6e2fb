"""The ``horizon`` study kind: LR transfer across token horizons (Bjorck et al., arXiv 2409.19913).

Sweeps a grid of peak LRs at several short horizons (training lengths), with several seeds,
fits loss against ln(LR) per horizon to find ``LR*(D)``, fits ``LR*(D) = B * D**(-beta)`` across
horizons and predicts the LR of a longer run. The grid is widened where a horizon's best LR sits
at an end of it (the optimum must be bracketed). With ``check``, the longest horizon is held
out: the law is fitted on the shorter ones, and its prediction is run at the longest one beside
that horizon's own sweep, which says whether the law holds on this task. The fits are in
:mod:`lrbench_gui.core.tuning.horizon_fit`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypedDict

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.tuner import TrialRequest
from lrbench_gui.core.tuning.horizon_fit import PAPER_BETA, bootstrap_power_law, lr_optimum, zero_overhead
from lrbench_gui.core.tuning.search import PlannedTuner, finite
from lrbench_gui.hookspecs import hookimpl

__all__ = ["HorizonTuner", "HorizonSummary", "LM_OPTIMIZER"]

#: AdamW as the LLM papers (and ../shared/MINIATURES.md) train: betas 0.9/0.95, weight decay 0.1
LM_OPTIMIZER = {"weight_decay": 0.1, "betas": [0.9, 0.95]}


class HorizonRow(TypedDict, total=False):
    """One horizon of the summary: its sweep (seed means per LR) and its optimum
    (:class:`~lrbench_gui.core.tuning.horizon_fit.LROptimum` fields)."""

    steps: int
    tokens: float  # the horizon D, as the trials counted it
    lrs: list[float]
    loss_mean: list[float | None]  # None: a seed diverged or failed at that LR
    loss_sd: list[float | None]
    seeds: list[int]
    diverged: list[int]
    widened: dict[str, int]  # {"low", "high"}: LRs added beyond each end
    best_lr: float | None
    best_loss: float | None
    lr_star: float | None
    loss_at_star: float | None
    method: str  # quadratic | grid | none
    bracketed: bool
    edge: str | None
    coef: list[float] | None  # the quadratic in ln LR
    fit_lrs: list[float]


class HorizonSummary(TypedDict, total=False):
    """``HorizonTuner.summary_json()``: per-horizon optima, the power law, the predictions."""

    tuner: str
    policy: str
    seeds: int
    horizons: list[HorizonRow]
    power_law: dict[str, Any] | None  # B, beta, beta_band, band_method, points, horizons...
    power_law_all: dict[str, Any]  # with check: the law over every horizon, held-out one included
    target: dict[str, Any] | None  # steps, tokens, lr, band, zero_overhead_lr
    zero_overhead: dict[str, Any] | None  # beta, from_steps, from_tokens, B
    holdout: dict[str, Any] | None  # steps, predicted_lr, measured_lr_star, ratio, loss_gap...
    warnings: list[str]


def _lr_key(lr: float) -> str:
    return f"{lr:.4g}"


class HorizonTuner(PlannedTuner):
    """Grid sweeps at several horizons, the per-horizon optimum, the power law, the prediction."""

    name = "horizon"
    version = "1"
    summary = "Token-horizon LR transfer: sweeps at short horizons, LR*(D) = B*D^-beta, the LR for a long run"
    title = "Token-horizon LR transfer"
    hint = ("Sweeps the peak LR at each horizon, fits LR*(D) = B·D^-beta and predicts the LR of a longer run. "
            "check holds out the longest horizon to test the prediction.")
    uses_space = False
    study_defaults = {"task": "tinylm-pretrain", "batch_size": 8, "optimizer": LM_OPTIMIZER, "parallel": 2}
    view = "horizon"
    Summary = HorizonSummary

    class Params(Params):
        horizons: list[int] = param([448, 896, 1792], "Training lengths swept, in optimizer steps (each "
                                    "trial's tokens are counted and used as its horizon D).")
        lr_min: float = param(3.5e-3, "Lowest LR of the grid.", gt=0, log=True)
        lr_max: float = param(2.8e-2, "Highest LR of the grid.", gt=0, log=True)
        points: int = param(7, "LRs on the grid (geometric from lr_min to lr_max).", ge=3, le=40)
        seeds: int = param(2, "Seeds per LR and horizon; fits use the seed means.", ge=1, le=32)
        widen: int = param(2, "LRs the grid may add beyond an end, per horizon and side, when the best LR is "
                           "at that end.", ge=0, le=10)
        policy: Literal["cosine", "linear", "constant_warmup"] = param(
            "cosine", "Schedule of every trial (peak LR swept): cosine or linear decay to min_lr_ratio x LR.")
        warmup: float = param(0.05, "Warmup, as a fraction of each trial's steps (when warmup_steps is 0).", ge=0,
                              lt=1)
        warmup_steps: int = param(0, "Warmup in steps, the same at every horizon (0: the fraction warmup); "
                                  "a fraction gives the shortest runs too short a warmup for high LRs.", ge=0,
                                  unit="steps")
        min_lr_ratio: float = param(0.1, "The decay's final LR as a fraction of the peak.", ge=0, lt=1)
        window: int = param(5, "Grid points (around the best) the quadratic fit uses.", ge=3, le=15)
        target_steps: int = param(0, "A longer run to predict the LR for (steps; 0: none, only the fit).", ge=0,
                                  unit="steps")
        check: bool = param(False, "Hold out the longest horizon: fit on the others, run the predicted LR at the "
                            "longest with every seed, and compare with its sweep.")
        beta_fixed: float = param(PAPER_BETA, "Exponent of the zero-overhead rule (the paper's 0.32).", ge=0, le=2)

    @classmethod
    def budget_steps(cls, params: Params) -> int | None:
        """The longest horizon: the study's longest trial."""
        return max(params.horizons or [1])

    def __init__(self, params: Any = None, space: Any = None, objective: Any = None, budget: Any = None,
                 seed: int = 0) -> None:
        super().__init__(params, space, objective, budget, seed)
        p = self.params
        if p.lr_min >= p.lr_max:
            raise ValueError(f"horizon: lr_min ({p.lr_min}) must be below lr_max ({p.lr_max})")
        if len(set(p.horizons)) < 2 or min(p.horizons) < 1:
            raise ValueError("horizon: give at least two different horizons (steps >= 1)")
        if p.check and len(set(p.horizons)) < 3:
            raise ValueError("horizon: check holds out the longest horizon, so it needs at least three")
        self.horizons = sorted(set(p.horizons))
        self.ratio = (p.lr_max / p.lr_min) ** (1.0 / (p.points - 1))
        grid = [p.lr_min * self.ratio ** i for i in range(p.points)]
        grid[-1] = p.lr_max
        self.grid = {h: list(grid) for h in self.horizons}
        self.widened = {h: {"low": 0, "high": 0} for h in self.horizons}
        self._fits: dict[tuple, Any] = {}  # see _fit
        self.check_lr: float | None = None
        # the initial sweep, longest horizons first (they set the study's length)
        for h in sorted(self.horizons, reverse=True):
            for lr in grid:
                self._enqueue(h, lr)

    # requests

    def _policy(self, lr: float, steps: int) -> dict[str, Any]:
        p = self.params
        warm = min(p.warmup_steps, steps - 1) if p.warmup_steps else int(round(p.warmup * steps))
        if p.policy == "constant_warmup":
            return {"name": "constant_warmup", "params": {"lr": lr, "warmup_steps": warm}}
        return {"name": p.policy, "params": {"lr": lr, "min_lr": lr * p.min_lr_ratio, "warmup_steps": warm}}

    def _enqueue(self, steps: int, lr: float, kind: str = "sweep") -> None:
        for s in range(self.params.seeds):
            prefix = "check" if kind == "check" else f"h{steps}"
            key = f"{prefix}-lr{_lr_key(lr)}-s{s}"
            if key in self.requests or any(r.key == key for r in self.queue):
                continue
            self.queue.append(TrialRequest(
                key=key, policy=self._policy(lr, steps), steps=steps, family=self.params.policy,
                point={"lr": lr, "horizon": steps, "seed": s},
                tags={"kind": f"horizon_{kind}", "horizon": steps, "lr": lr, "seed_index": s},
                trial={"seed": self.seed + s},
            ))

    def _settled(self, h: int) -> bool:
        keys = [k for k, r in self.requests.items() if r.tags.get("horizon") == h and r.tags["kind"] == "horizon_sweep"]
        return bool(keys) and all(k in self.results for k in keys) and not any(
            r.tags.get("horizon") == h for r in self.queue)

    def _plan(self) -> None:
        """Widen the grid of a finished horizon whose best LR is at an end; then the check run."""
        p = self.params
        for h in self.horizons:
            if not self._settled(h):
                continue
            lrs, means = self._means(h)
            opt = lr_optimum(lrs, means, p.window)
            if opt.best_lr is None or opt.edge is None or self.widened[h][opt.edge] >= p.widen:
                continue
            # (an edge is an end of every LR tried: a best LR under a diverged one has none)
            new = max(lrs) * self.ratio if opt.edge == "high" else min(lrs) / self.ratio
            self.widened[h][opt.edge] += 1
            self.grid[h].append(new)
            self._enqueue(h, new)
        if p.check and self.check_lr is None and not self.queue:
            short = self.horizons[:-1]
            if all(self._settled(h) for h in short):
                law = self._fit(short)
                lr = law.predict(self._tokens(self.horizons[-1])) if law else None
                if lr:
                    self.check_lr = lr
                    self._enqueue(self.horizons[-1], lr, kind="check")

    def planned_trials(self) -> int:
        """The sweeps asked and queued, and the check run still to come (a widened grid adds more)."""
        p = self.params
        return super().planned_trials() + (p.seeds if p.check and self.check_lr is None else 0)

    def planned_steps(self) -> int:
        p = self.params
        return super().planned_steps() + (p.seeds * self.horizons[-1] if p.check and self.check_lr is None else 0)

    # analysis

    def _seed_values(self, h: int, kind: str = "horizon_sweep") -> dict[float, list[float | None]]:
        out: dict[float, list[float | None]] = {}
        for key, req in self.requests.items():
            if req.tags.get("horizon") != h or req.tags["kind"] != kind or key not in self.results:
                continue
            res = self.results[key]
            value = res.value if res.status == "completed" and finite(res.value) else None
            out.setdefault(float(req.tags["lr"]), []).append(value)
        return out

    def _means(self, h: int) -> tuple[list[float], list[float | None]]:
        by_lr = self._seed_values(h)
        lrs = sorted(by_lr)
        means = []
        for lr in lrs:
            vals = by_lr[lr]
            means.append(None if any(v is None for v in vals) else sum(vals) / len(vals))  # type: ignore[arg-type]
        return lrs, means

    def _tokens(self, h: int) -> float:
        """The horizon in tokens, as the trials counted them (steps when the task counts none)."""
        counted = [r.cost.get("tokens") for k, r in self.results.items()
                   if self.requests[k].tags.get("horizon") == h and r.status == "completed"]
        counted = [float(t) for t in counted if t]
        return max(counted) if counted else float(h)

    def _fit(self, horizons: list[int]) -> Any:
        """The power law over ``horizons`` (a :class:`PowerLaw`, or None). The seed bootstrap
        refits everything a few hundred times (about a quarter of a second), and a summary is
        asked for after every trial, on the app's GUI thread too: a fit is kept until the results
        of its horizons change."""
        key = tuple((h, sum(len(v) for v in self._seed_values(h).values())) for h in horizons)
        if key not in self._fits:
            data = []
            for h in horizons:
                by_lr = self._seed_values(h)
                lrs = sorted(by_lr)
                data.append((self._tokens(h), lrs, [by_lr[lr] for lr in lrs]))
            self._fits[key] = bootstrap_power_law(data, self.params.window, seed=self.seed)
        return self._fits[key]

    def _tokens_per_step(self) -> float | None:
        rates = [float(r.cost["tokens"]) / float(r.cost["steps"]) for r in self.results.values()
                 if r.cost.get("tokens") and r.cost.get("steps")]
        return max(rates) if rates else None

    def summary_json(self) -> dict[str, Any]:
        p = self.params
        rows = []
        stars = []
        for h in self.horizons:
            by_lr = self._seed_values(h)
            lrs, means = self._means(h)
            opt = lr_optimum(lrs, means, p.window)
            tokens = self._tokens(h)
            sds = []
            for lr in lrs:
                vals = [v for v in by_lr[lr] if v is not None]
                sds.append(float(_sd(vals)) if len(vals) > 1 else None)
            rows.append({"steps": h, "tokens": tokens, "lrs": lrs, "loss_mean": means, "loss_sd": sds,
                         "seeds": [len(by_lr[lr]) for lr in lrs],
                         "diverged": [sum(v is None for v in by_lr[lr]) for lr in lrs],
                         "widened": dict(self.widened[h]), **opt.as_dict()})
            if opt.lr_star and self._settled(h):
                stars.append(h)
        out: dict[str, Any] = {"tuner": self.name, "policy": p.policy, "seeds": p.seeds, "horizons": rows,
                               "power_law": None, "target": None, "zero_overhead": None, "holdout": None,
                               "warnings": []}
        for r in rows:
            if r["lr_star"] and not r["bracketed"]:
                out["warnings"].append(
                    f"horizon {r['steps']} steps: the best LR {r['best_lr']:.3g} is at the {r['edge'] or 'edge'} end of "
                    "the grid even after widening; its optimum is not bracketed")
        fit_horizons = stars[:-1] if p.check and len(stars) == len(self.horizons) else stars
        law = self._fit(fit_horizons) if len(fit_horizons) >= 2 else None
        if law is not None:
            out["power_law"] = {**law.as_dict(), "horizons": fit_horizons}
            if law.beta <= 0:
                out["warnings"].append(
                    f"the fitted beta ({law.beta:.3g}) is not positive: LR* did not fall with the horizon here")
        tps = self._tokens_per_step()
        anchor = max(fit_horizons) if fit_horizons else None
        anchor_row = next((r for r in rows if r["steps"] == anchor), None)
        # the target's prediction uses every horizon (the held-out one too, once it has been checked)
        law_all, anchor_all = law, anchor_row
        if fit_horizons != stars and len(stars) >= 2:
            fit_all = self._fit(stars)
            if fit_all is not None:
                law_all = fit_all
                out["power_law_all"] = {**law_all.as_dict(), "horizons": stars}
                anchor_all = next((r for r in rows if r["steps"] == max(stars)), anchor_row)
        if p.target_steps and tps:
            t_tokens = p.target_steps * tps
            tgt: dict[str, Any] = {"steps": p.target_steps, "tokens": t_tokens,
                                   "horizons": stars if law_all is not law else fit_horizons}
            if law_all is not None:
                band = law_all.predict_band(t_tokens)
                tgt.update(lr=law_all.predict(t_tokens), band=list(band) if band else None)
            if anchor_all and anchor_all["lr_star"]:
                tgt["zero_overhead_lr"] = zero_overhead(anchor_all["lr_star"], anchor_all["tokens"], t_tokens,
                                                        p.beta_fixed)
            out["target"] = tgt
        if anchor_row and anchor_row["lr_star"]:
            out["zero_overhead"] = {"beta": p.beta_fixed, "from_steps": anchor, "from_tokens": anchor_row["tokens"],
                                    "B": anchor_row["lr_star"] * anchor_row["tokens"] ** p.beta_fixed}
        if p.check:
            out["holdout"] = self._holdout(rows, law, out.get("zero_overhead"))
        return out

    def _holdout(self, rows: list[dict[str, Any]], law: Any, zero: dict[str, Any] | None) -> dict[str, Any] | None:
        h = self.horizons[-1]
        row = next(r for r in rows if r["steps"] == h)
        if law is None:
            return None
        pred = law.predict(row["tokens"])
        band = law.predict_band(row["tokens"])
        out: dict[str, Any] = {"steps": h, "tokens": row["tokens"], "predicted_lr": pred,
                               "band": list(band) if band else None, "measured_lr_star": row["lr_star"],
                               "best_grid_loss": row["best_loss"], "run_lr": self.check_lr}
        if zero:
            out["zero_overhead_lr"] = zero["B"] * row["tokens"] ** (-zero["beta"])
        if row["lr_star"]:
            out["ratio"] = max(pred, row["lr_star"]) / min(pred, row["lr_star"])
            if zero:
                z = out["zero_overhead_lr"]
                out["zero_overhead_ratio"] = max(z, row["lr_star"]) / min(z, row["lr_star"])
        vals = [v for v in self._seed_values(h, "horizon_check").get(float(self.check_lr or -1), []) if v is not None]
        if vals and len(vals) == self.params.seeds and row["best_loss"]:
            loss = sum(vals) / len(vals)
            out["loss_at_predicted"] = loss
            out["loss_gap"] = loss / row["best_loss"] - 1.0
        return out


def _sd(values: list[float]) -> float:
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@hookimpl
def register_tuners(register):
    register(HorizonTuner)
