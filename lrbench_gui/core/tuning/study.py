"""Studies: a tuner's search, run as trials, recorded in the database, resumable.

A :class:`Study` is an event-driven state machine so that every driver shares it: the CLI's
blocking :class:`~lrbench_gui.core.runner.LocalScheduler`, the GUI's QProcess runner and the Ray
backend all do the same three things::

    configs = study.next_trials(free_slots)    # ask the tuner, build trial files
    keep = study.on_event(trial_id, event)      # intermediate values; False: stop that trial
    study.on_finished(trial_id, record)         # tell the tuner, store the trial

The three LRBench++ methods are study kinds: ``single`` (search policy families and their
parameters; rank by the final metric), ``compose`` (the same families plus compositions of
them; the best composition is compared with the best single policy) and ``cost`` (given a target
for the metric, rank by the cost to reach it). Range tests are the ``range-test`` and
``value-range`` tuners under any method.

Resume: the study record and its finished trials are in the database. A resumed study replays
them into a fresh tuner (same seed: the tuner asks the same keys) and runs only the rest.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lrbench_gui.core.params import validate_params
from lrbench_gui.core.records import TRIAL_REPLAYED, StudyRecord, StudyStatus, TrialRecord, TrialStatus, curve_points
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.registry import Registry, require_registry
from lrbench_gui.core.runs.trial import TrialConfig, load_trial, validate_trial
from lrbench_gui.core.tuner import Objective, StudyBudget, TrialRequest, TrialResult, Tuner

__all__ = ["StudyConfig", "Study", "result_from_record", "data_warning", "evaluator_classes", "resume_config", "METHODS", "INTERRUPTED", "EXECUTION_FIELDS",
           "format_duration"]

#: the tag of a trial stopped because its whole study was stopped (it runs again on resume)
INTERRUPTED = "interrupted"

METHODS = ("single", "compose", "cost")

#: the trial-file fields a tuner's request may set (``TrialRequest.trial``)
_TRIAL_OVERRIDES = {"seed", "checkpoint_steps", "checkpoint_every", "save_model", "merge", "batch_size", "eval_every"}


class StudyConfig(BaseModel):
    """Everything a study needs; stored in the study record's ``extra.config``."""

    model_config = ConfigDict(extra="forbid")

    study_id: str = Field(default_factory=lambda: "s-" + uuid.uuid4().hex[:10])
    name: str = ""
    task: str
    task_params: dict[str, Any] = Field(default_factory=dict)
    method: Literal["single", "compose", "cost"] = "single"
    tuner: str = "random"
    tuner_params: dict[str, Any] = Field(default_factory=dict)
    policies: list[str] = Field(default_factory=lambda: ["cosine"])
    overrides: dict[str, Any] = Field(default_factory=dict)
    lr_range: tuple[float, float] | None = None
    metric: str | None = None  # default: the task's metric
    mode: Literal["min", "max"] | None = None
    target: float | None = None  # the cost method's goal for the metric
    budget_steps: int = Field(300, ge=1)
    trials: int = Field(16, ge=1)
    parallel: int = Field(1, ge=1)
    backend: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    gpus_per_trial: float = Field(0, ge=0)
    cpus_per_trial: float = Field(1, gt=0)
    batch_size: int = Field(32, ge=1)
    optimizer: dict[str, Any] = Field(default_factory=dict)
    eval_every: int = Field(0, ge=0)
    #: evaluators every trial runs ({name, params}, as the trial file's): their metrics can be the objective
    evaluators: list[dict[str, Any]] = Field(default_factory=list, max_length=64)
    seed: int = 0
    threads: int = Field(1, ge=0)
    device: str = "auto"
    trial_backend: Literal["torch", "deepspeed"] = "torch"
    #: precision and gradient accumulation change results: a study's own, kept when it resumes
    precision: Literal["fp32", "bf16-mixed", "fp16-mixed", "bf16-true"] = "fp32"
    grad_accum: int = Field(1, ge=1, le=10**6)
    #: resumable trials: a checkpoint with optimizer state every N steps (0: none); a resumed study
    #: continues a trial interrupted with the study from its last one instead of from step 0
    checkpoint_every: int = Field(0, ge=0)
    #: ZeRO and the user's DeepSpeed config say how this machine runs a trial (execution settings)
    zero_stage: int = Field(0, ge=0, le=3)
    deepspeed_config: dict[str, Any] | None = None
    #: a command study runs this template instead of the trainer (docs/protocol.md, command trials)
    command: list[str] | None = None
    cwd: str | None = None
    #: run trials that allow it on warm workers, one process per slot (docs/protocol.md, warm workers)
    warm: bool = True

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        if value is None:
            return None
        from lrbench_gui.core.runs.command import check_template, split_command

        argv = split_command(value)
        check_template(argv)
        return argv


