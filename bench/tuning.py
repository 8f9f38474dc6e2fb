"""Tuner figures: how close each tuner gets to a full grid, and at what share of its compute.

For each task (``digits-mlp``; ``tinylm-pretrain`` in the full mode):

1. **Oracle**: the ``grid`` tuner over several policy families x a log grid of LRs, every point at
   the full budget, run once as a real study (subprocess trials, 2 side by side, 1 thread each).
   Its best final ``val_loss`` is the oracle; its compute (steps run) is the denominator of every
   compute fraction below.
2. **Tuners** (``random``; ``bayes`` with ``startup_trials`` = one per family, with its defaults,
   with the median pruner, with the GP sampler; ``halving`` async and sync), each given the whole
   full-budget trials that fit in 25 % of the grid's compute, several seeds each, as real studies
   (:class:`~lrbench_gui.core.study.Study`: its ``next_trials`` / ``on_event`` / ``on_finished``
   loop, 2 trials asked at a time like ``parallel=2``) whose LRs are searched in the grid's range
   and **snapped to the nearest grid LR** when run, so every full-budget point they ask is a grid
   point. A memoized executor answers a trial it has seen (same task, spec and steps) from the
   grid's record, replaying its eval events through the study (so pruning acts as it would), and
   runs a real trial otherwise (halving's short rungs). Compute is accounted as if every asked
   trial ran: the sum of the steps of the records the study was told (a pruned trial counts up to
   the eval that pruned it). The trial seed (data order, init) is the benchmark's, the same for
   every study; the study's seed only seeds the tuner.
3. **Plain Optuna anchor**: ``TPESampler(seed)`` + ``MedianPruner()`` with their defaults, family
   categorical, LR log-uniform in the grid's range snapped to it, ``trial.report`` of the eval
   curve and ``should_prune``; it runs until it has spent the tuners' budget in steps (a trial
   still running at that point is cut and counts as failed).
4. **range-test**: one real ``range-test`` study (the tuner's defaults, the task's full budget);
   its chosen LR and each suggestion against the grid's best ``fixed`` LR: ``max(a/b, b/a)``.
   ``value-range`` (LRBench's test, its defaults) is reported the same way, for information.

Goals (the issue's): ``halving`` and ``bayes`` within 1 % of the oracle at no more than 25 % of
the grid's compute and ahead of plain Optuna at equal compute; the range test within 3x.

Usage: python bench/tuning.py [--quick] [--tasks digits-mlp,tinylm-pretrain] [--seeds N] [--cache DIR]
The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_SEED = 0  # the trial seed of every trial: the same data order and init for every study
PARALLEL = 2
BUDGET_SHARE = 0.25  # the compute the tuners get, as a share of the grid's
LR_PARAMS = ("lr", "max_lr")  # the searched LR parameter of each family used here


@dataclass
class Setup:
    task: str
    steps: int
    families: list[str]
    lr_low: float
    lr_high: float
    n_lrs: int
    batch: int
    seeds: list[int]
    task_params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    halving: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # only the overrides of the families searched
        self.overrides = {k: v for k, v in self.overrides.items() if k.split(".")[0] in self.families}

    @property
    def lrs(self) -> list[float]:
        from lrbench_gui.core.tuning.space import Dim

        return Dim("lr", "float", self.lr_low, self.lr_high, True).grid(self.n_lrs)


def setups(quick: bool, tasks: list[str], seeds: int | None) -> list[Setup]:
    # step: gamma fixed at its default (0.1 at each third); triangle2: min_lr fixed below the grid,
    # so each family has exactly one searched dimension, its peak LR
    digits_ov = {"step.gamma": 0.1, "triangle2.min_lr": 1e-4}
    lm_ov = {"step.gamma": 0.1}
    if quick:
        table = {
            "digits-mlp": Setup("digits-mlp", 150, ["fixed", "step", "cosine", "triangle2"], 1e-3, 1e-1, 5, 32,
                                list(range(seeds or 5)), overrides=digits_ov),
            "tinylm-pretrain": Setup("tinylm-pretrain", 120, ["fixed", "cosine", "wsd"], 2e-3, 3.2e-2, 5, 16,
                                     list(range(seeds or 2)), overrides=lm_ov),
        }
    else:
        table = {
            "digits-mlp": Setup("digits-mlp", 300, ["fixed", "step", "cosine", "triangle2"], 2.5e-3, 0.16, 7, 32,
                                list(range(seeds or 20)), overrides=digits_ov),
            "tinylm-pretrain": Setup("tinylm-pretrain", 400, ["fixed", "step", "cosine", "wsd"], 6.25e-4, 4e-2, 7, 16,
                                     list(range(seeds or 20)), overrides=lm_ov),
        }
    return [table[t] for t in tasks]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def snap(value: float, grid: list[float]) -> float:
    return min(grid, key=lambda g: abs(math.log(value / g)))


# The memoized executor.


class Executor:
    """Runs trial configs for real once per (task, spec, steps...) and replays them after."""

    def __init__(self, setup: Setup, workdir: Path) -> None:
        self.setup = setup
        self.workdir = workdir
        self.cache: dict[str, dict[str, Any]] = {}
        self.real_trials = 0
        self.real_steps = 0
        self.real_seconds = 0.0

    def canonical(self, cfg: Any, snap_lr: bool = True) -> Any:
        """The config actually run: the LR snapped to the grid (searches only), the benchmark's
        trial seed."""
        policy = json.loads(json.dumps(cfg.policy))
        if snap_lr and policy.get("name") in self.setup.families:
            for name in LR_PARAMS:
                if name in policy.get("params", {}):
                    policy["params"][name] = snap(float(policy["params"][name]), self.setup.lrs)
        cfg = cfg.model_copy(update={"policy": policy, "seed": DATA_SEED, "study_id": None})
        return cfg.model_copy(update={"trial_id": "bench-" + hashlib.sha1(self.key(cfg).encode()).hexdigest()[:12]})

    @staticmethod
    def key(cfg: Any) -> str:
        return json.dumps({
            "task": cfg.task, "task_params": cfg.task_params, "policy": cfg.policy, "budget": cfg.budget.steps,
            "batch": cfg.batch_size, "optimizer": cfg.optimizer.model_dump(mode="json"), "eval": cfg.eval_every,
            "seed": cfg.seed, "diverge": cfg.diverge_factor, "log_every": cfg.log_every, "threads": cfg.threads,
        }, sort_keys=True)

    def ensure(self, cfgs: list[Any]) -> None:
        """Run (``PARALLEL`` at a time) the configs not seen yet."""
        from lrbench_gui.core.runs.runner import LocalScheduler

        todo: dict[str, Any] = {}
        for cfg in cfgs:
            k = self.key(cfg)
            if k not in self.cache and k not in todo:
                todo[k] = cfg
        if not todo:
            return
        by_id = {cfg.trial_id: k for k, cfg in todo.items()}
        sched = LocalScheduler(PARALLEL, workdir=self.workdir)
        for cfg in todo.values():
            sched.submit(cfg)
        t0 = time.perf_counter()
        records = sched.run()
        self.real_seconds += time.perf_counter() - t0
        for tid, rec in records.items():
            self.cache[by_id[tid]] = rec
            self.real_trials += 1
            self.real_steps += int((rec.get("cost") or {}).get("steps", 0) or 0)
            if rec.get("status") == "failed":
                log(f"trial {tid} failed: {rec.get('notes', '')[-400:]}")

    def record(self, cfg: Any) -> dict[str, Any]:
        self.ensure([cfg])
        return self.cache[self.key(cfg)]


def eval_curve(rec: dict[str, Any], metric: str) -> list[tuple[int, float]]:
    c = (rec.get("curves") or {}).get(f"eval/{metric}") or {}
    return [(int(s), float(v)) for s, v in zip(c.get("steps", []), c.get("values", []))]


def final_value(rec: dict[str, Any], metric: str) -> float | None:
    v = (rec.get("metrics") or {}).get(metric)
    if rec.get("status") != "completed" or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def drive(study: Any, ex: Executor) -> None:
    """A study's loop with the memoized executor: ask ``PARALLEL``, run or recall, replay, tell.
    The LR tests run the LRs they ask for; the searches' LRs are snapped to the grid."""
    from lrbench_gui.core.runs.protocol import Event

    metric = study.objective.metric
    while not study.finished:
        cfgs = study.next_trials(PARALLEL)
        if not cfgs:
            if study.running:
                raise RuntimeError("study waits on trials that were never told")
            break
        snap_lr = study.config.tuner not in ("range-test", "value-range")
        runs = [ex.canonical(c, snap_lr) for c in cfgs]
        ex.ensure(runs)
        for cfg, run in zip(cfgs, runs):
            rec = json.loads(json.dumps(ex.record(run)))
            stopped_at = None
            for step, value in eval_curve(rec, metric):
                if not study.on_event(cfg.trial_id, Event("eval", cfg.trial_id, {"step": step, "metrics": {metric: value}})):
                    stopped_at = step
                    break
            done = int((rec.get("cost") or {}).get("steps", 0) or 0)
            if stopped_at is not None and stopped_at + 1 < done:  # pruned: what a cancelled trial leaves
                rec["status"] = "stopped"
                rec["metrics"] = {}
                rec["cost"] = {**rec["cost"], "steps": stopped_at + 1}
                rec["curves"] = {k: {"steps": [s for s in c["steps"] if s <= stopped_at],
                                     "values": [v for s, v in zip(c["steps"], c["values"]) if s <= stopped_at]}
                                 for k, c in rec.get("curves", {}).items()}
            rec.update(id=cfg.trial_id, study=study.config.study_id)
            study.on_finished(cfg.trial_id, rec)


