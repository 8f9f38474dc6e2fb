"""Questions answered from stored trials: which policies did best on a task, and what LR range
worked. Pure functions over trial records, so they are tested without a database file.

Ranking: only *comparable* trials are pooled. The completed trials of the task that recorded
the metric are first split by :func:`comparable_key` (the task's parameters, the budget, the
world size, the model's family, size and tokenizer): an 11-step and a 33-step run, a 1-rank and
a 2-rank run, two models with different tokenizers never share a mean. The ranking is made in
the largest such group (equally large: the one whose best policy does best), and says which
(``group``) and what else there was (``groups``). Within it, trials are grouped by policy (the
exact spec: a cosine at 1e-4 and a cosine at 3e-4 are two policies); a policy's score is the
mean of its trials' final metric (its seeds), ties broken by lower mean cost in seconds, then
steps. The metric is the one named, else the objective most trials of the task name; the
direction comes from the trials' objective, else from the metric's name.

LR range: from range tests (``kind == "range_test"``; a range test's own budget is its
sweep, so they are not split into groups), each test's suggestion is the
``lr_min``/``lr_max`` metrics its tuner recorded, else the ``lr_range`` that
:func:`lrbench_gui.core.tuning.range_analysis.analyze_range_test` (the one range-test reader)
finds in its LR and loss curves: from the LR where the smoothed loss fell fastest to the LR of
the lowest smoothed loss. The task's range is the median of the lower and of the upper ends.
From ordinary trials, the peak LRs of the trials whose metric is within ``tolerance`` of the
best, in the same group of comparable trials that the ranking uses, give a second, empirical
range.

Labels and peak LRs name a spec's LR by the parameter role its policy declares (the
``registry`` argument; :func:`lrbench_gui.core.records.lr_param`), so a third-party policy
takes part like a built-in.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import zlib
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from lrbench_gui.core.records import TrialRecord, TrialStatus, curve_points, lr_param, spec_label
from lrbench_gui.core.tuning.range_analysis import analyze_range_test

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = ["recommend", "lr_range", "metric_mode", "trial_metric", "peak_lr", "trial_row", "comparable_key", "describe_group",
           "SYSTEM_TAGS", "validate_tags", "filter_rows", "group_rows", "ROW_GROUPS"]

_MAXIMIZE = re.compile(r"acc|f1|score|auc|bleu|rouge|exact|reward|precision|recall|map\b|ndcg|win", re.IGNORECASE)
#: range tests whose curves say something (a diverged test is the usual end of one)
_RANGE_TEST_USABLE = frozenset({TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.DIVERGED})


def _points(curve: Any) -> list[tuple[int, float]]:
    """:func:`curve_points`, with a curve that cannot be decoded (a hand-edited file) read as
    empty: one damaged record must not stop a recommendation."""
    try:
        return curve_points(curve)
    except (ValueError, TypeError, KeyError, zlib.error):
        return []


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
        "spec": trial["policy"],
        "seed": trial.get("seed"),
        "budget": trial.get("budget") or {},
        "task_params": trial.get("task_params") or {},
        "family": (trial.get("policy") or {}).get("name") or "composition",
        "status": trial["status"],
        "tags": list(trial.get("tags") or []),
        "notes": trial.get("notes") or "",
        "metric": metric,
        "value": metrics.get(metric) if metric else None,
        "mode": objective.get("mode"),
        "steps": cost.get("steps"),
        "tokens": cost.get("tokens"),
        "seconds": cost.get("seconds"),
        "curves": sorted((trial.get("curves") or {}).keys()),
    }


#: tags lrbench sets itself (resume and pruning read them): kept when a user edits the tags
SYSTEM_TAGS = frozenset({"interrupted", "pruned"})
_TAG = re.compile(r"^[\w.:/+@-]{1,64}$")
#: what a table of trial rows can be grouped by: label -> row key
ROW_GROUPS = {"task": "task", "family": "family", "status": "status", "tag": "tags", "study": "study"}


def validate_tags(tags: Iterable[Any]) -> list[str]:
    """Tags as a user gives them, checked: each a word of letters, digits and ``_ . : / + @ -``
    (at most 64), none of :data:`SYSTEM_TAGS`, at most 60; duplicates dropped, order kept.
    Raises ``ValueError`` with one line that says what to change."""
    out: list[str] = []
    for tag in tags:
        text = str(tag).strip() if isinstance(tag, str) else None
        if not text or not _TAG.match(text):
            raise ValueError(f"tag {tag!r}: use letters, digits and _ . : / + @ - (no spaces, at most 64 characters)")
        if text in SYSTEM_TAGS:
            raise ValueError(f"tag {text!r} is set by lrbench itself; choose another word")
        if text not in out:
            out.append(text)
    if len(out) > 60:
        raise ValueError(f"{len(out)} tags; the limit is 60")
    return out


def filter_rows(rows: Iterable[dict[str, Any]], *, task: str | None = None, family: str | None = None,
                status: str | None = None, tag: str | None = None, study: str | None = None,
                text: str | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`trial_row` that match every filter given (None: any): the task, the
    policy family, the status, a tag, the study exactly; ``text`` anywhere in the id, study,
    task, label or tags, ignoring case."""
    needle = (text or "").strip().casefold()
    out = []
    for row in rows:
        if task is not None and row.get("task") != task:
            continue
        if family is not None and row.get("family") != family:
            continue
        if status is not None and row.get("status") != status:
            continue
        if tag is not None and tag not in (row.get("tags") or []):
            continue
        if study is not None and row.get("study") != study:
            continue
        if needle:
            hay = " ".join(str(row.get(k) or "") for k in ("id", "study", "task", "policy", "label"))
            if needle not in (hay + " " + " ".join(row.get("tags") or [])).casefold():
                continue
        out.append(row)
    return out