#: the settings that say where and how this machine runs the work: never taken from a stored study
#: record (it may come from someone else's export file), always this machine's own; a command
#: study's command and folder too, so a shared file never chooses what this machine runs
EXECUTION_FIELDS = ("backend", "ray_address", "parallel", "gpus_per_trial", "cpus_per_trial", "device", "threads",
                    "trial_backend", "zero_stage", "deepspeed_config", "command", "cwd", "warm")


def _resume_point(checkpoints: list[Any]) -> str | None:
    """The last trainer checkpoint of a trial that has its resume state beside it (the trainer's
    ``step-N.safetensors`` + ``step-N.resume/state.json``), or None."""
    for path in reversed([str(c) for c in checkpoints if str(c).endswith(".safetensors")]):
        if (Path(path).with_suffix(".resume") / "state.json").is_file():
            return path
    return None


def resume_config(record: dict[str, Any] | None, **here: Any) -> "StudyConfig":
    """The configuration to resume a stored study with: its own, except the execution settings
    (:data:`EXECUTION_FIELDS`), which are this machine's defaults or what ``here`` gives. Raises
    ``ValueError`` (one line) for a record with no usable configuration."""
    config = ((record or {}).get("extra") or {}).get("config")
    if not isinstance(config, dict):
        raise ValueError(f"study {(record or {}).get('id')!r} has no configuration to resume from (it was imported "
                         "from another tool, or made by an older lrbench): start a new study instead")
    defaults = StudyConfig.model_fields
    mine = {k: (here[k] if here.get(k) is not None else defaults[k].default) for k in EXECUTION_FIELDS}
    if config.get("command") and mine["command"] is None:
        raise ValueError(f"study {record.get('id')!r} runs a command: give it again to resume (--cmd '...'); "
                         "a stored study never chooses what this machine runs")
    try:
        return StudyConfig.model_validate({**config, **mine})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "config"
        what = "required" if err.get("type") == "missing" else str(err.get("msg", "invalid"))[:200]
        raise ValueError(f"study {record.get('id')!r}: its stored configuration is not valid here: "
                         f"{where}: {what}") from None


def metric_direction(metric: str, task_cls: Any, evaluators: Any = ()) -> str:
    """Whether ``metric`` is better lower ("min") or higher ("max"): the task's declared mode for
    its own metric or any in its ``metric_modes``, then the direction the given evaluator classes
    declare for it (``mc_acc``; ``mc_acc_KIND`` takes ``mc_acc``'s), else by name (accuracy-like
    names are "max")."""
    if metric == getattr(task_cls, "metric", None):
        return str(task_cls.metric_mode)
    declared = getattr(task_cls, "metric_modes", None) or {}
    if metric in declared:
        return str(declared[metric])
    from lrbench_gui.core.evaluator import metric_directions

    by_evaluator = metric_directions(list(evaluators))
    if metric in by_evaluator:
        return by_evaluator[metric]
    for name in sorted(by_evaluator, key=len, reverse=True):
        if metric.startswith(name + "_"):
            return by_evaluator[name]
    from lrbench_gui.core.db.query import metric_mode

    return metric_mode(metric)


def data_warning(data: dict[str, Any]) -> str | None:
    """One line when a trial's data lost records (a task's ``data_info()``: ``dropped`` and
    ``truncated`` of ``records``), else None."""
    counts = {k: data.get(k) for k in ("records", "dropped", "truncated")}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        return None
    if not (counts["dropped"] or counts["truncated"]):
        return None
    return (f"data: {counts['dropped']} of {counts['records']} records dropped and {counts['truncated']} truncated "
            "at the task's max_length (the trial's log says why): raise max_length to keep them")


