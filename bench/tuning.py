"""Tuner figures: how close each tuner gets to a full grid, at what share of its compute, and how
long it takes on the wall clock.

Tasks (``--tasks``; default ``digits-mlp`` quick, ``digits-mlp,tinylm-pretrain,digits-cnn`` full):
``digits-mlp`` and ``tinylm-pretrain`` (the tuners' defaults were chosen on these two);
``digits-cnn`` (a CNN at batch 64: a model and batch no default was chosen on); ``lora-finetune``
(``causal-lm-finetune`` with LoRA on a model a ``tinylm-pretrain`` trial saved first, and
instruction records from the built-in corpus; all local, nothing downloads). For each:

1. **Oracle**: the ``grid`` tuner over several policy families x a log grid of LRs, every point at
   the full budget, run once as a real study (subprocess trials, 2 side by side, 1 thread each,
   on warm workers where the task allows). Its best final ``val_loss`` is the oracle; its compute
   (steps run) is the denominator of every compute fraction below.
2. **Tuners** (``random``; ``bayes`` with ``startup_trials`` = one per family, with its defaults,
   with the median pruner, with the GP sampler; ``halving`` async and sync; ``lrsearch`` when the
   registry has it: a name the registry lacks is skipped with a printed line), each given the
   whole full-budget trials that fit in 25 % of the grid's compute, several seeds each, as real
   studies (:class:`~lrbench_gui.core.study.Study`: its ``next_trials`` / ``on_event`` /
   ``on_finished`` loop, 2 trials asked at a time like ``parallel=2``) whose LRs are searched in
   the grid's range and **snapped to the nearest grid LR** when run, so every full-budget point
   they ask is a grid point. A memoized executor answers a trial it has seen (same task, spec and
   steps) from the grid's record, replaying its eval events through the study (so pruning acts as
   it would), and runs a real trial otherwise (halving's short rungs, on the warm workers).
   Compute is accounted as if every asked trial ran: the sum of the steps of the records the study
   was told (a pruned trial counts up to the eval that pruned it). The trial seed (data order,
   init) is the benchmark's, the same for every study; the study's seed only seeds the tuner.
3. **Optuna anchors** at the same steps, family categorical, LR log-uniform in the grid's range
   snapped to it, ``trial.report`` of the eval curve and ``should_prune``; each runs until it has
   spent the tuners' budget (a trial still running then is cut and counts as failed; a diverged
   trial is told the worst value so far, so the sampler learns to avoid it):
   ``TPESampler`` + ``MedianPruner`` (plain defaults); ``TPESampler(multivariate=True)`` +
   ``HyperbandPruner`` (min resource: the first eval, max: the budget, reduction factor 3), with
   its default 10 start-up trials and with one per family; ``GPSampler`` with one start-up trial
   per family (no pruner: it models completed trials only).
4. **Wall clock**: every trial's time is modelled as its start-up (measured per task: fresh
   process against warm worker, a few 5-step trials each way) plus its recorded training seconds
   (the share of them it ran, when pruned or cut); the trials of a study are placed on 2 slots in
   the order it asked them. Reported per tuner: the mean wall time of a study, warm and cold, and
   the median time until a full-budget result within 1 % of the oracle is known (over the seeds
   that got there, and how many did); the grid's own figures alike.
5. **range-test**: real ``range-test`` studies (the tuner's defaults, the task's full budget) at
   3 trial seeds; each rule's suggestion against the grid's best ``fixed`` LR, ``max(a/b, b/a)``,
   per seed, and the default rule's worst seed. ``value-range`` (LRBench's test, its defaults) is
   reported the same way, for information.

Goals (the issue's): the project's best tuner within 1 % of the oracle (mean; worst seed within
5 %) at no more than 25 % of the grid's compute and ahead of every Optuna anchor; the range test
within 3x on every seed.

Usage: python bench/tuning.py [--quick] [--tasks digits-mlp,tinylm-pretrain,digits-cnn,lora-finetune]
[--seeds N] [--cache DIR]. Nothing is written outside a temporary folder (and ``--cache``). The
last line of output is one JSON object with all figures.
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

sys.dont_write_bytecode = True  # the bench writes nothing into the repository
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_SEED = 0  # the trial seed of every trial: the same data order and init for every study
RANGE_SEEDS = (0, 1, 2)  # the range test's trial seeds (its default must not rest on one)
PARALLEL = 2
BUDGET_SHARE = 0.25  # the compute the tuners get, as a share of the grid's
LR_PARAMS = ("lr", "max_lr")  # the searched LR parameter of each family used here
TASKS = ("digits-mlp", "tinylm-pretrain", "digits-cnn", "lora-finetune")


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
    label: str = ""  # the name in --tasks (default: the task's)
    lora_base: bool = False  # task_params get a tinylm base model and instruction data, built first

    def __post_init__(self) -> None:  # only the overrides of the families searched
        self.overrides = {k: v for k, v in self.overrides.items() if k.split(".")[0] in self.families}
        self.label = self.label or self.task

    @property
    def lrs(self) -> list[float]:
        from lrbench_gui.core.tuning.space import Dim

        return Dim("lr", "float", self.lr_low, self.lr_high, True).grid(self.n_lrs)


def setups(quick: bool, tasks: list[str], seeds: int | None) -> list[Setup]:
    # step: gamma fixed at its default (0.1 at each third); triangle2: min_lr fixed below the grid,
    # so each family has exactly one searched dimension, its peak LR
    digits_ov = {"step.gamma": 0.1, "triangle2.min_lr": 1e-4}
    lm_ov = {"step.gamma": 0.1}
    four = ["fixed", "step", "cosine", "triangle2"]
    lora = {"max_length": 96, "template": "alpaca-short", "lora_r": 8}
    if quick:
        n = seeds or 5
        table = {
            "digits-mlp": Setup("digits-mlp", 150, four, 1e-3, 1e-1, 5, 32, list(range(n)), overrides=digits_ov),
            "tinylm-pretrain": Setup("tinylm-pretrain", 120, ["fixed", "cosine", "wsd"], 2e-3, 3.2e-2, 5, 16,
                                     list(range(seeds or 2)), overrides=lm_ov),
            "digits-cnn": Setup("digits-cnn", 150, four, 6.25e-4, 4e-2, 4, 64, list(range(n)), overrides=digits_ov),
            "lora-finetune": Setup("causal-lm-finetune", 60, ["fixed", "cosine", "wsd"], 1e-3, 6.4e-2, 4, 8,
                                   list(range(seeds or 2)), task_params=lora, overrides=lm_ov,
                                   label="lora-finetune", lora_base=True),
        }
    else:
        n = seeds or 20
        table = {
            "digits-mlp": Setup("digits-mlp", 300, four, 2.5e-3, 0.16, 7, 32, list(range(n)), overrides=digits_ov),
            "tinylm-pretrain": Setup("tinylm-pretrain", 400, ["fixed", "step", "cosine", "wsd"], 6.25e-4, 4e-2, 7, 16,
                                     list(range(n)), overrides=lm_ov),
            "digits-cnn": Setup("digits-cnn", 300, four, 6.25e-4, 4e-2, 7, 64, list(range(n)), overrides=digits_ov),
            "lora-finetune": Setup("causal-lm-finetune", 120, ["fixed", "cosine", "wsd"], 5e-4, 3.2e-2, 7, 8,
                                   list(range(n)), task_params=lora, overrides=lm_ov,
                                   label="lora-finetune", lora_base=True),
        }
    unknown = [t for t in tasks if t not in table]
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}: choose from {', '.join(TASKS)}")
    return [table[t] for t in tasks]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def snap(value: float, grid: list[float]) -> float:
    return min(grid, key=lambda g: abs(math.log(value / g)))


def lora_base(setup: Setup, folder: Path) -> None:
    """The LoRA task's base: a ``tinylm-pretrain`` trial saves its model into ``folder`` (once:
    kept with ``--cache``, so the trials' keys stay the same), and instruction records beside it."""
    from lrbench_builtins.tasks import _corpus
    from lrbench_gui.core.runs.runner import LocalScheduler
    from lrbench_gui.core.runs.trial import load_trial

    model, data = folder / "pretrain" / "model", folder / "instructions.jsonl"
    if not (model / "config.json").exists():
        log(f"{setup.label}: pre-training the tinylm base model in {folder}")
        sched = LocalScheduler(1, workdir=folder / "pretrain-trial")
        sched.submit(load_trial({"task": "tinylm-pretrain", "task_params": {"context": 64, "val_tokens": 2048},
                                 "policy": {"name": "cosine", "params": {"lr": 5e-3}}, "budget": {"steps": 200},
                                 "batch_size": 16, "save_model": True, "output_dir": str(folder / "pretrain"),
                                 "threads": 1, "seed": DATA_SEED}))
        (record,) = sched.run().values()
        if record["status"] != "completed" or not (model / "config.json").exists():
            raise SystemExit(f"{setup.label}: the pre-training trial did not save a model: {record['notes'][:300]}")
    if not data.exists():
        data.write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 400)))
    setup.task_params = {**setup.task_params, "model_path": str(model), "data_path": str(data)}


