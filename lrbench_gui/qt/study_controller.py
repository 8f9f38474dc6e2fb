"""Drive a :class:`~lrbench_gui.core.study.Study` from the GUI.

:class:`StudyController` is the GUI's study driver, the Qt twin of ``run_study_blocking`` in
``lrbench_gui/cli/tune.py``: it asks the study for trials when the window's
:class:`~lrbench_gui.qt.trial_runner.TrialRunner` has free slots, forwards every protocol event
to ``study.on_event`` (and cancels a trial the tuner prunes), tells the study each finished
trial, and ends the study when the tuner is done. Nothing here blocks the GUI thread.

Database writes: the study is built with ``db=None``, so the core never writes from the GUI
thread. The controller builds the records on the GUI thread (``study.study_record``, the trial
record as the study completed it) and hands them to :class:`DatabaseJobs`, one worker thread that
runs database work in order: the study record is always written before its trials, and a resume
reads the stored trials and replays them into the tuner there, off the GUI thread.

Ray: ``RayScheduler.run`` blocks, so a Ray study runs on its own ``QThread``. The study object
then lives on that thread until the run ends (the GUI never touches it meanwhile); events,
finished records and rankings come back as queued signals and feed the same handlers as a local
study, so the panels cannot tell the two apart.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.study import Study, StudyConfig
from lrbench_gui.core.runs.trial import TrialConfig
from lrbench_gui.qt.trial_runner import TrialRunner

__all__ = ["StudyController", "DatabaseJobs", "trial_label", "FINAL_STATUSES"]

FINAL_STATUSES = ("completed", "stopped", "diverged", "failed", "pruned")


def trial_label(policy: dict[str, Any], registry: Registry | None = None) -> str:
    """A short label for a policy spec: ``cosine(lr=0.012)``, ``fixed -> cosine @50``."""
    from lrbench_gui.core.spec import parse_spec, spec_label

    try:
        return spec_label(parse_spec(policy, registry))
    except Exception:  # noqa: BLE001 - a spec of a plugin that is not installed any more
        return str(policy.get("name", "composition"))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text and not isinstance(exc, (KeyError, TypeError, AttributeError)) else (
        f"{type(exc).__name__}: {text}")


class _JobWorker(QObject):
    """Lives on the jobs thread; opens the database once per path and runs the jobs in order."""

    # a job returned: (job id, result)
    jobDone = Signal(int, object)
    # a job raised: (job id, message)
    jobFailed = Signal(int, str)

    def __init__(self) -> None:
        super().__init__()
        self._db: Any = None

    @Slot(int, object, object)
    def run(self, job_id: int, path: Any, fn: Any) -> None:
        if fn is None:  # the last job: every job queued before it has run
            QThread.currentThread().quit()
            return
        from lrbench_gui.core.db import PolicyDB

        try:
            if self._db is None or self._db.path != Path(path).expanduser().absolute():
                self._db = PolicyDB(path)
            result = fn(self._db)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI as a message
            self.jobFailed.emit(job_id, _describe(exc))
            return
        self.jobDone.emit(job_id, result)


class DatabaseJobs(QObject):
    """Database work on one worker thread, in the order it was submitted.

    ``submit(fn, on_done, on_failed)`` queues ``fn(db)`` (``db`` is a
    :class:`~lrbench_gui.core.db.PolicyDB` opened on the worker) and returns at once; the
    callbacks run on the GUI thread with the result, or with the error in words. The thread
    starts on the first job; :meth:`close` finishes every queued job, then stops it.
    """

    # a job finished (after its callback ran): (job id)
    jobFinished = Signal(int)
    # the jobs thread is idle: every submitted job has finished
    drained = Signal()
    _submit = Signal(int, object, object)

    def __init__(self, db_path: Path | str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from lrbench_gui.core.paths import default_db_path

        self.db_path = Path(db_path) if db_path else default_db_path()
        self.thread: QThread | None = None
        self.worker: _JobWorker | None = None
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable[[Any], None] | None, Callable[[str], None] | None]] = {}
        self._closed = False

    def set_db_path(self, path: Path | str) -> None:
        """Later jobs use the database at ``path`` (jobs already queued keep theirs)."""
        self.db_path = Path(path)

    def submit(self, fn: Callable[[Any], Any], on_done: Callable[[Any], None] | None = None,
               on_failed: Callable[[str], None] | None = None) -> int:
        """Queue ``fn(db)``; returns the job's number (0: dropped, the jobs thread is closed)."""
        if self._closed:
            return 0  # the window is closing: late work (a refresh) is dropped
        if self.thread is None:
            self._start()
        job_id = next(self._ids)
        self._callbacks[job_id] = (on_done, on_failed)
        self._submit.emit(job_id, self.db_path, fn)
        return job_id

    def pending(self) -> int:
        return len(self._callbacks)

    def _start(self) -> None:
        self.thread = QThread()
        self.thread.setObjectName("lrbench-db-jobs")
        self.worker = _JobWorker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self.worker.jobDone.connect(self._done)
        self.worker.jobFailed.connect(self._failed)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.start()
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.close)  # never leave the thread running at exit

    def _done(self, job_id: int, result: Any) -> None:
        on_done, _ = self._callbacks.pop(job_id, (None, None))
        if on_done is not None:
            on_done(result)
        self._settled(job_id)

    def _failed(self, job_id: int, message: str) -> None:
        _, on_failed = self._callbacks.pop(job_id, (None, None))
        if on_failed is not None:
            on_failed(message)
        self._settled(job_id)

    def _settled(self, job_id: int) -> None:
        self.jobFinished.emit(job_id)
        if not self._callbacks:
            self.drained.emit()

    def close(self) -> None:
        """Run every queued job, stop the thread, then deliver the results still on their way."""
        if self._closed:
            return
        self._closed = True
        if self.thread is not None and self.thread.isRunning():
            self._submit.emit(-1, None, None)
            self.thread.wait()
        from PySide6.QtCore import QCoreApplication

        QCoreApplication.sendPostedEvents(self)  # the queued jobDone/jobFailed of the last jobs