def make_study(setup: Setup, tuner: str, tuner_params: dict[str, Any], trials: int, seed: int,
               policies: list[str] | None = None, steps: int | None = None) -> Any:
    from lrbench_gui.core.tuning.study import Study, StudyConfig

    cfg = StudyConfig(
        task=setup.task, task_params=setup.task_params, tuner=tuner, tuner_params=tuner_params,
        policies=policies or setup.families, overrides=setup.overrides if policies is None else {},
        lr_range=(setup.lr_low, setup.lr_high), budget_steps=steps or setup.steps, trials=trials,
        parallel=PARALLEL, batch_size=setup.batch, seed=seed, threads=1,
    )
    from lrbench_gui.plugins import get_registry

    return Study(cfg, registry=get_registry())


def best_of(study: Any) -> tuple[float | None, dict[str, Any] | None]:
    """The best full-budget value the study found, and what it was (family, snapped LR). A
    partial rung (halving) never counts, whatever ``Study.best()`` ranks first."""
    full = study.config.budget_steps
    for row in study.ranking():
        req = study.requests[row["trial"]]
        if row["value"] is None or row["status"] != "completed" or req.steps < full:
            continue
        params = study.records[row["trial"]]["policy"].get("params", {})
        lr = next((params[n] for n in LR_PARAMS if n in params), None)
        return float(row["value"]), {"family": req.family, "lr": lr}
    return None, None


