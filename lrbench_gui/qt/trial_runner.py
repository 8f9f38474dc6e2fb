"""Run trials from the GUI: a ``QProcess`` per trial or a warm worker per slot, a queue over slots,
events as signals.

Never blocks the GUI thread: stdout is read line by line in the ``readyReadStandardOutput`` slot,
stderr in its own, ``finished``/``errorOccurred`` settle the trial. Cancel is ``terminate()``
(SIGTERM: the trainer stops at its next step and says ``stopped``), then ``kill()`` after a
grace period. The event stream goes through the same parser and
:class:`~lrbench_gui.core.recorder.TrialRecorder` as the CLI's runner, so a trial is recorded
the same way from either.

A command trial (the user's script) also reports through its report file, read every 100 ms by
a ``QTimer`` through the CLI's :class:`~lrbench_gui.core.runs.command.ReportTail`; cancelling it
creates its stop file first and sends SIGTERM only after ``$LRBENCH_STOP_GRACE`` seconds.

A study's trial that may reuse a process (:func:`~lrbench_gui.core.runs.warm.warm_key`) runs on
its slot's warm worker instead, through the CLI's own classes (:class:`WarmTrial` wraps a
:class:`~lrbench_gui.core.runs.warm.WarmTrialProcess` of the runner's
:class:`~lrbench_gui.core.runs.warm.WorkerPool`): their reader threads put events on one queue,
which a ``QTimer`` drains on the GUI thread (``get_nowait``, a few milliseconds a tick) into the
signals a :class:`QtTrial` emits. The workers are closed when the runner goes idle.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from lrbench_gui.core.paths import data_dir
from lrbench_gui.core.runs.command import REPORT_FILE, ReportTail, request_stop, stop_grace
from lrbench_gui.core.runs.gpus import GPU, GpuError, GpuInventory, SlotPlan, detect_gpus, plan_slots, trial_resources
from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.process import (GRACE_SECONDS, prepare_trial, trial_cwd, trial_env, watchdog_note,
                                           watchdog_seconds)
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.slots import SlotQueue, cancelled_record
from lrbench_gui.core.runs.trial import TrialConfig
from lrbench_gui.core.runs.warm import WarmTrialProcess, WorkerPool, warm_key

__all__ = ["TrialRunner", "QtTrial", "WarmTrial"]

#: how long one tick of the warm-event timer may deliver events before it yields to the GUI (s)
_DRAIN_BUDGET = 0.004


class QtTrial(QObject):
    """One trial's process."""

    # a protocol event arrived: (trial_id, Event)
    eventReceived = Signal(str, object)
    # a log line (stderr, or stdout that is not protocol): (trial_id, line)
    logReceived = Signal(str, str)
    # the process is gone and the record is settled: (trial_id, record dict)
    finished = Signal(str, dict)

    def __init__(self, config: TrialConfig, workdir: Path, gpus: str | None = None, program: list[str] | None = None,
                 parent: QObject | None = None, registry: Any = None) -> None:
        super().__init__(parent)
        self.config = config
        self.workdir = workdir
        self.gpus = gpus
        self.program = program
        self.registry = registry
        self.tail: ReportTail | None = None
        self._tail_timer = QTimer(self)
        self._tail_timer.setInterval(100)
        self._tail_timer.timeout.connect(self._read_report)
        self._stop_timer = QTimer(self)
        self._stop_timer.setSingleShot(True)
        self._stop_timer.timeout.connect(self._terminate)
        self.recorder = TrialRecorder(config)
        self.recorder.resources = trial_resources(config, gpus)
        self.stderr_tail: deque[str] = deque(maxlen=60)
        self.cancelled = False
        self.done = False
        self.proc = QProcess(self)
        self.proc.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._finished)
        self.proc.errorOccurred.connect(self._error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self.proc.kill)
        #: monotonic time of the last line from the process (the runner's watchdog reads it)
        self.last_output = time.monotonic()

    def check_watchdog(self, limit: float) -> bool:
        """Kill the process if it has been silent for ``limit`` seconds; True if it did."""
        if limit <= 0 or self.done or self.cancelled or self.proc.state() == QProcess.ProcessState.NotRunning:
            return False
        silent = time.monotonic() - self.last_output
        if silent < limit:
            return False
        self.recorder.errors.append(watchdog_note(silent))
        self.proc.kill()
        return True

    @property
    def trial_id(self) -> str:
        return self.config.trial_id

    @property
    def is_command(self) -> bool:
        return self.config.command is not None

    def start(self) -> None:
        try:
            self.config, command = prepare_trial(self.config, self.workdir, self._registry(), self.gpus)
        except (OSError, ValueError) as exc:  # ValueError: a command's placeholder without a value
            self.recorder.errors.append(f"could not start {'the command' if self.is_command else 'the trainer'}: {exc}")
            QTimer.singleShot(0, lambda: self._settle(None))
            return
        self.recorder.config = self.config
        cmd = self.program or command
        env = QProcessEnvironment()
        for key, value in trial_env(self.config, self.gpus, self.workdir).items():
            env.insert(key, value)
        self.proc.setProcessEnvironment(env)
        self.proc.setWorkingDirectory(str(trial_cwd(self.config, self.workdir)))
        self.proc.setProgram(cmd[0])
        self.proc.setArguments(cmd[1:])
        if self.is_command:
            self.tail = ReportTail(self.workdir / REPORT_FILE)
            self._tail_timer.start()
        self.proc.start()

    def _registry(self) -> Any:
        """The plugins that fill a command's ``{lr}`` and ``{policy.NAME}``: the runner's, else the app's."""
        if self.registry is None and self.is_command:
            from lrbench_gui.plugins import get_registry

            self.registry = get_registry()
        return self.registry

    def _line(self, line: str) -> None:
        """One stdout or report line: a protocol event of this trial, else log text."""
        event = parse_line(line)
        if event is not None and event.trial in (self.trial_id, "?"):
            self.recorder.feed(event)
            self.eventReceived.emit(self.trial_id, event)
        elif line.strip():
            self.recorder.log(line)
            self.logReceived.emit(self.trial_id, line.rstrip("\n"))

    def _read_stdout(self) -> None:
        self.last_output = time.monotonic()
        while self.proc.canReadLine():
            self._line(bytes(self.proc.readLine().data()).decode("utf-8", errors="replace"))

    def _read_report(self, final: bool = False) -> None:
        lines = self.tail.read(final=final) if self.tail is not None else []
        if lines:
            self.last_output = time.monotonic()
        for line in lines:
            self._line(line)

    def _read_stderr(self) -> None:
        self.last_output = time.monotonic()
        data = bytes(self.proc.readAllStandardError().data()).decode("utf-8", errors="replace")
        for line in data.splitlines():
            self.stderr_tail.append(line)
            self.logReceived.emit(self.trial_id, line)

    def cancel(self, grace: float = GRACE_SECONDS) -> None:
        """Trainer: SIGTERM now, SIGKILL after ``grace``. Command trial: its stop file now, SIGTERM
        after ``$LRBENCH_STOP_GRACE`` seconds if it has not exited by then."""
        if self.done or self.proc.state() == QProcess.ProcessState.NotRunning:
            return
        self._grace = grace
        if self.is_command:
            if not self.cancelled:
                self.cancelled = True
                request_stop(self.workdir)
                self._stop_timer.start(int(stop_grace() * 1000))
            return
        self.cancelled = True
        self._terminate()

    def _terminate(self) -> None:
        if self.done or self.proc.state() == QProcess.ProcessState.NotRunning:
            return
        self.proc.terminate()
        self._kill_timer.start(int(getattr(self, "_grace", GRACE_SECONDS) * 1000))

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self.done:
            what = "the command" if self.is_command else "the trainer"
            self.recorder.errors.append(f"could not start {what}: {self.proc.errorString()}")
            self._settle(None)

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_stdout()
        rest = bytes(self.proc.readAllStandardOutput().data()).decode("utf-8", errors="replace")
        if rest.strip():  # a last line without a newline
            event = parse_line(rest)
            if event is not None:
                self.recorder.feed(event)
                self.eventReceived.emit(self.trial_id, event)
        self._read_stderr()
        self._read_report(final=True)
        crashed = status == QProcess.ExitStatus.CrashExit
        self._settle(-9 if crashed and code == 0 else (-code if crashed else code))

    def _settle(self, code: int | None) -> None:
        if self.done:
            return
        self.done = True
        self._kill_timer.stop()
        self._stop_timer.stop()
        self._tail_timer.stop()
        self.recorder.finish(code, list(self.stderr_tail), cancelled=self.cancelled)
        self.finished.emit(self.trial_id, self.recorder.record())