# Ray Tune pickles the scheduler's callbacks with its searcher; a QObject cannot be pickled, so
# the callbacks are module functions (pickled by reference) that find their driver by number.
_RAY_DRIVERS: dict[int, "_RayDriver"] = {}
_ray_numbers = itertools.count(1)


def _ray_feed(number: int, n: int) -> list[TrialConfig]:
    return _RAY_DRIVERS[number].feed(n)


def _ray_event(number: int, trial_id: str, event: Event) -> bool:
    return _RAY_DRIVERS[number].on_event(trial_id, event)


def _ray_finished(number: int, trial_id: str, record: dict) -> None:
    _RAY_DRIVERS[number].on_finished(trial_id, record)


def _ray_log(number: int, trial_id: str, line: str) -> None:
    _RAY_DRIVERS[number].log.emit(trial_id, line)


class _RayDriver(QObject):
    """Runs a study through ``RayScheduler.run`` on its own thread; reports with queued signals."""

    # the tuner asked for a trial: (trial_id, TrialConfig)
    added = Signal(str, object)
    # a protocol event of a trial: (trial_id, Event)
    event = Signal(str, object)
    # a log line of a trial: (trial_id, line)
    log = Signal(str, str)
    # a trial ended and the study took it: (trial_id, stored record, study record, ranking)
    finished = Signal(str, dict, dict, list)
    # the run is over: (study status finished|stopped|failed, error message or "")
    ended = Signal(str, str)

    def __init__(self, study: Study) -> None:
        super().__init__()
        self.study = study
        self.scheduler: Any = None
        self.cancelled = False

    # Called by the scheduler on this driver's thread.

    def feed(self, n: int) -> list[TrialConfig]:
        configs = self.study.next_trials(n)
        for cfg in configs:
            self.added.emit(cfg.trial_id, cfg)
        return configs

    def on_event(self, trial_id: str, event: Event) -> bool:
        keep = self.study.on_event(trial_id, event)
        self.event.emit(trial_id, event)
        return keep

    def on_finished(self, trial_id: str, record: dict) -> None:
        study = self.study
        study.on_finished(trial_id, record)
        self.finished.emit(trial_id, study.records[trial_id], study.study_record("running"), study.ranking())

    @Slot()
    def run(self) -> None:
        from functools import partial

        from lrbench_gui.core.runs.ray_backend import RayScheduler

        study = self.study
        number = next(_ray_numbers)
        _RAY_DRIVERS[number] = self
        try:
            self.scheduler = RayScheduler(
                study.config, on_event=partial(_ray_event, number), on_finished=partial(_ray_finished, number),
                feeder=partial(_ray_feed, number), on_log=partial(_ray_log, number))
            if self.cancelled:
                self.scheduler.cancel_all()
            self.scheduler.run()
        except BaseException as exc:  # noqa: BLE001 - Ray's errors are many; the study is marked failed
            self.ended.emit("failed", f"the Ray backend failed: {_describe(exc)}")
            return
        finally:
            _RAY_DRIVERS.pop(number, None)
        self.ended.emit("finished" if study.tuner.done() and not study.stopped else "stopped", "")

    def cancel(self) -> None:
        """Stop asking for trials and stop the running ones (called from the GUI thread)."""
        self.cancelled = True
        self.study.stopped = True
        if self.scheduler is not None:
            self.scheduler.cancel_all()