# The plain Optuna anchor.


def optuna_anchor(setup: Setup, ex: Executor, budget: int, seed: int, metric: str) -> dict[str, Any]:
    import optuna

    from lrbench_gui.core.tuning.space import policy_space
    from lrbench_gui.core.tuning.study import Study
    from lrbench_gui.core.tuner import TrialRequest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from lrbench_gui.plugins import get_registry

    space = policy_space(setup.families, get_registry(), overrides=setup.overrides, lr_range=(setup.lr_low, setup.lr_high))
    template = make_study(setup, "grid", {"points": 1}, 1, 0)  # for trial_config (the same trial files)
    assert isinstance(template, Study)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())
    spent, best, best_point, n, pruned = 0, math.inf, None, 0, 0

    while spent < budget:
        t = study.ask()
        family = t.suggest_categorical("family", setup.families)
        lr = snap(t.suggest_float("lr", setup.lr_low, setup.lr_high, log=True), setup.lrs)
        (dim,) = space.family(family).dims
        req = TrialRequest(key=f"o{t.number:04d}", policy=space.build(family, {dim.name: lr}, setup.steps),
                           steps=setup.steps, family=family)
        rec = ex.record(ex.canonical(template.trial_config(req)))
        allowed = budget - spent
        done = max(1, int(rec["cost"]["steps"]))  # a trial that failed at once still cost its start
        used, state = done, "complete"
        for step, value in eval_curve(rec, metric):
            if step + 1 > allowed:
                used, state = allowed, "cut"
                break
            t.report(value, step)
            if t.should_prune():
                used, state = step + 1, "pruned"
                break
        if state == "complete" and done > allowed:
            used, state = allowed, "cut"
        value = final_value(rec, metric) if state == "complete" else None
        n += 1
        spent += used
        if state == "pruned":
            pruned += 1
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        elif value is None:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(t, value)
            if value < best:
                best, best_point = value, {"family": family, "lr": lr}
    return {"best": best if math.isfinite(best) else None, "point": best_point, "steps": spent, "trials": n,
            "pruned": pruned}


