"""The token-horizon LR law (Bjorck et al., arXiv 2409.19913), fitted from sweeps.

At each horizon (a token budget D) the loss is fitted as a quadratic in ``u = ln(LR)`` near its
minimum; the vertex is that horizon's optimal LR, ``LR*(D)``. Across horizons the optimum falls
as a power law, ``LR*(D) = B * D**(-beta)``: a straight line in log-log space, fitted by least
squares. The confidence band of ``beta`` comes from resampling the seeds of every horizon
(bootstrap) when there are several, else from the regression's t-interval. The paper's
zero-overhead rule skips the fit across horizons: keep ``beta = 0.32`` and take ``B`` from one
horizon's sweep.

numpy only: the app and the CLI import this without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["Optimum", "PowerLaw", "lr_optimum", "fit_power_law", "bootstrap_power_law", "zero_overhead",
           "PAPER_BETA", "T90"]

PAPER_BETA = 0.32
#: two-sided 90% t quantiles by degrees of freedom (1..10), then the normal's
T90 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812}


def _t90(df: int) -> float:
    return T90.get(df, 1.645) if df >= 1 else math.inf


@dataclass
class Optimum:
    """One horizon's optimum over its LR grid."""

    lr_star: float | None  # the fitted optimal LR (the grid's best when the fit is not usable)
    best_lr: float | None  # the grid LR with the lowest mean loss
    best_loss: float | None
    method: str  # "quadratic" | "grid" | "none"
    bracketed: bool  # the best grid LR has a finite neighbour on both sides
    edge: str | None = None  # "low" | "high" when the best LR is at an end of the grid
    coef: list[float] = field(default_factory=list)  # loss = a u^2 + b u + c, u = ln LR
    fit_lrs: list[float] = field(default_factory=list)  # the grid points the quadratic used
    loss_at_star: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"lr_star": self.lr_star, "best_lr": self.best_lr, "best_loss": self.best_loss, "method": self.method,
                "bracketed": self.bracketed, "edge": self.edge, "coef": self.coef, "fit_lrs": self.fit_lrs,
                "loss_at_star": self.loss_at_star}


