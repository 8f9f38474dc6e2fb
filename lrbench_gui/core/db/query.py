"""Questions answered from stored trials: which policies did best on a task, and what LR range
worked. Pure functions over trial records, so they are tested without a database file.

Ranking: the trials of the task that completed and recorded the metric are grouped by policy
(the exact spec: a cosine at 1e-4 and a cosine at 3e-4 are two policies); a policy's score is
the mean of its trials' final metric (its seeds), ties broken by lower mean cost in seconds,
then steps. The metric is the one named, else the objective most trials of the task name;
the direction comes from the trials' objective, else from the metric's name.

LR range: from range tests (``kind == "range_test"``), each test's suggestion is the interval
from the LR where the smoothed loss fell fastest to the LR of the lowest smoothed loss (or the
``lr_min``/``lr_max`` metrics when the tuner recorded its own); the task's range is the median
of the lower and of the upper ends. From ordinary trials, the peak LRs of the trials whose
metric is within ``tolerance`` of the best give a second, empirical range.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter, defaultdict
from typing import Any, Iterable

import numpy as np

from lrbench_gui.core.db.curves import unpack

__all__ = ["recommend", "lr_range", "spec_label", "metric_mode", "trial_metric", "peak_lr"]

_MAXIMIZE = re.compile(r"acc|f1|score|auc|bleu|rouge|exact|reward|precision|recall|map\b|ndcg|win", re.IGNORECASE)
_LR_KEYS = ("lr", "max_lr", "warmup_max_lr", "base_lr", "peak_lr", "initial_lr")


def spec_label(spec: Any) -> str:
    """``cosine(lr=2e-05)`` or ``warmup -> cosine @100``, from a spec's JSON form, no registry needed."""
    if not isinstance(spec, dict):
        return "?"
    if "sequence" in spec:
        parts = [spec_label(s) for s in spec.get("sequence", [])]
        return " -> ".join(parts) + " @" + ",".join(str(b) for b in spec.get("boundaries", []))
    params = spec.get("params") or {}
    for key in _LR_KEYS:
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{spec.get('name', '?')}({key}={value:g})"
    return str(spec.get("name", "?"))


def metric_mode(name: str) -> str:
    """'max' for accuracy-like names, else 'min' (losses, perplexity, error)."""
    return "max" if _MAXIMIZE.search(name) else "min"