class StudyController(QObject):
    """Runs one study at a time with ``runner``; records go through ``jobs``.

    ``gpus`` (ids such as ``["0", "1"]``, from the settings) turns the runner's slots into GPU
    slots: trial *i* of the parallel ones runs with ``CUDA_VISIBLE_DEVICES`` set to one id.
    """

    # a study began, fresh or resumed: (study_id, StudyConfig)
    studyStarted = Signal(str, object)
    # the tuner asked for a trial and it was queued, or a resumed study replayed a stored one:
    # (trial_id, info: key, family, label, policy, steps, point, rung, replayed)
    trialAdded = Signal(str, dict)
    # a protocol event of one of the study's trials, every one (live curves): (trial_id, Event)
    trialEvent = Signal(str, object)
    # a log line of one of the study's trials: (trial_id, line)
    trialLog = Signal(str, str)
    # a trial's row changed, at most ~8 times a second per trial: (trial_id, state dict: status,
    # step, steps, progress, loss, lr, metric, value, cost_steps, seconds, pruned, notes)
    trialUpdated = Signal(str, dict)
    # a trial ended and the study took it (its record is queued for the database): (trial_id,
    # the record as stored: status, metrics, cost, curves, extra.family, "pruned" tag...)
    trialFinished = Signal(str, dict)
    # the ranking changed (a trial finished): (rows best first, as ``Study.ranking``)
    rankingChanged = Signal(list)
    # the study ended and its record is in the database: (study_id, status finished|stopped|
    # failed, {"summary": Study.summary(), "ranking": [...], "config": StudyConfig JSON})
    studyFinished = Signal(str, str, dict)
    # nothing runs any more: a study ended (after studyFinished) or a resume failed or was cancelled
    idle = Signal()
    # a record reached the database: (table, record id)
    recordStored = Signal(str, str)
    # something went wrong that is not a trial's own failure (a write, a resume, the tuner):
    # (message in plain words)
    problem = Signal(str)

    def __init__(self, runner: TrialRunner, jobs: DatabaseJobs, registry: Registry | None = None,
                 parent: QObject | None = None, *, update_ms: int = 120) -> None:
        super().__init__(parent)
        if registry is None:
            from lrbench_gui.plugins import get_registry

            registry = get_registry()
        self.runner = runner
        self.jobs = jobs
        self.registry = registry
        self.gpus: list[str] = []
        self.study: Study | None = None
        self.status = "idle"  # idle | resuming | running | stopping | finishing
        self.states: dict[str, dict[str, Any]] = {}
        self.last_ranking: list[dict[str, Any]] = []
        self.last_result: dict[str, Any] | None = None
        self._ray_thread: QThread | None = None
        self._ray_driver: _RayDriver | None = None
        self._dirty: set[str] = set()
        self._cancel_resume = False
        self._timer = QTimer(self)
        self._timer.setInterval(update_ms)
        self._timer.timeout.connect(self._flush_updates)
        runner.trialStarted.connect(self._runner_started)
        runner.trialEvent.connect(self._runner_event)
        runner.trialLog.connect(self._runner_log)
        runner.trialFinished.connect(self._runner_finished)

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry

    # State.

    def is_busy(self) -> bool:
        """A study is being resumed, runs, or is stopping (until its record is stored)."""
        return self.status != "idle"

    @property
    def study_id(self) -> str | None:
        return self.study.config.study_id if self.study is not None else None

    def ranking(self) -> list[dict[str, Any]]:
        return list(self.last_ranking)

    def trial_ids(self) -> list[str]:
        return list(self.states)

    # Starting.

    def start(self, config: StudyConfig) -> Study:
        """Start ``config``; raises ``ValueError`` (in words) when it cannot, ``RuntimeError`` when busy."""
        if self.is_busy():
            raise RuntimeError("a study is already running: stop it first")
        study = Study(config, registry=self.registry, db=None)
        self._begin(study)
        return study

    def resume(self, study_id: str) -> None:
        """Resume a study stored in the database: its finished trials are replayed into a fresh
        tuner on the jobs thread (not run again), then the rest runs. ``studyStarted`` follows,
        or ``problem`` when the study cannot be resumed."""
        if self.is_busy():
            raise RuntimeError("a study is already running: stop it first")
        registry = self.registry
        self.status = "resuming"
        self._cancel_resume = False

        def load(db: Any) -> Study:
            found = db.get(study_id, "studies")
            if found is None:
                raise ValueError(f"there is no study {study_id!r} in {db.path}")
            try:
                config = StudyConfig.model_validate((found.get("extra") or {})["config"])
            except (KeyError, ValueError) as exc:
                raise ValueError(f"study {study_id!r} has no usable configuration ({_describe(exc)})") from None
            study = Study(config, registry=registry, db=db)
            study.resume()
            study.db = None  # from here on the controller writes, through the jobs thread
            return study

        def failed(message: str) -> None:
            self.status = "idle"
            self.problem.emit(f"Cannot resume study {study_id}: {message}")
            self.idle.emit()

        def loaded(study: Study) -> None:
            self.status = "idle"
            if self._cancel_resume:  # stopped (the window closing) while the trials were read
                self.idle.emit()
                return
            self._begin(study, replayed=True)

        self.jobs.submit(load, loaded, failed)

    def _slots(self, config: StudyConfig) -> int | list[str]:
        if self.gpus and config.device != "cpu":
            return [self.gpus[i % len(self.gpus)] for i in range(config.parallel)]
        return config.parallel

    def _begin(self, study: Study, replayed: bool = False) -> None:
        self.study = study
        self.states = {}
        self._dirty.clear()
        self.last_ranking = study.ranking() if study.results else []
        self.last_result = None
        self.status = "running"
        cfg = study.config
        self.studyStarted.emit(cfg.study_id, cfg)
        if replayed:
            for trial_id, record in study.records.items():
                self._add(trial_id, study.requests[trial_id], replayed=True)
                self._settle_state(trial_id, record, status=study.results[trial_id].status)
                self.trialFinished.emit(trial_id, record)
            if self.last_ranking:
                self.rankingChanged.emit(self.ranking())
        self._save_study(study.study_record("running"))
        self._timer.start()
        if cfg.backend == "ray":
            self._start_ray(study)
        else:
            slots = self._slots(cfg)
            if not self.runner.is_busy():
                self.runner.set_slots(slots)
            elif isinstance(slots, int):  # the Run panel's trial keeps its slot; ours come on top
                self.runner.set_slots(max(len(self.runner.slot_ids), slots + len(self.runner.running)))
            self._feed()

    # The local loop.

    def _free_slots(self) -> int:
        assert self.study is not None
        runner_free = len(self.runner.slot_ids) - len(self.runner.running) - len(self.runner.pending)
        return max(0, min(runner_free, self.study.config.parallel - len(self.study.running)))

    def _feed(self) -> None:
        study = self.study
        if study is None or self.status not in ("running", "stopping") or self._ray_driver is not None:
            return
        free = self._free_slots()
        configs: list[TrialConfig] = []
        if free > 0 and not study.stopped and self.status == "running":
            try:
                configs = study.next_trials(free)
            except Exception as exc:  # noqa: BLE001 - a tuner plugin's bug must not take the window down
                self.problem.emit(f"The tuner {study.config.tuner!r} failed: {_describe(exc)}; the study stops.")
                self.stop()
                return
        for cfg in configs:
            self._add(cfg.trial_id, study.requests[cfg.trial_id])
            self.runner.submit(cfg)
        # nothing of ours runs and nothing more was asked: the study is over (unless the slots are
        # all taken by other trials, such as the Run panel's: then it waits for one to end)
        if not study.running and (free > 0 or study.stopped):
            self._finish_study("finished" if study.tuner.done() and not study.stopped else "stopped")

    def _add(self, trial_id: str, request: Any, replayed: bool = False) -> None:
        info = {
            "trial": trial_id,
            "key": request.key,
            "family": request.family or request.policy.get("name", "composition"),
            "label": trial_label(request.policy, self.registry),
            "policy": request.policy,
            "steps": int(request.steps),
            "point": dict(request.point),
            "rung": request.tags.get("rung"),
            "replayed": replayed,
        }
        self.states[trial_id] = {
            **info, "status": "queued", "step": 0, "progress": 0.0, "loss": None, "lr": None,
            "metric": self.study.objective.metric if self.study else None, "value": None,
            "cost_steps": 0, "seconds": 0.0, "pruned": False, "notes": "", "started": None,
        }
        self.trialAdded.emit(trial_id, info)

    def _runner_started(self, trial_id: str, _config: Any) -> None:
        state = self.states.get(trial_id)
        if state is not None and state["status"] == "queued":
            state["status"] = "running"
            state["started"] = time.monotonic()
            self._mark(trial_id)

    def _runner_event(self, trial_id: str, event: Event) -> None:
        if trial_id not in self.states or self.study is None or self._ray_driver is not None:
            return
        try:
            keep = self.study.on_event(trial_id, event)
        except Exception as exc:  # noqa: BLE001
            self.problem.emit(f"The tuner failed on an event of {trial_id}: {_describe(exc)}")
            keep = True
        self._track(trial_id, event, keep)
        if not keep:
            self.runner.cancel(trial_id)

    def _track(self, trial_id: str, event: Event, keep: bool) -> None:
        state = self.states.get(trial_id)
        if state is None:
            return
        if state["status"] == "queued":
            state["status"] = "running"
        if event.type == "hello":
            state["steps"] = int(event.get("steps") or state["steps"])
        elif event.type == "step":
            step = int(event["step"])
            state["step"] = step + 1
            state["cost_steps"] = step + 1
            state["progress"] = min(1.0, (step + 1) / state["steps"]) if state["steps"] else 0.0
            loss = event.get("loss")
            state["loss"] = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else None
            state["lr"] = float(event["lr"])
            if isinstance(event.get("time"), (int, float)):
                state["seconds"] = float(event["time"])
        elif event.type == "eval":
            value = (event.get("metrics") or {}).get(state["metric"])
            if isinstance(value, (int, float)) and math.isfinite(value):
                state["value"] = float(value)
        if not keep and not state["pruned"]:
            state["pruned"] = True
            state["notes"] = f"stopped early by the tuner at step {state['step']}"
        self.trialEvent.emit(trial_id, event)
        self._mark(trial_id)

    def _runner_log(self, trial_id: str, line: str) -> None:
        if trial_id in self.states:
            self.trialLog.emit(trial_id, line)

    def _runner_finished(self, trial_id: str, record: dict) -> None:
        study = self.study
        if study is None or self._ray_driver is not None:
            return
        if trial_id not in self.states:
            if self.status in ("running", "stopping"):
                self._feed()  # another panel's trial freed a slot
            return
        if trial_id not in study.running:
            return  # already settled (a replayed trial id, or a second notice)
        try:
            study.on_finished(trial_id, record)
        except Exception as exc:  # noqa: BLE001
            self.problem.emit(f"The tuner failed on the result of {trial_id}: {_describe(exc)}")
            study.running.discard(trial_id)
            self.states[trial_id]["status"] = record.get("status", "failed")
            self._mark(trial_id)
            self._feed()
            return
        stored = study.records[trial_id]
        self._took(trial_id, stored, study.results[trial_id].status, study.study_record("running"), study.ranking())
        self._feed()

    def _took(self, trial_id: str, stored: dict, status: str, study_record: dict, ranking: list) -> None:
        """A finished trial the study has taken: record it, update its row and the ranking."""
        self._write_trial(study_record, stored)
        self._settle_state(trial_id, stored, status)
        self.last_ranking = ranking
        self.trialFinished.emit(trial_id, stored)
        self.rankingChanged.emit(self.ranking())

    def _settle_state(self, trial_id: str, record: dict, status: str) -> None:
        state = self.states[trial_id]
        cost = record.get("cost") or {}
        value = (record.get("metrics") or {}).get(state["metric"])
        state.update({
            "status": status,
            "pruned": status == "pruned" or "pruned" in (record.get("tags") or []),
            "cost_steps": int(cost.get("steps") or 0),
            "seconds": float(cost.get("seconds") or 0.0),
            "value": float(value) if isinstance(value, (int, float)) else state["value"],
            "step": int(cost.get("steps") or state["step"]),
        })
        if state["pruned"] and state["status"] != "pruned":
            state["status"] = "pruned"
        if state["status"] == "completed":
            state["progress"] = 1.0
        elif state["steps"]:
            state["progress"] = min(1.0, state["step"] / state["steps"])
        metrics = record.get("metrics") or {}
        if state["loss"] is None and isinstance(metrics.get("final_loss"), (int, float)):
            state["loss"] = float(metrics["final_loss"])
        if record.get("notes") and status in ("failed", "diverged"):
            state["notes"] = str(record["notes"])
        elif state["pruned"] and not state["notes"]:
            state["notes"] = "stopped early by the tuner"
        self._mark(trial_id)
        self._flush_updates()

    def _mark(self, trial_id: str) -> None:
        self._dirty.add(trial_id)

    def _flush_updates(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for trial_id in dirty:
            state = self.states.get(trial_id)
            if state is not None:
                self.trialUpdated.emit(trial_id, dict(state))

    # Stopping.

    def stop(self) -> None:
        """Ask nothing more and stop the running trials (SIGTERM; they are recorded as stopped)."""
        if self.status == "resuming":
            self._cancel_resume = True
            return
        study = self.study
        if study is None or self.status not in ("running",):
            return
        self.status = "stopping"
        if self._ray_driver is not None:
            self._ray_driver.cancel()
            return
        study.stop()
        running = [tid for tid in study.running]
        for trial_id in running:
            self.runner.cancel(trial_id)
        if not study.running:
            self._finish_study("stopped")

    def _finish_study(self, status: str) -> None:
        study = self.study
        if study is None or self.status in ("finishing", "idle"):
            return
        self.status = "finishing"
        self._flush_updates()
        result = {
            "summary": study.summary(),
            "ranking": study.ranking(),
            "config": study.config.model_dump(mode="json"),
        }
        self.last_ranking = result["ranking"]
        self.last_result = result
        study_id = study.config.study_id

        def done(_: Any = None) -> None:
            self.status = "idle"
            self._timer.stop()
            self.studyFinished.emit(study_id, status, result)
            self.idle.emit()

        def failed(message: str) -> None:
            self.problem.emit(f"Could not record study {study_id}: {message}")
            done()

        self._save_study(study.study_record(status), done, failed)

    # Database writes (on the jobs thread).

    def _save_study(self, record: dict, on_done: Callable | None = None, on_failed: Callable | None = None) -> None:
        def write(db: Any) -> str:
            db.add_study(record, replace=True)
            return record["id"]

        def done(study_id: str) -> None:
            self.recordStored.emit("studies", study_id)
            if on_done is not None:
                on_done(study_id)

        self.jobs.submit(write, done, on_failed or (lambda msg: self.problem.emit(f"Could not record the study: {msg}")))

    def _write_trial(self, study_record: dict, record: dict) -> None:
        trial_id = str(record.get("id"))

        def write(db: Any) -> str:
            try:
                with db.batch():
                    db.add_study(study_record, replace=True)
                    db.add_trial(record, replace=True)
            except Exception as exc:
                spare = Path(db.path).parent / f"unsaved-trial-{trial_id}.json"
                try:
                    spare.write_text(json.dumps(record))
                    where = f"; the trial was saved to {spare}"
                except OSError:
                    where = ""
                raise RuntimeError(f"{_describe(exc)}{where}") from None
            return trial_id

        self.jobs.submit(
            write,
            lambda tid: self.recordStored.emit("trials", tid),
            lambda msg: self.problem.emit(f"Could not record trial {trial_id}: {msg}"),
        )

    # Ray.

    def _start_ray(self, study: Study) -> None:
        driver = _RayDriver(study)
        thread = QThread()
        thread.setObjectName("lrbench-ray-study")
        driver.moveToThread(thread)
        thread.started.connect(driver.run)
        driver.added.connect(self._ray_added)
        driver.event.connect(self._ray_event)
        driver.log.connect(self._runner_log)
        driver.finished.connect(self._ray_finished)
        driver.ended.connect(self._ray_ended)
        self._ray_driver, self._ray_thread = driver, thread
        thread.start()

    def _ray_added(self, trial_id: str, config: TrialConfig) -> None:
        assert self.study is not None
        # the study's requests are written on the Ray thread before this signal is emitted
        request = self.study.requests.get(trial_id)
        if request is not None:
            self._add(trial_id, request)
            self.states[trial_id]["status"] = "running"
            self.states[trial_id]["started"] = time.monotonic()

    def _ray_event(self, trial_id: str, event: Event) -> None:
        study = self.study
        self._track(trial_id, event, keep=study is None or trial_id not in study.pruned)

    def _ray_finished(self, trial_id: str, stored: dict, study_record: dict, ranking: list) -> None:
        if trial_id not in self.states:
            return
        status = "pruned" if "pruned" in (stored.get("tags") or []) else str(stored.get("status"))
        self._took(trial_id, stored, status, study_record, ranking)

    def _ray_ended(self, status: str, message: str) -> None:
        if message:
            self.problem.emit(message)
        thread, self._ray_thread, self._ray_driver = self._ray_thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait()
        if self.status == "stopping" and status == "finished":
            status = "stopped"
        self._finish_study(status)

    def shutdown(self) -> None:
        """Stop a Ray run and wait for its thread (the window is closing)."""
        if self._ray_driver is not None:
            self._ray_driver.cancel()
        if self._ray_thread is not None:
            self._ray_thread.quit()
            self._ray_thread.wait()
        self._timer.stop()
