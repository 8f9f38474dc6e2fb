"""The live folder: trials running outside the desktop app, mirrored so an open app shows them.

A process that runs a trial the app did not start (``lrbench watch``, ``lrbench run``, ``lrbench
tune``) mirrors it into ``$LRBENCH_LIVE_DIR`` (default: ``live/`` in the data folder) as two
files: ``<trial>.json``, what runs and who records it (:class:`LiveMirror` writes it atomically:
the process id, the host, the source, the stop file, and the status once it ended), and
``<trial>.jsonl``, the trial's protocol lines as they come. The app's Live panel scans the
folder (:func:`scan`) and follows each file with a
:class:`~lrbench_gui.core.runs.command.ReportTail`, so a trial started from a terminal is plotted
live beside the app's own; Cancel in the app creates the trial's stop file, which the process
running it honours.

A script started by nobody (on another machine with a shared folder, or by a job scheduler) can
append protocol lines to any file, e.g. with ``LRBENCH_REPORT=/path/run.jsonl`` and
:mod:`lrbench_gui.report`; the app follows such a file when asked (File > Follow a trial
file...) and, having no one else to do it, records it when it ends.

Everything here is bounded: a meta file is read with the bounded JSON reader, a scan looks at
most at :data:`MAX_ENTRIES` files, and mirrors of ended trials older than :data:`KEEP_SECONDS`
are removed by the next mirror that opens.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lrbench_gui._names import file_trial_id
from lrbench_gui.core.jsonio import JSONBoundsError, read_json_bounded
from lrbench_gui.core.paths import data_dir
from lrbench_gui.core.runs.command import ReportTail
from lrbench_gui.core.runs.protocol import Event, encode, parse_line

__all__ = ["LIVE_ENV", "live_dir", "LiveMirror", "LiveMirrors", "LiveEntry", "LiveWatcher", "Followed", "scan",
           "pid_alive", "request_stop", "KEEP_SECONDS", "MAX_ENTRIES"]

LIVE_ENV = "LRBENCH_LIVE_DIR"
#: mirrors of ended (or abandoned) trials are removed after a day
KEEP_SECONDS = 24 * 3600.0
#: a scan looks at no more files than this (the newest first)
MAX_ENTRIES = 500
_META_BYTES = 1 << 20


def live_dir() -> Path:
    """``$LRBENCH_LIVE_DIR``, else ``live/`` in the data folder."""
    env = os.environ.get(LIVE_ENV)
    return Path(env).expanduser() if env else data_dir() / "live"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: Any) -> bool:
    """Whether process ``pid`` runs on this machine (False for anything that is not a pid)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    from lrbench_gui.core.db.storage import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj).encode("utf-8"))