def group_rows(rows: Iterable[dict[str, Any]], by: str) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by one of :data:`ROW_GROUPS` (by tag, a row is in the group of each of its
    tags, an untagged row in ``""``); groups in name order."""
    if by not in ROW_GROUPS:
        raise ValueError(f"group by one of {', '.join(ROW_GROUPS)}, not {by!r}")
    key = ROW_GROUPS[by]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        value = row.get(key)
        for name in (value or [""]) if key == "tags" else [value]:
            groups["" if name is None else str(name)].append(row)
    return dict(sorted(groups.items()))


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


def _whole(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def comparable_key(trial: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two trials' metrics to be averaged: the task's parameters, the
    budget (steps, else the steps it ran; epochs, tokens), the world size (``extra.world_size``;
    a trial that does not record one ran as one process), the model's family and size and the
    tokenizer (``extra.tokenizer``, or a ``tokenizer`` task parameter)."""
    budget = trial.get("budget") or {}
    cost = trial.get("cost") or {}
    model = trial.get("model") or {}
    extra = trial.get("extra") or {}
    params = trial.get("task_params") or {}
    steps = budget.get("steps") if budget.get("steps") is not None else cost.get("steps")
    tokenizer = extra.get("tokenizer", params.get("tokenizer") if isinstance(params, dict) else None)
    return {
        "task_params": params,
        "steps": _whole(steps),
        "epochs": budget.get("epochs"),
        "tokens": _whole(budget.get("tokens")),
        "world_size": _whole(extra.get("world_size")) or 1,
        "model_family": model.get("family"),
        "model_size": model.get("size"),
        "tokenizer": tokenizer if isinstance(tokenizer, (str, int, float)) or tokenizer is None else json.dumps(tokenizer, sort_keys=True)[:200],
    }


