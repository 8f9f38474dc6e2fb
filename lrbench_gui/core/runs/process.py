"""One trial subprocess, from a Qt-free process (the CLI, tests, Ray workers).

:class:`TrialProcess` starts one ``python -m lrbench_gui.trainer TRIAL.json`` (or the DeepSpeed
launcher around it; for a command trial, the user's command), reads its stdout protocol and its
stderr on two threads (and a command trial's report file on a third), and turns them into events
on one queue. :func:`prepare_trial`, :func:`trainer_command` and :func:`trial_env` are shared with
the GUI's QProcess runner, so a trial starts the same way from either.
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
from typing import Any

from lrbench_gui.core.runs.command import REPORT_FILE, ReportTail, command_env, prepare_command, request_stop, stop_grace
from lrbench_gui.core.runs.gpus import launcher_include, real_gpus, trial_resources
from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.trial import TrialConfig, write_trial

__all__ = ["TrialProcess", "trainer_command", "prepare_trial", "trial_env", "trial_cwd", "GRACE_SECONDS",
           "watchdog_seconds", "watchdog_note"]

GRACE_SECONDS = 10.0
#: a trainer silent this long (no protocol line, no log line) is killed and recorded as failed
DEFAULT_WATCHDOG_SECONDS = 1800.0


def watchdog_seconds() -> float:
    """The silence after which a trial is killed: ``$LRBENCH_TRIAL_WATCHDOG`` seconds (0 turns the
    watchdog off), 30 minutes by default (a long evaluation or a model load prints nothing)."""
    raw = os.environ.get("LRBENCH_TRIAL_WATCHDOG", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_WATCHDOG_SECONDS
    except ValueError:
        value = DEFAULT_WATCHDOG_SECONDS
    return value if value > 0 and value == value else 0.0


def watchdog_note(seconds: float) -> str:
    return (f"the trainer printed nothing for {seconds:.0f} s and was killed by the watchdog "
            f"(LRBENCH_TRIAL_WATCHDOG=SECONDS changes the limit, 0 turns it off)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trainer_command(config: TrialConfig, trial_file: Path, gpus: str | None = None) -> list[str]:
    """The command line that runs ``trial_file``: plain python, or the DeepSpeed launcher.

    A DeepSpeed trial with several ranks (the GPUs of its slot, ``gpus``; else
    ``deepspeed.num_gpus``) goes through the launcher: on a host with those GPUs as
    ``--include localhost:i,j`` (the launcher gives each rank its ``CUDA_VISIBLE_DEVICES``); where
    nvidia-smi finds none (CPU ranks over gloo, or GPUs that ``LRBENCH_GPUS`` simulates) as
    ``--num_gpus K``, because the launcher refuses ids it cannot see."""
    ids = [g for g in (gpus or "").split(",") if g.strip()]
    ranks = len(ids) if ids else config.deepspeed.num_gpus
    if config.backend == "deepspeed" and ranks > 1:
        launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or shutil.which("deepspeed")
        if launcher is None:
            raise FileNotFoundError("the deepspeed launcher is not installed (pip install deepspeed)")
        include = launcher_include(config, gpus)
        where = ["--include", include] if include and real_gpus() else ["--num_gpus", str(ranks)]
        return [
            launcher, *where, "--master_port", str(_free_port()),
            "--module", "lrbench_gui.trainer", str(trial_file),
        ]
    # LRBENCH_PYTHON: the interpreter of an environment with torch, for an app that runs without
    # one (the frozen desktop build; see packaging/README.md)
    python = os.environ.get("LRBENCH_PYTHON") or sys.executable
    return [python, "-m", "lrbench_gui.trainer", str(trial_file)]


def prepare_trial(config: TrialConfig, workdir: Path, registry: Any = None,
                  gpus: str | None = None) -> tuple[TrialConfig, list[str]]:
    """Make the trial's folder, default its output there, write its trial file; return the
    config as written and the command that runs it on the GPUs ``gpus`` (shared by the CLI's and
    the GUI's runners).

    A command trial's command is its own, placeholders filled (``registry`` builds the policy for
    ``{lr}`` and ``{policy.NAME}``); :class:`~lrbench_gui.core.runs.command.CommandError` if one
    has no value."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config.output_dir is None:
        config = config.model_copy(update={"output_dir": str(workdir)})
    trial_file = write_trial(config, workdir / "trial.json")
    if config.command is not None:
        return config, prepare_command(config, workdir, registry)
    return config, trainer_command(config, trial_file, gpus)


def trial_cwd(config: TrialConfig, workdir: Path) -> Path:
    """Where a trial's process runs: a command trial's ``cwd`` if given, else the trial's folder."""
    return Path(config.cwd) if config.command is not None and config.cwd else workdir


