"""The task contract: what every training workload must satisfy.

* it registers, describes its parameters, names its metric and implements every method;
* ``evaluate()`` returns the declared :attr:`~lrbench_gui.core.task.Task.metric` (the trainer
  fails a trial whose evaluation does not: it cannot be ranked);
* every value ``evaluate()`` returns is finite, also for a diverged model (NaN weights), where
  the rule is to report a large finite loss,
  :data:`~lrbench_gui.trainer.run.DIVERGED_METRIC` (1e9), as the built-ins do;
* two short runs with the same seed give the same training losses and the same metrics;
* a task that may run warm (``Task.warm_reuse``) trains the same in a worker that ran a trial
  before, its ``ctx.cache`` kept, as that first trial did.

The runs are real: :func:`run_task` trains the task in this process through the trainer's own
:func:`~lrbench_gui.trainer.run.run_trial` (on the CPU, a constant LR, a few steps) and reads back
the protocol events it wrote. Torch is imported only when a run starts.
"""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrbench_gui.core.params import Params, param, validate_params
from lrbench_gui.core.policy import Policy
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.testing._common import CONTRACT_PLUGIN, check_concrete, check_registers, check_schema, fail

__all__ = [
    "TaskContract",
    "TaskRun",
    "check_task",
    "check_task_metric",
    "check_task_diverged",
    "check_task_deterministic",
    "check_task_warm",
    "run_task",
]


class ContractLR(Policy):
    """The constant LR of the task contract's runs."""

    name = "lrbench-contract-lr"
    summary = "A constant LR for the task contract's short runs"

    class Params(Params):
        lr: float = param(1e-3, "The learning rate.", gt=0, log=True)

    def lr_at(self, step: int) -> float:
        return self.params.lr


@dataclass
class TaskRun:
    """What one short run of a task gave: its end status, the training loss of every step, each
    evaluation's metrics as the protocol carried them, and the error of a failed run."""

    status: str
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def check_task(cls: type[Task]) -> None:
    """A task registers cleanly, describes its parameters, names the metric it reports and
    implements every abstract method."""
    check_registers("task", cls)
    check_schema(cls)
    if not isinstance(cls.metric, str) or not cls.metric:
        raise fail(cls, f"metric must be a non-empty string, got {cls.metric!r}")
    if cls.metric_mode not in ("min", "max"):
        raise fail(cls, f"metric_mode must be 'min' or 'max', got {cls.metric_mode!r}")
    check_concrete(cls)


def _registry(cls: type[Task]) -> Registry:
    reg = Registry()
    try:
        reg.add("task", cls, CONTRACT_PLUGIN, __name__)
    except Exception as exc:
        raise fail(cls, f"refused by a Registry: {exc}") from None
    reg.add("policy", ContractLR, CONTRACT_PLUGIN, __name__)
    return reg


def run_task(cls: type[Task], params: dict[str, Any] | None = None, *, steps: int = 4, seed: int = 0,
             batch_size: int = 8, lr: float = 1e-3, eval_every: int = 2, folder: str | Path | None = None,
             cache: dict | None = None) -> TaskRun:
    """Train ``cls`` for ``steps`` steps in this process with the trainer (CPU, constant ``lr``,
    an evaluation every ``eval_every`` steps and at the end) and return what it reported.
    ``cache``: a warm worker's :attr:`~lrbench_gui.core.task.TaskContext.cache` (None: fresh)."""
    from lrbench_gui.trainer.run import Emitter, run_trial

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="lrbench-contract-") as tmp:
            return run_task(cls, params, steps=steps, seed=seed, batch_size=batch_size, lr=lr,
                            eval_every=eval_every, folder=tmp, cache=cache)
    reg = _registry(cls)
    try:
        cfg = validate_trial(load_trial({
            "trial_id": "contract", "task": cls.name, "task_params": dict(params or {}),
            "policy": {"name": ContractLR.name, "params": {"lr": lr}}, "budget": {"steps": steps},
            "batch_size": batch_size, "eval_every": eval_every, "seed": seed, "device": "cpu", "threads": 0,
            "output_dir": str(folder),
        }), reg)
    except TrialError as exc:
        raise fail(cls, f"a trial of it is refused: {exc}") from None
    stream = io.StringIO()
    try:
        status = run_trial(cfg, Emitter(cfg.trial_id, stream=stream), reg, cache)
        error = ""
    except TrialError as exc:  # the trainer's verdict on a broken evaluate()
        status, error = "failed", str(exc)
    run = TaskRun(status, error=error)
    for line in stream.getvalue().splitlines():
        event = parse_line(line)
        if event is None:
            continue
        if event.type == "step":
            run.losses.append(float(event["loss"]))
        elif event.type == "eval":
            run.evals.append(dict(event.get("metrics") or {}))
        elif event.type == "end":
            run.metrics = dict(event.get("metrics") or {})
    return run


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_values(cls: type[Task], metrics: dict[str, Any], when: str) -> None:
    for key, value in metrics.items():
        if not _finite(value):
            raise fail(cls, f"evaluate() returned {key}={value!r} {when}: every value must be finite; report "
                            f"a large finite value instead (1e9, lrbench_gui.trainer.run.DIVERGED_METRIC)")


