"""Analyses across trials: metric against LR or any searched parameter, per-family spread over
seeds, range-test curves, parallel coordinates, parameter importance, and curve helpers.

Qt-free and torch-free (numpy; Optuna only inside :func:`param_importance`), so the Results
panel's views, the CLI and the tests share one implementation. Everything starts from
:func:`analysis_rows`: one light row per stored trial (no curves), with the parameters its
tuner searched (``extra.point``, else the spec's numeric parameters), its family, its peak LR,
its finite metrics and a ``group`` key that is equal for trials differing only in their seed.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from lrbench_gui.core.db.query import metric_mode, peak_lr
from lrbench_gui.core.records import TrialStatus, curve_points, spec_label, spec_params
from lrbench_gui.core.tuning.hints import LR_NAME
from lrbench_gui.core.tuning.range_analysis import analyze_range_test

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = [
    "PEAK_LR",
    "FAMILY",
    "IMPORTANCE_EVALUATORS",
    "analysis_rows",
    "metric_names",
    "param_names",
    "dimensions",
    "is_log_param",
    "metric_vs_param",
    "family_curves",
    "range_tests",
    "parallel_coordinates",
    "param_importance",
    "smooth",
    "x_axes",
    "curve_x",
    "compare_table",
]

#: the derived parameter "the largest LR of the trial" (from its LR curve, else its spec)
PEAK_LR = "peak LR"
#: the categorical parameter "which policy family"
FAMILY = "family"
#: importance evaluators by name: (Optuna class name, what the views call it)
IMPORTANCE_EVALUATORS = {"fanova": ("FanovaImportanceEvaluator", "fANOVA"),
                         "ped-anova": ("PedAnovaImportanceEvaluator", "PED-ANOVA")}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _group_key(trial: dict[str, Any]) -> str:
    """Equal for two trials that differ only in their seed (and their ids, times, results)."""
    return json.dumps([trial.get("task"), trial.get("task_params"), trial.get("policy"), trial.get("optimizer"),
                       (trial.get("budget") or {}).get("steps"), trial.get("kind", "train")], sort_keys=True, default=str)


def analysis_rows(trials: Iterable[dict[str, Any]], registry: "Registry | None" = None) -> list[dict[str, Any]]:
    """One row per trial: ``id study task kind status seed family label params lr metrics cost
    group objective``. ``params`` are the searched values (numbers, or strings for a choice)."""
    rows = []
    for t in trials:
        extra = t.get("extra") or {}
        policy = t.get("policy") or {}
        point = extra.get("point")
        if isinstance(point, dict) and point:
            # the values the policy ran with (a tuner's pair of LRs may have been put in order)
            ran = spec_params(policy)
            params = {str(k): ran.get(k, v) for k, v in point.items()}
            params = {k: v for k, v in params.items() if _finite(v) or isinstance(v, str)}
        else:  # a trial run on its own: its spec's numbers
            params = {str(k): v for k, v in (policy.get("params") or {}).items() if _finite(v)}
        try:
            lr = peak_lr(t, registry)
        except (ValueError, TypeError, KeyError, zlib.error):  # a damaged curve: no LR, the row stays
            lr = None
        cost = t.get("cost") or {}
        rows.append({
            "id": t.get("id"),
            "study": t.get("study"),
            "task": t.get("task"),
            "kind": t.get("kind", "train"),
            "status": t.get("status"),
            "seed": t.get("seed"),
            "family": str(extra.get("family") or policy.get("name") or ("sequence" if "sequence" in policy else "?")),
            "label": spec_label(policy, registry),
            "params": params,
            "lr": float(lr) if lr is not None and lr > 0 else None,
            "metrics": {k: float(v) for k, v in (t.get("metrics") or {}).items() if _finite(v)},
            "cost": {k: v for k, v in cost.items() if _finite(v)},
            "wall_seconds": extra.get("wall_seconds") if _finite(extra.get("wall_seconds")) else None,
            "objective": t.get("objective") or None,
            "group": _group_key(t),
            "curves": sorted((t.get("curves") or {}).keys()),
        })
    return rows


def _trained(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] != "range_test"]


def metric_names(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The metrics of the (non range-test) trials, the objective's first, then by how many have them."""
    rows = _trained(rows)
    counts = Counter(k for r in rows for k in r["metrics"])
    objectives = Counter((r["objective"] or {}).get("metric") for r in rows if r["objective"])
    first = [m for m, _ in objectives.most_common() if m in counts]
    rest = [m for m, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if m not in first]
    return first + rest