# The memoized executor.


def _kept_pool() -> Any:
    """A warm-worker pool that outlives one scheduler's run (each batch of the executor is a new
    :class:`LocalScheduler`, which closes its pool when its run ends); :meth:`shutdown` closes it."""
    from lrbench_gui.core.runs.warm import WorkerPool

    class KeptPool(WorkerPool):
        def close(self, wait: float | None = 10.0) -> None:
            pass

        def shutdown(self) -> None:
            WorkerPool.close(self)

    return KeptPool()


class Executor:
    """Runs trial configs for real once per (task, spec, steps...) and replays them after."""

    def __init__(self, setup: Setup, workdir: Path, warm: bool = True) -> None:
        self.setup = setup
        self.workdir = workdir
        self.warm = warm
        self.pool = _kept_pool()
        self.cache: dict[str, dict[str, Any]] = {}
        self.real_trials = 0
        self.real_steps = 0
        self.real_seconds = 0.0

    def canonical(self, cfg: Any, snap_lr: bool = True, seed: int = DATA_SEED) -> Any:
        """The config actually run: the LR snapped to the grid (searches only), the benchmark's
        trial seed."""
        policy = json.loads(json.dumps(cfg.policy))
        if snap_lr and policy.get("name") in self.setup.families:
            for name in LR_PARAMS:
                if name in policy.get("params", {}):
                    policy["params"][name] = snap(float(policy["params"][name]), self.setup.lrs)
        cfg = cfg.model_copy(update={"policy": policy, "seed": seed, "study_id": None})
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
        from lrbench_gui.plugins import get_registry

        todo: dict[str, Any] = {}
        for cfg in cfgs:
            k = self.key(cfg)
            if k not in self.cache and k not in todo:
                todo[k] = cfg
        if not todo:
            return
        by_id = {cfg.trial_id: k for k, cfg in todo.items()}
        sched = LocalScheduler(PARALLEL, workdir=self.workdir, registry=get_registry(), warm=self.warm)
        sched.pool = self.pool
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

    def close(self) -> None:
        self.pool.shutdown()