def trial_env(config: TrialConfig, gpus: str | None = None, workdir: Path | None = None) -> dict[str, str]:
    """The trial process's environment; a command trial's (``workdir`` given) points at its files.

    ``gpus`` (nvidia-smi indices) becomes ``CUDA_VISIBLE_DEVICES``, numbered as nvidia-smi does
    (``CUDA_DEVICE_ORDER=PCI_BUS_ID``); not for the DeepSpeed launcher with ``--include``, which
    sets it for each rank (and would ignore ours)."""
    env = dict(os.environ)
    if config.command is not None and workdir is not None:
        env.update(command_env(config, workdir))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if gpus is not None:
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        if launcher_include(config, gpus) and real_gpus():
            env.pop("CUDA_VISIBLE_DEVICES", None)
        else:
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
    """One running trial; events land on ``events`` as ``(trial_id, kind, payload)``.

    ``registry`` fills a command trial's ``{lr}`` and ``{policy.NAME}`` placeholders."""

    config: TrialConfig
    events: "queue.Queue[tuple[str, str, Any]]"
    workdir: Path
    gpus: str | None = None
    registry: Any = None
    recorder: TrialRecorder = field(init=False)
    proc: subprocess.Popen | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=60), init=False)

    def __post_init__(self) -> None:
        self.recorder = TrialRecorder(self.config)
        self.recorder.resources = trial_resources(self.config, self.gpus)
        self._threads: list[threading.Thread] = []
        self._timers: list[threading.Timer] = []
        self._exited = threading.Event()
        #: monotonic time of the last line from the process (the watchdog reads it)
        self.last_output = time.monotonic()

    def check_watchdog(self, limit: float) -> bool:
        """Kill the process if it has been silent for ``limit`` seconds; True if it did."""
        if limit <= 0 or self.proc is None or self.proc.poll() is not None or self.cancelled:
            return False
        silent = time.monotonic() - self.last_output
        if silent < limit:
            return False
        self.recorder.errors.append(watchdog_note(silent))
        self.cancelled = False
        self._signal(signal.SIGKILL)
        return True

    @property
    def trial_id(self) -> str:
        return self.config.trial_id

    @property
    def is_command(self) -> bool:
        return self.config.command is not None

    def start(self) -> None:
        self.config, command = prepare_trial(self.config, self.workdir, self.registry, self.gpus)
        self.recorder.config = self.config
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=trial_cwd(self.config, self.workdir),
            env=trial_env(self.config, self.gpus, self.workdir),
            start_new_session=True,  # cancel reaches the launcher's ranks too
        )
        readers = [(self._read_stdout, self.proc.stdout), (self._read_stderr, self.proc.stderr)]
        if self.is_command:
            readers.append((self._tail_report, ReportTail(self.workdir / REPORT_FILE)))
        for target, stream in readers:
            t = threading.Thread(target=target, args=(stream,), daemon=True, name=f"trial-{self.trial_id}")
            t.start()
            self._threads.append(t)
        waiter = threading.Thread(target=self._wait, daemon=True, name=f"trial-wait-{self.trial_id}")
        waiter.start()

    def _line(self, line: str) -> None:
        """One stdout or report line: a protocol event of this trial, else log text."""
        self.last_output = time.monotonic()
        event = parse_line(line)
        if event is not None and event.trial in (self.trial_id, "?"):
            self.events.put((self.trial_id, "event", event))
        elif line.strip():
            self.events.put((self.trial_id, "log", line.rstrip("\n")))

    def _read_stdout(self, stream: Any) -> None:
        for raw in stream:
            self._line(raw.decode("utf-8", errors="replace"))
        stream.close()

    def _tail_report(self, tail: ReportTail) -> None:
        """Poll the report file every 0.1 s until the process is gone, then read what is left."""
        while not self._exited.wait(0.1):
            for line in tail.read():
                self._line(line)
        for line in tail.read(final=True):
            self._line(line)

    def _read_stderr(self, stream: Any) -> None:
        for raw in stream:
            self.last_output = time.monotonic()
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.stderr_tail.append(line)
            self.events.put((self.trial_id, "stderr", line))
        stream.close()

    def _wait(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        self._exited.set()
        for t in self._threads:
            t.join()
        for timer in self._timers:
            timer.cancel()
        self.events.put((self.trial_id, "exit", code))

    def cancel(self, grace: float = GRACE_SECONDS) -> None:
        """Trainer: SIGTERM now (it stops at its next step), SIGKILL after ``grace`` seconds.
        Command trial: create its stop file, and SIGTERM only if it is still running
        ``$LRBENCH_STOP_GRACE`` seconds later (then SIGKILL after ``grace``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.is_command:
            if self.cancelled:
                return  # already stopping
            self.cancelled = True
            request_stop(self.workdir)
            self._later(stop_grace(), self.terminate, grace)
            return
        self.cancelled = True
        self.terminate(grace)

    def kill_started(self) -> None:
        """SIGKILL whatever :meth:`start` got going (it was interrupted part-way)."""
        for timer in self._timers:
            timer.cancel()
        self._signal(signal.SIGKILL)

    def terminate(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM now, SIGKILL after ``grace`` seconds."""
        self._signal(signal.SIGTERM)
        self._later(grace, self._signal, signal.SIGKILL)

    def _later(self, seconds: float, fn: Any, *args: Any) -> None:
        timer = threading.Timer(seconds, fn, args=args)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