class LiveMirror:
    """Mirror one trial into the live folder. Never raises: a folder that cannot be written
    (a full disk, no permission) turns the mirror off, and the trial runs on unmirrored.

    ``config`` is the :class:`~lrbench_gui.core.runs.trial.TrialConfig`; ``source`` says who runs it
    (``"lrbench watch"``); ``stop_file`` is the file whose creation asks the trial to stop (see
    :meth:`stop_requested`), by default ``<trial>.stop`` in the live folder.
    """

    def __init__(self, config: Any, source: str, folder: Path | None = None, stop_file: str | Path | None = None,
                 records: bool = True) -> None:
        self.trial_id = str(config.trial_id)
        self.folder = Path(folder) if folder is not None else live_dir()
        self.meta_path = self.folder / f"{self.trial_id}.json"
        self.lines_path = self.folder / f"{self.trial_id}.jsonl"
        self.stop_path = Path(stop_file) if stop_file is not None else self.folder / f"{self.trial_id}.stop"
        self._fh: Any = None
        self.meta: dict[str, Any] = {
            "trial": self.trial_id, "study": config.study_id, "task": config.task, "policy": config.policy,
            "steps": config.budget.steps, "command": list(config.command) if config.command is not None else None,
            "source": source, "pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
            "stop": str(self.stop_path), "records": bool(records), "status": "running", "ended": None,
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _cleanup(self.folder)
            self._fh = open(self.lines_path, "ab", buffering=0)
            _write_json(self.meta_path, self.meta)
        except OSError:
            self.close_quietly()

    @property
    def active(self) -> bool:
        return self._fh is not None

    def line(self, text: str) -> None:
        """Append one protocol line (JSON text, no newline)."""
        if self._fh is None:
            return
        try:
            self._fh.write(text.rstrip("\n").encode("utf-8") + b"\n")
        except OSError:
            self.close_quietly()

    def event(self, event: Event) -> None:
        """Append one parsed event, encoded again."""
        if self._fh is not None:
            try:
                text = encode(event.type, event.trial, **event.data)
            except (TypeError, ValueError):
                return
            self.line(text)

    def stop_requested(self) -> bool:
        """True once someone (the app's Cancel) created the stop file."""
        return self.stop_path.exists()

    def close(self, status: str) -> None:
        """The trial ended with ``status``: say so in the meta file (the app stops following)."""
        if self._fh is None:
            return
        self.meta.update(status=str(status), ended=_now())
        try:
            _write_json(self.meta_path, self.meta)
        except OSError:
            pass
        self.close_quietly()
        if self.stop_path.parent == self.folder:
            try:
                self.stop_path.unlink()
            except OSError:
                pass

    def close_quietly(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
        self._fh = None


def _cleanup(folder: Path) -> None:
    """Remove the mirrors of trials that ended (or whose process is gone) over a day ago."""
    cutoff = time.time() - KEEP_SECONDS
    for path in _listing(folder, ".json"):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            for stale in (path, path.with_suffix(".jsonl"), path.with_suffix(".stop")):
                stale.unlink(missing_ok=True)
        except OSError:
            continue


def _listing(folder: Path, suffix: str) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.name.endswith(suffix) and not e.name.startswith(".") and e.is_file()]
    except OSError:
        return []
    entries.sort(key=lambda e: e.stat().st_mtime if e.is_file() else 0, reverse=True)
    return [Path(e.path) for e in entries[:MAX_ENTRIES]]


@dataclass
class LiveEntry:
    """One mirrored trial: its meta (as written by its process), where its lines are, whether
    it still runs (its process is alive and it has not ended)."""

    trial_id: str
    meta: dict[str, Any]
    lines: Path
    running: bool


def read_meta(path: Path) -> dict[str, Any] | None:
    """A live meta file, read bounded; None if it is unreadable or not a meta file."""
    try:
        obj = read_json_bounded(path, max_bytes=_META_BYTES)
    except (JSONBoundsError, OSError, ValueError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("trial"), str):
        return None
    return obj


def scan(folder: Path | None = None, since: float = KEEP_SECONDS) -> list[LiveEntry]:
    """The mirrored trials of ``folder`` (the live folder by default) touched in the last ``since``
    seconds, newest first. A trial whose process is gone without ending is not ``running``."""
    folder = Path(folder) if folder is not None else live_dir()
    cutoff = time.time() - since
    out: list[LiveEntry] = []
    host = socket.gethostname()
    for path in _listing(folder, ".json"):
        try:
            if path.stat().st_mtime < cutoff and path.with_suffix(".jsonl").stat().st_mtime < cutoff:
                continue
        except OSError:
            continue
        meta = read_meta(path)
        if meta is None or meta["trial"] != path.stem:
            continue
        ended = meta.get("status") not in (None, "running")
        alive = meta.get("host") != host or pid_alive(meta.get("pid"))  # another host's: trust its meta
        out.append(LiveEntry(path.stem, meta, path.with_suffix(".jsonl"), running=not ended and alive))
    return out


class LiveMirrors:
    """The mirrors of every trial one process runs, for a runner's callbacks: :meth:`started`
    when a trial starts, :meth:`event` for each event (False once the app asked the trial to
    stop: the caller cancels it, so it is recorded as stopped), :meth:`finished` with its record.
    ``LRBENCH_LIVE=0`` in the environment turns mirroring off."""

    def __init__(self, source: str, folder: Path | None = None) -> None:
        self.source = source
        self.folder = folder
        self.enabled = os.environ.get("LRBENCH_LIVE", "1") != "0"
        self.mirrors: dict[str, LiveMirror] = {}

    def started(self, trial_id: str, config: Any) -> None:
        if self.enabled and trial_id not in self.mirrors:
            self.mirrors[trial_id] = LiveMirror(config, self.source, self.folder)

    def event(self, trial_id: str, event: Event) -> bool:
        mirror = self.mirrors.get(trial_id)
        if mirror is None:
            return True
        mirror.event(event)
        return not mirror.stop_requested()

    def finished(self, trial_id: str, status: str) -> None:
        mirror = self.mirrors.pop(trial_id, None)
        if mirror is not None:
            mirror.close(status)

    def close_all(self, status: str = "stopped") -> None:
        for trial_id in list(self.mirrors):
            self.finished(trial_id, status)


def request_stop(entry: "LiveEntry | Followed") -> bool:
    """Ask a followed trial to stop: create its stop file. False if it has none or it cannot be made."""
    path = entry.meta.get("stop") if isinstance(entry.meta, dict) else None
    if not isinstance(path, str) or not path:
        return False
    try:
        Path(path).touch()
    except OSError:
        return False
    return True


@dataclass
class Followed:
    """A trial the app follows: its meta (``{}`` for a bare report file), its lines' tail and what
    it said so far."""

    trial_id: str
    meta: dict[str, Any]
    lines: Path
    tail: ReportTail
    running: bool = True
    status: str = "running"
    steps: int | None = None
    last_step: int | None = None
    last_loss: float | None = None
    last_lr: float | None = None
    metrics: dict[str, Any] | None = None
    last_change: float = 0.0

    @property
    def source(self) -> str:
        return str(self.meta.get("source") or "report file")

    @property
    def label(self) -> str:
        task = self.meta.get("task")
        return f"{self.trial_id} ({task})" if task and task != "command" else self.trial_id


class LiveWatcher:
    """What the app follows: every mirrored trial of the live folder and the report files it is
    given. :meth:`poll` (a timer in the app calls it) returns the new events per trial, oldest
    first, and updates each :class:`Followed`. Reads are bounded by the tails' chunk size.

    A bare report file (:meth:`follow`) is over when it sends ``end``, or after ``idle_seconds``
    without a new line."""

    def __init__(self, folder: Path | None = None, idle_seconds: float = 600.0, recent: float = 3600.0) -> None:
        self.folder = folder
        self.idle_seconds = idle_seconds
        self.recent = recent
        self.trials: dict[str, Followed] = {}
        self._files: dict[str, Path] = {}
        self._forgotten: set[str] = set()

    def follow(self, path: str | Path) -> Followed:
        """Follow a report file that nothing mirrors (a script started elsewhere with
        ``LRBENCH_REPORT``); its stop file is the report's name plus ``.stop``."""
        path = Path(path).expanduser().resolve()
        for item in self.trials.values():
            if item.lines == path:
                return item
        key = file_trial_id(str(path))
        while key in self.trials:
            key += "+"
        item = Followed(key, {"stop": str(path) + ".stop", "source": "report file"}, path, ReportTail(path),
                        last_change=time.monotonic())
        self.trials[key] = item
        self._files[key] = path
        return item

    def forget(self, trial_id: str) -> None:
        """Stop following a trial (an ended one stays forgotten; a running one comes back)."""
        item = self.trials.pop(trial_id, None)
        self._files.pop(trial_id, None)
        if item is not None and not item.running:
            self._forgotten.add(trial_id)

    def poll(self) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {}
        for entry in scan(self.folder, since=self.recent):
            if entry.trial_id in self._forgotten:
                continue
            item = self.trials.get(entry.trial_id)
            if item is None:
                if not entry.running and entry.meta.get("status") in (None, "running"):
                    continue  # abandoned before the app saw it
                item = Followed(entry.trial_id, entry.meta, entry.lines, ReportTail(entry.lines),
                                steps=entry.meta.get("steps") if isinstance(entry.meta.get("steps"), int) else None,
                                last_change=time.monotonic())
                self.trials[entry.trial_id] = item
            elif item.running:
                item.meta = entry.meta
            events = self._read(item, final=not entry.running)
            if events:
                out[item.trial_id] = events
            if item.running and not entry.running:
                item.running = False
                status = entry.meta.get("status")
                item.status = str(status) if status not in (None, "running") else "lost"
        for key in list(self._files):
            item = self.trials[key]
            if not item.running:
                continue
            events = self._read(item, final=False)
            if events:
                out[key] = events
            if item.status != "running" or time.monotonic() - item.last_change > self.idle_seconds:
                item.running = False
                if item.status == "running":
                    item.status = "lost"
        return out

    def _read(self, item: Followed, final: bool) -> list[Event]:
        events = []
        for line in item.tail.read(final=final):
            event = parse_line(line)
            if event is None:
                continue
            events.append(event)
            item.last_change = time.monotonic()
            d = event.data
            if event.type == "hello" and isinstance(d.get("steps"), int):
                item.steps = d["steps"]
            elif event.type == "step":
                item.last_step, item.last_loss, item.last_lr = d.get("step"), d.get("loss"), d.get("lr")
            elif event.type == "eval":
                item.metrics = d.get("metrics") if isinstance(d.get("metrics"), dict) else item.metrics
            elif event.type == "end":
                item.status = str(d.get("status"))
                item.metrics = d.get("metrics") if isinstance(d.get("metrics"), dict) and d.get("metrics") else item.metrics
        return events