def overhead(rec: dict[str, Any]) -> float:
    """A trial's seconds outside its training steps: start-up, the final eval, the exit."""
    wall = float((rec.get("extra") or {}).get("wall_seconds", 0) or 0)
    return max(0.0, wall - train_seconds(rec))


def train_seconds(rec: dict[str, Any]) -> float:
    return float((rec.get("cost") or {}).get("seconds", 0) or 0)


def startup_probe(setup: Setup, workdir: Path, trials: int = 3) -> dict[str, Any]:
    """Each trial's seconds outside training, fresh process against warm worker: ``trials``
    5-step trials each way on one slot (the warm figure leaves out the worker's first trial)."""
    from lrbench_gui.core.runs.runner import LocalScheduler
    from lrbench_gui.core.runs.trial import load_trial
    from lrbench_gui.plugins import get_registry

    out: dict[str, Any] = {}
    for mode, n in (("cold", trials), ("warm", trials + 1)):
        sched = LocalScheduler(1, workdir=workdir / f"probe-{mode}", registry=get_registry(), warm=mode == "warm")
        for i in range(n):
            sched.submit(load_trial({
                "trial_id": f"probe-{mode}-{i}", "task": setup.task, "task_params": setup.task_params,
                "budget": {"steps": 5}, "policy": {"name": "fixed", "params": {"lr": setup.lrs[0]}}, "seed": i,
                "batch_size": setup.batch, "threads": 1, "eval_every": 5,
            }))
        recs = sched.run()
        secs = [overhead(recs[f"probe-{mode}-{i}"]) for i in range(n)][(1 if mode == "warm" else 0):]
        bad = [r["notes"][:200] for r in recs.values() if r["status"] != "completed"]
        if bad:
            log(f"{setup.label}: a start-up probe trial did not complete: {bad[0]}")
        out[f"{mode}_s"] = round(statistics.median(secs), 3)
        out[f"{mode}_all_s"] = [round(x, 3) for x in secs]
    out["speedup"] = round(out["cold_s"] / max(out["warm_s"], 1e-3), 1)
    return out


def eval_curve(rec: dict[str, Any], metric: str) -> list[tuple[int, float]]:
    c = (rec.get("curves") or {}).get(f"eval/{metric}") or {}
    return [(int(s), float(v)) for s, v in zip(c.get("steps", []), c.get("values", []))]