# One task.


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b or a <= 0 or b <= 0:
        return None
    return max(a / b, b / a)


def summarize(gaps: list[float | None], fracs: list[float]) -> dict[str, Any]:
    vals = [g if g is not None else math.inf for g in gaps]
    finite = [g for g in vals if math.isfinite(g)]
    return {
        "rel_gap_mean": statistics.fmean(vals) if finite and len(finite) == len(vals) else None,
        "rel_gap_worst": max(vals) if finite and len(finite) == len(vals) else None,
        "rel_gap_best": min(finite) if finite else None,
        "found_oracle": sum(1 for g in vals if g <= 1e-12),
        "runs_without_result": len(vals) - len(finite),
        "compute_fraction_mean": statistics.fmean(fracs),
        "compute_fraction_max": max(fracs),
        "seeds": len(vals),
        "rel_gaps": [None if g is None else round(g, 5) for g in gaps],
    }


def run_task(setup: Setup, cache: Path | None = None) -> dict[str, Any]:
    t_task = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lrbench-tuning-") as tmp:
        ex = Executor(setup, Path(tmp))
        if cache is not None and cache.exists():
            ex.cache.update(json.loads(cache.read_text()))
            log(f"{setup.task}: {len(ex.cache)} trial records read from {cache}")
        try:
            return _run_task(setup, ex, t_task)
        finally:
            if cache is not None:
                cache.write_text(json.dumps(ex.cache))


