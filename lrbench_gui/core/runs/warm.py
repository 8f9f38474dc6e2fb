"""Warm workers: one trainer process per slot that runs trial after trial of a study.

A fresh trainer spends seconds importing torch and transformers, and a LoRA fine-tune loads its
base model and tokenizes its data on every trial; a worker (``python -m lrbench_gui.trainer
--worker``, :mod:`lrbench_gui.trainer.worker`) keeps them. The scheduler sends a trial to its
slot's worker when :func:`warm_key` says it may (the task opts in with ``Task.warm_reuse``; the
torch backend; no command, merge or resume); any other trial gets a fresh process, as before.

:class:`WarmTrialProcess` is a :class:`~lrbench_gui.core.runs.process.TrialProcess` whose process
is the worker: it puts the same events on the same queue (the worker's ``worker`` line becomes
the trial's ``exit``, with the status a fresh trainer would have exited with), so the scheduler,
the watchdog and the recorder treat both alike. Cancel asks the worker to stop that trial (by id,
on its stdin), and kills the worker if the trial is still running after the grace: the trial is
then recorded as a cancelled fresh one would be, and the slot's next trial gets a new worker, as
it does after any crash. :class:`WorkerPool` holds the workers of one scheduler and closes them
when its run ends (and at exit, whatever happens: a worker never outlives the app; one whose app
died sees its stdin close and exits).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrbench_gui.core.params import validate_params
from lrbench_gui.core.runs.process import GRACE_SECONDS, TrialProcess, prepare_trial, trial_env
from lrbench_gui.core.runs.trial import TrialConfig

__all__ = ["WarmTrialProcess", "WorkerPool", "Worker", "warm_key", "worker_command", "END_MARK"]

#: the stderr line that closes a trial's log in a worker (the same as lrbench_gui.trainer.worker's)
END_MARK = "\x1elrbench-worker-end "
#: how long a finished trial waits for the rest of its stderr before it is recorded
_LOG_WAIT = 5.0


def warm_key(config: TrialConfig, registry: Any) -> tuple | None:
    """What a worker must share to run ``config`` warm (its task and thread count), or None when
    the trial needs a fresh process: a command, DeepSpeed, a merge or a resume, a task that does
    not opt in (``Task.warm_reuse``), or no registry to ask."""
    if (registry is None or config.command is not None or config.backend != "torch" or config.merge is not None
            or getattr(config, "resume_from", None)):
        return None
    try:
        cls = registry.task(config.task)
        reuse = cls.warm_reuse(validate_params(cls.Params, config.task_params))
    except Exception:  # an unknown task or bad parameters: the fresh trainer says so, in one line
        return None
    return (config.task, config.threads) if reuse is True else None


def worker_command() -> list[str]:
    """The command line of a worker (``LRBENCH_PYTHON`` as for the trainer)."""
    return [os.environ.get("LRBENCH_PYTHON") or sys.executable, "-m", "lrbench_gui.trainer", "--worker"]


def _worker_exit(line: str) -> int | None:
    """The exit status on a worker's end-of-trial line, None for any other line."""
    if '"worker"' not in line:
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and obj.get("type") == "worker" and isinstance(obj.get("exit"), int):
        return int(obj["exit"])
    return None