def final_value(rec: dict[str, Any], metric: str) -> float | None:
    v = (rec.get("metrics") or {}).get(metric)
    if rec.get("status") != "completed" or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class Told:
    """One trial a study (or anchor) was told, for the wall-clock model: its training seconds
    (the share it ran) and its final value when it ran to the full budget."""

    train_s: float
    full_value: float | None


def drive(study: Any, ex: Executor, seed: int = DATA_SEED) -> list[Told]:
    """A study's loop with the memoized executor: ask ``PARALLEL``, run or recall, replay, tell.
    The LR tests run the LRs they ask for; the searches' LRs are snapped to the grid. Returns
    the trials told, in the order they were asked."""
    from lrbench_gui.core.runs.protocol import Event

    metric = study.objective.metric
    full = study.config.budget_steps
    told: list[Told] = []
    while not study.finished:
        cfgs = study.next_trials(PARALLEL)
        if not cfgs:
            if study.running:
                raise RuntimeError("study waits on trials that were never told")
            break
        snap_lr = study.config.tuner not in ("range-test", "value-range")
        runs = [ex.canonical(c, snap_lr, seed) for c in cfgs]
        ex.ensure(runs)
        for cfg, run in zip(cfgs, runs):
            rec = json.loads(json.dumps(ex.record(run)))
            stopped_at = None
            for step, value in eval_curve(rec, metric):
                if not study.on_event(cfg.trial_id, Event("eval", cfg.trial_id, {"step": step, "metrics": {metric: value}})):
                    stopped_at = step
                    break
            done = int((rec.get("cost") or {}).get("steps", 0) or 0)
            share = 1.0
            if stopped_at is not None and stopped_at + 1 < done:  # pruned: what a cancelled trial leaves
                share = (stopped_at + 1) / done
                rec["status"] = "stopped"
                rec["metrics"] = {}
                rec["cost"] = {**rec["cost"], "steps": stopped_at + 1}
                rec["curves"] = {k: {"steps": [s for s in c["steps"] if s <= stopped_at],
                                     "values": [v for s, v in zip(c["steps"], c["values"]) if s <= stopped_at]}
                                 for k, c in rec.get("curves", {}).items()}
            value = final_value(rec, metric) if cfg.budget.steps >= full else None
            told.append(Told(train_seconds(rec) * share, value))
            rec.update(id=cfg.trial_id, study=study.config.study_id)
            study.on_finished(cfg.trial_id, rec)
    return told


def wall_clock(told: list[Told], startup: float, target: float, slots: int = PARALLEL) -> tuple[float, float | None]:
    """(the whole run's seconds, seconds until a full-budget value <= ``target`` was known, or
    None) with ``told`` placed on ``slots`` in order, each taking ``startup`` + its training."""
    free = [0.0] * slots
    first = None
    for t in told:
        i = min(range(slots), key=free.__getitem__)
        free[i] += startup + t.train_s
        if t.full_value is not None and t.full_value <= target and (first is None or free[i] < first):
            first = free[i]
    return max(free), first


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


# The Optuna anchors.


def anchors(n_fam: int) -> dict[str, tuple[str, dict[str, Any], str]]:
    """label: (sampler, its arguments, pruner)."""
    return {
        "optuna TPE+median": ("tpe", {}, "median"),
        "optuna TPE-mv+hyperband": ("tpe", {"multivariate": True}, "hyperband"),
        f"optuna TPE-mv+hyperband (startup {n_fam})": ("tpe", {"multivariate": True, "n_startup_trials": n_fam},
                                                       "hyperband"),
        f"optuna GP (startup {n_fam})": ("gp", {"n_startup_trials": n_fam}, "none"),
    }