def evaluator_classes(specs: list[dict[str, Any]], registry: Registry) -> list[Any]:
    """The classes of ``specs`` (``{name, params}``, as ``StudyConfig.evaluators``), their
    parameters checked: ``ValueError`` (one line) naming the first that is wrong."""
    from lrbench_gui.core.params import ParamError
    from lrbench_gui.core.registry import UnknownName

    out = []
    for i, spec in enumerate(specs):
        name = spec.get("name") if isinstance(spec, dict) else None
        extra = set(spec) - {"name", "params"} if isinstance(spec, dict) else set()
        if not isinstance(name, str) or extra:
            raise ValueError(f"evaluators[{i}]: give {{'name': NAME, 'params': {{...}}}}, got {spec!r:.200}")
        try:
            cls = registry.evaluator(name)
            validate_params(cls.Params, spec.get("params") or {})
        except UnknownName as exc:
            raise ValueError(f"evaluators[{i}]: {exc}") from None
        except ParamError as exc:
            raise ValueError(f"evaluator {name}: {exc}") from None
        out.append(cls)
    return out


def result_from_record(key: str, record: TrialRecord, objective: Objective) -> TrialResult:
    """A finished trial's database record as its tuner wants it: the objective's value only
    when the trial completed with a finite one."""
    metrics = {k: float(v) for k, v in (record.get("metrics") or {}).items() if isinstance(v, (int, float))}
    value = metrics.get(objective.metric)
    if record.get("status") != TrialStatus.COMPLETED or value is None or not math.isfinite(value):
        value = None
    curves = record.get("curves") or {}
    return TrialResult(
        key=key,
        status=str(record.get("status")),
        value=value,
        metrics=metrics,
        cost={k: v for k, v in (record.get("cost") or {}).items() if isinstance(v, (int, float))},
        evals=curve_points(curves.get(f"eval/{objective.metric}")),
        losses=curve_points(curves.get("loss")),
        lrs=curve_points(curves.get("lr")),
        checkpoints=[str(c) for c in (record.get("extra") or {}).get("checkpoints") or [] if c],
    )


