"""Run trial subprocesses from a Qt-free process (the CLI, tests, Ray workers).

:class:`TrialProcess` starts one ``python -m lrbench_gui.trainer TRIAL.json`` (or the DeepSpeed
launcher around it), reads its stdout protocol and its stderr on two threads, and turns both into
events on one queue. :class:`LocalScheduler` runs a queue of trials over slots (CPU workers, or
one GPU each through ``CUDA_VISIBLE_DEVICES``) and calls back on the *caller's* thread, so the
caller alone writes the database. The GUI has its own QProcess bridge over the same
:mod:`protocol` and :class:`~lrbench_gui.core.recorder.TrialRecorder`.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lrbench_gui.core.paths import data_dir
from lrbench_gui.core.runs.protocol import Event, parse_line
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.trial import TrialConfig, write_trial

__all__ = ["TrialProcess", "LocalScheduler", "trainer_command", "prepare_trial", "trial_env", "GRACE_SECONDS"]

GRACE_SECONDS = 10.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trainer_command(config: TrialConfig, trial_file: Path) -> list[str]:
    """The command line that runs ``trial_file``: plain python, or the DeepSpeed launcher."""
    if config.backend == "deepspeed" and config.deepspeed.num_gpus > 1:
        launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or shutil.which("deepspeed")
        if launcher is None:
            raise FileNotFoundError("the deepspeed launcher is not installed (pip install deepspeed)")
        return [
            launcher, "--num_gpus", str(config.deepspeed.num_gpus), "--master_port", str(_free_port()),
            "--module", "lrbench_gui.trainer", str(trial_file),
        ]
    # LRBENCH_PYTHON: the interpreter of an environment with torch, for an app that runs without
    # one (the frozen desktop build; see packaging/README.md)
    python = os.environ.get("LRBENCH_PYTHON") or sys.executable
    return [python, "-m", "lrbench_gui.trainer", str(trial_file)]


def prepare_trial(config: TrialConfig, workdir: Path) -> tuple[TrialConfig, list[str]]:
    """Make the trial's folder, default its output there, write its trial file; return the
    config as written and the command that runs it (shared by the CLI's and the GUI's runners)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config.output_dir is None:
        config = config.model_copy(update={"output_dir": str(workdir)})
    return config, trainer_command(config, write_trial(config, workdir / "trial.json"))


def trial_env(config: TrialConfig, gpus: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    if config.threads:
        env["OMP_NUM_THREADS"] = str(config.threads)
    if config.backend == "deepspeed":
        # DeepSpeed compiles its CPU comm op on first use (~1 min); keep it in one cache per user
        from platformdirs import user_cache_dir

        env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(user_cache_dir("lrbench", appauthor=False)) / "torch_extensions"))
    return env