class WarmTrial(QObject):
    """One trial on its slot's warm worker, with :class:`QtTrial`'s signals and record.

    The worker protocol, cancel (a stop line, then SIGKILL of the worker after the grace) and the
    watchdog are :class:`~lrbench_gui.core.runs.warm.WarmTrialProcess`'s; the runner hands this
    object the process's queued events (:meth:`deliver`) on the GUI thread."""

    eventReceived = Signal(str, object)
    logReceived = Signal(str, str)
    finished = Signal(str, dict)

    def __init__(self, process: WarmTrialProcess, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process = process
        self.recorder = process.recorder
        self.done = False

    @property
    def config(self) -> TrialConfig:
        return self.process.config

    @property
    def trial_id(self) -> str:
        return self.process.trial_id

    @property
    def cancelled(self) -> bool:
        return self.process.cancelled

    @property
    def pid(self) -> int | None:
        """The worker's process id (None before it was handed the trial)."""
        return self.process.worker.pid if self.process.worker is not None else None

    def start(self) -> None:
        try:
            self.process.start()
        except (OSError, ValueError) as exc:  # no worker to run it: said as a fresh trainer's would be
            self.recorder.errors.append(f"could not start the trainer: {exc}")
            QTimer.singleShot(0, lambda: self._settle(None))

    def deliver(self, kind: str, payload: Any) -> None:
        """One queued item of the process, as the CLI's scheduler treats it."""
        if self.done:
            return
        if kind == "event":
            self.recorder.feed(payload)
            self.eventReceived.emit(self.trial_id, payload)
        elif kind in ("log", "stderr"):
            if kind == "log":
                self.recorder.log(payload)
            self.logReceived.emit(self.trial_id, payload)
        elif kind == "exit":
            self._settle(payload)

    def cancel(self, grace: float = GRACE_SECONDS) -> None:
        if not self.done:
            self.process.cancel(grace)

    def check_watchdog(self, limit: float) -> bool:
        return not self.done and self.process.check_watchdog(limit)

    def _settle(self, code: int | None) -> None:
        if self.done:
            return
        self.done = True
        self.recorder.finish(code, list(self.process.stderr_tail), cancelled=self.process.cancelled)
        self.finished.emit(self.trial_id, self.recorder.record())


def _inventory() -> tuple[GpuInventory, str]:
    try:
        return detect_gpus(), ""
    except GpuError as exc:
        return GpuInventory(), str(exc)


class TrialRunner(QObject):
    """A queue of trials over slots (CPU workers or GPU ids), placed by the same
    :class:`~lrbench_gui.core.runs.slots.SlotQueue` as the CLI's scheduler. It meets the
    :class:`~lrbench_gui.core.runs.slots.TrialScheduler` protocol; its loop is Qt's.

    A trial submitted with ``warm=True`` runs on its slot's warm worker when :attr:`warm` (the
    settings' "Reuse trial processes") allows and its task may (:func:`warm_key`); any other in
    its own ``QProcess``."""

    # a trial's process started: (trial_id, TrialConfig)
    trialStarted = Signal(str, object)
    # a protocol event of a running trial: (trial_id, Event)
    trialEvent = Signal(str, object)
    # a log line of a running trial: (trial_id, line)
    trialLog = Signal(str, str)
    # a trial is over (completed, stopped, diverged or failed): (trial_id, record)
    trialFinished = Signal(str, dict)
    # nothing is running or queued any more
    idle = Signal()

    def __init__(self, slots: int | list[str] = 1, workdir: Path | None = None, parent: QObject | None = None,
                 watchdog: float | None = None, registry: Any = None) -> None:
        super().__init__(parent)
        #: fills command trials' ``{lr}`` and ``{policy.NAME}`` (None: the app's plugins)
        self.registry = registry
        self.slots: SlotQueue[QtTrial | WarmTrial] = SlotQueue(slots)
        #: this machine's GPUs (nvidia-smi, or LRBENCH_GPUS); a bad LRBENCH_GPUS is kept as a note
        self.inventory, self.inventory_problem = _inventory()
        #: the GPU ids trials may use (the settings' list; default: all found)
        self.gpus: list[str] = self.inventory.ids
        self.workdir = workdir or data_dir() / "trials"
        self.programs: dict[str, list[str]] = {}
        #: seconds of silence after which a trial is killed (see core.runs.process.watchdog_seconds)
        self.watchdog = watchdog_seconds() if watchdog is None else float(watchdog)
        self._watchdog_timer = QTimer(self)
        self._watchdog_timer.setInterval(int(min(5.0, max(0.2, self.watchdog / 4)) * 1000) if self.watchdog else 5000)
        self._watchdog_timer.timeout.connect(self._check_watchdog)
        self._watchdog_timer.start()
        #: run the trials submitted with ``warm=True`` on warm workers (the settings' choice)
        self.warm = True
        #: the warm workers, one per slot (closed whenever the runner goes idle)
        self.pool = WorkerPool()
        self._warm: dict[str, Any] = {}  # trial id -> the registry that says whether it may run warm
        self._events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(10)
        self._drain_timer.timeout.connect(self._drain)

    def _check_watchdog(self) -> None:
        for trial in self.slots.handles():
            trial.check_watchdog(self.watchdog)

    @property
    def slot_ids(self) -> list[str | None]:
        return self.slots.slot_ids

    @property
    def pending(self) -> Any:
        return self.slots.pending

    @property
    def running(self) -> dict[str, Any]:
        """trial id -> (QtTrial, slot index) of the running trials."""
        return self.slots.running

    def free_slots(self) -> int:
        return self.slots.free()

    def set_slots(self, slots: int | list[str]) -> None:
        """New slots for the next placements; a GPU a running trial holds stays its own."""
        self.slots.set_slots(slots)

    def gpu_inventory(self) -> GpuInventory:
        """The GPUs trials may use: :attr:`gpus` (the settings'), named as detected."""
        if self.gpus == self.inventory.ids:
            return self.inventory
        known = {g.id: g for g in self.inventory.gpus}
        return GpuInventory(tuple(known.get(i, GPU(i)) for i in self.gpus), "settings", self.inventory.simulated)

    def plan(self, per_trial: float | None = None, parallel: int | None = None, device: str = "auto",
             cpu_workers: int = 1) -> SlotPlan:
        """The slots of trials needing ``per_trial`` GPUs each (default 1 when there are GPUs),
        ``parallel`` at a time (default: every GPU group, else ``cpu_workers``); ``GpuError``
        in words when the GPUs cannot meet ``per_trial``."""
        inventory = self.gpu_inventory()
        if not inventory.ids or device == "cpu":
            parallel = parallel or cpu_workers
        return plan_slots(inventory, per_trial=per_trial or None, parallel=parallel, device=device)

    def submit(self, config: TrialConfig, program: list[str] | None = None, *, warm: bool = False,
               registry: Any = None) -> None:
        """Queue a trial; ``program`` replaces the trainer command (benchmarks' synthetic sources).
        ``warm``: run it on its slot's warm worker if :attr:`warm` and its task (as ``registry``,
        else the runner's, says) allow it."""
        if program is not None:
            self.programs[config.trial_id] = program
        elif warm and (registry is not None or self.registry is not None):
            self._warm[config.trial_id] = registry if registry is not None else self.registry
        self.slots.submit(config)
        self._fill()

    def is_busy(self) -> bool:
        return self.slots.is_busy()

    def trial(self, trial_id: str) -> QtTrial | WarmTrial | None:
        return self.slots.handle(trial_id)

    def gpus_of(self, trial_id: str) -> str | None:
        """The GPU ids of a running trial's slot (None: a CPU slot, or not running)."""
        where = self.slots.slot_of(trial_id)
        return where[1] if where else None

    def cancel(self, trial_id: str) -> None:
        cfg = self.slots.unqueue(trial_id)
        if cfg is not None:
            self.programs.pop(trial_id, None)
            self._warm.pop(trial_id, None)
            self.trialFinished.emit(trial_id, cancelled_record(cfg))
            self._check_idle()
            return
        trial = self.slots.handle(trial_id)
        if trial is not None:
            trial.cancel()

    def cancel_all(self, grace: float = GRACE_SECONDS) -> None:
        for cfg in list(self.slots.pending):
            self.cancel(cfg.trial_id)
        for trial in self.slots.handles():
            trial.cancel(grace)

    def _fill(self) -> None:
        for placed in list(self.slots.place()):
            cfg = placed.config
            registry = self._warm.pop(cfg.trial_id, None)
            key = warm_key(cfg, registry) if self.warm and registry is not None else None
            trial: QtTrial | WarmTrial
            if key is not None:
                # a slot's worker is known by its GPUs (a slot's index may change its GPUs when the
                # slots change under running trials), a CPU slot's by its index
                process = WarmTrialProcess(cfg, self._events, self.workdir / cfg.trial_id, gpus=placed.gpus,
                                           registry=registry, pool=self.pool, slot=placed.gpus or placed.slot, key=key)
                trial = WarmTrial(process, self)
                self._drain_timer.start()
            else:
                trial = QtTrial(cfg, self.workdir / cfg.trial_id, placed.gpus, self.programs.pop(cfg.trial_id, None),
                                self, registry=self.registry)
            trial.eventReceived.connect(self.trialEvent)
            trial.logReceived.connect(self.trialLog)
            trial.finished.connect(self._trial_finished)
            self.slots.started(cfg.trial_id, trial)
            trial.start()
            self.trialStarted.emit(cfg.trial_id, trial.config)

    def _trial_finished(self, trial_id: str, record: dict[str, Any]) -> None:
        trial = self.slots.finished(trial_id)
        self.trialFinished.emit(trial_id, record)
        if trial is not None:
            trial.deleteLater()
        self._fill()
        self._check_idle()

    def _drain(self) -> None:
        """Deliver the warm trials' queued events, for at most :data:`_DRAIN_BUDGET` seconds."""
        end = time.monotonic() + _DRAIN_BUDGET
        while time.monotonic() < end:
            try:
                trial_id, kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            trial = self.slots.handle(trial_id)
            if isinstance(trial, WarmTrial):
                trial.deliver(kind, payload)
        if self._events.empty() and not any(isinstance(t, WarmTrial) for t in self.slots.handles()):
            self._drain_timer.stop()

    def close_workers(self) -> None:
        """Close the idle warm workers (each exits at once; a running trial's is asked to stop it)."""
        self.pool.close(wait=None)

    def _check_idle(self) -> None:
        if not self.slots.is_busy():
            self.close_workers()
            self.idle.emit()
