"""One trial subprocess, from a Qt-free process (the CLI, tests, Ray workers).

:class:`TrialProcess` starts one ``python -m lrbench_gui.trainer TRIAL.json`` (or the DeepSpeed
launcher around it), reads its stdout protocol and its stderr on two threads, and turns both into
events on one queue. :func:`prepare_trial`, :func:`trainer_command` and :func:`trial_env` are
shared with the GUI's QProcess runner, so a trial starts the same way from either.
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

from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.trial import TrialConfig, write_trial

__all__ = ["TrialProcess", "trainer_command", "prepare_trial", "trial_env", "GRACE_SECONDS", "watchdog_seconds",
           "watchdog_note"]

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
            self.last_output = time.monotonic()
            line = raw.decode("utf-8", errors="replace")
            event = parse_line(line)
            if event is not None and event.trial in (self.trial_id, "?"):
                self.events.put((self.trial_id, "event", event))
            elif line.strip():
                self.events.put((self.trial_id, "log", line.rstrip("\n")))
        stream.close()

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
