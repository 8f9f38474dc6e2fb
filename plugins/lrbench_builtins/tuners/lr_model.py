"""``lrsearch``: a tuner that uses what is known about learning rates.

The loss of a policy family is smooth and close to unimodal in log LR, and the best LRs of
different schedules are related: to a first order a schedule trains like a fixed LR of its mean
LR (a cosine's best peak LR is about twice a fixed LR's). So one model (:class:`LRModel`) covers
every family: each family's log loss is a parabola in the log LR, the families' LR axes aligned by
their mean-to-peak LR ratio (``Family.mean_lr_ratio``, ``align``), with a shared curvature and
centre, a per-family offset and a per-family tilt (which moves that family's optimum), plus a
small smooth residual. The curvature and centre are a grid, weighted by their marginal
likelihood; the rest is Gaussian and integrated out. So two or three trials can say "go higher"
when the loss still falls at the top of the range, and a family never run gets its LR from the
others.

The first asks are a design that spreads over the families (in a seeded order) and over the
LR range (one stratum of the log range each, jittered by the seed). Every later ask maximizes
the model's expected improvement over a fixed set of candidates (``resolution`` LRs per family
times seeded draws of the other dimensions), skipping points within ``min_ratio`` of an asked
LR of the same family and, in a family where a trial diverged, every LR at or above the lowest
LR that diverged. Trials still running count as observed at the model's mean (a "kriging
believer"), so parallel asks spread. A diverged trial (or one completed without a value) is
told to the model as the worst value so far plus the spread of the values; crashes and trials
the user stopped are left out. ``repeats`` re-runs the best point at the end with other trial
seeds, for a task whose noise needs it; the summary then gives the spread over seeds.

Everything depends only on the seed and the results told, in order: the study's replay asks the
same keys (``m0000``...) and specs. The model is numpy only. ``summary_json()`` says why each
point was asked (``asks``) and how sure the answer is (``confidence``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, TypedDict

import numpy as np

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.tuner import TrialRequest, TrialResult
from lrbench_gui.core.tuning.hints import LR_NAME
from lrbench_gui.core.tuning.search import SearchTuner, finite
from lrbench_gui.core.tuning.space import Dim, Family

__all__ = ["LRModelTuner", "LRModel", "LRSearchSummary", "Confidence", "lr_dim", "TUNERS"]


class Confidence(TypedDict, total=False):
    """``summary["confidence"]``: how sure the tuner is of its best trial."""

    best: str | None  # the key of the best trial
    p_better_elsewhere: float | None  # P(another candidate or asked point is truly better), from the model
    p_better_asked: float | None  # the same, over the other asked points only
    predicted: dict[str, float] | None  # the model's value at the best point: mean, sd (the metric's units)
    seed_spread: dict[str, Any] | None  # runs of the best point with other trial seeds: values, sd, range
    model: str
    samples: int


class LRSearchSummary(TypedDict, total=False):
    """``LRModelTuner.summary_json()``: the search summary of ``SearchTuner`` plus these."""

    asks: list[dict[str, Any]]  # key, family, lr, phase, why, predicted, value: in asking order
    design: int  # asks of the initial design
    confidence: Confidence
    model: dict[str, Any]  # the model's settings


def lr_dim(family: Family) -> Dim | None:
    """The dimension of ``family`` that is its (peak) LR: the first log-scale float or a choice of
    positive numbers whose name ends in ``lr`` and does not start with ``min_``/``start_``/
    ``end_`` (those are lower LRs); None when the family searches no LR."""
    for lower in (False, True):
        for d in family.dims:
            bare = d.name.rpartition(".")[2]
            if not LR_NAME.search(bare):
                continue
            if not lower and bare.startswith(("min_", "start_", "end_")):
                continue
            if d.kind == "float" and d.log:
                return d
            if d.kind == "choice" and all(finite(v) and v > 0 for v in d.choices):
                return d
    return None


def _matern52(r: np.ndarray) -> np.ndarray:
    s = math.sqrt(5.0) * r
    return (1.0 + s + s * s / 3.0) * np.exp(-s)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[float])(x)


Point = tuple  # (family index, u, z): u the aligned log LR, z the other dimensions in [0, 1]


class LRModel:
    """The tuner's model of the (log) loss at points ``(family, u, z)``.

    For each family ``f``: ``y = a_f + c (u - m)^2 + b_f (u - m) + r(u, z) + noise``, a parabola in
    the aligned log LR ``u`` (natural log units: ``ln lr`` plus the family's shift) with a
    curvature ``c > 0`` and a centre ``m`` that every family shares, its own offset ``a_f`` (around
    a common mean; sd ``offset``) and tilt ``b_f`` (which moves its optimum by ``-b_f / 2c``; sd
    ``tilt`` in natural-log units of LR), and a small smooth residual ``r`` (a Matern-5/2 GP over
    ``u``, shared, plus one per family over ``u`` and ``z``). The centre's grid covers the LR range
    and a quarter of its width beyond each end; the curvature's is geometric over
    ``curvatures`` (0.02 to 1 per squared natural log: the loss grows by e when the LR is off by
    a factor of 1200 to 2.7). Given ``(m, c)``
    everything else is Gaussian and integrated out, so the model is a mixture over a grid of
    ``(m, c)`` weighted by their marginal likelihood. The noise of a point grows with how much
    worse it is than the best (``far``), so the flat and the diverging ends of an LR range inform
    the valley less than the points near its bottom. Values are the log loss for a positive
    loss (``scale`` 1), else standardized by their spread."""

    def __init__(self, families: int, lr_range: tuple[float, float] = (0.0, 1.0), *, offset: float = 0.3,
                 tilt: float = 0.3, residual: float = 0.08, own: float = 0.05, length: float = 1.0,
                 z_length: float = 0.3, noise: float = 0.03, far: float = 0.5, centres: int = 13,
                 curvatures: tuple[float, float, int] = (0.02, 1.0, 7)) -> None:
        self.F = families
        self.offset, self.tilt, self.residual, self.own = offset, tilt, residual, own
        self.length, self.z_length, self.noise, self.far = length, z_length, noise, far
        lo, hi = lr_range
        width = max(hi - lo, 1.0)
        self.m_grid = np.linspace(lo - 0.25 * width, hi + 0.25 * width, centres)
        self.c_grid = np.geomspace(curvatures[0], curvatures[1], curvatures[2])
        self.X: list[Point] = []

    def settings(self) -> dict[str, Any]:
        return {"kind": "shared parabola in log LR + residual GP", "offset": self.offset, "tilt": self.tilt,
                "residual": self.residual, "noise": self.noise, "far": self.far,
                "centres": [float(self.m_grid[0]), float(self.m_grid[-1])],
                "curvatures": [float(self.c_grid[0]), float(self.c_grid[-1])]}

    # Kernels.

    @staticmethod
    def _arrays(A: list[Point]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.array([p[0] for p in A], dtype=int)
        u = np.array([p[1] for p in A], dtype=float)
        width = max([len(p[2]) for p in A] + [1])
        z = np.zeros((len(A), width))
        for i, p in enumerate(A):
            z[i, : len(p[2])] = p[2]
        return f, u, z

    def _residual(self, A: list[Point], B: list[Point]) -> np.ndarray:
        fa, ua, za = self._arrays(A)
        fb, ub, zb = self._arrays(B)
        m = _matern52(np.abs(ua[:, None] - ub[None, :]) / self.length)
        width = max(za.shape[1], zb.shape[1])
        za = np.pad(za, ((0, 0), (0, width - za.shape[1])))
        zb = np.pad(zb, ((0, 0), (0, width - zb.shape[1])))
        d2 = ((za[:, None, :] - zb[None, :, :]) ** 2).sum(axis=2)
        same = fa[:, None] == fb[None, :]
        return self.residual**2 * m + self.own**2 * m * np.exp(-0.5 * d2 / self.z_length**2) * same

    def _linear(self, A: list[Point], B: list[Point], m: float, c: float) -> np.ndarray:
        """The prior covariance of ``a_f + b_f (u - m)`` (the common mean: a wide prior)."""
        fa = np.array([f for f, _, _ in A])[:, None]
        fb = np.array([f for f, _, _ in B])[None, :]
        da = np.array([u - m for _, u, _ in A])[:, None]
        db = np.array([u - m for _, u, _ in B])[None, :]
        same = (fa == fb).astype(float)
        slope = 2.0 * c * self.tilt
        return 100.0 + same * (self.offset**2 + slope**2 * da * db)

    # Fitting.

    def fit(self, X: list[Point], y: list[float]) -> "LRModel":
        self.X = list(X)
        v = np.asarray(y, dtype=float)
        self.ybar = float(v.mean())
        v = v - self.ybar
        best = float(v.min())
        self.y = v
        noise = self.noise**2 + (self.far * (v - best)) ** 2
        R = self._residual(self.X, self.X) + np.diag(noise)
        u = np.array([p[1] for p in self.X])
        cells, logw = [], []
        for m in self.m_grid:
            for c in self.c_grid:
                K = R + self._linear(self.X, self.X, m, c)
                L = np.linalg.cholesky(K + 1e-9 * np.eye(len(v)))
                r = v - c * (u - m) ** 2
                alpha = np.linalg.solve(L.T, np.linalg.solve(L, r))
                ll = -0.5 * float(r @ alpha) - float(np.log(np.diag(L)).sum())
                cells.append((m, c, L, alpha))
                logw.append(ll)
        w = np.exp(np.array(logw) - max(logw))
        self.cells = cells
        self.weights = w / w.sum()
        return self

    def _cell(self, k: int, C: list[Point]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m, c, L, alpha = self.cells[k]
        Ks = self._linear(C, self.X, m, c) + self._residual(C, self.X)
        uc = np.array([p[1] for p in C])
        mu = c * (uc - m) ** 2 + Ks @ alpha
        W = np.linalg.solve(L, Ks.T)
        prior = 100.0 + self.offset**2 + (2.0 * c * self.tilt * (uc - m)) ** 2 + self.residual**2 + self.own**2
        return mu, W, prior

    def _top(self, mass: float = 0.999) -> list[int]:
        order = np.argsort(-self.weights)
        keep = np.searchsorted(np.cumsum(self.weights[order]), mass) + 1
        return [int(k) for k in order[:keep]]

    def predict(self, C: list[Point]) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's mean and standard deviation of the latent value at ``C``."""
        top = self._top()
        w = self.weights[top] / self.weights[top].sum()
        mean = np.zeros(len(C))
        second = np.zeros(len(C))
        for wk, k in zip(w, top):
            mu, W, prior = self._cell(k, C)
            var = np.maximum(prior - (W * W).sum(axis=0), 1e-12)
            mean += wk * mu
            second += wk * (var + mu * mu)
        return self.ybar + mean, np.sqrt(np.maximum(second - mean * mean, 1e-12))

    def expected_improvement(self, C: list[Point], best: float) -> np.ndarray:
        """The mixture's expected improvement below ``best`` at ``C``."""
        top = self._top()
        w = self.weights[top] / self.weights[top].sum()
        out = np.zeros(len(C))
        for wk, k in zip(w, top):
            mu, W, prior = self._cell(k, C)
            sd = np.sqrt(np.maximum(prior - (W * W).sum(axis=0), 1e-12))
            out += wk * _ei(self.ybar + mu, sd, best)
        return out

    def sample(self, C: list[Point], n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` joint draws of the latent values at ``C`` (rows: draws): a cell drawn by its
        weight, then the cell's Gaussian."""
        top = self._top()
        w = self.weights[top] / self.weights[top].sum()
        picks = rng.choice(len(top), size=n, p=w)
        out = np.zeros((n, len(C)))
        for j in np.unique(picks):
            k = top[int(j)]
            m, c, L, _ = self.cells[k]
            mu, W, _ = self._cell(k, C)
            cov = self._linear(C, C, m, c) + self._residual(C, C) - W.T @ W
            cov = 0.5 * (cov + cov.T)
            try:
                root = np.linalg.cholesky(cov + 1e-6 * np.eye(len(C)))
            except np.linalg.LinAlgError:
                vals, vecs = np.linalg.eigh(cov)
                root = vecs * np.sqrt(np.maximum(vals, 0.0))
            rows = np.flatnonzero(picks == j)
            out[rows] = mu[None, :] + rng.standard_normal((len(rows), len(C))) @ root.T
        return self.ybar + out


def _ei(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement below ``best`` (lower is better)."""
    z = (best - mu) / sd
    cdf = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return (best - mu) * cdf + sd * pdf


class LRModelTuner(SearchTuner):
    """See the module's docstring; docs/tuning.md (``lrsearch``) gives the rules."""

    name = "lrsearch"
    version = "1"
    summary = "A model of loss against log LR shared by the families: a spread-out design, then expected improvement"
    title = "LR-model search"
    hint = ("Few trials, well placed: a model of the loss against log LR that the families share (a "
            "parabola, their LR axes aligned by their mean LR) picks each full-budget trial after a design "
            "spread over families and LRs; says why each point was asked and how sure it is of the best.")
    Summary = LRSearchSummary

    class Params(Params):
        trials: int = param(0, "Trials to run (repeats included); 0: the study's trial budget.", ge=0, le=100_000)
        init: int = param(0, "Trials of the initial design (spread over families and the LR range); 0: one per "
                             "family but at most half of the trials (at least 2).", ge=0, le=1000)
        resolution: int = param(25, "Candidate LRs per family (geometric over its range).", ge=3, le=400)
        draws: int = param(6, "Candidate draws of a family's other dimensions per LR.", ge=1, le=100)
        min_ratio: float = param(1.5, "Never ask an LR within this factor of one asked in the same family.",
                                 ge=1.0, le=10.0)
        align: float = param(1.0, "How the families share the LR axis: 1 aligns their mean LRs over the run (a "
                                  "cosine's peak LR twice a fixed LR's), 0 their peak LRs.", ge=0.0, le=2.0)
        repeats: int = param(0, "Last trials that re-run the best point with other trial seeds (for a noisy task; "
                                "the summary gives the spread).", ge=0, le=100)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        self.n = p.trials if p.trials > 0 else max(1, self.budget.trials)
        self.repeats = min(p.repeats, max(0, self.n - 1))
        F = len(self.space.families)
        model_trials = self.n - self.repeats
        self.n_init = min(p.init or max(2, min(F, model_trials // 2)), model_trials)
        self._lr = {f.name: lr_dim(f) for f in self.space.families}
        # the shared axis: log LR shifted by align * log(mean LR / peak LR) of each family
        self._shift = {f.name: p.align * math.log(f.mean_lr_ratio) if f.mean_lr_ratio else 0.0
                       for f in self.space.families}
        bounds = []
        for name, d in self._lr.items():
            if d is not None:
                values = [float(d.low), float(d.high)] if d.kind == "float" else [float(v) for v in d.choices]
                bounds += [math.log(v) + self._shift[name] for v in values]
        self._lo, self._hi = (min(bounds), max(bounds)) if bounds else (0.0, 1.0)
        self._fidx = {f.name: i for i, f in enumerate(self.space.families)}
        rng = random.Random(f"lrsearch-{self.seed}")
        self.candidates = self._make_candidates(rng)
        self._design = self._make_design(rng)
        self._why: dict[str, dict[str, Any]] = {}
        self._confidence: tuple[Any, dict[str, Any]] | None = None

    # Points and candidates.

    def _others(self, family: Family) -> list[Dim]:
        lr = self._lr[family.name]
        return [d for d in family.dims if lr is None or d.name != lr.name]

    def _unit(self, d: Dim, value: Any) -> float:
        if d.kind == "choice":
            idx = d.choices.index(value) if value in d.choices else 0
            return idx / max(1, len(d.choices) - 1)
        lo, hi = float(d.low), float(d.high)
        if hi <= lo:
            return 0.5
        if d.log:
            return (math.log(float(value)) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (float(value) - lo) / (hi - lo)

    def _x(self, family: str, point: dict[str, Any]) -> tuple[int, float, tuple[float, ...]]:
        fam = self.space.family(family)
        lr = self._lr[family]
        u = 0.5 * (self._lo + self._hi)
        if lr is not None:
            u = math.log(float(point[lr.name])) + self._shift[family]
        z = tuple(self._unit(d, point[d.name]) for d in self._others(fam))
        return (self._fidx[family], float(u), z)

    def _lr_values(self, family: Family, count: int) -> list[float]:
        d = self._lr[family.name]
        if d is None:
            return []
        if d.kind == "choice":
            return sorted(float(v) for v in d.choices)
        return [float(v) for v in Dim(d.name, "float", d.low, d.high, True).grid(count)]

    def _make_candidates(self, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for fam in self.space.families:
            others = self._others(fam)
            zs = [{d.name: d.center() for d in others}]
            for _ in range(self.params.draws - 1 if others else 0):
                zs.append({d.name: d.sample(rng) for d in others})
            lrs = self._lr_values(fam, self.params.resolution) or [None]
            lr = self._lr[fam.name]
            for value in lrs:
                for z in zs:
                    point = dict(z)
                    if lr is not None:
                        point[lr.name] = lr.cast(value) if lr.kind != "choice" else next(
                            c for c in lr.choices if float(c) == value)
                    out.append((fam.name, point))
        return out

    def _make_design(self, rng: random.Random) -> list[tuple[str, dict[str, Any], str]]:
        """The first asks: families in a seeded order, each at its own stratum of the LR range."""
        fams = list(self.space.families)
        rng.shuffle(fams)
        k = self.n_init
        strata = list(range(k))
        rng.shuffle(strata)
        out = []
        for i in range(k):
            fam = fams[i % len(fams)]
            q = (strata[i] + 0.5 + rng.uniform(-0.3, 0.3)) / k
            point = {d.name: d.from_unit(rng.random()) for d in self._others(fam)}
            lr = self._lr[fam.name]
            where = ""
            if lr is not None:
                point[lr.name] = lr.from_unit(q) if lr.kind == "float" else lr.choices[
                    min(int(q * len(lr.choices)), len(lr.choices) - 1)]
                where = f" at {q:.0%} of its LR range ({lr.name} {float(point[lr.name]):.3g})"
            out.append((fam.name, point,
                        f"design {i + 1}/{k}: family {fam.name} (seeded order), LR stratum {strata[i] + 1} of {k}{where}"))
        return out

    # The data the model sees.

    def _value(self, result: TrialResult | None) -> float | None:
        """The model's value of a result, lower is better: the log of a positive loss, else the
        score over the spread of the scores so far."""
        s = self.score(result)
        if s is None:
            return None
        scale = self._scale()
        return math.log(s) if scale is None else s / scale

    def _scale(self) -> float | None:
        """None: values are modelled as logs; else the divisor of the scores."""
        scores = [v for v in (self.score(r) for r in self.results.values()) if v is not None]
        if self.objective.mode == "min" and all(v > 0 for v in scores):
            return None
        spread = float(np.std(scores)) if len(scores) > 1 else 0.0
        return spread if spread > 1e-12 else max(abs(scores[0]) if scores else 1.0, 1e-12)

    def _data(self) -> tuple[list, list[float], dict[str, float]]:
        """Points and values for the model: counted results, then diverged ones at a penalty."""
        X, y, diverged = [], [], {}
        finite_vals = []
        for key, res in self.results.items():
            v = self._value(res)
            if v is not None:
                req = self.requests[key]
                X.append(self._x(req.family, req.point))
                y.append(v)
                finite_vals.append(v)
        if finite_vals:
            worst, best = max(finite_vals), min(finite_vals)
            penalty = worst + max(worst - best, 0.1 * abs(worst), 1e-3)
            for key, res in self.results.items():
                if res.status == "diverged" or (res.status == "completed" and not finite(res.value)):
                    req = self.requests[key]
                    X.append(self._x(req.family, req.point))
                    y.append(penalty)
        for key, res in self.results.items():
            if res.status == "diverged" or (res.status == "completed" and not finite(res.value)):
                req = self.requests[key]
                lr = self._lr.get(req.family)
                if lr is not None:
                    v = float(req.point[lr.name])
                    diverged[req.family] = min(diverged.get(req.family, v), v)
        return X, y, diverged

    def _fit(self) -> LRModel | None:
        X, y, _ = self._data()
        if not X:
            return None
        model = self._model().fit(X, y)
        pending = [self.requests[k] for k in self.running()]
        if pending:  # running trials count as observed at the model's mean
            Xp = [self._x(r.family, r.point) for r in pending]
            mu, _ = model.predict(Xp)
            model = self._model().fit(X + Xp, y + [float(m) for m in mu])
        return model

    def _model(self) -> LRModel:
        return LRModel(len(self.space.families), (self._lo, self._hi))

    def _too_close(self, family: str, point: dict[str, Any]) -> bool:
        lr = self._lr[family]
        fam = self.space.family(family)
        others = self._others(fam)
        for req in self.requests.values():
            if req.family != family or req.tags.get("phase") == "repeat":
                continue
            if lr is not None:
                a, b = float(point[lr.name]), float(req.point[lr.name])
                if a != b and abs(math.log(a / b)) >= math.log(self.params.min_ratio) - 1e-12:
                    continue  # far enough along the LR axis
            if all(abs(self._unit(d, point[d.name]) - self._unit(d, req.point[d.name])) < 0.1 for d in others):
                return True
        return False

    def _open(self) -> list[tuple[str, dict[str, Any]]]:
        """Candidates not too close to an asked point, and below any LR that diverged."""
        _, _, diverged = self._data()
        out = []
        for family, point in self.candidates:
            lr = self._lr[family]
            if lr is not None and family in diverged and float(point[lr.name]) >= diverged[family]:
                continue
            if not self._too_close(family, point):
                out.append((family, point))
        return out

    # Asking.

    def ask(self) -> TrialRequest | None:
        if self.done():
            return None
        i = len(self.requests)
        key = f"m{i:04d}"
        if i >= self.n - self.repeats:
            return self._ask_repeat(key, i)
        model = self._fit() if i >= self.n_init else None
        if model is None:
            if i < len(self._design):
                family, point, why = self._design[i]
                return self._ask(key, family, point, "design", why)
            return self._ask_spread(key)
        opened = self._open()
        if not opened:
            return self._ask_spread(key)
        C = [self._x(f, p) for f, p in opened]
        mu, sd = model.predict(C)
        X, y, _ = self._data()
        best = min(y)
        ei = model.expected_improvement(C, best)
        j = int(np.argmax(ei))
        family, point = opened[j]
        scale = self._show
        why = (f"model: the largest expected improvement ({ei[j]:.3g}) of {len(opened)} open candidates; "
               f"predicted {scale(mu[j]):.4g} (+/- {scale(mu[j] + sd[j]) - scale(mu[j]):.2g}), best so far "
               f"{scale(best):.4g}")
        return self._ask(key, family, point, "model", why, predicted=scale(mu[j]),
                         predicted_sd=scale(mu[j] + sd[j]) - scale(mu[j]))

    def _show(self, v: float) -> float:
        """A model value in the metric's units."""
        scale = self._scale()
        s = math.exp(v) if scale is None else v * scale
        return s if self.objective.mode == "min" else -s

    def _ask_spread(self, key: str) -> TrialRequest:
        """No model (nothing finite yet) and the design is spent: the open candidate farthest
        from every asked point, families in turn."""
        opened = self._open() or list(self.candidates)
        asked = [self._x(r.family, r.point) for r in self.requests.values()]
        counts = {f.name: 0 for f in self.space.families}
        for r in self.requests.values():
            counts[r.family] = counts.get(r.family, 0) + 1

        def gap(c: tuple[str, dict[str, Any]]) -> tuple:
            x = self._x(*c)
            d = min((abs(x[1] - a[1]) for a in asked if a[0] == x[0]), default=1.0)
            return (counts.get(c[0], 0), -d)

        family, point = min(opened, key=gap)
        return self._ask(key, family, point, "spread",
                         "spread: no finite result to model yet; the open point farthest from those asked")

    def _ask_repeat(self, key: str, i: int) -> TrialRequest:
        best = self.best_key() or next(iter(self.requests))
        req = self.requests[best]
        # the study runs its trials with its own seed (the tuner's): a repeat takes the next ones
        seed = self.seed + 1 + (i - (self.n - self.repeats))
        return self._ask(key, req.family, dict(req.point), "repeat",
                         f"repeat: the best point ({best}) again with trial seed {seed}, for the spread "
                         f"over seeds", trial={"seed": seed}, of=best)

    def _ask(self, key: str, family: str, point: dict[str, Any], phase: str, why: str,
             trial: dict[str, Any] | None = None, **tags: Any) -> TrialRequest:
        request = self._request(key, family, point, self.budget.steps, phase=phase, why=why,
                                **{k: v for k, v in tags.items() if v is not None})
        if trial:
            request = dataclasses.replace(request, trial=dict(trial))
            self.requests[key] = request
        self._why[key] = {"phase": phase, "why": why, **tags}
        return request

    def done(self) -> bool:
        return len(self.requests) >= self.n or self.target_reached

    def planned_trials(self) -> int:
        return len(self.requests) if self.target_reached else self.n

    # The answer.

    def _seed_spread(self, best: str) -> dict[str, Any] | None:
        req = self.requests[best]
        group = [k for k, r in self.requests.items() if r.family == req.family and r.point == req.point]
        values = [self.results[k].value for k in group if k in self.results and self.score(self.results[k]) is not None]
        if len(values) < 2:
            return None
        arr = np.asarray(values, dtype=float)
        return {"runs": len(values), "values": [float(v) for v in values], "mean": float(arr.mean()),
                "sd": float(arr.std(ddof=1)), "range": float(arr.max() - arr.min())}

    def confidence(self, samples: int = 512) -> dict[str, Any]:
        """How sure the tuner is of its best trial: the model's probability that another
        candidate (or another asked point) is truly better, and the spread over trial seeds."""
        state = (tuple(self.results), samples)
        if self._confidence is None or self._confidence[0] != state:  # the study asks after every save
            self._confidence = (state, self._confidence_now(samples))
        return dict(self._confidence[1])

    def _confidence_now(self, samples: int) -> dict[str, Any]:
        best = self.best_key()
        out: dict[str, Any] = {"best": best, "p_better_elsewhere": None, "p_better_asked": None,
                               "predicted": None, "seed_spread": None, "model": "shared parabola in log LR + residual GP", "samples": samples}
        if best is None:
            return out
        out["seed_spread"] = self._seed_spread(best)
        X, y, _ = self._data()
        if len(X) < 2:
            return out
        model = self._model().fit(X, y)
        breq = self.requests[best]
        xb = self._x(breq.family, breq.point)
        asked: list = []
        for k in self.results:
            r = self.requests[k]
            x = self._x(r.family, r.point)
            if self.score(self.results[k]) is not None and x != xb and x not in asked:
                asked.append(x)
        cands = [self._x(f, p) for f, p in self.candidates]
        mu, _ = model.predict(cands)
        top = [cands[j] for j in np.argsort(mu)[:32] if cands[j] != xb and cands[j] not in asked]
        pts = [xb] + asked + top
        rng = np.random.default_rng(self.seed)
        draws = model.sample(pts, samples, rng)
        b = draws[:, 0]
        m, s = model.predict([xb])
        out["predicted"] = {"mean": self._show(float(m[0])),
                            "sd": abs(self._show(float(m[0] + s[0])) - self._show(float(m[0])))}
        if asked:
            out["p_better_asked"] = float(np.mean(draws[:, 1:1 + len(asked)].min(axis=1) < b))
        if len(pts) > 1:
            out["p_better_elsewhere"] = float(np.mean(draws[:, 1:].min(axis=1) < b))
        return out

    def summary_json(self) -> dict[str, Any]:
        out = super().summary_json()
        asks = []
        for key, req in self.requests.items():
            lr = self._lr.get(req.family)
            res = self.results.get(key)
            asks.append({"key": key, "family": req.family,
                         "lr": float(req.point[lr.name]) if lr is not None else None,
                         **self._why.get(key, {"phase": req.tags.get("phase"), "why": req.tags.get("why")}),
                         "status": res.status if res else "running", "value": res.value if res else None})
        out.update(asks=asks, design=self.n_init, confidence=self.confidence(),
                   model={**self._model().settings(), "resolution": self.params.resolution,
                          "min_ratio": self.params.min_ratio})
        return out


TUNERS = [LRModelTuner]  # registered by lrbench_builtins.tuners.search (the builtin-tuners entry point)