@dataclass
class TrialProcess:
    """One running trial; events land on ``events`` as ``(trial_id, kind, payload)``."""

    config: TrialConfig
    events: "queue.Queue[tuple[str, str, Any]]"
    workdir: Path
    gpus: str | None = None
    recorder: TrialRecorder = field(init=False)
    proc: subprocess.Popen | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=60), init=False)

    def __post_init__(self) -> None:
        self.recorder = TrialRecorder(self.config)
        self._threads: list[threading.Thread] = []
        self._kill_timer: threading.Timer | None = None

    @property
    def trial_id(self) -> str:
        return self.config.trial_id

    def start(self) -> None:
        self.config, command = prepare_trial(self.config, self.workdir)
        self.recorder.config = self.config
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env=trial_env(self.config, self.gpus),
            start_new_session=True,  # cancel reaches the launcher's ranks too
        )
        for target, stream in ((self._read_stdout, self.proc.stdout), (self._read_stderr, self.proc.stderr)):
            t = threading.Thread(target=target, args=(stream,), daemon=True, name=f"trial-{self.trial_id}")
            t.start()
            self._threads.append(t)
        waiter = threading.Thread(target=self._wait, daemon=True, name=f"trial-wait-{self.trial_id}")
        waiter.start()
        self._threads.append(waiter)

    def _read_stdout(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace")
            event = parse_line(line)
            if event is not None and event.trial in (self.trial_id, "?"):
                self.events.put((self.trial_id, "event", event))
            elif line.strip():
                self.events.put((self.trial_id, "log", line.rstrip("\n")))
        stream.close()

    def _read_stderr(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.stderr_tail.append(line)
            self.events.put((self.trial_id, "stderr", line))
        stream.close()

    def _wait(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        for t in self._threads[:2]:
            t.join()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self.events.put((self.trial_id, "exit", code))

    def cancel(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM now (the trainer stops at its next step), SIGKILL after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.cancelled = True
        self._signal(signal.SIGTERM)
        self._kill_timer = threading.Timer(grace, self._signal, args=(signal.SIGKILL,))
        self._kill_timer.daemon = True
        self._kill_timer.start()

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


class LocalScheduler:
    """A queue of trials over ``slots`` (CPU workers, or GPU ids); callbacks run on the caller's
    thread inside :meth:`run`.

    ``on_event(trial_id, event)`` for every protocol event (returning False stops that trial);
    ``on_log(trial_id, line)`` for log text; ``on_finished(trial_id, record)`` once per trial
    with its database record. ``feeder(free_slots)``, when given, is asked for more trials
    whenever slots are free (a study's tuner behind it); the run ends when nothing runs, nothing
    is queued and the feeder has nothing more.
    """

    def __init__(
        self,
        slots: int | list[str] = 1,
        workdir: Path | None = None,
        on_event: Callable[[str, Event], None] | None = None,
        on_log: Callable[[str, str], None] | None = None,
        on_finished: Callable[[str, dict[str, Any]], None] | None = None,
        on_started: Callable[[str, TrialConfig], None] | None = None,
        feeder: Callable[[int], list[TrialConfig]] | None = None,
    ) -> None:
        self.slot_ids: list[str | None] = list(slots) if isinstance(slots, list) else [None] * max(1, int(slots))
        self.workdir = workdir or data_dir() / "trials"
        self.on_event = on_event
        self.on_log = on_log
        self.on_finished = on_finished
        self.on_started = on_started
        self.feeder = feeder
        self.events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.pending: deque[TrialConfig] = deque()
        self.running: dict[str, tuple[TrialProcess, int]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self._cancel_all = False

    def submit(self, config: TrialConfig) -> None:
        self.pending.append(config)

    def cancel(self, trial_id: str) -> None:
        for i, cfg in enumerate(self.pending):
            if cfg.trial_id == trial_id:
                del self.pending[i]
                rec = TrialRecorder(cfg)
                rec.finish(None, [], cancelled=True)
                self._finished(trial_id, rec.record())
                return
        if trial_id in self.running:
            self.running[trial_id][0].cancel()

    def cancel_all(self) -> None:
        self._cancel_all = True
        for trial_id in [c.trial_id for c in self.pending]:
            self.cancel(trial_id)
        for proc, _ in list(self.running.values()):
            proc.cancel()

    def _finished(self, trial_id: str, record: dict[str, Any]) -> None:
        self.records[trial_id] = record
        if self.on_finished:
            self.on_finished(trial_id, record)

    def _fill(self) -> None:
        busy = {slot for _, slot in self.running.values()}
        free = len(self.slot_ids) - len(busy) - len(self.pending)
        if self.feeder is not None and free > 0 and not self._cancel_all:
            self.pending.extend(self.feeder(free))
        for slot, gpu in enumerate(self.slot_ids):
            if slot in busy or not self.pending or self._cancel_all:
                continue
            cfg = self.pending.popleft()
            proc = TrialProcess(cfg, self.events, self.workdir / cfg.trial_id, gpus=gpu)
            try:
                proc.start()
            except (OSError, FileNotFoundError) as exc:
                rec = proc.recorder
                rec.errors.append(f"could not start the trainer: {exc}")
                rec.finish(None, [])
                self._finished(cfg.trial_id, rec.record())
                continue
            self.running[cfg.trial_id] = (proc, slot)
            if self.on_started:
                self.on_started(cfg.trial_id, proc.config)

    def run(self, poll: float = 0.1, until: Callable[[], bool] | None = None) -> dict[str, dict[str, Any]]:
        """Run until every submitted trial has finished (or ``until()`` is true); returns the records."""
        self._fill()
        while self.running or (self.pending and not self._cancel_all):
            if until is not None and until():
                self.cancel_all()
            try:
                trial_id, kind, payload = self.events.get(timeout=poll)
            except queue.Empty:
                continue
            entry = self.running.get(trial_id)
            if entry is None:
                continue
            proc = entry[0]
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
                del self.running[trial_id]
                self._finished(trial_id, proc.recorder.record())
                self._fill()
        return self.records
