"""Run trial subprocesses over slots from a Qt-free process (the CLI, tests, benches).

:class:`LocalScheduler` runs trials over slots (CPU workers, or GPUs through
``CUDA_VISIBLE_DEVICES``) placed by the shared :class:`~lrbench_gui.core.runs.slots.SlotQueue`,
one :class:`~lrbench_gui.core.runs.process.TrialProcess` each, and calls back on the *caller's*
thread, so the caller alone writes the database. With ``warm=True`` the trials that may reuse a
process (:func:`~lrbench_gui.core.runs.warm.warm_key`) run on their slot's warm worker
(:mod:`~lrbench_gui.core.runs.warm`), the others in fresh processes; the workers are closed when
:meth:`LocalScheduler.run` returns. The GUI runs the same queue over QProcesses
(``lrbench_gui.qt.trial_runner``); Ray Tune is the third scheduler (``ray_backend``).
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any, Callable

from lrbench_gui.core.paths import data_dir
from lrbench_gui.core.records import TrialRecord
from lrbench_gui.core.runs.process import (
    GRACE_SECONDS,
    TrialProcess,
    prepare_trial,
    trainer_command,
    trial_env,
    watchdog_seconds,
)
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.runs.slots import SlotQueue, cancelled_record
from lrbench_gui.core.runs.trial import TrialConfig
from lrbench_gui.core.runs.warm import WarmTrialProcess, WorkerPool, warm_key

__all__ = ["TrialProcess", "LocalScheduler", "trainer_command", "prepare_trial", "trial_env", "GRACE_SECONDS"]


class LocalScheduler:
    """A queue of trials over ``slots`` (CPU workers, or GPU ids); callbacks run on the caller's
    thread inside :meth:`run`.

    ``on_event(trial_id, event)`` for every protocol event (returning False stops that trial);
    ``on_log(trial_id, line)`` for log text; ``on_finished(trial_id, record)`` once per trial
    with its database record. ``feeder(free_slots)``, when given, is asked for more trials
    whenever slots are free (a study's tuner behind it); the run ends when nothing runs, nothing
    is queued and the feeder has nothing more. ``registry`` fills command trials' ``{lr}`` and
    ``{policy.NAME}`` placeholders, and says which tasks may run warm: with ``warm`` (and a
    registry), such trials reuse their slot's worker process.
    """

    def __init__(
        self,
        slots: int | list[str] = 1,
        workdir: Path | None = None,
        on_event: Callable[[str, Event], Any] | None = None,
        on_log: Callable[[str, str], None] | None = None,
        on_finished: Callable[[str, TrialRecord], None] | None = None,
        on_started: Callable[[str, TrialConfig], None] | None = None,
        feeder: Callable[[int], list[TrialConfig]] | None = None,
        watchdog: float | None = None,
        registry: Any = None,
        warm: bool = False,
    ) -> None:
        self.registry = registry
        #: run the trials that allow it on warm workers (one per slot)
        self.warm = warm
        self.pool = WorkerPool()
        self.slots: SlotQueue[TrialProcess] = SlotQueue(slots)
        #: seconds of silence after which a trial is killed (see process.watchdog_seconds)
        self.watchdog = watchdog_seconds() if watchdog is None else float(watchdog)
        self.workdir = workdir or data_dir() / "trials"
        self.on_event = on_event
        self.on_log = on_log
        self.on_finished = on_finished
        self.on_started = on_started
        self.feeder = feeder
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.records: dict[str, TrialRecord] = {}
        self._cancel_all = False

    @property
    def slot_ids(self) -> list[str | None]:
        return self.slots.slot_ids

    @property
    def pending(self) -> Any:
        return self.slots.pending

    def submit(self, config: TrialConfig) -> None:
        self.slots.submit(config)

    def cancel(self, trial_id: str) -> None:
        cfg = self.slots.unqueue(trial_id)
        if cfg is not None:
            self._finished(trial_id, cancelled_record(cfg))
            return
        proc = self.slots.handle(trial_id)
        if proc is not None:
            proc.cancel()

    def cancel_all(self) -> None:
        self._cancel_all = True
        for trial_id in [c.trial_id for c in self.slots.pending]:
            self.cancel(trial_id)
        for proc in self.slots.handles():
            proc.cancel()

    def _finished(self, trial_id: str, record: TrialRecord) -> None:
        self.records[trial_id] = record
        if self.on_finished:
            self.on_finished(trial_id, record)

    def _fill(self) -> None:
        if self._cancel_all:
            return
        free = self.slots.free()
        if self.feeder is not None and free > 0:
            for cfg in self.feeder(free):
                self.slots.submit(cfg)
        placements = list(self.slots.place())
        for i, placed in enumerate(placements):
            cfg = placed.config
            key = warm_key(cfg, self.registry) if self.warm else None
            if key is not None:
                proc: TrialProcess = WarmTrialProcess(cfg, self.events, self.workdir / cfg.trial_id, gpus=placed.gpus,
                                                      registry=self.registry, pool=self.pool, slot=placed.slot, key=key)
            else:
                proc = TrialProcess(cfg, self.events, self.workdir / cfg.trial_id, gpus=placed.gpus,
                                    registry=self.registry)
            self.slots.started(cfg.trial_id, proc)  # the handle first: a cancel reaches it from here on
            try:
                proc.start()
            except BaseException as exc:
                if not isinstance(exc, (OSError, ValueError)):
                    # interrupted (Ctrl-C) while starting: kill what began and free every slot
                    # not started, or run() would wait for them forever; they have no record
                    # and run again when the study resumes
                    proc.kill_started()
                    for rest in placements[i:]:
                        self.slots.finished(rest.config.trial_id)
                    raise
                # OSError: no trainer to run; ValueError: a command's placeholder without a value
                self.slots.finished(cfg.trial_id)
                rec = proc.recorder
                what = "the command" if cfg.command is not None else "the trainer"
                rec.errors.append(f"could not start {what}: {exc}")
                rec.finish(None, [])
                self._finished(cfg.trial_id, rec.record())
                continue
            if self.on_started:
                self.on_started(cfg.trial_id, proc.config)

    def run(self, poll: float = 0.1, until: Callable[[], bool] | None = None) -> dict[str, TrialRecord]:
        """Run until every submitted trial has finished (or ``until()`` is true); returns the records.
        The warm workers are closed when it returns; an exception (Ctrl-C) leaves them to a
        following ``cancel_all(); run()``, as it leaves fresh trainers (and at exit they close)."""
        self._run(poll, until)
        self.pool.close()
        return self.records

    def _run(self, poll: float, until: Callable[[], bool] | None) -> None:
        self._fill()
        while self.slots.running or (self.slots.pending and not self._cancel_all):
            if until is not None and until():
                self.cancel_all()
            try:
                trial_id, kind, payload = self.events.get(timeout=poll)
            except queue.Empty:
                for proc in self.slots.handles():
                    if proc.proc is None:  # its start was interrupted: nothing will ever report
                        self.slots.finished(proc.trial_id)
                        continue
                    proc.check_watchdog(self.watchdog)
                if not self.slots.running:
                    self._fill()
                continue
            proc = self.slots.handle(trial_id)
            if proc is None:
                continue
            if kind == "event":
                proc.recorder.feed(payload)
                if self.on_event and self.on_event(trial_id, payload) is False:
                    proc.cancel()
            elif kind in ("log", "stderr"):
                if kind == "log":
                    proc.recorder.log(payload)
                if self.on_log:
                    self.on_log(trial_id, payload)
            elif kind == "exit":
                proc.recorder.finish(payload, list(proc.stderr_tail), cancelled=proc.cancelled)
                self.slots.finished(trial_id)
                self._finished(trial_id, proc.recorder.record())
                self._fill()
