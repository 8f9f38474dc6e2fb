"""Drive a :class:`~lrbench_gui.core.tuning.study.Study` from the GUI.

:class:`StudyController` is the GUI's study driver, the Qt twin of
:func:`lrbench_gui.core.tuning.driver.run_study`: it asks the study for trials when the window's
:class:`~lrbench_gui.qt.trial_runner.TrialRunner` has free slots, forwards every protocol event
to ``study.on_event`` (and cancels a trial the tuner prunes), tells the study each finished
trial, and ends the study when the tuner is done. Nothing here blocks the GUI thread.

Database writes: the study is built with ``db=None``, so the core never writes from the GUI
thread. The controller builds the records on the GUI thread (``study.study_record``, the trial
record as the study completed it) and hands them to the window's
:class:`~lrbench_gui.qt.db_jobs.DatabaseJobs`, whose one worker thread runs database work in
order: the study record is always written before its trials, and a resume reads the stored
trials and replays them into the tuner there, off the GUI thread.

Ray: a Ray study runs on its own ``QThread`` (:mod:`lrbench_gui.qt.ray_bridge`); its events,
finished records and rankings come back as queued signals and feed the same handlers as a local
study, so the panels cannot tell the two apart.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from lrbench_gui.core.records import StudyStatus, TrialStatus, spec_label
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.runs.trial import TrialConfig
from lrbench_gui.core.tuning.study import Study, StudyConfig, resume_config
from lrbench_gui.qt.db_jobs import DatabaseJobs, describe_error
from lrbench_gui.qt.ray_bridge import RayStudyDriver
from lrbench_gui.qt.trial_runner import TrialRunner

__all__ = ["StudyController"]


class StudyController(QObject):
    """Runs one study at a time with ``runner``; records go through ``jobs``.

    ``gpus`` (ids such as ``["0", "1"]``: the runner's, all the GPUs found unless the settings
    say otherwise) turns the runner's slots into disjoint groups of the study's
    ``gpus_per_trial`` GPUs (1 by default), at most ``parallel`` of them: each trial gets its
    group as ``CUDA_VISIBLE_DEVICES`` and its record's ``resources``; a GPU never serves two
    trials at once.
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
    # step, steps, progress, loss, lr, metric, value, cost_steps, seconds, pruned, notes, gpus (the
    # ids it was given, or None), device (``GPU 2,3``, else the trainer's device: ``cpu``, ``cuda:0``))
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

    def __init__(self, runner: TrialRunner, jobs: DatabaseJobs, registry: Registry,
                 parent: QObject | None = None, *, update_ms: int = 120) -> None:
        super().__init__(parent)
        self.runner = runner
        self.jobs = jobs
        self.registry = registry
        self.study: Study | None = None
        self.status = "idle"  # idle | resuming | running | stopping | finishing
        self.states: dict[str, dict[str, Any]] = {}
        self.last_ranking: list[dict[str, Any]] = []
        self.last_result: dict[str, Any] | None = None
        self._ray_thread: QThread | None = None
        self._ray_driver: RayStudyDriver | None = None
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

    @property
    def gpus(self) -> list[str]:
        """The GPU ids studies may use (the runner's)."""
        return self.runner.gpus

    @gpus.setter
    def gpus(self, ids: list[str]) -> None:
        self.runner.gpus = list(ids)

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
        if config.backend != "ray":
            self._slots(config)  # GPUs that cannot meet gpus_per_trial: said before anything starts
        self._begin(study)
        return study

    def resume(self, study_id: str, **here: Any) -> None:
        """Resume a study stored in the database: its finished trials are replayed into a fresh
        tuner on the jobs thread (not run again), then the rest runs. ``studyStarted`` follows,
        or ``problem`` when the study cannot be resumed. ``here``: this machine's execution
        settings (``command``, ``cwd`` for a study of the user's script), never the record's."""
        if self.is_busy():
            raise RuntimeError("a study is already running: stop it first")
        registry = self.registry
        # one trial per GPU, else as many as the runner has CPU slots
        slots = len(self.gpus) if self.gpus else len(self.runner.slot_ids)
        self.status = "resuming"
        self._cancel_resume = False

        def load(db: Any) -> Study:
            found = db.get(study_id, "studies")
            if found is None:
                raise ValueError(f"there is no study {study_id!r} in {db.path}")
            # the execution settings are this app's (its slots), never the stored record's
            config = resume_config(found, parallel=slots, **here)
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
        """The runner's slots for ``config``: its GPU groups, or ``parallel`` CPU workers;
        ``ValueError`` in words when the GPUs cannot meet ``gpus_per_trial``."""
        return self.runner.plan(config.gpus_per_trial or None, config.parallel, config.device,
                                cpu_workers=config.parallel).slots

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
        self._save_study(study.study_record(StudyStatus.RUNNING))
        self._timer.start()
        if cfg.backend == "ray":
            self._start_ray(study)
        else:
            try:
                slots = self._slots(cfg)
            except ValueError as exc:  # a resumed study asking more GPUs per trial than there are
                self.problem.emit(f"Cannot run study {cfg.study_id} here: {exc}")
                self.stop()
                return
            if not self.runner.is_busy():
                self.runner.set_slots(slots)
            elif isinstance(slots, int):  # the Run panel's trial keeps its slot; ours come on top
                self.runner.set_slots(max(len(self.runner.slot_ids), slots + len(self.runner.running)))
            else:  # GPU groups: the slot queue keeps a running trial's GPUs its own
                self.runner.set_slots(slots)
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
                self.problem.emit(f"The tuner {study.config.tuner!r} failed: {describe_error(exc)}; the study stops.")
                self.stop()
                return
        for cfg in configs:
            self._add(cfg.trial_id, study.requests[cfg.trial_id])
            # the study's choice (StudyConfig.warm) and the runner's (the settings') both must allow it
            self.runner.submit(cfg, warm=study.config.warm, registry=self.registry)
        # nothing of ours runs and nothing more was asked: the study is over (unless the slots are
        # all taken by other trials, such as the Run panel's: then it waits for one to end)
        if not study.running and (free > 0 or study.stopped):
            self._finish_study(StudyStatus.FINISHED if study.tuner.done() and not study.stopped else StudyStatus.STOPPED)

    def _add(self, trial_id: str, request: Any, replayed: bool = False) -> None:
        info = {
            "trial": trial_id,
            "key": request.key,
            "family": request.family or request.policy.get("name", "composition"),
            "label": spec_label(request.policy, self.registry),
            "policy": request.policy,
            "steps": int(request.steps),
            "point": dict(request.point),
            "rung": request.tags.get("rung"),
            "replayed": replayed,
        }
        self.states[trial_id] = {
            **info, "status": TrialStatus.PENDING, "step": 0, "progress": 0.0, "loss": None, "lr": None,
            "metric": self.study.objective.metric if self.study else None, "value": None,
            "cost_steps": 0, "seconds": 0.0, "pruned": False, "notes": "", "started": None,
            "gpus": None, "device": "",
        }
        self.trialAdded.emit(trial_id, info)

    def _runner_started(self, trial_id: str, _config: Any) -> None:
        state = self.states.get(trial_id)
        if state is not None and state["status"] == TrialStatus.PENDING:
            state["status"] = TrialStatus.RUNNING
            state["started"] = time.monotonic()
            gpus = self.runner.gpus_of(trial_id)
            if gpus:
                state["gpus"], state["device"] = gpus, f"GPU {gpus}"
            self._mark(trial_id)

    def _runner_event(self, trial_id: str, event: Event) -> None:
        if trial_id not in self.states or self.study is None or self._ray_driver is not None:
            return
        try:
            keep = self.study.on_event(trial_id, event)
        except Exception as exc:  # noqa: BLE001
            self.problem.emit(f"The tuner failed on an event of {trial_id}: {describe_error(exc)}")
            keep = True
        self._track(trial_id, event, keep)
        if not keep:
            self.runner.cancel(trial_id)

    def _track(self, trial_id: str, event: Event, keep: bool) -> None:
        state = self.states.get(trial_id)
        if state is None:
            return
        if state["status"] == TrialStatus.PENDING:
            state["status"] = TrialStatus.RUNNING
        if event.type == "hello":
            state["steps"] = int(event.get("steps") or state["steps"])
            if not state.get("gpus") and event.get("device"):
                state["device"] = str(event.get("device"))[:32]
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
            self.problem.emit(f"The tuner failed on the result of {trial_id}: {describe_error(exc)}")
            study.running.discard(trial_id)
            self.states[trial_id]["status"] = record.get("status", TrialStatus.FAILED)
            self._mark(trial_id)
            self._feed()
            return
        stored = study.records[trial_id]
        self._took(trial_id, stored, study.results[trial_id].status, study.study_record(StudyStatus.RUNNING), study.ranking())
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
        gpus = ((record.get("resources") or {}).get("gpus")) or []
        if gpus:  # a Ray trial's GPUs are known from its record
            state["gpus"] = ",".join(str(g) for g in gpus)
            state["device"] = f"GPU {state['gpus']}"
        elif not state.get("device"):
            state["device"] = str((record.get("extra") or {}).get("device") or "")[:32]
        state.update({
            "status": status,
            "pruned": status == TrialStatus.PRUNED or "pruned" in (record.get("tags") or []),
            "cost_steps": int(cost.get("steps") or 0),
            "seconds": float(cost.get("seconds") or 0.0),
            "value": float(value) if isinstance(value, (int, float)) else state["value"],
            "step": int(cost.get("steps") or state["step"]),
        })
        if state["pruned"] and state["status"] != TrialStatus.PRUNED:
            state["status"] = TrialStatus.PRUNED
        if state["status"] == TrialStatus.COMPLETED:
            state["progress"] = 1.0
        elif state["steps"]:
            state["progress"] = min(1.0, state["step"] / state["steps"])
        metrics = record.get("metrics") or {}
        if state["loss"] is None and isinstance(metrics.get("final_loss"), (int, float)):
            state["loss"] = float(metrics["final_loss"])
        if record.get("notes") and status in (TrialStatus.FAILED, TrialStatus.DIVERGED):
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
            self._finish_study(StudyStatus.STOPPED)

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
        """The trial after its study's record; a refused trial is saved beside the database."""
        self.jobs.write_trial(record, study_record,
                              lambda tid: self.recordStored.emit("trials", tid),
                              lambda msg: self.problem.emit(msg[:1].upper() + msg[1:]))

    # Ray.

    def _start_ray(self, study: Study) -> None:
        driver = RayStudyDriver(study)
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
            self.states[trial_id]["status"] = TrialStatus.RUNNING
            self.states[trial_id]["started"] = time.monotonic()

    def _ray_event(self, trial_id: str, event: Event) -> None:
        study = self.study
        self._track(trial_id, event, keep=study is None or trial_id not in study.pruned)

    def _ray_finished(self, trial_id: str, stored: dict, study_record: dict, ranking: list) -> None:
        if trial_id not in self.states:
            return
        status = TrialStatus.PRUNED if "pruned" in (stored.get("tags") or []) else str(stored.get("status"))
        self._took(trial_id, stored, status, study_record, ranking)

    def _ray_ended(self, status: str, message: str) -> None:
        if message:
            self.problem.emit(message)
        thread, self._ray_thread, self._ray_driver = self._ray_thread, None, None
        if thread is not None:
            thread.quit()
            thread.wait()
        if self.status == "stopping" and status == StudyStatus.FINISHED:
            status = StudyStatus.STOPPED
        self._finish_study(status)

    def shutdown(self) -> None:
        """Stop a Ray run and wait for its thread, close the warm workers (the window is closing)."""
        if self._ray_driver is not None:
            self._ray_driver.cancel()
        if self._ray_thread is not None:
            self._ray_thread.quit()
            self._ray_thread.wait()
        self.runner.close_workers()
        self._timer.stop()