def objective_of(rows: Iterable[dict[str, Any]]) -> tuple[str | None, str]:
    """The metric most rows are ranked by and its mode ('min' or 'max')."""
    rows = _trained(rows)
    objectives = Counter(((r["objective"] or {}).get("metric"), (r["objective"] or {}).get("mode")) for r in rows if r["objective"])
    if objectives:
        (metric, mode), _ = objectives.most_common(1)[0]
        if metric:
            return metric, mode if mode in ("min", "max") else metric_mode(metric)
    names = metric_names(rows)
    return (names[0], metric_mode(names[0])) if names else (None, "min")


def param_values(rows: Sequence[dict[str, Any]], param: str) -> list[Any]:
    """Each row's value of ``param`` (:data:`PEAK_LR`, :data:`FAMILY` or a searched name), None where it has none."""
    if param == PEAK_LR:
        return [r["lr"] for r in rows]
    if param == FAMILY:
        return [r["family"] for r in rows]
    return [r["params"].get(param) for r in rows]


def param_names(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Parameters one can plot a metric against: the peak LR, the family (when there are
    several), then every searched name that varies, most common first."""
    rows = _trained(rows)
    out = [PEAK_LR] if any(r["lr"] is not None for r in rows) else []
    if len({r["family"] for r in rows}) > 1:
        out.append(FAMILY)
    counts = Counter(k for r in rows for k in r["params"])
    for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        values = {json.dumps(v) for v in param_values(rows, name) if v is not None}
        if len(values) > 1:
            out.append(name)
    return out


def dimensions(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The searched dimensions of these trials: the family when there are several, and each
    searched parameter that varies (the peak LR stands in when the LR's name differs between
    families)."""
    rows = _trained(rows)
    names = [p for p in param_names(rows) if p != PEAK_LR]
    common_lr = any(n != FAMILY and is_log_param(n) and all(n in r["params"] for r in rows) for n in names)
    if not common_lr and any(r["lr"] is not None for r in rows):
        names.insert(1 if names[:1] == [FAMILY] else 0, PEAK_LR)
    return names


def is_log_param(name: str, values: Iterable[Any] = ()) -> bool:
    """Whether a parameter is shown on a log axis: an LR (by name) whose values are all positive."""
    if name != PEAK_LR and not LR_NAME.search(name):
        return False
    return all(_finite(v) and v > 0 for v in values if v is not None)


def _metric_rows(rows: Iterable[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Completed trained trials that have ``metric``."""
    return [r for r in _trained(rows) if r["status"] == TrialStatus.COMPLETED and metric in r["metrics"]]


def metric_vs_param(rows: Iterable[dict[str, Any]], metric: str, param: str) -> dict[str, Any]:
    """The points (x, y) of ``metric`` against ``param`` over the completed trials that have
    both. A parameter with string values is categorical: x is the index into ``categories``."""
    chosen = _metric_rows(rows, metric)
    values = param_values(chosen, param)
    keep = [(r, v) for r, v in zip(chosen, values) if v is not None and (isinstance(v, str) or _finite(v))]
    categorical = any(isinstance(v, str) for _, v in keep)
    categories = sorted({str(v) for _, v in keep}) if categorical else []
    xs = [float(categories.index(str(v))) if categorical else float(v) for _, v in keep]
    return {
        "metric": metric, "param": param, "x": xs, "y": [r["metrics"][metric] for r, _ in keep],
        "ids": [r["id"] for r, _ in keep], "families": [r["family"] for r, _ in keep],
        "categorical": categorical, "categories": categories,
        "log_x": not categorical and bool(xs) and is_log_param(param, xs),
        "left_out": len(chosen) - len(keep),
    }


def family_curves(rows: Iterable[dict[str, Any]], metric: str) -> dict[str, list[dict[str, Any]]]:
    """Per family, ``metric`` against the peak LR: one point per configuration (trials equal
    but for their seed are one configuration), sorted by LR, with the mean, min and max over
    its seeds and their number ``n``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in _metric_rows(rows, metric):
        if r["lr"] is not None:
            groups[(r["family"], r["group"])].append(r)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (family, _), members in groups.items():
        vals = np.array([m["metrics"][metric] for m in members], dtype=np.float64)
        out[family].append({
            "lr": float(np.median([m["lr"] for m in members])),
            "mean": float(vals.mean()), "min": float(vals.min()), "max": float(vals.max()),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, "n": len(members),
            "ids": [m["id"] for m in members], "seeds": [m["seed"] for m in members],
        })
    return {f: sorted(pts, key=lambda p: p["lr"]) for f, pts in sorted(out.items())}


def range_tests(trials: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loss against the LR of each usable range test among ``trials`` (the LR read at each
    loss step: the two curves may have been downsampled differently), with its suggested range."""
    out = []
    for t in trials:
        if t.get("kind") != "range_test" or t.get("status") not in (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.DIVERGED):
            continue
        try:
            lr_pts = curve_points((t.get("curves") or {}).get("lr"))
            loss_pts = curve_points((t.get("curves") or {}).get("loss"))
        except (ValueError, TypeError, KeyError, zlib.error):
            continue
        if len(lr_pts) < 2 or len(loss_pts) < 2:
            continue
        lr_s, lr_v = np.array(lr_pts, dtype=np.float64).T
        loss_s, loss_v = np.array(loss_pts, dtype=np.float64).T
        lrs = np.interp(loss_s, lr_s, lr_v)
        ok = np.isfinite(loss_v) & (lrs > 0)
        metrics = t.get("metrics") or {}
        lo, hi = metrics.get("lr_min"), metrics.get("lr_max")
        if _finite(lo) and _finite(hi) and 0 < lo <= hi:
            suggested = (float(lo), float(hi))
        else:
            found = analyze_range_test(lrs[ok], loss_v[ok])["lr_range"] if ok.sum() >= 5 else None
            suggested = (float(found[0]), float(found[1])) if found else None
        out.append({"id": t.get("id"), "study": t.get("study"), "task": t.get("task"),
                    "lr": lrs[ok].tolist(), "loss": loss_v[ok].tolist(), "suggested": suggested})
    return out


def parallel_coordinates(rows: Iterable[dict[str, Any]], metric: str, params: Sequence[str] | None = None) -> dict[str, Any]:
    """One polyline per completed trial across the axes ``params`` (default: :func:`dimensions`)
    then ``metric``, each axis scaled to [0, 1] (log for an LR; a choice's values evenly spaced),
    with tick labels per axis. A trial without a value on an axis has NaN there."""
    rows = list(rows)
    chosen = _metric_rows(rows, metric)
    params = list(params if params is not None else dimensions(rows))
    axes, ticks, columns = [*params, metric], {}, {}
    for name in axes:
        raw = [r["metrics"][metric] for r in chosen] if name == metric else param_values(chosen, name)
        if any(isinstance(v, str) for v in raw):
            cats = sorted({str(v) for v in raw if v is not None})
            span = max(1, len(cats) - 1)
            columns[name] = [cats.index(str(v)) / span if v is not None else math.nan for v in raw]
            ticks[name] = [(i / span, c) for i, c in enumerate(cats)]
            continue
        nums = np.array([float(v) if _finite(v) else math.nan for v in raw], dtype=np.float64)
        log = name != metric and is_log_param(name, [v for v in nums if math.isfinite(v)])
        scaled = np.log10(nums) if log else nums
        finite = scaled[np.isfinite(scaled)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        span = hi - lo if hi > lo else 1.0
        columns[name] = ((scaled - lo) / span).tolist()
        tick_vals = [lo, lo + span / 2, hi] if hi > lo else [lo]
        ticks[name] = [((v - lo) / span, f"{(10 ** v if log else v):.3g}") for v in tick_vals]
    return {"axes": axes, "columns": columns, "ticks": ticks, "ids": [r["id"] for r in chosen],
            "values": [r["metrics"][metric] for r in chosen], "families": [r["family"] for r in chosen]}


def param_importance(rows: Iterable[dict[str, Any]], metric: str, mode: str | None = None, *,
                     evaluator: str = "fanova", params: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """How much each searched dimension explains ``metric``, by one of Optuna's importance
    evaluators (``fanova``: fANOVA on a random forest, or ``ped-anova``: PED-ANOVA on the top
    trials): the completed trials become an in-memory Optuna study (``create_trial``) over the
    dimensions every one of them has. Returns ``{"evaluator", "importances" (name -> share,
    largest first), "params", "trials", "note"}``; ``importances`` is empty (and ``note`` says
    why) when there is too little to go on."""
    if evaluator not in IMPORTANCE_EVALUATORS:
        raise ValueError(f"unknown importance evaluator {evaluator!r}; use one of: {', '.join(IMPORTANCE_EVALUATORS)}")
    class_name, title = IMPORTANCE_EVALUATORS[evaluator]
    rows = list(rows)
    chosen = _metric_rows(rows, metric)
    wanted = list(params if params is not None else dimensions(rows))
    out: dict[str, Any] = {"evaluator": title, "metric": metric, "importances": {}, "params": [], "trials": len(chosen), "note": ""}
    usable = []
    for name in wanted:
        values = param_values(chosen, name)
        if any(v is None for v in values):
            continue  # Optuna's evaluators need a value in every trial
        if len({json.dumps(v) for v in values}) > 1:
            usable.append((name, values))
    if len(chosen) < 3:
        out["note"] = f"parameter importance needs at least 3 completed trials with {metric}; these have {len(chosen)}"
        return out
    if len(usable) < 2:
        out["note"] = "parameter importance needs at least two dimensions that vary in every trial"
        return out
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution
    except ImportError:
        out["note"] = "parameter importance needs Optuna (pip install optuna)"
        return out
    distributions = {}
    for name, values in usable:
        if any(isinstance(v, str) for v in values):
            distributions[name] = CategoricalDistribution(sorted({str(v) for v in values}))
        else:
            lo, hi = min(values), max(values)
            distributions[name] = FloatDistribution(float(lo), float(hi), log=is_log_param(name, values) and lo > 0)
    trials = []
    for i, r in enumerate(chosen):
        point = {name: (str(values[i]) if isinstance(distributions[name], CategoricalDistribution) else float(values[i]))
                 for name, values in usable}
        trials.append(optuna.trial.create_trial(params=point, distributions=distributions, value=r["metrics"][metric]))
    mode = mode or metric_mode(metric)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        study.add_trials(trials)
        kwargs = {"seed": seed, "n_trees": 32} if evaluator == "fanova" else {}  # half Optuna's forest: a second, not several
        found = optuna.importance.get_param_importances(study, evaluator=getattr(optuna.importance, class_name)(**kwargs))
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        out["note"] = f"{title} could not rank these trials: {exc}"
        return out
    finally:
        optuna.logging.set_verbosity(verbosity)
    out["importances"] = {k: float(v) for k, v in found.items() if math.isfinite(v)}
    out["params"] = [name for name, _ in usable]
    out["note"] = f"{title} over {len(chosen)} trials and {len(usable)} dimensions"
    return out


def smooth(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with ``weight`` in [0, 1) (0: none),
    debiased so the first points are not pulled towards zero; NaNs are skipped."""
    y = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(y) == 0:
        return y.copy()
    weight = min(weight, 0.999)
    out = np.empty_like(y)
    last, n = 0.0, 0
    for i, v in enumerate(y):
        if not math.isfinite(v):
            out[i] = v
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out[i] = last / (1 - weight ** n)
    return out


def x_axes(row: dict[str, Any]) -> list[str]:
    """The x axes a trial's curves can be drawn against: ``step`` always, ``tokens`` and
    ``seconds`` where its cost recorded them (the step's share of the total: a steady rate)."""
    cost = row.get("cost") or {}
    out = ["step"]
    if (cost.get("steps") or 0) > 0 and (cost.get("tokens") or 0) > 0:
        out.append("tokens")
    if (cost.get("steps") or 0) > 0 and ((cost.get("seconds") or 0) > 0 or (row.get("wall_seconds") or 0) > 0):
        out.append("seconds")
    return out


def curve_x(steps: np.ndarray, row: dict[str, Any], axis: str) -> np.ndarray | None:
    """``steps`` as ``axis`` (see :func:`x_axes`), None where the trial did not record it."""
    steps = np.asarray(steps, dtype=np.float64)
    if axis == "step":
        return steps
    if axis not in x_axes(row):
        return None
    cost = row["cost"]
    total = cost.get("tokens") if axis == "tokens" else (cost.get("seconds") or row.get("wall_seconds"))
    return (steps + 1) * (float(total) / float(cost["steps"]))


def compare_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Trials side by side: field names (label, family, status, seed, each parameter, each
    metric, the cost) and per trial one column of formatted values ('' where it has none)."""
    def fmt(v: Any) -> str:
        if v is None:
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    params = sorted({k for r in rows for k in r["params"]})
    metrics = sorted({k for r in rows for k in r["metrics"]})
    costs = [c for c in ("steps", "tokens", "seconds") if any(c in r["cost"] for r in rows)]
    fields = ["policy", "family", "status", "seed", PEAK_LR, *params, *metrics, *(f"cost: {c}" for c in costs)]
    columns = []
    for r in rows:
        col = [r["label"], r["family"], str(r["status"]), fmt(r["seed"]), fmt(r["lr"])]
        col += [fmt(r["params"].get(p)) for p in params]
        col += [fmt(r["metrics"].get(m)) for m in metrics]
        col += [fmt(r["cost"].get(c)) for c in costs]
        columns.append(col)
    return fields, columns