def trial_metric(trial: dict[str, Any], metric: str) -> float | None:
    value = (trial.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _matches(value: str | None, wanted: str | None) -> bool:
    return wanted is None or (value is not None and value.casefold() == wanted.casefold())


def _scoped(trials: list[dict], model_family: str | None, model_size: str | None) -> tuple[list[dict], str]:
    if model_family is None and model_size is None:
        return trials, "task"
    narrowed = [
        t for t in trials if _matches((t.get("model") or {}).get("family"), model_family) and _matches((t.get("model") or {}).get("size"), model_size)
    ]
    if narrowed:
        return narrowed, "task+model"
    return trials, "task (no trial matched the model, so all of the task's trials were used)"


def _choose_metric(trials: Iterable[dict], metric: str | None) -> tuple[str | None, str]:
    objectives = [t["objective"] for t in trials if t.get("objective")]
    if metric is None:
        if objectives:
            metric = Counter(o["metric"] for o in objectives).most_common(1)[0][0]
        else:
            names = Counter(k for t in trials for k in (t.get("metrics") or {}))
            metric = names.most_common(1)[0][0] if names else None
    if metric is None:
        return None, "min"
    modes = Counter(o.get("mode", "min") for o in objectives if o["metric"] == metric)
    mode = modes.most_common(1)[0][0] if modes else metric_mode(metric)
    return metric, mode


def _mean_or_none(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def recommend(
    trials: Iterable[dict[str, Any]],
    task: str,
    *,
    k: int = 5,
    model_family: str | None = None,
    model_size: str | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """The top ``k`` policies for ``task`` ranked by the final metric, each with its cost."""
    pool = [t for t in trials if t.get("task") == task and t.get("kind", "train") == "train" and t.get("status") == "completed"]
    pool, scope = _scoped(pool, model_family, model_size)
    metric, mode = _choose_metric(pool, metric)
    out: dict[str, Any] = {"task": task, "metric": metric, "mode": mode, "scope": scope, "considered": 0, "results": []}
    if metric is None:
        return out
    groups: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for t in pool:
        value = trial_metric(t, metric)
        if value is not None:
            groups[json.dumps(t["policy"], sort_keys=True)].append((value, t))
    out["considered"] = sum(len(g) for g in groups.values())
    sign = 1.0 if mode == "min" else -1.0
    ranked = []
    for key, members in groups.items():
        values = [v for v, _ in members]
        best_value, best = min(members, key=lambda vt: sign * vt[0])
        costs = [m[1].get("cost") or {} for m in members]
        mean_cost = {f: _mean_or_none([c.get(f) for c in costs]) for f in ("steps", "tokens", "seconds")}
        ranked.append(
            {
                "policy": best["policy"],
                "label": spec_label(best["policy"]),
                "mean": statistics.fmean(values),
                "best": best_value,
                "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
                "best_trial": best["id"],
                "trials": sorted(m[1]["id"] for m in members)[:50],
                "cost": dict(best.get("cost") or {}),
                "mean_cost": mean_cost,
                "optimizer": (best.get("optimizer") or {}).get("name"),
            }
        )
    inf = float("inf")
    ranked.sort(
        key=lambda r: (
            sign * r["mean"],
            r["mean_cost"]["seconds"] if r["mean_cost"]["seconds"] is not None else inf,
            r["mean_cost"]["steps"] if r["mean_cost"]["steps"] is not None else inf,
            r["label"],
        )
    )
    for i, r in enumerate(ranked[: max(0, k)], 1):
        r["rank"] = i
    out["results"] = ranked[: max(0, k)]
    return out


def peak_lr(trial: dict[str, Any]) -> float | None:
    """The largest LR of a trial: from its LR curve, else from its spec's LR parameter."""
    curve = (trial.get("curves") or {}).get("lr")
    if curve:
        _, values = unpack(curve)
        if len(values):
            return float(values.max())
    spec = trial.get("policy") or {}
    stack = [spec]
    best = None
    while stack:
        s = stack.pop()
        if "sequence" in s:
            stack.extend(s["sequence"])
            continue
        for key in _LR_KEYS:
            v = (s.get("params") or {}).get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                best = v if best is None else max(best, v)
                break
    return float(best) if best is not None else None


def _range_test_suggestion(trial: dict[str, Any]) -> tuple[float, float] | None:
    metrics = trial.get("metrics") or {}
    lo, hi = metrics.get("lr_min"), metrics.get("lr_max")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi:
        return float(lo), float(hi)
    curves = trial.get("curves") or {}
    if "lr" not in curves or "loss" not in curves:
        return None
    lr_steps, lrs = unpack(curves["lr"])
    loss_steps, losses = unpack(curves["loss"])
    if len(losses) < 5 or len(lrs) < 2:
        return None
    lr_at = np.interp(loss_steps.astype(np.float64), lr_steps.astype(np.float64), lrs.astype(np.float64))
    ok = lr_at > 0
    lr_at, losses = lr_at[ok], losses[ok].astype(np.float64)
    if len(losses) < 5:
        return None
    smooth = np.empty_like(losses)
    avg, beta = 0.0, 0.9
    for i, v in enumerate(losses):  # bias-corrected exponential moving average, as fastai's finder
        avg = beta * avg + (1 - beta) * v
        smooth[i] = avg / (1 - beta ** (i + 1))
    best = int(np.argmin(smooth))
    upper = float(lr_at[best])
    if best < 2:
        return upper / 10, upper
    slopes = np.diff(smooth[: best + 1]) / np.maximum(np.diff(np.log(lr_at[: best + 1])), 1e-12)
    lower = float(lr_at[int(np.argmin(slopes))])
    if not lower < upper:
        lower = upper / 10
    return lower, upper


def lr_range(
    trials: Iterable[dict[str, Any]],
    task: str,
    *,
    model_family: str | None = None,
    model_size: str | None = None,
    metric: str | None = None,
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """What LR range worked for ``task``: from its range tests and from its best trials."""
    all_trials = [t for t in trials if t.get("task") == task]
    tests = [t for t in all_trials if t.get("kind") == "range_test" and t.get("status") in ("completed", "stopped", "diverged")]
    tests, scope = _scoped(tests, model_family, model_size)
    per_test = []
    for t in tests:
        s = _range_test_suggestion(t)
        if s is not None:
            per_test.append({"trial": t["id"], "lower": s[0], "upper": s[1]})
    out: dict[str, Any] = {"task": task, "scope": scope, "range_tests": per_test, "suggested": None, "from_trials": None}
    if per_test:
        out["suggested"] = [statistics.median(p["lower"] for p in per_test), statistics.median(p["upper"] for p in per_test)]
    pool = [t for t in all_trials if t.get("kind", "train") == "train" and t.get("status") == "completed"]
    pool, _ = _scoped(pool, model_family, model_size)
    metric, mode = _choose_metric(pool, metric)
    if metric is not None:
        scored = [(v, t) for t in pool if (v := trial_metric(t, metric)) is not None]
        if scored:
            sign = 1.0 if mode == "min" else -1.0
            best = min(scored, key=lambda vt: sign * vt[0])[0]
            margin = tolerance * max(abs(best), 1e-12)
            good = [t for v, t in scored if sign * (v - best) <= margin]
            peaks = [p for t in good if (p := peak_lr(t)) is not None]
            if peaks:
                out["from_trials"] = {
                    "metric": metric,
                    "mode": mode,
                    "best": best,
                    "tolerance": tolerance,
                    "n": len(peaks),
                    "lr_min": min(peaks),
                    "lr_max": max(peaks),
                }
    return out
