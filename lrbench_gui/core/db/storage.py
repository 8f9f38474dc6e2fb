"""How the policy database file is written: atomically, under a lock, with backups.

TinyDB's own ``JSONStorage`` rewrites the whole file on every insert, in place, so inserting n
records costs O(n^2) and a crash mid-write leaves half a file. :class:`AtomicJSONStorage` keeps
the data in memory and writes only when the database flushes a transaction (one write per
batch, not per record). A small batch into a large database is appended to the write-ahead
journal beside the file (:mod:`lrbench_gui.core.db.journal`: one fsync'd line); anything else,
and every compaction of the journal, rewrites the whole document: a temporary file in the same
folder that is fsynced and then renamed over the database (``os.replace`` is atomic), followed
by an fsync of the folder. A killed process leaves either the old file or the new one, plus at
worst a stray temporary file that the next writer removes, or a torn last journal line that
every reader ignores.

Writes go to the file a symlinked database path points to (the link is kept), and a file or
folder the user made read-only (no write permission bit) is never written, even by root.

:class:`FileLock` is an advisory ``flock`` on ``<db>.lock``; the holder writes its pid, host and
command into it, so a second writer can say who holds it while it waits. Readers take no lock:
every state of the files they can see is complete.
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
from typing import Any, Callable

from tinydb.storages import Storage

from lrbench_gui.core.db import journal

__all__ = [
    "AtomicJSONStorage",
    "FileLock",
    "DatabaseError",
    "DatabaseLocked",
    "DatabaseCorrupt",
    "DatabaseTooNew",
    "DatabaseReadOnly",
    "DatabaseWriteError",
    "atomic_write_bytes",
    "write_target",
    "check_writable",
    "os_error_text",
    "file_signature",
    "make_backup",
    "list_backups",
    "remove_stale_temps",
    "KEEP_BACKUPS",
]

KEEP_BACKUPS = 10
#: seconds a writer waits for the lock before it says so
WAIT_NOTICE_AFTER = 0.5

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


class DatabaseWriteError(DatabaseError):
    """The operating system refused a write (permissions, a full disk...); nothing was changed."""


class DatabaseReadOnly(DatabaseWriteError):
    """The database file or its folder is read-only; it is not written, and never replaced."""


def os_error_text(exc: OSError) -> str:
    """An OS error in a few words (``No space left on device``), without the errno prefix."""
    return exc.strerror or str(exc) or type(exc).__name__


def write_target(path: Path) -> Path:
    """The file a write to ``path`` changes: the end of its chain of symlinks (the path itself
    when it is not a link). A write replaces that file and keeps the links pointing at it."""
    return Path(os.path.realpath(path))


def _read_only(st_mode: int) -> bool:
    return st_mode & 0o222 == 0


def check_writable(target: Path) -> None:
    """Refuse, in one line, to write ``target`` when it or its folder is read-only.

    Read-only means no write permission bit at all (``chmod a-w``): the user's explicit wish,
    honoured even for root, whom the kernel would let through. Anything else is left to the
    operating system, whose refusal becomes a :class:`DatabaseWriteError` where it happens.
    """
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise DatabaseWriteError(f"cannot write the database {target}: {os_error_text(exc)}") from None
    if st is not None:
        import stat as _stat

        if _stat.S_ISDIR(st.st_mode):
            raise DatabaseWriteError(f"the database path {target} is a folder, not a file; give a file name (e.g. {target / 'policies.json'})")
        if _read_only(st.st_mode):
            raise DatabaseReadOnly(
                f"the database {target} is read-only (mode {st.st_mode & 0o777:04o}); it was not changed "
                f"(chmod u+w {target} to allow writes)"
            )
    folder = target.parent
    try:
        fst = os.stat(folder)
    except FileNotFoundError:
        return  # created on the first write
    except OSError as exc:
        raise DatabaseWriteError(f"cannot write the database {target}: {os_error_text(exc)}") from None
    if _read_only(fst.st_mode):
        raise DatabaseReadOnly(
            f"the folder {folder} of the database is read-only (mode {fst.st_mode & 0o777:04o}); nothing was written "
            f"(chmod u+w {folder} to allow writes)"
        )


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
    owner (:class:`~lrbench_gui.core.db.PolicyDB`) flushes once per transaction, under the lock,
    after :meth:`begin` noted the tables as they were. :meth:`flush` appends what changed to the
    journal when :meth:`can_append` (the file is large, has a generation, the journal is not due
    for compaction and nothing asked for a rewrite); otherwise it rewrites the whole document
    with a new generation and removes the journal. ``path`` is the file written (the target of
    a symlinked database path).
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = Path(path)
        self.journal = journal.journal_path(self.path)
        self.data = data
        self.dirty = False
        self.rewrite = False  # the next flush rewrites the file (set for imports, migrations)
        self.base_bytes = 0  # size of the file as read or last written (0: none yet)
        self.journal_end = 0  # end of the journal's good part (0: no journal for this file)
        self.journal_stale = False  # a journal of another generation lies beside the file
        self.journal_after = journal.JOURNAL_AFTER_BYTES
        self._before: dict[str, dict[str, Any]] = {}

    def read(self) -> dict[str, Any]:
        return self.data

    def write(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dirty = True

    def generation(self) -> str | None:
        meta = self.data.get("_meta", {}).get("1")
        gen = meta.get("generation") if isinstance(meta, dict) else None
        return gen if isinstance(gen, str) else None

    def begin(self) -> None:
        """Note the tables as they are now: the next append writes only what changes after."""
        self._before = {name: dict(table) for name, table in self.data.items()}

    def can_append(self) -> bool:
        return (
            not self.rewrite
            and not self.journal_stale
            and self.base_bytes > 0
            and self.base_bytes >= self.journal_after
            and self.generation() is not None
            and self.journal_end < journal.compact_after(self.base_bytes)
        )

    def serialize(self) -> bytes:
        """The whole document, under a new generation (a journal of the old one no longer applies)."""
        meta = self.data.get("_meta", {}).get("1")
        if isinstance(meta, dict):
            meta["generation"] = journal.new_generation()
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")

    def flush(self) -> None:
        if self.can_append():
            entry = journal.diff_tables(self._before, self.data)
            if entry is not None:
                self.journal_end = journal.append_entry(self.journal, entry, self.generation(), self.journal_end)  # type: ignore[arg-type]
        else:
            self.compact()
        self.dirty = False
        self.begin()

    def compact(self) -> None:
        """Rewrite the whole document (folding the journal into it), then remove the journal."""
        data = self.serialize()
        atomic_write_bytes(self.path, data)
        self.base_bytes = len(data)
        self.rewrite = False
        if self.journal_end or self.journal.exists():
            try:
                os.unlink(self.journal)
            except FileNotFoundError:
                pass
            _fsync_dir(self.path.parent)
        self.journal_end = 0

    def close(self) -> None:
        pass


class FileLock:
    """An exclusive advisory lock on ``<db>.lock``, waiting up to ``timeout`` seconds.

    While it waits (after :data:`WAIT_NOTICE_AFTER` seconds) it tells ``on_wait`` once, in one
    line, who holds the lock and how long it will wait; the CLI prints that line on stderr, the
    app shows it in its status bar. A lock file it may not write (another user's) is locked
    read-only: ``flock`` needs no write permission, only the holder's note is left out.
    """

    def __init__(self, path: Path, timeout: float = 60.0, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.on_wait = on_wait
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def database(self) -> Path:
        return self.path.with_suffix("") if self.path.suffix == ".lock" else self.path

    def holder(self) -> str:
        """Who holds the lock, in words, from what the holder wrote into the file."""
        try:
            with open(self.path, "rb") as f:
                info = json.loads(f.read(4096).decode("utf-8", "replace") or "{}")
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict) or "pid" not in info:
            return "another process"
        text = f"pid {str(info.get('pid'))[:12]}"
        if info.get("host") and info.get("host") != socket.gethostname():
            text += f" on {str(info['host'])[:64]}"
        if info.get("command"):
            text += f" ({str(info['command'])[:80]})"
        if info.get("since"):
            text += f" since {str(info['since'])[:32]}"
        return text

    def _open(self) -> tuple[int, bool]:
        """The lock file's descriptor, and whether it is writable; DatabaseError in one line."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseWriteError(f"cannot create the folder of the database lock {self.path}: {os_error_text(exc)}") from None
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), True
        except IsADirectoryError:
            raise DatabaseWriteError(f"the database lock {self.path} is a folder; remove it (rmdir {self.path}) so writers can take turns") from None
        except PermissionError as exc:
            try:
                return os.open(self.path, os.O_RDONLY), False
            except OSError:
                owner = ""
                try:
                    owner = f" (owned by uid {os.stat(self.path).st_uid})"
                except OSError:
                    pass
                raise DatabaseWriteError(f"cannot open the database lock {self.path}{owner}: {os_error_text(exc)}") from None
        except OSError as exc:
            raise DatabaseWriteError(f"cannot open the database lock {self.path}: {os_error_text(exc)}") from None

    def acquire(self, timeout: float | None = None) -> None:
        if self._fd is not None:
            raise RuntimeError("lock already held by this object")
        wait = self.timeout if timeout is None else timeout
        fd, writable = self._open()
        start = time.monotonic()
        deadline = start + max(0.0, wait)
        delay = 0.01
        told = False
        try:
            while not self._try_lock(fd):
                now = time.monotonic()
                if now >= deadline:
                    raise DatabaseLocked(
                        f"the database {self.database} is being written by {self.holder()}; waited {wait:g} s. "
                        "Try again when it has finished (or close the other lrbench), or wait longer with --wait SECONDS."
                    )
                if not told and now - start >= WAIT_NOTICE_AFTER and self.on_wait is not None:
                    told = True
                    self.on_wait(f"waiting for the database lock held by {self.holder()}; up to {wait:g} s (--wait SECONDS)")
                time.sleep(min(delay, max(0.0, deadline - now)))
                delay = min(0.1, delay * 2)
        except BaseException:
            os.close(fd)
            raise
        if writable:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv and sys.argv[0] else "python",
            }
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0) if hasattr(os, "pwrite") else os.write(fd, json.dumps(info).encode())
            except OSError:  # a full disk: the lock still holds without the note
                pass
        self._fd = fd
        self._writable = writable

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
        if getattr(self, "_writable", False):
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


