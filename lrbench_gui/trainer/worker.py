"""A warm worker: ``python -m lrbench_gui.trainer --worker`` runs trial after trial in one process.

The imports stay loaded, and so does what a task keeps in :attr:`TaskContext.cache` (the frozen
base model of a LoRA fine-tune, tokenized data): the scheduler gives a slot one worker and sends
it the trials of tasks that opt in (``Task.warm_reuse``). Each trial runs exactly as
``python -m lrbench_gui.trainer TRIAL.json`` would: reseeded, in the trial's folder, through the
same :func:`~lrbench_gui.trainer.run.run_file`, with the same events and exit status.

stdin, one line each: a trial file's path (run it), ``{"stop": "TRIAL_ID"}`` (stop that trial
before its next step, as SIGTERM stops a fresh trainer), or end of file (stop the running trial,
then exit). stdout: each trial's protocol lines, then ``{"v": 1, "type": "worker", "trial": ID,
"exit": STATUS}`` with the exit status a fresh trainer would have had. stderr: the human log; each
trial's ends with a line :data:`END_MARK` + ID, so a reader can tell whose log a line is.
SIGTERM or SIGINT: stop the running trial and exit after it. docs/protocol.md has the lines.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from lrbench_gui.core.runs.protocol import PROTOCOL_VERSION
from lrbench_gui.trainer.run import Emitter, _raw_trial_id, _Stop, run_file

__all__ = ["main", "END_MARK"]

#: the stderr line that closes one trial's log (a record separator, so no log line looks like it)
END_MARK = "\x1elrbench-worker-end "


class _Inbox:
    """Reads stdin on a thread: trial files go to a queue, a stop for the running trial sets the
    trainer's stop flag (a stop for the one queued behind it is kept until it starts)."""

    def __init__(self, stream: Any) -> None:
        self.paths: queue.Queue[str | None] = queue.Queue()
        self.lock = threading.RLock()  # re-entered by a signal handler on the main thread
        self.current: str | None = None
        self.stops: set[str] = set()
        self.closing = False
        threading.Thread(target=self._read, args=(stream,), daemon=True, name="worker-stdin").start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("stop"), str):
                    self.stop(obj["stop"])
                continue
            self.paths.put(line)
        self.close()

    def stop(self, trial_id: str) -> None:
        with self.lock:
            if trial_id == self.current:
                _Stop.requested = True
            else:
                self.stops.add(trial_id)

    def close(self) -> None:
        """No more trials: stop the running one (the app is gone, or asked the worker to go)."""
        with self.lock:
            self.closing = True
            if self.current is not None:
                _Stop.requested = True
        self.paths.put(None)

    def begin(self, trial_id: str) -> None:
        with self.lock:
            self.current = trial_id
            _Stop.requested = trial_id in self.stops or self.closing
            self.stops.clear()

    def end(self) -> None:
        with self.lock:
            self.current = None
            _Stop.requested = False


def _free_memory() -> None:
    """What the finished trial left (its optimizer, adapters, activations) goes before the next."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _done(trial_id: str, code: int) -> None:
    sys.stderr.write(END_MARK + trial_id + "\n")
    sys.stderr.flush()
    sys.stdout.write(json.dumps({"v": PROTOCOL_VERSION, "type": "worker", "trial": trial_id, "exit": code}) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Run trials from stdin until it closes (or SIGTERM); 0 then."""
    inbox = _Inbox(sys.stdin.buffer)

    def handler(signum: int, frame: Any) -> None:
        inbox.close()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    from lrbench_gui.plugins import get_registry

    registry = get_registry()
    cache: dict = {}
    home = Path.cwd()
    while True:
        path = inbox.paths.get()
        if path is None:
            break
        trial_id = _raw_trial_id(path)
        inbox.begin(trial_id)
        folder = Path(path).parent
        try:  # a fresh trainer runs in the trial's folder: relative paths mean the same here
            os.chdir(folder if folder.is_dir() else home)
            code = run_file(path, registry, Emitter(trial_id, int(os.environ.get("RANK", "0"))), cache)
        except SystemExit as exc:  # a task that exits ends the worker, as it would end a trainer
            inbox.end()
            _done(trial_id, exc.code if isinstance(exc.code, int) else 1)
            return 0
        inbox.end()
        _free_memory()
        _done(trial_id, code)
        if inbox.closing:
            break
    return 0