class Study:
    """One study's state: its tuner, what runs, what finished, where it is stored."""

    def __init__(self, config: StudyConfig, registry: Registry, db: Any = None) -> None:
        self.config = config
        self.registry = require_registry(registry, "Study")
        self.db = db
        task_cls = self.registry.task(config.task)
        validate_params(task_cls.Params, config.task_params)
        evaluator_classes = self._evaluator_classes()
        metric = config.metric or task_cls.metric
        mode = config.mode or metric_direction(metric, task_cls, evaluator_classes)
        self.objective = Objective(metric, mode, config.target)
        if config.method == "cost" and config.target is None:
            raise ValueError("the cost method needs a target: e.g. --target val_acc=0.95")
        if config.command is not None:
            self._check_command(task_cls)
        self.tuner = self._make_tuner()
        self.requests: dict[str, TrialRequest] = {}  # trial_id -> request
        self.results: dict[str, TrialResult] = {}  # trial_id -> result
        self.records: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()
        self.pruned: set[str] = set()
        self.replayed = 0
        self.stopped = False
        #: trials that were running when the whole study was stopped (closing the app, Ctrl-C):
        #: stored as stopped with the tag "interrupted", and run again on resume
        self.interrupted: set[str] = set()
        #: interrupted trials that resume() found a resumable checkpoint of: trial id -> checkpoint
        self.resume_points: dict[str, str] = {}
        #: what resume() found: trials replayed, of which completed, and interrupted ones re-queued
        self.resumed = {"replayed": 0, "completed": 0, "rerun": 0}
        self._replay_queue: list[TrialRequest] = []
        self._ask_count = 0
        self.asked_at: dict[str, int] = {}
        self.on_stored: Callable[[dict[str, Any]], None] | None = None
        #: what each running trial's data became (its hello event's ``data``: records dropped,
        #: truncated...), kept in its record's ``extra.data``; the one-line warnings about it, each once
        self.data_info: dict[str, dict[str, Any]] = {}
        self.data_warnings: list[str] = []
        #: writes the database refused, kept in recovery files (RecoveryResult, with the
        #: ``lrbench db import`` line that applies each); the CLI reports them and exits 3
        self.recovered: list[Any] = []
        #: progress bookkeeping (:meth:`progress`): when this run asked its first trial, each
        #: running trial's [steps done, steps, seconds since its first step], and the steps and
        #: trials this run finished (replayed ones are not this run's work)
        self._t0: float | None = None
        self._t_steps: float | None = None  # the first step of this run: the rate leaves start-up out
        self._live: dict[str, list[float]] = {}
        self._run_steps = 0.0
        self._run_trials = 0

    def _check_command(self, task_cls: Any) -> None:
        """Every ``{policy.NAME}`` names a parameter of each searched family, every ``{task.NAME}``
        one of the task's: ``ValueError`` (one line) before any trial runs."""
        from lrbench_gui.core.runs.command import check_template

        cfg = self.config
        families = {}
        if cfg.method == "single":
            for name in cfg.policies:
                try:
                    families[name] = set(self.registry.policy(name).Params.model_fields)
                except Exception:
                    continue  # an unknown family is the search space's to refuse
        check_template(cfg.command or [], families, set(task_cls.Params.model_fields) | set(cfg.task_params))

    def _make_tuner(self) -> Tuner:
        from lrbench_gui.core.tuning.space import study_space

        cfg = self.config
        cls = self.registry.tuner(cfg.tuner)
        space = None
        if getattr(cls, "uses_space", True):
            space = study_space(cfg.policies, cfg.method, self.registry, cfg.overrides, cfg.lr_range)
        self.space = space
        params = validate_params(cls.Params, cfg.tuner_params)
        # the tuner ranks by what the method optimizes: the metric, or the cost to reach the target
        objective = Objective("cost_to_target", "min") if cfg.method == "cost" else self.objective
        return cls(params, space, objective, StudyBudget(cfg.budget_steps, cfg.trials), cfg.seed)

    # Identity and storage.

    def trial_id(self, key: str) -> str:
        return f"{self.config.study_id}-{key}"

    def study_record(self, status: StudyStatus | str) -> StudyRecord:
        cfg = self.config
        return {
            "id": cfg.study_id,
            "name": cfg.name or f"{cfg.method} {cfg.tuner} on {cfg.task}",
            "task": cfg.task,
            "task_params": cfg.task_params,
            "tuner": {"name": cfg.tuner, "params": cfg.tuner_params},
            "objective": {"metric": self.objective.metric, "mode": self.objective.mode},
            "budget": {"steps": cfg.budget_steps},
            "status": str(StudyStatus(status)),
            "extra": {
                "config": cfg.model_dump(mode="json"),
                "summary": _jsonable(self.summary()),
                "planned": self.progress()["planned"],  # the tuner's count: "11 / 42 trials", not "11 / 1"
            },
        }

    def save(self, status: StudyStatus | str) -> None:
        if self.db is not None:
            result = self.db.add_study_or_recover(self.study_record(status), replace=True)
            if not result.ok:
                # one recovery file for the study record: the newest state replaces the older one
                for old in [r for r in self.recovered if r.table == "studies"]:
                    self.recovered.remove(old)
                    if old.file is not None and old.file != result.file:
                        old.file.unlink(missing_ok=True)
                self.recovered.append(result)

    # Resume.

    def resume(self) -> int:
        """Replay the finished trials stored for this study; returns how many were replayed.

        The original run interleaved asks and tells (several trials at once); each stored trial
        knows its ask order and how many results its tuner had been told when it was asked, and
        its finish order. Replaying asks in ask order, telling results in finish order up to each
        ask's count, gives a deterministic tuner the same requests and keys. A request that had
        not finished (it was running when the app closed, or it was stopped with the whole study:
        tagged ``interrupted``) is queued to run for real; a trial the user cancelled on its own
        stays cancelled.
        """
        if self.db is None:
            return 0
        everything = self.db.trials(study=self.config.study_id)
        stored = [t for t in everything
                  if t.get("status") in TRIAL_REPLAYED and INTERRUPTED not in (t.get("tags") or [])]
        unfinished = len(everything) - len(stored)  # interrupted, or running when the app died
        for t in everything:
            if INTERRUPTED in (t.get("tags") or []):
                point = _resume_point((t.get("extra") or {}).get("checkpoints") or [])
                if point:
                    self.resume_points[t["id"]] = point
        by_id = {t["id"]: t for t in stored}
        order = lambda t, k: (t.get("extra") or {}).get(k, 0)  # noqa: E731
        asks = sorted(stored, key=lambda t: order(t, "ask_index"))
        tells = sorted(stored, key=lambda t: order(t, "finish_index"))
        told = 0

        def tell_until(count: int) -> None:
            nonlocal told
            while told < count and told < len(tells):
                tid = tells[told]["id"]
                if tid not in self.requests:
                    return  # finished before it was asked: the order is broken; stop replaying here
                self._finish(tid, tells[told], store=False)
                told += 1

        replayed_asks = 0
        for trial in asks:
            tell_until(int((trial.get("extra") or {}).get("tuner_tags", {}).get("asked_after_tells", told)))
            while not self.tuner.done():
                req = self.tuner.ask()
                if req is None:
                    break
                tid = self.trial_id(req.key)
                self.requests[tid] = req
                self._ask_count += 1
                if tid in by_id:
                    replayed_asks += 1
                    break
                self._replay_queue.append(req)  # it was running when the study stopped: run it again
            if replayed_asks == len(asks):
                break
        tell_until(len(tells))
        self.replayed = told
        completed = sum(1 for r in self.results.values() if r.status == TrialStatus.COMPLETED)
        self.resumed = {"replayed": told, "completed": completed, "rerun": max(unfinished, len(self._replay_queue))}
        return told

    # The loop's three steps.

    def next_trials(self, free_slots: int) -> list[TrialConfig]:
        """Up to ``free_slots`` new trials from the tuner (fewer when it must wait)."""
        out: list[TrialConfig] = []
        while len(out) < free_slots and not self.stopped:
            if self._replay_queue:
                req = self._replay_queue.pop(0)
            elif self.tuner.done():
                break
            else:
                req = self.tuner.ask()
                if req is None:
                    break
                self._ask_count += 1
            cfg = self.trial_config(req)
            if self._t0 is None:
                self._t0 = time.monotonic()
            self.requests[cfg.trial_id] = req
            self.asked_at[cfg.trial_id] = self._ask_count - 1
            self.running.add(cfg.trial_id)
            out.append(cfg)
        return out

    def _evaluator_classes(self) -> list[Any]:
        """The study's evaluator classes, their parameters checked: one line when one is wrong."""
        return evaluator_classes(self.config.evaluators, self.registry)

    def trial_config(self, req: TrialRequest) -> TrialConfig:
        cfg = self.config
        eval_every = req.eval_every or cfg.eval_every or max(1, req.steps // 10)
        obj = {
            "trial_id": self.trial_id(req.key),
            "study_id": cfg.study_id,
            "task": cfg.task,
            "task_params": {**cfg.task_params, **req.task_params},
            "policy": req.policy,
            "optimizer": cfg.optimizer,
            "budget": {"steps": req.steps},
            "batch_size": cfg.batch_size,
            "eval_every": eval_every,
            "seed": cfg.seed,
            "threads": cfg.threads,
            "device": cfg.device,
            "backend": cfg.trial_backend,
            "precision": cfg.precision,
            "grad_accum": cfg.grad_accum,
        }
        if cfg.evaluators:
            obj["evaluators"] = [{"name": e["name"], "params": e.get("params") or {}} for e in cfg.evaluators]
        if cfg.trial_backend == "deepspeed":
            obj["deepspeed"] = {"zero_stage": cfg.zero_stage, "num_gpus": max(1, int(cfg.gpus_per_trial or 1)),
                                "config": cfg.deepspeed_config}
        if cfg.command is not None:
            obj.update({"command": cfg.command, "cwd": cfg.cwd})
        if "diverge_factor" in req.tags:
            obj["diverge_factor"] = float(req.tags["diverge_factor"])
        if "log_every" in req.tags:
            obj["log_every"] = int(req.tags["log_every"])
        unknown = set(req.trial) - _TRIAL_OVERRIDES
        if unknown:
            raise ValueError(f"tuner {cfg.tuner}: a request may not set {', '.join(sorted(unknown))} of a trial")
        if cfg.checkpoint_every:
            obj["checkpoint_every"] = cfg.checkpoint_every
        obj.update(req.trial)
        point = self.resume_points.get(obj["trial_id"])
        if point and "merge" not in obj and cfg.command is None and cfg.trial_backend == "torch":
            obj["resume_from"] = point  # the trainer checks that it fits, and replays its curve
        return validate_trial(load_trial(obj), self.registry)

    def on_event(self, trial_id: str, event: Event) -> bool:
        """Forward the objective's intermediate values; False means "stop this trial"."""
        req = self.requests.get(trial_id)
        if req is not None and event.type == "step":
            if self._t_steps is None:
                self._t_steps = time.monotonic()
            live = self._live.setdefault(trial_id, [0.0, float(req.steps), 0.0])
            step, seconds = event.get("step"), event.get("time")
            if isinstance(step, (int, float)):
                live[0] = float(step) + 1
            if isinstance(seconds, (int, float)) and math.isfinite(seconds):
                live[2] = float(seconds)
            return True  # (a step event carries no objective value)
        if req is not None and event.type == "hello" and isinstance(event.get("steps"), int) and event["steps"] > 0:
            self._live.setdefault(trial_id, [0.0, 0.0, 0.0])[1] = float(event["steps"])
        if req is not None and event.type == "hello" and isinstance(event.get("data"), dict):
            self.data_info[trial_id] = _jsonable(dict(list(event["data"].items())[:32]))
        if req is None or event.type != "eval":
            return True
        value = (event.get("metrics") or {}).get(self.objective.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return True
        if self.config.method == "cost":
            return True  # cost-to-target needs the whole curve
        keep = self.tuner.report(req.key, int(event["step"]), float(value))
        if not keep:
            self.pruned.add(trial_id)
        return keep

    def on_finished(self, trial_id: str, record: dict[str, Any]) -> None:
        self.running.discard(trial_id)
        if trial_id in self.interrupted and record.get("status") == TrialStatus.STOPPED:
            record = {**record, "tags": sorted(set(record.get("tags") or []) | {INTERRUPTED})}
        if trial_id in self.pruned:
            record = {**record, "tags": sorted(set(record.get("tags") or []) | {"pruned"})}
        self.resume_points.pop(trial_id, None)
        self._finish(trial_id, record, store=True)

    def _finish(self, trial_id: str, record: dict[str, Any], store: bool) -> None:
        req = self.requests[trial_id]
        result = result_from_record(req.key, record, self.objective)
        if trial_id in self.pruned or "pruned" in (record.get("tags") or []):
            result.status = TrialStatus.PRUNED
        extra = dict(record.get("extra") or {})
        extra.update({"family": req.family, "point": _jsonable(req.point), "tuner_tags": _jsonable(req.tags)})
        data = self.data_info.pop(trial_id, None)
        if data is not None:
            extra["data"] = data
            warning = data_warning(data)
            if warning:
                record = {**record, "notes": "\n".join(n for n in (record.get("notes"), warning) if n)}
                if warning not in self.data_warnings:
                    self.data_warnings.append(warning)
        self._live.pop(trial_id, None)
        if store:
            steps = result.cost.get("steps")
            self._run_steps += float(steps) if isinstance(steps, (int, float)) and math.isfinite(steps) else 0.0
            self._run_trials += 1
            extra["ask_index"] = self.asked_at.get(trial_id, len(self.results))
            extra["finish_index"] = len(self.results)
        if self.config.method == "cost":
            steps_to = self.cost_to_target(result)
            extra["cost_to_target"] = steps_to
            told = TrialResult(**{**result.__dict__, "value": float(steps_to) if steps_to is not None else None})
            told.metrics = {**result.metrics, "cost_to_target": steps_to if steps_to is not None else math.inf}
        else:
            told = result
        self.tuner.tell(told)
        # the trial is ranked by the study's objective (an evaluator's mc_acc, say), not the task's
        # metric the trainer reported: its record says so, for every driver (CLI, app, Ray)
        objective = {"metric": self.objective.metric, "mode": self.objective.mode}
        # what the tuner adds to its trial's record (the range test: its suggested LRs)
        record = self.tuner.record_trial(req, result, {**record, "objective": objective, "extra": extra})
        self.results[trial_id] = result
        self.records[trial_id] = record
        if store and self.db is not None:
            result = self.db.add_trial_or_recover(record, replace=True, study=self.study_record(StudyStatus.RUNNING))
            if not result.ok:
                self.recovered.append(result)  # nothing trained is lost: the trial is in the file
                return
            if self.on_stored:
                self.on_stored(result.stored[0] if result.stored else record)

    def cost_to_target(self, result: TrialResult) -> int | None:
        """Steps until the metric first reached the target (None: never)."""
        for step, value in result.evals:
            if self.objective.reached(value):
                return step + 1
        return None

    @property
    def finished(self) -> bool:
        return (self.stopped or self.tuner.done()) and not self.running and not self._replay_queue

    def stop(self) -> None:
        """Ask nothing more. The trials running now are *interrupted*: the caller cancels them,
        and a resume runs them again (a trial cancelled on its own, before, stays cancelled)."""
        self.stopped = True
        self.interrupted |= set(self.running)

    # Results.

    def ranking(self) -> list[dict[str, Any]]:
        """Trials best first: by the metric (single, compose) or by the cost to the target (cost)."""
        rows = []
        for tid, res in self.results.items():
            req = self.requests[tid]
            rec = self.records[tid]
            cost = res.cost
            row = {
                "trial": tid, "family": req.family or rec["policy"].get("name", "composition"),
                "policy": rec["policy"], "status": res.status, "value": res.value,
                "metric": self.objective.metric, "steps": int(cost.get("steps", 0) or 0),
                "seconds": float(cost.get("seconds", 0) or 0), "tokens": int(cost.get("tokens", 0) or 0),
                "composed": "sequence" in rec["policy"], "rung": req.tags.get("rung"),
            }
            if self.config.method == "cost":
                row["cost_to_target"] = self.cost_to_target(res)
            rows.append(row)

        def key(row: dict[str, Any]) -> tuple:
            if self.config.method == "cost":
                c = row["cost_to_target"]
                return (c is None, c if c is not None else 0, _sort_value(row["value"], self.objective.mode))
            return (row["value"] is None, _sort_value(row["value"], self.objective.mode), -row["steps"])

        return sorted(rows, key=key)

    def best(self) -> dict[str, Any] | None:
        ranked = [r for r in self.ranking() if r["value"] is not None]
        if self.config.method == "cost":
            ranked = [r for r in ranked if r.get("cost_to_target") is not None] or ranked
        return ranked[0] if ranked else None

    def progress(self) -> dict[str, Any]:
        """Where the study stands, for progress bars and ETAs (every driver: CLI, app, Ray).

        ``completed``: trials finished (replayed ones included), ``running``, ``planned``: the
        tuner's :meth:`~lrbench_gui.core.tuner.Tuner.planned_trials` (at least the trials asked;
        the study's ``trials`` budget when the tuner cannot say; the finished count once the
        study is over; a stopped one keeps its plan), ``estimate``: whether ``planned`` may still
        move, ``elapsed``: seconds since this run asked its first trial, ``eta_seconds``: the time
        left at this run's rate so far in steps per second since its first step (the workers'
        start-up left out; trials per second for trials of no steps; None until some work is
        done), and ``trials``: per running trial ``step``, ``steps``, ``steps_per_s`` and
        ``eta_seconds`` from its step events.
        """
        # copies first (each one C call, so whole under the GIL): a Ray study's thread may be
        # adding to these while the GUI thread asks
        results, running, live, requests = list(self.results), list(self.running), dict(self._live), dict(self.requests)
        done = len(results)
        asked = len(requests)
        over = self.finished and not self.stopped  # a stopped study keeps its plan: a resume runs the rest
        planned = _ask_tuner(self.tuner.planned_trials) if not over else None
        estimate = planned is None and not over
        if planned is None:
            planned = done if over else self.config.trials
        planned = max(int(planned), asked, done)
        trials: dict[str, dict[str, Any]] = {}
        running_done = 0.0
        for tid in sorted(running):
            step, steps, seconds = live.get(tid, [0.0, float(requests[tid].steps), 0.0])
            steps = steps or float(requests[tid].steps)
            rate = step / seconds if step > 0 and seconds > 0 else None
            trials[tid] = {"step": int(step), "steps": int(steps), "steps_per_s": rate,
                           "eta_seconds": max(0.0, steps - step) / rate if rate else None}
            running_done += min(step, steps)
        elapsed = time.monotonic() - self._t0 if self._t0 is not None else 0.0
        eta: float | None = 0.0 if over else None
        if not over and not self.stopped and elapsed > 0:
            per_trial_steps = float(self.tuner.budget.steps)
            planned_steps = _ask_tuner(self.tuner.planned_steps)
            if planned_steps is None:
                planned_steps = planned * per_trial_steps
            # the plan's steps less the requested steps of finished trials (a pruned trial's
            # remainder is gone from the plan) and what the running ones did so far
            spent = sum(requests[t].steps for t in results if t in requests) + running_done
            work = self._run_steps + running_done
            stepping = time.monotonic() - self._t_steps if self._t_steps is not None else elapsed
            if planned_steps > 0 and work > 0 and stepping > 0:
                eta = max(0.0, planned_steps - spent) * stepping / work
            elif planned_steps <= 0 and self._run_trials:
                eta = max(0, planned - done) * elapsed / self._run_trials
        return {"completed": done, "running": len(running), "planned": planned, "estimate": estimate,
                "elapsed": round(elapsed, 3), "eta_seconds": None if eta is None else round(eta, 1), "trials": trials}

    def compute_steps(self) -> int:
        return sum(int(r.cost.get("steps", 0) or 0) for r in self.results.values())

    def summary(self) -> dict[str, Any]:
        best = self.best() if self.results else None
        out: dict[str, Any] = {
            "trials": len(self.results), "replayed": self.replayed, "compute_steps": self.compute_steps(),
            "best": None if best is None else {k: best[k] for k in ("trial", "family", "policy", "value")},
            "tuner": self.tuner.summary_json(),
        }
        if isinstance(out["tuner"].get("confidence"), dict):  # how sure the tuner is (lrsearch)
            out["confidence"] = out["tuner"]["confidence"]
        train = sum(float(r.cost.get("seconds", 0) or 0) for r in self.results.values())
        evaluating = sum(float(r.cost.get("eval_seconds", 0) or 0) for r in self.results.values())
        if evaluating > 0:  # evaluators' time is kept apart from training's in every trial's cost
            out.update(train_seconds=round(train, 3), eval_seconds=round(evaluating, 3),
                       eval_share=round(evaluating / (train + evaluating), 4))
        if self.config.method == "compose" and self.results:
            ranked = [r for r in self.ranking() if r["value"] is not None]
            single = next((r for r in ranked if not r["composed"]), None)
            composed = next((r for r in ranked if r["composed"]), None)
            out["best_single"] = single and {"trial": single["trial"], "value": single["value"]}
            out["best_composition"] = composed and {"trial": composed["trial"], "value": composed["value"]}
        return out


def _ask_tuner(method: Callable[[], Any]) -> int | None:
    """A tuner's planned count, or None when it has none or its method fails (a plugin's bug
    must not stop the study record being written)."""
    try:
        value = method()
    except Exception:  # noqa: BLE001
        return None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _sort_value(value: float | None, mode: str) -> float:
    if value is None:
        return math.inf
    return value if mode == "min" else -value


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def format_duration(seconds: float | None) -> str:
    """``seconds`` for a person: ``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``; "?" for None."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