def describe_group(key: dict[str, Any]) -> str:
    """A group key in words: ``steps 33, world size 1, model mlp/small, task_params {"hidden": 64}``."""
    parts = []
    for name in ("steps", "epochs", "tokens"):
        if key.get(name) is not None:
            parts.append(f"{name} {key[name]:g}" if isinstance(key[name], float) else f"{name} {key[name]}")
    parts.append(f"world size {key.get('world_size', 1)}")
    model = "/".join(str(key[k]) for k in ("model_family", "model_size") if key.get(k))
    if model:
        parts.append(f"model {model}")
    if key.get("tokenizer") is not None:
        parts.append(f"tokenizer {key['tokenizer']}")
    params = json.dumps(key.get("task_params") or {}, sort_keys=True)
    parts.append(f"task_params {params if len(params) <= 120 else params[:117] + '...'}")
    return ", ".join(parts)


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
    steps: int | None = None,
    world_size: int | None = None,
) -> dict[str, Any]:
    """The top ``k`` policies for ``task`` ranked by the final metric, each with its cost, within
    one group of comparable trials (see the module docstring; ``steps`` and ``world_size`` pick
    the group instead of the largest).

    Returns ``task, metric, mode, scope, considered, results`` as before, plus ``group`` (the
    chosen group's :func:`comparable_key`), ``group_text`` (it in words) and ``groups`` (every
    group: key, words, number of trials, whether it was chosen).
    """
    pool = [t for t in trials if t.get("task") == task and t.get("kind", "train") == "train" and t.get("status") == TrialStatus.COMPLETED]
    pool, scope = _scoped(pool, model_family, model_size)
    metric, mode = _choose_metric(pool, metric)
    out: dict[str, Any] = {"task": task, "metric": metric, "mode": mode, "scope": scope, "considered": 0, "results": [],
                           "group": None, "group_text": None, "groups": []}
    if metric is None:
        return out
    sign = 1.0 if mode == "min" else -1.0
    cohorts: dict[str, tuple[dict[str, Any], list[tuple[float, dict]]]] = {}
    for t in pool:
        value = trial_metric(t, metric)
        if value is None:
            continue
        key = comparable_key(t)
        if (steps is not None and key["steps"] != steps) or (world_size is not None and key["world_size"] != world_size):
            continue
        cohorts.setdefault(json.dumps(key, sort_keys=True, default=str), (key, []))[1].append((value, t))
    if not cohorts:
        return out
    ranked_groups = {name: _rank(members, sign, registry) for name, (_, members) in cohorts.items()}
    chosen = min(cohorts, key=lambda name: (-len(cohorts[name][1]), sign * ranked_groups[name][0]["mean"], name))
    key, members = cohorts[chosen]
    ranked = ranked_groups[chosen]
    out["considered"] = len(members)
    out["group"] = key
    out["group_text"] = describe_group(key)
    out["groups"] = sorted(
        ({"key": k, "text": describe_group(k), "trials": len(m), "chosen": name == chosen} for name, (k, m) in cohorts.items()),
        key=lambda g: (not g["chosen"], -g["trials"], g["text"]),
    )
    for i, r in enumerate(ranked[: max(0, k)], 1):
        r["rank"] = i
    out["results"] = ranked[: max(0, k)]
    return out


def _rank(members: list[tuple[float, dict]], sign: float, registry: "Registry | None") -> list[dict[str, Any]]:
    """The policies of one group of comparable trials, best first."""
    groups: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for value, t in members:
        groups[json.dumps(t["policy"], sort_keys=True)].append((value, t))
    ranked = []
    for _, same in groups.items():
        values = [v for v, _ in same]
        best_value, best = min(same, key=lambda vt: sign * vt[0])
        costs = [m[1].get("cost") or {} for m in same]
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
                "trials": sorted(m[1]["id"] for m in same)[:50],
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
    return ranked


def peak_lr(trial: dict[str, Any], registry: "Registry | None" = None) -> float | None:
    """The largest LR of a trial: from its LR curve, else from its spec's LR parameter(s)."""
    points = _points((trial.get("curves") or {}).get("lr"))
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
    lr_points, loss_points = _points(curves.get("lr")), _points(curves.get("loss"))
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
        sign = 1.0 if mode == "min" else -1.0
        key: dict[str, Any] | None = None
        if scored:  # the best trials of one group of comparable trials only
            cohorts: dict[str, list[tuple[float, dict]]] = defaultdict(list)
            for v, t in scored:
                cohorts[json.dumps(comparable_key(t), sort_keys=True, default=str)].append((v, t))
            chosen = min(cohorts, key=lambda name: (-len(cohorts[name]), min(sign * v for v, _ in cohorts[name]), name))  # the largest; ties: the best trial
            scored = cohorts[chosen]
            key = comparable_key(scored[0][1])
        if scored:
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
                    "group": key,
                    "group_text": describe_group(key) if key else None,
                }
    return out