def check_output_path(dest: Path, protected: list[Path], what: str) -> Path:
    """The file to write ``what`` (an export, a backup) to, refusing in one line a folder and
    any of the ``protected`` files (the database, its journal, its lock), also when ``dest``
    reaches one through a symlink or is a hard link to it."""
    if not str(dest).strip():
        raise DatabaseError(f"the {what} file name is empty; give one with -o FILE")
    dest = Path(dest).expanduser()
    if dest.is_dir():
        raise DatabaseError(f"the {what} destination {dest} is a folder; give a file name (e.g. {dest / ('policies-' + what + '.json')})")
    target = write_target(dest)
    for p in protected:
        same = target == write_target(p)
        if not same and dest.exists() and p.exists():
            try:
                same = os.path.samefile(dest, p)
            except OSError:
                same = False
        if same:
            raise DatabaseError(f"refusing to write the {what} over {p}, which is part of the database; choose another file with -o")
    return target


def move_aside(path: Path, database: Path, reason: str) -> Path | None:
    """Move ``path`` (a stale journal) into the database's backup folder rather than delete
    it: what it holds may be the only copy of some records. Returns where it went."""
    if not path.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = backup_dir(database) / f"{path.name}-{stamp}-{reason}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    _fsync_dir(path.parent)
    return dest


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