def check_task_metric(cls: type[Task], params: dict[str, Any] | None = None, **run: Any) -> None:
    """A short run completes, and every evaluation returns the declared metric with finite values."""
    result = run_task(cls, params, **run)
    if result.error:
        raise fail(cls, f"{result.error}; evaluate() must return the declared metric {cls.metric!r}")
    if result.status != "completed":
        raise fail(cls, f"a run of {run.get('steps', 4)} steps at a small LR ended {result.status}, not completed")
    if not result.evals:
        raise fail(cls, "the run reported no evaluation")
    for i, metrics in enumerate(result.evals):
        if cls.metric not in metrics:
            raise fail(cls, f"evaluation {i} has no {cls.metric!r} (it has: {', '.join(sorted(metrics))})")
        _check_values(cls, metrics, f"at evaluation {i}")


def check_task_diverged(cls: type[Task], params: dict[str, Any] | None = None, *, seed: int = 0,
                        batch_size: int = 8, folder: str | Path | None = None) -> None:
    """``evaluate()`` of a diverged model (every weight NaN) still returns the metric, finite."""
    import torch

    from lrbench_gui.trainer.run import check_metrics

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="lrbench-contract-") as tmp:
            return check_task_diverged(cls, params, seed=seed, batch_size=batch_size, folder=tmp)
    task = cls(validate_params(cls.Params, dict(params or {})))
    model = task.setup(TaskContext(seed, torch.device("cpu"), batch_size, workdir=Path(folder), log=lambda *a: None))
    with torch.no_grad():
        for p in model.parameters():
            if torch.is_floating_point(p):
                p.fill_(math.nan)
        model.eval()
        try:
            metrics = check_metrics(task, task.evaluate(model))
        except TrialError as exc:
            raise fail(cls, f"for a diverged model: {exc}") from None
    _check_values(cls, metrics, "for a diverged model (NaN weights)")


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


def check_task_deterministic(cls: type[Task], params: dict[str, Any] | None = None, **run: Any) -> None:
    """Two short runs with the same seed give the same training losses and the same final metrics
    (data order, initialization and evaluation follow the seed the trainer passes)."""
    first, second = run_task(cls, params, **run), run_task(cls, params, **run)
    if first.error or second.error:
        raise fail(cls, first.error or second.error)
    if not _same(first.losses, second.losses):
        raise fail(cls, f"two runs with seed {run.get('seed', 0)} gave different losses: {first.losses} and "
                        f"{second.losses}; draw data and weights from ctx.seed (torch generators seeded with it)")
    keys = sorted(set(first.metrics) | set(second.metrics))
    a = [float(first.metrics.get(k, math.nan)) for k in keys]
    b = [float(second.metrics.get(k, math.nan)) for k in keys]
    if not _same(a, b):
        raise fail(cls, f"two runs with the same seed ended with different metrics: {first.metrics} and "
                        f"{second.metrics}")


def check_task_warm(cls: type[Task], params: dict[str, Any] | None = None, **run: Any) -> None:
    """When the task may run warm (``warm_reuse``): a second run with the ``ctx.cache`` the first
    one filled (as a worker's first trial fills it) gives exactly the first run's losses and
    metrics. (lrbench's own tests also compare warm workers with fresh processes.)"""
    if not cls.warm_reuse(validate_params(cls.Params, dict(params or {}))):
        return
    run.setdefault("eval_every", run.get("steps", 4))
    cache: dict = {}
    first = run_task(cls, params, cache=cache, **run)
    warm = run_task(cls, params, cache=cache, **run)
    if first.error or warm.error:
        raise fail(cls, first.error or warm.error)
    advice = ("keep in ctx.cache only what training never changes, take what a trial may change out of it in "
              "setup (cache.pop) and give it back in release(), or return False from warm_reuse")
    if not _same(first.losses, warm.losses):
        raise fail(cls, f"a warm run (ctx.cache kept from an earlier trial) gave the losses {warm.losses}, the "
                        f"run before it {first.losses}: {advice}")
    keys = sorted(set(first.metrics) | set(warm.metrics))
    if [first.metrics.get(k) for k in keys] != [warm.metrics.get(k) for k in keys]:
        raise fail(cls, f"a warm run ended with {warm.metrics}, the run before it with {first.metrics}: {advice}")


class TaskContract:
    """The task contract as pytest tests, one per rule (each run trains for real, briefly).

    Subclass it in a test module (named ``Test...``) and provide a ``task_class`` fixture; set
    ``task_params`` (e.g. a model folder) and the run's size below if the defaults do not fit."""

    task_params: dict[str, Any] = {}
    steps = 4
    batch_size = 8
    lr = 1e-3

    def _run(self) -> dict[str, Any]:
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr}

    def test_registers_and_describes(self, task_class: type[Task]) -> None:
        check_task(task_class)

    def test_evaluate_returns_its_metric(self, task_class: type[Task], tmp_path: Path) -> None:
        check_task_metric(task_class, self.task_params, folder=tmp_path, **self._run())

    def test_metrics_stay_finite_for_a_diverged_model(self, task_class: type[Task], tmp_path: Path) -> None:
        check_task_diverged(task_class, self.task_params, batch_size=self.batch_size, folder=tmp_path)

    def test_seeded_runs_agree(self, task_class: type[Task], tmp_path: Path) -> None:
        check_task_deterministic(task_class, self.task_params, folder=tmp_path, **self._run())

    def test_warm_runs_match_fresh(self, task_class: type[Task], tmp_path: Path) -> None:
        check_task_warm(task_class, self.task_params, folder=tmp_path, **self._run())