class Worker:
    """One worker process and the trial it runs (at most one at a time)."""

    def __init__(self, key: tuple, gpus: str | None, env: dict[str, str], cwd: Path) -> None:
        self.key, self.gpus = key, gpus
        self.lock = threading.Lock()
        self.current: WarmTrialProcess | None = None
        self.closing = False
        self.trials = 0
        self._log_done = threading.Event()
        self.proc = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
        self._stderr = threading.Thread(target=self._read_stderr, daemon=True, name=f"worker-{self.proc.pid}-err")
        self._stderr.start()
        threading.Thread(target=self._read_stdout, daemon=True, name=f"worker-{self.proc.pid}").start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.closing and self.proc.poll() is None

    def run(self, handle: "WarmTrialProcess", trial_file: Path) -> None:
        """Hand the worker a trial; OSError if it is gone."""
        with self.lock:
            if self.current is not None:
                raise RuntimeError(f"worker {self.pid} is busy with trial {self.current.trial_id}")
            self.current = handle
            self._log_done.clear()
        try:
            self._send(str(trial_file.resolve()))
        except OSError:
            with self.lock:
                self.current = None
            raise
        self.trials += 1

    def stop(self, trial_id: str) -> None:
        try:
            self._send(json.dumps({"stop": trial_id}))
        except OSError:
            pass  # the worker is gone or closed: it stops its trial by itself

    def _send(self, line: str) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            raise BrokenPipeError(f"worker {self.pid} takes no more trials")
        stdin.write(line.encode("utf-8") + b"\n")
        stdin.flush()

    def kill(self, trial_id: str | None = None) -> None:
        """SIGKILL the worker (only while it runs ``trial_id``, when given)."""
        with self.lock:
            if trial_id is not None and (self.current is None or self.current.trial_id != trial_id):
                return
            self.closing = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """No more trials: close its stdin (it stops a running trial and exits)."""
        self.closing = True
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout: float) -> None:
        """Wait for a closed worker to exit; SIGKILL it after ``timeout`` seconds."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            code = _worker_exit(line)
            with self.lock:
                handle = self.current
            if handle is None:
                continue  # nothing runs: nobody's output (the worker prints nothing between trials)
            if code is None:
                handle._line(line)
                continue
            self._log_done.wait(_LOG_WAIT)  # the trial's whole log, as a fresh trainer's at its exit
            with self.lock:
                self.current = None
            handle._settle(code)
        self.proc.stdout.close()
        code = self.proc.wait()
        self._stderr.join()
        with self.lock:
            handle, self.current = self.current, None
            self.closing = True
        if handle is not None:  # the worker died under a trial: that trial ends as a crashed trainer
            handle._settle(code)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith(END_MARK):
                self._log_done.set()
                continue
            with self.lock:
                handle = self.current
            if handle is not None:
                handle._stderr_line(line)
        self.proc.stderr.close()
        self._log_done.set()


_POOLS: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close(wait=2.0)


class WorkerPool:
    """The workers of one scheduler, one per slot; a slot's worker is replaced when the next
    trial needs another key or GPUs, or when it died."""

    def __init__(self) -> None:
        self.workers: dict[int, Worker] = {}
        #: workers started, in all (the benches and tests read it)
        self.started = 0
        _POOLS.add(self)

    def attach(self, handle: "WarmTrialProcess", trial_file: Path) -> Worker:
        """Run ``handle``'s trial on its slot's worker, starting one if needed."""
        worker = self.workers.get(handle.slot)
        if worker is not None and (worker.key != handle.key or worker.gpus != handle.gpus or not worker.alive()):
            self._retire(handle.slot)
            worker = None
        for attempt in (0, 1):
            if worker is None:
                worker = Worker(handle.key, handle.gpus, trial_env(handle.config, handle.gpus), handle.workdir)
                self.workers[handle.slot] = worker
                self.started += 1
            try:
                worker.run(handle, trial_file)
                return worker
            except OSError:
                self._retire(handle.slot)  # it died between trials: one more try on a new one
                worker = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _retire(self, slot: int) -> None:
        worker = self.workers.pop(slot, None)
        if worker is not None:
            worker.close()
            threading.Thread(target=worker.wait, args=(10.0,), daemon=True, name="worker-retire").start()

    def close(self, wait: float | None = 10.0) -> None:
        """Close every worker; with ``wait``, wait that long for each to exit (then SIGKILL)."""
        workers = list(self.workers.values())
        self.workers.clear()
        for worker in workers:
            worker.close()
        if wait is not None:
            for worker in workers:
                worker.wait(wait)


@dataclass
class WarmTrialProcess(TrialProcess):
    """A trial run by its slot's warm worker; events, watchdog and record as for a fresh process."""

    pool: WorkerPool | None = None
    slot: int = 0
    key: tuple = ()
    worker: Worker | None = field(default=None, init=False)

    def start(self) -> None:
        assert self.pool is not None
        self.config, _ = prepare_trial(self.config, self.workdir, self.registry, self.gpus)
        self.recorder.config = self.config
        self.last_output = time.monotonic()
        self.worker = self.pool.attach(self, self.workdir / "trial.json")
        self.proc = self.worker.proc

    def _stderr_line(self, line: str) -> None:
        self.last_output = time.monotonic()
        self.stderr_tail.append(line)
        self.events.put((self.trial_id, "stderr", line))

    def _settle(self, code: int) -> None:
        """The trial is over (its worker line, or its worker's death): the scheduler's ``exit``."""
        self._exited.set()
        for timer in self._timers:
            timer.cancel()
        self.events.put((self.trial_id, "exit", code))

    def cancel(self, grace: float = GRACE_SECONDS) -> None:
        if self.worker is None or self._exited.is_set() or self.cancelled:
            return
        self.cancelled = True
        self.terminate(grace)

    def terminate(self, grace: float = GRACE_SECONDS) -> None:
        """Ask the worker to stop this trial now; kill the worker if it still runs it after ``grace``."""
        if self.worker is not None:
            self.worker.stop(self.trial_id)
        self._later(grace, self._signal, signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        """Only SIGKILL reaches a worker (the watchdog, a cancel's grace), and only while this
        trial is the one it runs; a trial that was never handed over has nothing to signal."""
        if self.worker is not None and not self._exited.is_set() and sig == signal.SIGKILL:
            self.worker.kill(self.trial_id)

    def check_watchdog(self, limit: float) -> bool:
        if self._exited.is_set():
            return False
        return super().check_watchdog(limit)
