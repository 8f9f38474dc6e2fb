"""Questions answered from stored trials: which policies did best on a task, and what LR range
worked. Pure functions over trial records, so they are tested without a database file.

Ranking: the trials of the task that completed and recorded the metric are grouped by policy
(the exact spec: a cosine at 1e-4 and a cosine at 3e-4 are two policies); a policy's score is
the mean of its trials' final metric (its seeds), ties broken by lower mean cost in seconds,
then steps. The metric is the one named, else the objective most trials of the task name;
the direction comes from the trials' objective, else from the metric's name.

LR range: from range tests (``kind == "range_test"``), each test's suggestion is the
``lr_min``/``lr_max`` metrics its tuner recorded, else the ``lr_range`` that
:func:`lrbench_gui.core.tuning.range_analysis.analyze_range_test` (the one range-test reader)
finds in its LR and loss curves: from the LR where the smoothed loss fell fastest to the LR of
the lowest smoothed loss. The task's range is the median of the lower and of the upper ends.
From ordinary trials, the peak LRs of the trials whose metric is within ``tolerance`` of the
best give a second, empirical range.

Labels and peak LRs name a spec's LR by the parameter role its policy declares (the
``registry`` argument; :func:`lrbench_gui.core.records.lr_param`), so a third-party policy
takes part like a built-in.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from lrbench_gui.core.records import TrialRecord, TrialStatus, curve_points, lr_param, spec_label
from lrbench_gui.core.tuning.range_analysis import analyze_range_test

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = ["recommend", "lr_range", "metric_mode", "trial_metric", "peak_lr", "trial_row"]

_MAXIMIZE = re.compile(r"acc|f1|score|auc|bleu|rouge|exact|reward|precision|recall|map\b|ndcg|win", re.IGNORECASE)
#: range tests whose curves say something (a diverged test is the usual end of one)
_RANGE_TEST_USABLE = frozenset({TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.DIVERGED})


def metric_mode(name: str) -> str:
    """'max' for accuracy-like names, else 'min' (losses, perplexity, error)."""
    return "max" if _MAXIMIZE.search(name) else "min"


def trial_metric(trial: dict[str, Any], metric: str) -> float | None:
    value = (trial.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def trial_row(trial: TrialRecord, registry: "Registry | None" = None) -> dict[str, Any]:
    """One flat row of a trial for tables: no curves, the objective metric's value, the cost."""
    objective = trial.get("objective") or {}
    metric = objective.get("metric")
    metrics = trial.get("metrics") or {}
    if metric is None and metrics:
        metric = next(iter(metrics))
    cost = trial.get("cost") or {}
    return {
        "id": trial["id"],
        "study": trial.get("study"),
        "task": trial["task"],
        "kind": trial.get("kind", "train"),
        "model": (trial.get("model") or {}).get("family"),
        "policy": spec_label(trial["policy"], registry),
        "status": trial["status"],
        "metric": metric,
        "value": metrics.get(metric) if metric else None,
        "mode": objective.get("mode"),
        "steps": cost.get("steps"),
        "tokens": cost.get("tokens"),
        "seconds": cost.get("seconds"),
        "curves": sorted((trial.get("curves") or {}).keys()),
    }


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
    registry: "Registry | None" = None,
) -> dict[str, Any]:
    """The top ``k`` policies for ``task`` ranked by the final metric, each with its cost."""
    pool = [t for t in trials if t.get("task") == task and t.get("kind", "train") == "train" and t.get("status") == TrialStatus.COMPLETED]
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
                "label": spec_label(best["policy"], registry),
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


def peak_lr(trial: dict[str, Any], registry: "Registry | None" = None) -> float | None:
    """The largest LR of a trial: from its LR curve, else from its spec's LR parameter(s)."""
    points = curve_points((trial.get("curves") or {}).get("lr"))
    if points:
        return max(v for _, v in points)
    stack = [trial.get("policy") or {}]
    best = None
    while stack:
        s = stack.pop()
        if "sequence" in s:
            stack.extend(s["sequence"])
            continue
        params = s.get("params") or {}
        numeric = [k for k, v in params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        key = lr_param(str(s.get("name", "")), numeric, registry)
        if key is not None:
            best = params[key] if best is None else max(best, params[key])
    return float(best) if best is not None else None


def _range_test_suggestion(trial: dict[str, Any]) -> tuple[float, float] | None:
    metrics = trial.get("metrics") or {}
    lo, hi = metrics.get("lr_min"), metrics.get("lr_max")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi:
        return float(lo), float(hi)
    curves = trial.get("curves") or {}
    lr_points, loss_points = curve_points(curves.get("lr")), curve_points(curves.get("loss"))
    if len(loss_points) < 5 or len(lr_points) < 2:
        return None
    # the two curves may have been downsampled to different steps: read the LR at each loss step
    lr_steps, lrs = np.array(lr_points, dtype=np.float64).T
    loss_steps, losses = np.array(loss_points, dtype=np.float64).T
    found = analyze_range_test(np.interp(loss_steps, lr_steps, lrs), losses)["lr_range"]
    return (float(found[0]), float(found[1])) if found else None


def lr_range(
    trials: Iterable[dict[str, Any]],
    task: str,
    *,
    model_family: str | None = None,
    model_size: str | None = None,
    metric: str | None = None,
    tolerance: float = 0.05,
    registry: "Registry | None" = None,
) -> dict[str, Any]:
    """What LR range worked for ``task``: from its range tests and from its best trials."""
    all_trials = [t for t in trials if t.get("task") == task]
    tests = [t for t in all_trials if t.get("kind") == "range_test" and t.get("status") in _RANGE_TEST_USABLE]
    tests, scope = _scoped(tests, model_family, model_size)
    per_test = []
    for t in tests:
        s = _range_test_suggestion(t)
        if s is not None:
            per_test.append({"trial": t["id"], "lower": s[0], "upper": s[1]})
    out: dict[str, Any] = {"task": task, "scope": scope, "range_tests": per_test, "suggested": None, "from_trials": None}
    if per_test:
        out["suggested"] = [statistics.median(p["lower"] for p in per_test), statistics.median(p["upper"] for p in per_test)]
    pool = [t for t in all_trials if t.get("kind", "train") == "train" and t.get("status") == TrialStatus.COMPLETED]
    pool, _ = _scoped(pool, model_family, model_size)
    metric, mode = _choose_metric(pool, metric)
    if metric is not None:
        scored = [(v, t) for t in pool if (v := trial_metric(t, metric)) is not None]
        if scored:
            sign = 1.0 if mode == "min" else -1.0
            best = min(scored, key=lambda vt: sign * vt[0])[0]
            margin = tolerance * max(abs(best), 1e-12)
            good = [t for v, t in scored if sign * (v - best) <= margin]
            peaks = [p for t in good if (p := peak_lr(t, registry)) is not None]
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
