"""How the policy database file is written: atomically, under a lock, with backups.

TinyDB's own ``JSONStorage`` rewrites the whole file on every insert, in place, so inserting n
records costs O(n^2) and a crash mid-write leaves half a file. :class:`AtomicJSONStorage` keeps
the data in memory and writes only when the database flushes a transaction (one write per
import, not per record), always to a temporary file in the same folder that is fsynced and then
renamed over the database (``os.replace`` is atomic), followed by an fsync of the folder. A
killed process leaves either the old file or the new one, plus at worst a stray temporary file
that the next writer removes.

:class:`FileLock` is an advisory ``flock`` on ``<db>.lock``; the holder writes its pid, host and
command into it, so a second writer can say who holds it. Readers take no lock: every state of
the file they can see is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

__all__ = [
    "AtomicJSONStorage",
    "FileLock",
    "DatabaseError",
    "DatabaseLocked",
    "DatabaseCorrupt",
    "DatabaseTooNew",
    "atomic_write_bytes",
    "file_signature",
    "make_backup",
    "list_backups",
    "remove_stale_temps",
    "KEEP_BACKUPS",
]

KEEP_BACKUPS = 10

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class DatabaseError(Exception):
    """A problem with the database file or a request to it, in words fit for the user."""


class DatabaseLocked(DatabaseError):
    """Another process is writing the database; the message names it."""


class DatabaseCorrupt(DatabaseError):
    """The database file exists but cannot be read; it is left untouched."""


class DatabaseTooNew(DatabaseError):
    """The database was written by a newer lrbench whose schema this one does not know."""


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_write_bytes(path: Path, chunks: Any) -> None:
    """Write ``chunks`` (bytes or an iterable of bytes) to ``path`` atomically and durably."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(folder, _temp_prefix(path))
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(chunks, (bytes, bytearray, memoryview)):
                f.write(chunks)
            else:
                for chunk in chunks:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, _mode_for(path))
        except OSError:  # pragma: no cover
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _mkstemp(folder: Path, prefix: str) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")


def _mode_for(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temporary files a killed writer left beside ``path``. Call only under the lock."""
    removed = []
    prefix = _temp_prefix(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def file_signature(path: Path) -> tuple[int, int, int, int] | None:
    """What changes whenever the file is replaced or written; None if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that holds the data in memory and writes it only on :meth:`flush`.

    TinyDB calls :meth:`write` after each table operation; that only marks the data dirty. The
    owner (:class:`~lrbench_gui.core.db.PolicyDB`) flushes once per transaction, under the lock.
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = Path(path)
        self.data = data
        self.dirty = False

    def read(self) -> dict[str, Any]:
        return self.data

    def write(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dirty = True

    def serialize(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")

    def flush(self) -> None:
        atomic_write_bytes(self.path, self.serialize())
        self.dirty = False

    def close(self) -> None:
        pass


class FileLock:
    """An exclusive advisory lock on ``<db>.lock``, waiting up to ``timeout`` seconds."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """Who holds the lock, in words, from what the holder wrote into the file."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict) or "pid" not in info:
            return "another process"
        text = f"pid {info.get('pid')}"
        if info.get("host") and info.get("host") != socket.gethostname():
            text += f" on {info['host']}"
        if info.get("command"):
            text += f" ({str(info['command'])[:80]})"
        if info.get("since"):
            text += f" since {info['since']}"
        return text

    def acquire(self, timeout: float | None = None) -> None:
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        wait = self.timeout if timeout is None else timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, wait)
        delay = 0.01
        try:
            while not self._try_lock(fd):
                if time.monotonic() >= deadline:
                    raise DatabaseLocked(
                        f"the database {self.path.with_suffix('') if self.path.suffix == '.lock' else self.path} "
                        f"is being written by {self.holder()}; waited {wait:g} s. "
                        "Try again when it has finished (or close the other lrbench)."
                    )
                time.sleep(delay)
                delay = min(0.1, delay * 2)
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv and sys.argv[0] else "python",
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0) if hasattr(os, "pwrite") else os.write(fd, json.dumps(info).encode())
        except OSError:  # pragma: no cover - the lock still holds without the note
            pass
        self._fd = fd

    @staticmethod
    def _try_lock(fd: int) -> bool:
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except (BlockingIOError, PermissionError, OSError):
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:  # pragma: no cover
            pass
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            else:  # pragma: no cover
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def backup_dir(path: Path) -> Path:
    return path.parent / f"{path.stem}-backups"


def list_backups(path: Path) -> list[Path]:
    """Backups of the database at ``path``, oldest first."""
    folder = backup_dir(Path(path))
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(f"{Path(path).stem}-") and p.suffix == ".json")


def make_backup(path: Path, reason: str, dest: Path | None = None, keep: int | None = None) -> Path | None:
    """Copy the database file into its backup folder (or ``dest``); keep the newest ``keep``.

    Returns the backup's path, or None when there is no database file yet.
    """
    path = Path(path)
    if not path.exists():
        return None
    if dest is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        dest = backup_dir(path) / f"{path.stem}-{stamp}-{reason}.json"
        automatic = True
    else:
        automatic = False
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(dest.parent, _temp_prefix(dest))
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(dest.parent)
    keep = KEEP_BACKUPS if keep is None else keep
    if automatic and keep > 0:
        for old in list_backups(path)[:-keep]:
            try:
                old.unlink()
            except OSError:
                pass
    return dest