def optuna_anchor(setup: Setup, ex: Executor, budget: int, seed: int, metric: str, sampler: str = "tpe",
                  sampler_args: dict[str, Any] | None = None, pruner: str = "median") -> dict[str, Any]:
    import optuna

    from lrbench_gui.core.tuning.space import policy_space
    from lrbench_gui.core.tuning.study import Study
    from lrbench_gui.core.tuner import TrialRequest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from lrbench_gui.plugins import get_registry

    space = policy_space(setup.families, get_registry(), overrides=setup.overrides, lr_range=(setup.lr_low, setup.lr_high))
    template = make_study(setup, "grid", {"points": 1}, 1, 0)  # for trial_config (the same trial files)
    assert isinstance(template, Study)
    args = dict(sampler_args or {})
    smp = (optuna.samplers.GPSampler(seed=seed, **args) if sampler == "gp"
           else optuna.samplers.TPESampler(seed=seed, **args))
    first_eval = max(1, setup.steps // 10)
    prn = {"median": optuna.pruners.MedianPruner(),
           "hyperband": optuna.pruners.HyperbandPruner(min_resource=first_eval, max_resource=setup.steps,
                                                       reduction_factor=3),
           "none": optuna.pruners.NopPruner()}[pruner]
    study = optuna.create_study(direction="minimize", sampler=smp, pruner=prn)
    spent, best, best_point, n, pruned = 0, math.inf, None, 0, 0
    worst: float | None = None
    told: list[Told] = []

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
        told.append(Told(train_seconds(rec) * min(1.0, used / done), value))
        if state == "pruned":
            pruned += 1
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        elif value is None and state == "complete" and worst is not None:
            # diverged: as bad as the worst value so far (a failed trial teaches a sampler nothing,
            # and GPSampler then asks the same diverging point again and again)
            study.tell(t, worst)
        elif value is None:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            worst = value if worst is None else max(worst, value)
            study.tell(t, value)
            if value < best:
                best, best_point = value, {"family": family, "lr": lr}
    return {"best": best if math.isfinite(best) else None, "point": best_point, "steps": spent, "trials": n,
            "pruned": pruned, "told": told}


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


def clock(runs: list[list[Told]], startup: dict[str, Any], target: float) -> dict[str, Any]:
    """Wall-clock figures of a tuner's runs (one list of told trials per seed)."""
    out: dict[str, Any] = {}
    for mode in ("warm", "cold"):
        pairs = [wall_clock(told, startup[f"{mode}_s"], target) for told in runs]
        out[f"wall_s_{mode}_mean"] = round(statistics.fmean(w for w, _ in pairs), 1)
        hits = [h for _, h in pairs if h is not None]
        out[f"to_1pct_s_{mode}_median"] = round(statistics.median(hits), 1) if hits else None
    out["reached_1pct"] = sum(1 for told in runs if wall_clock(told, 0.0, target)[1] is not None)
    return out


def run_task(setup: Setup, cache: Path | None = None, warm: bool = True) -> dict[str, Any]:
    t_task = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lrbench-tuning-") as tmp:
        if setup.lora_base:
            lora_base(setup, (cache.parent / f"{cache.stem}-base") if cache is not None else Path(tmp) / "base")
        ex = Executor(setup, Path(tmp), warm=warm)
        if cache is not None and cache.exists():
            ex.cache.update(json.loads(cache.read_text()))
            log(f"{setup.label}: {len(ex.cache)} trial records read from {cache}")
        try:
            return _run_task(setup, ex, t_task, Path(tmp))
        finally:
            ex.close()
            if cache is not None:
                cache.write_text(json.dumps(ex.cache))


def _run_task(setup: Setup, ex: Executor, t_task: float, tmp: Path) -> dict[str, Any]:
    from lrbench_gui.plugins import get_registry

    lrs = setup.lrs
    log(f"{setup.label}: grid {len(setup.families)} families x {len(lrs)} LRs "
        f"({', '.join(f'{x:.3g}' for x in lrs)}) x {setup.steps} steps")
    startup = startup_probe(setup, tmp)
    log(f"{setup.label}: start-up per trial cold {startup['cold_s']} s, warm {startup['warm_s']} s")
    grid = make_study(setup, "grid", {"points": len(lrs)}, 1, 0)
    metric = grid.objective.metric
    t0 = time.perf_counter()
    grid_told = drive(grid, ex)
    grid_seconds = time.perf_counter() - t0
    oracle, oracle_point = best_of(grid)
    if oracle is None:
        raise RuntimeError(f"{setup.label}: no grid trial completed")
    target = 1.01 * oracle
    grid_steps = grid.compute_steps()
    table: dict[tuple[str, float], float | None] = {}
    for tid, req in grid.requests.items():
        rec = grid.records[tid]
        lr = next(rec["policy"]["params"][n] for n in LR_PARAMS if n in rec["policy"]["params"])
        table[(req.family, lr)] = final_value(rec, metric)
    fixed = {lr: v for (f, lr), v in table.items() if f == "fixed" and v is not None}
    best_fixed_lr = min(fixed, key=fixed.get) if fixed else None
    log(f"{setup.label}: oracle {oracle:.4f} ({oracle_point}); grid {grid_steps} steps in {grid_seconds:.0f} s")

    # the tuners' budget: whole full-budget trials within BUDGET_SHARE of the grid's compute;
    # the Optuna anchors get exactly as many steps
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
        "lrsearch": ("lrsearch", {}, b_trials),
    }
    known = get_registry().tuners
    for label in [k for k, (name, _, _) in tuners.items() if name not in known]:
        print(f"{setup.label}: tuner {tuners[label][0]!r} is not in the registry; {label} skipped", flush=True)
        del tuners[label]
    results: dict[str, Any] = {}
    for label, (tuner, params, trials) in tuners.items():
        gaps, fracs, points, runs, t0 = [], [], [], [], time.perf_counter()
        partial = 0  # seeds where Study.best() ranked a partial (short-rung) trial first
        for seed in setup.seeds:
            study = make_study(setup, tuner, params, trials, seed)
            runs.append(drive(study, ex))
            value, point = best_of(study)
            sb = study.best()
            partial += int(sb is not None and study.requests[sb["trial"]].steps < setup.steps)
            gaps.append(None if value is None else value / oracle - 1)
            fracs.append(study.compute_steps() / grid_steps)
            points.append(point)
        results[label] = {"tuner": tuner, "params": params, "trials": trials, **summarize(gaps, fracs),
                          **clock(runs, startup, target), "study_best_partial": partial,
                          "best_points": points, "seconds": round(time.perf_counter() - t0, 1)}
        r = results[label]
        log(f"{setup.label}: {label}: gap mean {r['rel_gap_mean']} worst {r['rel_gap_worst']}, "
            f"compute {r['compute_fraction_mean']:.3f}, wall {r['wall_s_warm_mean']} s warm / "
            f"{r['wall_s_cold_mean']} s cold ({r['seconds']} s, {ex.real_trials} real trials so far)")

    optuna_results: dict[str, Any] = {}
    for label, (sampler, args, pruner) in anchors(n_fam).items():
        gaps, fracs, found = [], [], []
        for seed in setup.seeds:
            a = optuna_anchor(setup, ex, budget, seed, metric, sampler, args, pruner)
            found.append(a)
            gaps.append(None if a["best"] is None else a["best"] / oracle - 1)
            fracs.append(a["steps"] / grid_steps)
        optuna_results[label] = {
            "sampler": sampler, "sampler_args": args, "pruner": pruner, **summarize(gaps, fracs),
            **clock([a["told"] for a in found], startup, target),
            "trials_mean": statistics.fmean(a["trials"] for a in found),
            "pruned_mean": statistics.fmean(a["pruned"] for a in found),
            "best_points": [a["point"] for a in found]}
        o = optuna_results[label]
        log(f"{setup.label}: {label}: gap mean {o['rel_gap_mean']} worst {o['rel_gap_worst']}")
    means = [o["rel_gap_mean"] for o in optuna_results.values()]
    best_anchor = min((m for m in means if m is not None), default=None)

    for label in results:
        r = results[label]
        m = r["rel_gap_mean"]
        if m is None or best_anchor is None:  # no result on some seed; or no anchor with one on every seed
            r["vs_optuna"] = "behind" if m is None else "ahead"
        elif m < best_anchor - 1e-9:
            r["vs_optuna"] = "ahead"
        else:
            r["vs_optuna"] = "tie" if abs(m - best_anchor) <= 1e-9 else "behind"
        r["goal_within_1pct"] = m is not None and m <= 0.01
        r["goal_worst_seed_5pct"] = r["rel_gap_worst"] is not None and r["rel_gap_worst"] <= 0.05
        r["goal_compute_25pct"] = r["compute_fraction_max"] <= BUDGET_SHARE + 1e-9
        r["goal_ahead_of_optuna"] = r["vs_optuna"] == "ahead"

    range_test = range_tests(setup, ex, best_fixed_lr, oracle_point, grid_steps)
    vr = make_study(setup, "value-range", {}, 1, 0, policies=["fixed"])
    drive(vr, ex)
    v = vr.tuner.summary_json()
    value_range = {"best_lr": v.get("best_lr"), "lr_range": v.get("lr_range"),
                   "ratio": ratio(v.get("best_lr"), best_fixed_lr),
                   "compute_fraction": vr.compute_steps() / grid_steps}
    grid_wall = {mode: wall_clock(grid_told, startup[f"{mode}_s"], target) for mode in ("warm", "cold")}
    return {
        "task": setup.task, "steps": setup.steps, "families": setup.families, "lrs": lrs, "batch_size": setup.batch,
        "seeds": len(setup.seeds), "budget_share": BUDGET_SHARE, "budget_trials": b_trials,
        "budget_steps": budget, "budget_fraction": budget / grid_steps, "startup": startup,
        "oracle": {"best": oracle, "point": oracle_point, "grid_trials": len(grid.results),
                   "points_within_1pct": sum(1 for v in table.values() if v is not None and v <= 1.01 * oracle),
                   "points_within_5pct": sum(1 for v in table.values() if v is not None and v <= 1.05 * oracle),
                   "grid_steps": grid_steps, "grid_seconds": round(grid_seconds, 1),
                   "wall_s_warm": round(grid_wall["warm"][0], 1), "wall_s_cold": round(grid_wall["cold"][0], 1),
                   "to_1pct_s_warm": grid_wall["warm"][1], "to_1pct_s_cold": grid_wall["cold"][1],
                   "table": {f"{f}@{lr:.4g}": val for (f, lr), val in sorted(table.items())}},
        "tuners": results, "optuna": optuna_results, "best_optuna_gap_mean": best_anchor,
        "range_test": range_test, "value_range": value_range,
        "real_trials": ex.real_trials, "real_steps": ex.real_steps,
        "seconds": round(time.perf_counter() - t_task, 1),
    }