def _run_task(setup: Setup, ex: Executor, t_task: float) -> dict[str, Any]:
    lrs = setup.lrs
    log(f"{setup.task}: grid {len(setup.families)} families x {len(lrs)} LRs "
        f"({', '.join(f'{x:.3g}' for x in lrs)}) x {setup.steps} steps")
    grid = make_study(setup, "grid", {"points": len(lrs)}, 1, 0)
    metric = grid.objective.metric
    t0 = time.perf_counter()
    drive(grid, ex)
    grid_seconds = time.perf_counter() - t0
    oracle, oracle_point = best_of(grid)
    if oracle is None:
        raise RuntimeError(f"{setup.task}: no grid trial completed")
    grid_steps = grid.compute_steps()
    table: dict[tuple[str, float], float | None] = {}
    for tid, req in grid.requests.items():
        rec = grid.records[tid]
        lr = next(rec["policy"]["params"][n] for n in LR_PARAMS if n in rec["policy"]["params"])
        table[(req.family, lr)] = final_value(rec, metric)
    fixed = {lr: v for (f, lr), v in table.items() if f == "fixed" and v is not None}
    best_fixed_lr = min(fixed, key=fixed.get) if fixed else None
    log(f"{setup.task}: oracle {oracle:.4f} ({oracle_point}); grid {grid_steps} steps in {grid_seconds:.0f} s")

    # the tuners' budget: whole full-budget trials within BUDGET_SHARE of the grid's compute;
    # the Optuna anchor gets exactly as many steps
    b_trials = max(1, int(BUDGET_SHARE * grid_steps // setup.steps))
    budget = b_trials * setup.steps
    n_fam = len(setup.families)
    tuners: dict[str, tuple[str, dict[str, Any], int]] = {
        "random": ("random", {}, b_trials),
        "bayes": ("bayes", {"startup_trials": n_fam}, b_trials),
        "bayes-defaults": ("bayes", {}, b_trials),
        "bayes-median": ("bayes", {"startup_trials": n_fam, "pruner": "median"}, b_trials),
        "bayes-gp": ("bayes", {"startup_trials": n_fam, "sampler": "gp"}, b_trials),
        "halving": ("halving", dict(setup.halving), b_trials),
        "halving-sync": ("halving", {**setup.halving, "mode": "sync"}, b_trials),
    }
    results: dict[str, Any] = {}
    for label, (tuner, params, trials) in tuners.items():
        gaps, fracs, points, t0 = [], [], [], time.perf_counter()
        partial = 0  # seeds where Study.best() ranked a partial (short-rung) trial first
        for seed in setup.seeds:
            study = make_study(setup, tuner, params, trials, seed)
            drive(study, ex)
            value, point = best_of(study)
            sb = study.best()
            partial += int(sb is not None and study.requests[sb["trial"]].steps < setup.steps)
            gaps.append(None if value is None else value / oracle - 1)
            fracs.append(study.compute_steps() / grid_steps)
            points.append(point)
        results[label] = {"tuner": tuner, "params": params, "trials": trials, **summarize(gaps, fracs),
                          "study_best_partial": partial,
                          "best_points": points, "seconds": round(time.perf_counter() - t0, 1)}
        r = results[label]
        log(f"{setup.task}: {label}: gap mean {r['rel_gap_mean']} worst {r['rel_gap_worst']}, "
            f"compute {r['compute_fraction_mean']:.3f} ({r['seconds']} s, {ex.real_trials} real trials so far)")

    gaps, fracs, anchors = [], [], []
    for seed in setup.seeds:
        a = optuna_anchor(setup, ex, budget, seed, metric)
        anchors.append(a)
        gaps.append(None if a["best"] is None else a["best"] / oracle - 1)
        fracs.append(a["steps"] / grid_steps)
    anchor = {**summarize(gaps, fracs), "trials_mean": statistics.fmean(a["trials"] for a in anchors),
              "pruned_mean": statistics.fmean(a["pruned"] for a in anchors),
              "best_points": [a["point"] for a in anchors]}
    log(f"{setup.task}: optuna anchor gap mean {anchor['rel_gap_mean']} worst {anchor['rel_gap_worst']}")

    for label in results:
        r = results[label]
        m, o = r["rel_gap_mean"], anchor["rel_gap_mean"]
        if m is None:
            r["vs_optuna"] = "behind"
        elif o is None or m < o - 1e-9:
            r["vs_optuna"] = "ahead"
        else:
            r["vs_optuna"] = "tie" if abs(m - o) <= 1e-9 else "behind"
        r["goal_within_1pct"] = m is not None and m <= 0.01
        r["goal_within_1pct_worst_seed"] = r["rel_gap_worst"] is not None and r["rel_gap_worst"] <= 0.01
        r["goal_compute_25pct"] = r["compute_fraction_max"] <= BUDGET_SHARE + 1e-9
        r["goal_ahead_of_optuna"] = r["vs_optuna"] == "ahead"

    # the range test: one real study at the full budget
    rt = make_study(setup, "range-test", {}, 1, 0, policies=["fixed"])
    drive(rt, ex)
    s = rt.tuner.summary_json()
    sugg = {name: {"lr": info.get("lr"), "ratio": ratio(info.get("lr"), best_fixed_lr)}
            for name, info in (s.get("suggestions") or {}).items() if isinstance(info, dict)}
    range_test = {"chosen": s.get("chosen"), "lr": s.get("lr"), "grid_best_fixed_lr": best_fixed_lr,
                  "ratio": ratio(s.get("lr"), best_fixed_lr), "suggestions": sugg,
                  "grid_best_lr_any_family": oracle_point["lr"] if oracle_point else None,
                  "ratio_to_oracle_lr": ratio(s.get("lr"), oracle_point["lr"] if oracle_point else None),
                  "warnings": s.get("warnings") or [], "steps": rt.compute_steps()}
    range_test["goal_within_3x"] = range_test["ratio"] is not None and range_test["ratio"] <= 3.0
    vr = make_study(setup, "value-range", {}, 1, 0, policies=["fixed"])
    drive(vr, ex)
    v = vr.tuner.summary_json()
    value_range = {"best_lr": v.get("best_lr"), "lr_range": v.get("lr_range"),
                   "ratio": ratio(v.get("best_lr"), best_fixed_lr),
                   "compute_fraction": vr.compute_steps() / grid_steps}
    log(f"{setup.task}: range test {range_test['chosen']} lr {range_test['lr']} vs grid fixed {best_fixed_lr}")
    return {
        "steps": setup.steps, "families": setup.families, "lrs": lrs, "batch_size": setup.batch,
        "seeds": len(setup.seeds), "budget_share": BUDGET_SHARE, "budget_trials": b_trials,
        "budget_steps": budget, "budget_fraction": budget / grid_steps,
        "oracle": {"best": oracle, "point": oracle_point, "grid_trials": len(grid.results),
                   "points_within_1pct": sum(1 for v in table.values() if v is not None and v <= 1.01 * oracle),
                   "points_within_5pct": sum(1 for v in table.values() if v is not None and v <= 1.05 * oracle),
                   "grid_steps": grid_steps, "grid_seconds": round(grid_seconds, 1),
                   "table": {f"{f}@{lr:.4g}": val for (f, lr), val in sorted(table.items())}},
        "tuners": results, "optuna": anchor, "range_test": range_test, "value_range": value_range,
        "real_trials": ex.real_trials, "real_steps": ex.real_steps,
        "seconds": round(time.perf_counter() - t_task, 1),
    }


def fmt(x: Any, pct: bool = False, g: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.2f}%" if pct else (f"{x:.3g}" if g else f"{x:.3f}")


def print_table(task: str, r: dict[str, Any]) -> None:
    o = r["oracle"]
    print(f"\n== {task}: {len(r['families'])} families x {len(r['lrs'])} LRs x {r['steps']} steps; "
          f"oracle val_loss {o['best']:.4f} at {o['point']['family']} lr {o['point']['lr']:.3g}; "
          f"{o['points_within_1pct']} grid point(s) within 1% of it; grid {o['grid_steps']} steps; tuners get {r['budget_fraction']:.0%} ({r['budget_trials']} full trials); "
          f"{r['seeds']} seeds")
    head = ("tuner", "gap mean", "gap worst", "hit", "compute mean", "compute max", "vs optuna", "goals")
    rows = [head]
    for label, t in r["tuners"].items():
        goals = "".join("Y" if t[g] else "n" for g in ("goal_within_1pct", "goal_compute_25pct", "goal_ahead_of_optuna"))
        rows.append((label, fmt(t["rel_gap_mean"], True), fmt(t["rel_gap_worst"], True),
                     f"{t['found_oracle']}/{t['seeds']}", fmt(t["compute_fraction_mean"]),
                     fmt(t["compute_fraction_max"]), t["vs_optuna"], goals))
    a = r["optuna"]
    rows.append(("optuna TPE+median", fmt(a["rel_gap_mean"], True), fmt(a["rel_gap_worst"], True),
                 f"{a['found_oracle']}/{a['seeds']}", fmt(a["compute_fraction_mean"]), fmt(a["compute_fraction_max"]),
                 "-", f"{a['trials_mean']:.1f} trials, {a['pruned_mean']:.1f} pruned"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print("goals: within 1% (mean) / compute <= 25% (every seed) / ahead of optuna (mean gap)")
    rt = r["range_test"]
    sug = ", ".join(f"{k} {v['lr']:.3g} ({v['ratio']:.2f}x)" for k, v in rt["suggestions"].items()
                    if v["lr"] and v["ratio"])
    print(f"range-test: chosen {rt['chosen']} lr {fmt(rt['lr'], g=True)} vs grid best fixed lr "
          f"{fmt(rt['grid_best_fixed_lr'], g=True)}: {fmt(rt['ratio'], g=True)}x (goal <= 3x: {rt['goal_within_3x']}); suggestions: {sug}")
    vr = r["value_range"]
    print(f"value-range: best lr {fmt(vr['best_lr'], g=True)} ({fmt(vr['ratio'], g=True)}x), range "
          f"{[float(f'{x:.3g}') for x in vr['lr_range'] or []]}, "
          f"compute {fmt(vr['compute_fraction'])}")
    print(f"{r['real_trials']} real trials, {r['seconds']:.0f} s")


def rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits-mlp only, 4 families x 5 LRs x 150 steps (< 5 min)")
    ap.add_argument("--tasks", help="comma-separated tasks (default: digits-mlp; both in the full mode)")
    ap.add_argument("--seeds", type=int, help="seeds of the stochastic tuners (default 5 quick, 20 full)")
    ap.add_argument("--cache", metavar="DIR", help="keep the trial records in DIR/<task>-<mode>.json and reuse them "
                    "(the figures then leave out the real trials' time)")
    args = ap.parse_args(argv)
    tasks = args.tasks.split(",") if args.tasks else (["digits-mlp"] if args.quick else ["digits-mlp", "tinylm-pretrain"])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    load = os.getloadavg()
    figures: dict[str, Any] = {"bench": "tuning", "mode": "quick" if args.quick else "full",
                               "date": _dt.date.today().isoformat(), "cpus": os.cpu_count(),
                               "load_at_start": [round(x, 2) for x in load], "tasks": {}}
    for setup in setups(args.quick, tasks, args.seeds):
        cache = None
        if args.cache:
            Path(args.cache).mkdir(parents=True, exist_ok=True)
            cache = Path(args.cache) / f"{setup.task}-{figures['mode']}.json"
        result = run_task(setup, cache)
        figures["tasks"][setup.task] = result
        print_table(setup.task, result)
    goals = {}
    for task, r in figures["tasks"].items():
        for name in ("bayes", "halving"):
            t = r["tuners"][name]
            goals[f"{task}/{name}"] = all(t[g] for g in ("goal_within_1pct", "goal_compute_25pct", "goal_ahead_of_optuna"))
        goals[f"{task}/range-test"] = r["range_test"]["goal_within_3x"]
    figures["goals_met"] = goals
    figures["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    for r in figures["tasks"].values():  # the per-point table is for the record, not the last line's bulk
        r["oracle"]["table"] = {k: (None if v is None else round(v, 4)) for k, v in r["oracle"]["table"].items()}
    print(json.dumps(rounded(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