def lr_optimum(lrs: Sequence[float], losses: Sequence[float | None], window: int = 5) -> Optimum:
    """Fit loss against ln(LR) near the grid's best point; ``losses`` are seed means (None or a
    non-finite value: the LR diverged or failed, it counts as worse than every finite one).

    The quadratic uses up to ``window`` consecutive finite points centred on the best one. Its
    vertex is the optimum when the parabola opens upward and the vertex lies within half a grid
    step of the points used; otherwise the best grid LR is the answer (``method: "grid"``).
    """
    pts = sorted((float(lr), float(v)) for lr, v in zip(lrs, losses)
                 if lr > 0 and v is not None and math.isfinite(float(v)))
    all_lrs = sorted(float(lr) for lr in lrs if lr > 0)
    if not pts:
        return Optimum(None, None, None, "none", False)
    i_best = min(range(len(pts)), key=lambda i: pts[i][1])
    best_lr, best_loss = pts[i_best]
    pos = all_lrs.index(best_lr)
    edge = "low" if pos == 0 else ("high" if pos == len(all_lrs) - 1 else None)
    bracketed = 0 < i_best < len(pts) - 1
    half = max(1, window // 2)
    lo, hi = max(0, i_best - half), min(len(pts), i_best + half + 1)
    while hi - lo < min(window, len(pts)) and (lo > 0 or hi < len(pts)):
        lo, hi = (lo - 1, hi) if lo > 0 and (hi >= len(pts) or i_best - lo <= hi - 1 - i_best) else (lo, hi + 1)
    chosen = pts[lo:hi]
    out = Optimum(best_lr, best_lr, best_loss, "grid", bracketed, edge, fit_lrs=[p[0] for p in chosen],
                  loss_at_star=best_loss)
    if len(chosen) < 3:
        return out
    u = np.log([p[0] for p in chosen])
    y = np.array([p[1] for p in chosen])
    a, b, c = np.polyfit(u, y, 2)
    out.coef = [float(a), float(b), float(c)]
    if a <= 0:
        return out
    vertex = -b / (2 * a)
    step = float(np.median(np.diff(u))) if len(u) > 1 else 0.0
    if not (u[0] - step / 2 <= vertex <= u[-1] + step / 2):
        return out
    out.lr_star = float(math.exp(vertex))
    out.loss_at_star = float(a * vertex * vertex + b * vertex + c)
    out.method = "quadratic"
    return out


@dataclass
class PowerLaw:
    """``LR*(D) = B * D**(-beta)``, fitted in log-log space."""

    B: float
    beta: float
    beta_band: tuple[float, float] | None  # 90% confidence band of beta
    band_method: str  # "seed bootstrap" | "regression" | "none"
    r2: float | None
    log_resid_sd: float | None  # residual sd of ln LR*
    points: list[tuple[float, float]]  # (D, LR*) used
    log_b_band: tuple[float, float] | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # bootstrap (ln B, beta) pairs

    def predict(self, tokens: float) -> float:
        return self.B * tokens ** (-self.beta)

    def predict_band(self, tokens: float) -> tuple[float, float] | None:
        """A 90% band of the predicted LR at ``tokens``."""
        if self.samples:
            preds = sorted(math.exp(lb - beta * math.log(tokens)) for lb, beta in self.samples)
            return (_quantile(preds, 0.05), _quantile(preds, 0.95))
        if self.log_resid_sd is None or len(self.points) < 3:
            return None
        x = np.log([p[0] for p in self.points])
        n = len(x)
        x0 = math.log(tokens)
        se = self.log_resid_sd * math.sqrt(1 / n + (x0 - x.mean()) ** 2 / float(((x - x.mean()) ** 2).sum()))
        t = _t90(n - 2)
        mid = math.log(self.predict(tokens))
        return (math.exp(mid - t * se), math.exp(mid + t * se))

    def as_dict(self) -> dict[str, Any]:
        return {"B": self.B, "beta": self.beta, "beta_band": list(self.beta_band) if self.beta_band else None,
                "band_level": 0.9, "band_method": self.band_method, "r2": self.r2,
                "log_resid_sd": self.log_resid_sd, "points": [list(p) for p in self.points],
                "band_excludes_zero": bool(self.beta_band and (self.beta_band[0] > 0 or self.beta_band[1] < 0))}


def _quantile(sorted_values: list[float], q: float) -> float:
    return float(np.quantile(np.array(sorted_values), q))


def fit_power_law(tokens: Sequence[float], lr_stars: Sequence[float]) -> PowerLaw | None:
    """Least squares of ln LR* on ln D (at least two horizons); the band from the t-interval."""
    pts = [(float(d), float(lr)) for d, lr in zip(tokens, lr_stars) if d and lr and d > 0 and lr > 0]
    if len({d for d, _ in pts}) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    slope, intercept = np.polyfit(x, y, 1)
    beta, B = float(-slope), float(math.exp(intercept))
    n = len(pts)
    resid = y - (slope * x + intercept)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else None
    band = None
    sd = None
    if n > 2:
        sd = math.sqrt(float((resid ** 2).sum()) / (n - 2))
        se = sd / math.sqrt(float(((x - x.mean()) ** 2).sum()))
        t = _t90(n - 2)
        band = (beta - t * se, beta + t * se)
    return PowerLaw(B, beta, band, "regression" if band else "none", r2, sd, pts)


def bootstrap_power_law(
    horizons: Sequence[tuple[float, Sequence[float], Sequence[Sequence[float | None]]]],
    window: int = 5, resamples: int = 400, seed: int = 0,
) -> PowerLaw | None:
    """The fit on seed means, its band from resampling seeds within each horizon.

    ``horizons``: ``(tokens, lrs, per_lr_seed_losses)`` per horizon, where ``per_lr_seed_losses[i]``
    holds one loss per seed at ``lrs[i]`` (None: that seed diverged or failed).
    """
    def stars(pick: list[np.ndarray] | None) -> list[tuple[float, float]]:
        out = []
        for h, (tokens, lrs, per_lr) in enumerate(horizons):
            means = []
            for i, seeds in enumerate(per_lr):
                vals = [seeds[j] for j in (pick[h] if pick is not None else range(len(seeds))) if j < len(seeds)]
                means.append(_mean_or_none(vals))
            opt = lr_optimum(lrs, means, window)
            if opt.lr_star:
                out.append((tokens, opt.lr_star))
        return out

    base = stars(None)
    law = fit_power_law([d for d, _ in base], [lr for _, lr in base])
    if law is None:
        return None
    n_seeds = [max((len(s) for s in per_lr), default=0) for _, _, per_lr in horizons]
    if min(n_seeds, default=0) < 2:
        return law
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        pick = [rng.integers(0, n, size=n) for n in n_seeds]
        got = stars(pick)
        fit = fit_power_law([d for d, _ in got], [lr for _, lr in got]) if len(got) >= 2 else None
        if fit is not None:
            samples.append((math.log(fit.B), fit.beta))
    if len(samples) >= 20:
        betas = sorted(b for _, b in samples)
        law.beta_band = (_quantile(betas, 0.05), _quantile(betas, 0.95))
        law.band_method = "seed bootstrap"
        law.samples = samples
    return law


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean over seeds; None when any seed diverged or failed (the LR is not safe)."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return float(sum(values)) / len(values)


def zero_overhead(lr_star: float, tokens: float, target_tokens: float, beta: float = PAPER_BETA) -> float:
    """The paper's rule: scale one horizon's optimum with a fixed exponent."""
    return lr_star * (target_tokens / tokens) ** (-beta)
