"""The tuner contract: what every tuner (search strategy or study kind) must satisfy.

A study owns the loop and resumes by replaying stored trials into a fresh tuner, so a tuner must
be a deterministic function of its seed and of the results it was told:

* **replay determinism**: two fresh tuners, the same seed, the same results told in the same
  order, ask the same requests under the same keys (a tuner whose keys are random cannot
  resume);
* **stable keys across a resume**: a real :class:`~lrbench_gui.core.tuning.study.Study` over a
  real :class:`~lrbench_gui.core.db.PolicyDB` in a folder is stopped part-way, a new study with
  the same config resumes from the database, the replayed trials have the keys and requests of
  the originals, and nothing that finished runs twice;
* **refusing a tell it never asked**: ``tell()`` raises for a key it never asked;
* and it never waits forever: ``ask()`` returns None only while a trial it asked is running.

The trials are not trained: each request gets a synthetic result (:func:`synthetic_result`),
a deterministic function of the request whose value is best at LR :data:`SYNTHETIC_BEST_LR`,
and in the resume check it reaches the study as protocol events through the real
:class:`~lrbench_gui.core.runs.recorder.TrialRecorder`, so the stored records are the ones a
real run stores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.records import StudyStatus
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.trial import TrialConfig
from lrbench_gui.core.spec import build_schedule, parse_spec
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuner import Objective, TrialRequest, TrialResult, Tuner
from lrbench_gui.testing._common import CONTRACT_PLUGIN, check_concrete, check_registers, check_schema, fail

__all__ = [
    "TunerContract",
    "SYNTHETIC_BEST_LR",
    "check_tuner",
    "check_tuner_replay",
    "check_tuner_resume",
    "check_tuner_refuses_unknown_tell",
    "contract_registry",
    "drive_tuner",
    "synthetic_result",
]

#: the LR at which :func:`synthetic_result` gives its best (lowest) value
SYNTHETIC_BEST_LR = 3e-3
_DEFAULT_POLICIES = ("cosine", "step")


class ContractTask(Task):
    """A stand-in task for tuner checks: its trials are synthesized, never trained."""

    name = "lrbench-contract-task"
    summary = "Stands in for a real task in the tuner contract; never runs"
    metric = "val_loss"
    metric_mode = "min"

    class Params(Params):
        size: int = param(1, "Unused.", ge=1)

    def setup(self, ctx: Any) -> Any:
        raise RuntimeError("the contract task never runs")

    def train_batches(self) -> Any:
        raise RuntimeError("the contract task never runs")

    def loss(self, model: Any, batch: Any) -> Any:
        raise RuntimeError("the contract task never runs")

    def evaluate(self, model: Any) -> dict[str, float]:
        raise RuntimeError("the contract task never runs")


def contract_registry(cls: type[Tuner], task: str | None = None, registry: Registry | None = None) -> Registry:
    """A registry with ``cls``, every policy of ``registry`` (default: the installed plugins, so
    the tuner's requests parse) and the task: ``task`` from ``registry``, or :class:`ContractTask`."""
    if registry is None:
        from lrbench_gui.plugins import get_registry

        registry = get_registry()
    reg = Registry()
    reg.items["policy"].update(registry.policies)
    if task is None:
        reg.add("task", ContractTask, CONTRACT_PLUGIN, __name__)
    else:
        reg.items["task"][task] = registry.items["task"][registry.task(task).name]
    try:
        reg.add("tuner", cls, CONTRACT_PLUGIN, __name__)
    except Exception as exc:
        raise fail(cls, f"refused by a Registry: {exc}") from None
    return reg


def _noise(*parts: Any) -> float:
    """A number in [0, 1) that depends only on ``parts``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:6], "big") / 2**48


def _value(lr: float) -> float:
    return 0.5 + 0.1 * math.log10(max(lr, 1e-12) / SYNTHETIC_BEST_LR) ** 2


@dataclasses.dataclass
class _Synthetic:
    steps: list[tuple[int, float, float]]  # (step, lr, loss)
    value: float
    checkpoints: list[tuple[int, str]]


def _synthesize(request: TrialRequest, registry: Registry, workdir: str) -> _Synthetic:
    n = max(0, int(request.steps))
    schedule = build_schedule(parse_spec(request.policy, registry), max(1, n), registry)
    every = max(1, n // 200)
    logged = sorted({*range(0, n, every), n - 1}) if n else []
    steps = [(s, schedule.lr_at(s), _value(schedule.lr_at(s)) + 1.0 - s / max(1, n)) for s in logged]
    peak = max([lr for _, lr, _ in steps] or [schedule.lr_at(0)])
    value = _value(peak) + 0.05 * _noise(request.policy, request.point, request.task_params, request.trial)
    trial = request.trial or {}
    marks = set(int(s) for s in trial.get("checkpoint_steps") or [] if 0 < int(s) <= n)
    if trial.get("checkpoint_every"):
        marks |= set(range(int(trial["checkpoint_every"]), n + 1, int(trial["checkpoint_every"])))
    folder = Path(workdir) / request.key
    checkpoints = [(s, str(folder / "checkpoints" / f"step-{s:07d}.safetensors")) for s in sorted(marks)]
    if trial.get("save_model"):
        checkpoints.append((n, str(folder / "model")))
    return _Synthetic(steps, value, checkpoints)


def synthetic_result(request: TrialRequest, registry: Registry, objective: Objective | None = None,
                     workdir: str = "contract-trials") -> TrialResult:
    """A completed result for ``request``, a deterministic function of it: the value (of
    ``objective``'s metric) is best when the policy's peak LR is :data:`SYNTHETIC_BEST_LR`, the
    losses and LRs follow the policy, and the checkpoints the request asked for are named (not
    written) under ``workdir``."""
    objective = objective or Objective()
    syn = _synthesize(request, registry, workdir)
    n = max(0, int(request.steps))
    return TrialResult(
        key=request.key, status="completed", value=syn.value,
        metrics={objective.metric: syn.value, "final_loss": syn.steps[-1][2] if syn.steps else syn.value},
        cost={"steps": n, "tokens": 256 * n, "seconds": 0.001 * n},
        evals=[(max(0, n - 1), syn.value)],
        losses=[(s, loss) for s, _, loss in syn.steps],
        lrs=[(s, lr) for s, lr, _ in syn.steps],
        checkpoints=[path for _, path in syn.checkpoints],
    )


def _request_json(request: TrialRequest) -> str:
    return json.dumps(dataclasses.asdict(request), sort_keys=True, default=str)


def drive_tuner(tuner: Tuner, registry: Registry, parallel: int = 2, max_trials: int = 200) -> list[tuple[str, ...]]:
    """Run ``tuner`` the way a study does, with synthetic results: keep up to ``parallel`` trials
    asked, report each one's values, tell the oldest; return the transcript of asks (key and
    request) and tells. Raises :class:`ContractError` for a key asked twice or an ``ask()`` that
    returns None while nothing runs and the tuner is not done (a study would wait forever)."""
    transcript: list[tuple[str, ...]] = []
    running: list[TrialRequest] = []
    seen: set[str] = set()
    while True:
        while len(running) < parallel and len(seen) < max_trials and not tuner.done():
            request = tuner.ask()
            if request is None:
                break
            if request.key in seen:
                raise fail(tuner, f"asked key {request.key!r} twice: every request needs a key of its own")
            seen.add(request.key)
            running.append(request)
            transcript.append(("ask", request.key, _request_json(request)))
        if not running:
            if not tuner.done() and len(seen) < max_trials:
                raise fail(tuner, "ask() returned None while no trial was running and done() was False: "
                                  "a study would wait forever")
            return transcript
        request = running.pop(0)
        result = synthetic_result(request, registry, tuner.objective)
        for step, value in result.evals:
            if not tuner.report(request.key, step, value):
                result.status = "pruned"
        tuner.tell(result)
        transcript.append(("tell", request.key))


def _study_config(cls: type[Tuner], params: dict[str, Any] | None, task: str | None, policies: Sequence[str],
                  budget_steps: int, trials: int, parallel: int, seed: int) -> Any:
    from lrbench_gui.core.tuning.study import StudyConfig

    return StudyConfig(
        study_id="s-contract", name=f"contract of {cls.name}", task=task or ContractTask.name, tuner=cls.name,
        tuner_params=dict(params or {}), policies=list(policies), budget_steps=budget_steps, trials=trials,
        parallel=parallel, seed=seed, device="cpu", threads=0,
    )


def _fresh_tuner(cls: type[Tuner], reg: Registry, config: Any) -> Tuner:
    from lrbench_gui.core.tuning.study import Study

    try:
        return Study(config, registry=reg).tuner
    except Exception as exc:
        raise fail(cls, f"a study cannot build it with params {config.tuner_params}: {exc!r}") from None


def check_tuner(cls: type[Tuner]) -> None:
    """A tuner registers cleanly, describes its parameters and implements every abstract method."""
    check_registers("tuner", cls)
    check_schema(cls)
    check_concrete(cls)


def check_tuner_replay(cls: type[Tuner], params: dict[str, Any] | None = None, *, task: str | None = None,
                       policies: Sequence[str] = _DEFAULT_POLICIES, budget_steps: int = 40, trials: int = 6,
                       parallel: int = 2, seed: int = 7, registry: Registry | None = None,
                       max_trials: int = 200) -> None:
    """Two fresh tuners with the same seed, told the same results in the same order, ask the same
    requests under the same keys (the rule a study's resume relies on)."""
    reg = contract_registry(cls, task, registry)
    config = _study_config(cls, params, task, policies, budget_steps, trials, parallel, seed)
    first = drive_tuner(_fresh_tuner(cls, reg, config), reg, parallel, max_trials)
    second = drive_tuner(_fresh_tuner(cls, reg, config), reg, parallel, max_trials)
    if not any(entry[0] == "ask" for entry in first):
        raise fail(cls, f"asked no trial at all with params {config.tuner_params}")
    for i, (a, b) in enumerate(zip(first, second)):
        if a != b:
            what = "key" if a[:2] != b[:2] else "request"
            raise fail(
                cls,
                f"two runs with the same seed and the same results differ at event {i}: {what} "
                f"{a[1]!r} then {b[1]!r}{'' if what == 'key' else f' ({a[2]} vs {b[2]})'}; keys and requests must "
                f"follow only from the seed and the results told, or a study cannot resume",
            )
    if len(first) != len(second):
        raise fail(cls, f"two runs with the same seed and the same results asked {len(first)} and {len(second)} events")


def _events(cfg: TrialConfig, request: TrialRequest, registry: Registry, metric: str, mode: str,
            workdir: str) -> Iterable[Event]:
    syn = _synthesize(request, registry, workdir)
    tid, n = cfg.trial_id, max(0, int(request.steps))
    yield Event("hello", tid, {"pid": 0, "steps": n, "device": "cpu", "task": cfg.task, "params": 0,
                               "model": {"family": "contract"}})
    for s, lr, loss in syn.steps:
        yield Event("step", tid, {"step": s, "lr": lr, "loss": loss, "tokens": 256 * (s + 1), "samples": s + 1,
                                  "time": 0.001 * (s + 1), "cpu": 0.001 * (s + 1)})
    for s, path in syn.checkpoints:
        yield Event("checkpoint", tid, {"step": s, "path": path, "lr": syn.steps[-1][1] if syn.steps else 0.0})
    yield Event("eval", tid, {"step": max(0, n - 1), "metrics": {metric: syn.value}})
    yield Event("end", tid, {"status": "completed", "metrics": {metric: syn.value}, "metric": metric,
                             "metric_mode": mode, "cost": {"steps": n, "tokens": 256 * n, "samples": n,
                                                           "seconds": 0.001 * n}})


def _finish(study: Any, cfg: TrialConfig, workdir: str) -> None:
    """Feed the trial's synthetic events to a real recorder and the study, as a runner does."""
    recorder = TrialRecorder(cfg)
    request = study.requests[cfg.trial_id]
    metric, mode = study.registry.task(cfg.task).metric, study.registry.task(cfg.task).metric_mode
    keep = True
    for event in _events(cfg, request, study.registry, metric, mode, workdir):
        if event.type == "end" and not keep:  # the study stopped it (pruning): the runner cancels it
            event = Event("end", event.trial, {**event.data, "status": "stopped"})
        recorder.feed(event)
        if event.type == "eval":
            keep = study.on_event(cfg.trial_id, event) and keep
    recorder.finish(0, [], cancelled=False)
    study.on_finished(cfg.trial_id, recorder.record())


def check_tuner_resume(cls: type[Tuner], params: dict[str, Any] | None = None, *, folder: str | Path | None = None,
                       task: str | None = None, policies: Sequence[str] = _DEFAULT_POLICIES, budget_steps: int = 40,
                       trials: int = 6, parallel: int = 2, seed: int = 7, stop_after: int = 3,
                       registry: Registry | None = None, max_trials: int = 200) -> None:
    """A real study over a real database in ``folder`` (default: a temporary one) is stopped after
    ``stop_after`` finished trials, with others still running (as when the app is closed); a new
    study with the same config resumes from the database: it must replay every finished trial
    under its original key and request, and run none of them again."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="lrbench-contract-") as tmp:
            return check_tuner_resume(cls, params, folder=tmp, task=task, policies=policies,
                                      budget_steps=budget_steps, trials=trials, parallel=parallel, seed=seed,
                                      stop_after=stop_after, registry=registry, max_trials=max_trials)
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.tuning.study import Study

    reg = contract_registry(cls, task, registry)
    config = _study_config(cls, params, task, policies, budget_steps, trials, parallel, seed)
    path, workdir = Path(folder) / "contract-db.json", str(Path(folder) / "trials")
    study = Study(config, registry=reg, db=PolicyDB(path, registry=reg))
    study.save(StudyStatus.RUNNING)
    running: list[TrialConfig] = []
    finished: list[str] = []
    while len(finished) < stop_after:
        running += study.next_trials(parallel - len(running))
        if not running:
            break
        cfg = running.pop(0)
        _finish(study, cfg, workdir)
        finished.append(cfg.trial_id)
    study.save(StudyStatus.STOPPED)
    if not finished:
        raise fail(cls, f"asked no trial at all with params {config.tuner_params}")
    originals = {tid: _request_json(study.requests[tid]) for tid in finished}

    resumed = Study(config, registry=reg, db=PolicyDB(path, registry=reg))
    replayed = resumed.resume()
    lost = [tid.removeprefix(config.study_id + "-") for tid in finished if tid not in resumed.requests]
    if lost or replayed != len(finished):
        asked = [tid.removeprefix(config.study_id + "-") for tid in resumed.requests]
        raise fail(
            cls,
            f"a resumed study replayed {replayed} of its {len(finished)} finished trials: the fresh tuner asked "
            f"{asked[:8]} where the study had {[t.removeprefix(config.study_id + '-') for t in finished]}; keys "
            f"must follow only from the seed and the results told",
        )
    for tid, original in originals.items():
        again = _request_json(resumed.requests[tid])
        if again != original:
            raise fail(cls, f"after a resume, trial {tid!r} was asked with another request: {again} instead of "
                            f"{original}")
    done = set(finished)
    running = []
    while len(done) < max_trials:
        new = resumed.next_trials(parallel - len(running))
        twice = [c.trial_id for c in new if c.trial_id in done]
        if twice:
            raise fail(cls, f"after a resume, {twice} ran again although {'it' if len(twice) == 1 else 'they'} "
                            f"had finished")
        running += new
        if not running:
            break
        cfg = running.pop(0)
        _finish(resumed, cfg, workdir)
        done.add(cfg.trial_id)


def check_tuner_refuses_unknown_tell(cls: type[Tuner], params: dict[str, Any] | None = None, *,
                                     task: str | None = None, policies: Sequence[str] = _DEFAULT_POLICIES,
                                     budget_steps: int = 40, trials: int = 6, seed: int = 7,
                                     registry: Registry | None = None) -> None:
    """``tell()`` raises for a result whose key was never asked (a study's bookkeeping bug must
    not become a silently wrong search)."""
    reg = contract_registry(cls, task, registry)
    tuner = _fresh_tuner(cls, reg, _study_config(cls, params, task, policies, budget_steps, trials, 1, seed))
    asked = tuner.ask()
    key = "lrbench-contract-never-asked"
    while asked is not None and asked.key == key:
        key += "-"
    stranger = TrialResult(key=key, status="completed", value=1.0, metrics={tuner.objective.metric: 1.0},
                           cost={"steps": budget_steps})
    try:
        tuner.tell(stranger)
    except Exception:
        return
    raise fail(cls, f"tell() accepted a result for {key!r}, a key it never asked: raise KeyError instead")


class TunerContract:
    """The tuner contract as pytest tests, one per rule.

    Subclass it in a test module (named ``Test...``) and provide a ``tuner_class`` fixture; set
    the class attributes below to run it with other parameters (a study kind that needs a task
    of its own, e.g. ``task = "tinylm-pretrain"``, or a smaller plan)."""

    #: the tuner's parameters (its defaults when empty)
    tuner_params: dict[str, Any] = {}
    #: the task named in the study (None: a stand-in whose trials are synthesized)
    task: str | None = None
    #: the policies of the study's search space (tuners with ``uses_space``)
    policies: Sequence[str] = _DEFAULT_POLICIES
    budget_steps = 40
    trials = 6
    parallel = 2
    seed = 7

    def _options(self) -> dict[str, Any]:
        return {"task": self.task, "policies": self.policies, "budget_steps": self.budget_steps,
                "trials": self.trials, "seed": self.seed}

    def test_registers_and_describes(self, tuner_class: type[Tuner]) -> None:
        check_tuner(tuner_class)

    def test_replay_is_deterministic(self, tuner_class: type[Tuner]) -> None:
        check_tuner_replay(tuner_class, self.tuner_params, parallel=self.parallel, **self._options())

    def test_keys_are_stable_across_a_resume(self, tuner_class: type[Tuner], tmp_path: Path) -> None:
        check_tuner_resume(tuner_class, self.tuner_params, folder=tmp_path, parallel=self.parallel, **self._options())

    def test_refuses_a_tell_it_never_asked(self, tuner_class: type[Tuner]) -> None:
        check_tuner_refuses_unknown_tell(tuner_class, self.tuner_params, **self._options())