def range_tests(setup: Setup, ex: Executor, best_fixed_lr: float | None, oracle_point: dict[str, Any] | None,
                grid_steps: int) -> dict[str, Any]:
    """Real range-test studies (the tuner's defaults) at each of ``RANGE_SEEDS``: every rule's
    LR and its ratio to the grid's best fixed LR, per seed."""
    per_seed, chosen, steps = [], None, 0
    for seed in RANGE_SEEDS:
        rt = make_study(setup, "range-test", {}, 1, 0, policies=["fixed"])
        drive(rt, ex, seed=seed)
        s = rt.tuner.summary_json()
        chosen = s.get("chosen") or chosen
        steps += rt.compute_steps()
        per_seed.append({"seed": seed, "chosen": s.get("chosen"), "lr": s.get("lr"),
                         "ratio": ratio(s.get("lr"), best_fixed_lr), "warnings": s.get("warnings") or [],
                         "rules": {name: (info or {}).get("lr")
                                   for name, info in (s.get("suggestions") or {}).items()}})
    rules = list(dict.fromkeys(r for p in per_seed for r in p["rules"]))  # the analysis' order
    by_rule = {}
    for rule in rules:
        rs = [ratio(p["rules"].get(rule), best_fixed_lr) for p in per_seed]
        by_rule[rule] = {"lrs": [p["rules"].get(rule) for p in per_seed], "ratios": rs,
                         "worst": None if any(x is None for x in rs) else max(rs)}
    ratios = [p["ratio"] for p in per_seed]
    worst = None if any(x is None for x in ratios) else max(ratios)
    first = per_seed[0]
    log(f"{setup.label}: range test {chosen}: worst {worst}x over seeds {list(RANGE_SEEDS)} "
        f"(grid best fixed lr {best_fixed_lr})")
    return {"chosen": chosen, "lr": first["lr"], "ratio": first["ratio"], "worst_ratio": worst,
            "grid_best_fixed_lr": best_fixed_lr, "by_rule": by_rule, "per_seed": per_seed,
            "grid_best_lr_any_family": oracle_point["lr"] if oracle_point else None,
            "ratio_to_oracle_lr": ratio(first["lr"], oracle_point["lr"] if oracle_point else None),
            "compute_fraction": steps / grid_steps, "goal_within_3x": worst is not None and worst <= 3.0}


def fmt(x: Any, pct: bool = False, g: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.2f}%" if pct else (f"{x:.3g}" if g else f"{x:.3f}")


def print_table(task: str, r: dict[str, Any]) -> None:
    o = r["oracle"]
    st = r["startup"]
    print(f"\n== {task}: {len(r['families'])} families x {len(r['lrs'])} LRs x {r['steps']} steps; "
          f"oracle val_loss {o['best']:.4f} at {o['point']['family']} lr {o['point']['lr']:.3g}; "
          f"{o['points_within_1pct']} grid point(s) within 1% of it; grid {o['grid_steps']} steps, "
          f"{o['wall_s_warm']:.0f} s warm / {o['wall_s_cold']:.0f} s cold; tuners get {r['budget_fraction']:.0%} "
          f"({r['budget_trials']} full trials); {r['seeds']} seeds; start-up per trial {st['cold_s']:.2f} s cold, "
          f"{st['warm_s']:.2f} s warm")
    head = ("tuner", "gap mean", "gap worst", "hit", "compute mean/max", "wall warm/cold", "to 1% warm (n)",
            "vs optuna", "goals")
    rows = [head]

    def clock_cells(t: dict[str, Any]) -> tuple[str, str]:
        hit = t["to_1pct_s_warm_median"]
        return (f"{t['wall_s_warm_mean']:.0f}/{t['wall_s_cold_mean']:.0f} s",
                f"{'-' if hit is None else f'{hit:.0f} s'} ({t['reached_1pct']})")

    for label, t in r["tuners"].items():
        goals = "".join("Y" if t[g] else "n" for g in ("goal_within_1pct", "goal_worst_seed_5pct",
                                                       "goal_compute_25pct", "goal_ahead_of_optuna"))
        rows.append((label, fmt(t["rel_gap_mean"], True), fmt(t["rel_gap_worst"], True),
                     f"{t['found_oracle']}/{t['seeds']}",
                     f"{fmt(t['compute_fraction_mean'])}/{fmt(t['compute_fraction_max'])}", *clock_cells(t),
                     t["vs_optuna"], goals))
    for label, a in r["optuna"].items():
        rows.append((label, fmt(a["rel_gap_mean"], True), fmt(a["rel_gap_worst"], True),
                     f"{a['found_oracle']}/{a['seeds']}",
                     f"{fmt(a['compute_fraction_mean'])}/{fmt(a['compute_fraction_max'])}", *clock_cells(a),
                     "-", f"{a['trials_mean']:.1f} trials, {a['pruned_mean']:.1f} pruned"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print("goals: within 1% (mean) / worst seed within 5% / compute <= 25% (every seed) / ahead of every optuna "
          "anchor (mean gap); wall: modelled seconds of a study on 2 slots (warm workers / fresh processes)")
    rt = r["range_test"]
    rules = ", ".join(f"{k} {'/'.join(fmt(x, g=True) for x in v['lrs'])} (worst {fmt(v['worst'], g=True)}x)"
                      for k, v in rt["by_rule"].items())
    print(f"range-test (seeds {list(RANGE_SEEDS)}): chosen {rt['chosen']}, worst {fmt(rt['worst_ratio'], g=True)}x "
          f"of grid best fixed lr {fmt(rt['grid_best_fixed_lr'], g=True)} (goal <= 3x: {rt['goal_within_3x']}); "
          f"rules: {rules}")
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
    ap.add_argument("--tasks", help=f"comma-separated, of {', '.join(TASKS)} (default: digits-mlp; "
                                    "digits-mlp,tinylm-pretrain,digits-cnn in the full mode)")
    ap.add_argument("--seeds", type=int, help="seeds of the stochastic tuners (default 5 quick, 20 full)")
    ap.add_argument("--cache", metavar="DIR", help="keep the trial records in DIR/<task>-<mode>.json and reuse them "
                    "(the figures then leave out the real trials' time; the LoRA base model is kept there too)")
    ap.add_argument("--no-warm", dest="warm", action="store_false",
                    help="run the real trials in fresh processes (default: warm workers where the task allows)")
    args = ap.parse_args(argv)
    tasks = (args.tasks.split(",") if args.tasks
             else (["digits-mlp"] if args.quick else ["digits-mlp", "tinylm-pretrain", "digits-cnn"]))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    t0 = time.perf_counter()
    load = os.getloadavg()
    figures: dict[str, Any] = {"bench": "tuning", "mode": "quick" if args.quick else "full",
                               "date": _dt.date.today().isoformat(), "cpus": os.cpu_count(),
                               "load_at_start": [round(x, 2) for x in load], "tasks": {}}
    for setup in setups(args.quick, tasks, args.seeds):
        cache = None
        if args.cache:
            Path(args.cache).mkdir(parents=True, exist_ok=True)
            cache = Path(args.cache) / f"{setup.label}-{figures['mode']}.json"
        result = run_task(setup, cache, warm=args.warm)
        figures["tasks"][setup.label] = result
        print_table(setup.label, result)
    goals = {}
    for task, r in figures["tasks"].items():
        for name, t in r["tuners"].items():
            if name in ("bayes", "halving", "lrsearch"):
                goals[f"{task}/{name}"] = all(t[g] for g in ("goal_within_1pct", "goal_worst_seed_5pct",
                                                             "goal_compute_25pct", "goal_ahead_of_optuna"))
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
