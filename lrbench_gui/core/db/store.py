"""The database file as one transactional store: open, read what others wrote, write in batches.

:class:`DatabaseFile` is the half of :class:`~lrbench_gui.core.db.policy_db.PolicyDB` that
knows files, not records: it resolves the path (through symlinks to the file they point to;
an empty path or a folder refused), reads the file and replays its journal
(:mod:`~lrbench_gui.core.db.journal`), keeps what it read in sync with what other processes
write (only the journal's new lines when only they changed), migrates an older schema, and
runs :meth:`~DatabaseFile.batch`: the lock, one write at the end (an append to the journal or
an atomic rewrite, :class:`~lrbench_gui.core.db.storage.AtomicJSONStorage`), every OS error as
one :class:`~lrbench_gui.core.db.storage.DatabaseWriteError` line, nothing half-written.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tinydb import TinyDB

from lrbench_gui.core.db import journal, migrations
from lrbench_gui.core.db.migrations import META_TABLE, new_meta, normalized_seeds, parse_database
from lrbench_gui.core.db.storage import (
    AtomicJSONStorage,
    DatabaseError,
    DatabaseWriteError,
    FileLock,
    check_writable,
    file_signature,
    make_backup,
    move_aside,
    os_error_text,
    remove_stale_temps,
    write_target,
)
from lrbench_gui.core.paths import default_db_path

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = ["DatabaseFile", "DEFAULT_LOCK_TIMEOUT"]

#: seconds a write waits for another process's write to finish (``--wait`` on the CLI)
DEFAULT_LOCK_TIMEOUT = 60.0


def _tell_stderr(line: str) -> None:
    print(f"lrbench: {line}", file=sys.stderr, flush=True)


class DatabaseFile:
    """The file at ``path`` and its journal, lock and backups; see the module docstring and
    :class:`~lrbench_gui.core.db.policy_db.PolicyDB` for the arguments."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        registry: "Registry | None" = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_wait: Callable[[str], None] | None = _tell_stderr,
        journal_after: int | None = None,
    ) -> None:
        if path is not None and not str(path).strip():
            raise DatabaseError("the database path is empty; give a file name, or leave it out for the default (lrbench db path)")
        self.path = Path(path).expanduser().absolute() if path is not None else default_db_path().absolute()
        self.target = write_target(self.path)
        if self.target.is_dir():
            raise DatabaseError(f"the database path {self.path} is a folder, not a file; give a file name (e.g. {self.path / 'policies.json'})")
        self.lock_path = self.target.with_name(self.target.name + ".lock")
        self.journal_path = journal.journal_path(self.target)
        self.registry = registry
        self._lock = FileLock(self.lock_path, lock_timeout, on_wait)
        self._journal_after = journal.JOURNAL_AFTER_BYTES if journal_after is None else journal_after
        self._mutex = threading.RLock()
        self._depth = 0
        self._sig: tuple | None = None
        self._jsig: tuple | None = None
        self._storage: AtomicJSONStorage
        self._tdb: TinyDB
        self.schema = migrations.SCHEMA_VERSION
        self._load()
        if self.schema < migrations.SCHEMA_VERSION:
            self._migrate()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __enter__(self) -> "DatabaseFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Fold the journal into the file if there is one (best effort: if the lock is busy or
        the file cannot be written, the journal stays, and is as safe). Nothing stays open."""
        try:
            self.compact(timeout=0.0)
        except DatabaseError:
            pass

    def compact(self, timeout: float | None = None) -> bool:
        """Rewrite the file with the journal folded in, under the lock; False if there was none."""
        with self._mutex:
            if not self._storage.journal_end and not self._storage.journal_stale and self._jsig is None:
                return False
            with self.batch(timeout=timeout):
                if not self._storage.journal_end:
                    return False
                self._storage.rewrite = True
                self._storage.dirty = True
            return True

    @property
    def exists(self) -> bool:
        return self.target.exists()

    def _load(self) -> None:
        """(Re)read the file and its journal into memory; a missing file is a fresh, seeded database."""
        try:
            f = open(self.target, "rb")
        except FileNotFoundError:
            seeds = {str(i): r for i, r in enumerate(normalized_seeds(), 1)}
            data = {META_TABLE: {"1": new_meta()}, "studies": {}, "trials": {}, "policies": seeds}
            self._install(data, None, migrations.SCHEMA_VERSION)  # the first write creates the file
            self._read_journal()
            return
        except OSError as exc:
            raise DatabaseError(f"cannot read the database {self.path}: {os_error_text(exc)}") from None
        with f:
            st = os.fstat(f.fileno())
            raw = f.read()
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        data, schema = parse_database(raw, self.path)
        self._install(data, sig, schema)
        self._storage.base_bytes = len(raw)
        self._read_journal()

    def _install(self, data: dict[str, Any], sig: tuple | None, schema: int) -> None:
        self._storage = AtomicJSONStorage(self.target, data)
        self._storage.journal_after = self._journal_after
        self._tdb = TinyDB(storage=lambda: self._storage)
        self._sig = sig
        self.schema = schema

    def _read_journal(self, start: int = 0) -> None:
        """Replay the journal (from ``start``: only what another process appended since)."""
        st = self._storage
        jsig = file_signature(self.journal_path)
        try:
            read = journal.read_journal(self.journal_path, st.generation() if self._sig is not None else None, start)
            for entry in read.entries:
                journal.apply_entry(st.data, entry)
        except journal.JournalError as exc:
            raise migrations.corrupt(self.path, f"its journal {self.journal_path} is damaged: {exc}") from None
        except OSError as exc:
            raise DatabaseError(f"cannot read the database journal {self.journal_path}: {os_error_text(exc)}") from None
        st.journal_stale = read.stale
        if not read.stale:
            st.journal_end = read.end if (read.end or start == 0) else start
        if read.entries:
            self._tdb = TinyDB(storage=lambda: self._storage)  # TinyDB caches per table
        self._jsig = jsig

    def _sync(self) -> None:
        """Read what another process wrote since we read or wrote: the journal's new lines when
        only they changed, else the whole file again."""
        base = file_signature(self.target)
        jsig = file_signature(self.journal_path)
        if base == self._sig and jsig == self._jsig:
            return
        st = self._storage
        same_file = base == self._sig and base is not None and jsig is not None and not st.journal_stale
        if same_file and self._jsig is None and st.journal_end == 0:
            self._read_journal(0)  # another process began the journal
            return
        if same_file and self._jsig is not None and jsig[:2] == self._jsig[:2] and jsig[2] >= st.journal_end > 0:  # type: ignore[index]
            self._read_journal(st.journal_end)  # it appended to it
            return
        self._load()
        if self.schema < migrations.SCHEMA_VERSION:
            raise DatabaseError(f"the database {self.path} was replaced by an older schema version; open it again to migrate it")

    def _migrate(self) -> None:
        with self.batch():
            target = migrations.SCHEMA_VERSION
            if self.schema >= target:
                return  # another process migrated it while we waited for the lock
            make_backup(self.target, f"migrate-v{self.schema}")
            data = self._storage.data
            version = self.schema
            try:
                while version < target:
                    data = migrations.MIGRATIONS[version](data)
                    version += 1
            except DatabaseError as exc:
                raise DatabaseError(f"cannot migrate the database {self.path} to schema {target}: {exc}; the file was left as it is") from None
            self._storage.write(data)
            self._storage.rewrite = True
            self._tdb = TinyDB(storage=lambda: self._storage)
            self.schema = version

    @contextmanager
    def batch(self, timeout: float | None = None) -> Iterator["DatabaseFile"]:
        """Group changes into one atomic write, under the lock; nested batches join the outer one.

        On entry the database is checked writable (a read-only file or folder is refused in one
        line, before anything else), the lock is taken (waiting up to ``lock_timeout``, or
        ``timeout``) and what another process wrote since is read. If an exception leaves the
        outermost batch, its changes are discarded and nothing is written. An OS error while
        writing becomes a :class:`DatabaseWriteError` naming the file; nothing is half-written.
        """
        with self._mutex:
            if self._depth == 0:
                check_writable(self.target)
                self._lock.acquire(timeout)
                try:
                    self._sync()
                    remove_stale_temps(self.target)
                    if self._storage.journal_stale:
                        move_aside(self.journal_path, self.target, "stale-journal")
                        self._storage.journal_stale = False
                        self._storage.journal_end = 0
                        self._jsig = None
                    self._storage.begin()
                except OSError as exc:
                    self._lock.release()
                    raise DatabaseWriteError(f"cannot write the database {self.path}: {os_error_text(exc)}") from None
                except BaseException:
                    self._lock.release()
                    raise
            self._depth += 1
            ok = False
            try:
                try:
                    yield self
                except OSError as exc:
                    if self._depth > 1:
                        raise
                    raise DatabaseWriteError(f"cannot write the database {self.path}: {os_error_text(exc)}; it was left as it was") from None
                ok = True
            finally:
                self._depth -= 1
                if self._depth == 0:
                    try:
                        if self._storage.dirty:
                            if ok:
                                self._flush()
                            else:
                                self._load()
                    except BaseException:
                        self._load()
                        raise
                    finally:
                        self._lock.release()

    def _flush(self) -> None:
        try:
            self._storage.flush()
        except OSError as exc:
            where = self.journal_path if self._storage.can_append() else self.target
            raise DatabaseWriteError(f"cannot write the database {self.path} ({where.name}): {os_error_text(exc)}; it was left as it was") from None
        self._sig = file_signature(self.target)
        self._jsig = file_signature(self.journal_path)

    def _table(self, name: str):
        return self._tdb.table(name)

    def _docs(self, table: str) -> dict[str, dict[str, Any]]:
        return self._storage.data.get(table, {})

    def _protected(self) -> list[Path]:
        return [self.target, self.journal_path, self.lock_path]

    def _fold_journal(self) -> None:
        """Under the lock: rewrite the file with the journal folded in, so that a copy of the
        file is the whole database."""
        if not self._storage.journal_end:
            return
        try:
            self._storage.compact()
        except OSError as exc:
            raise DatabaseWriteError(f"cannot write the database {self.path}: {os_error_text(exc)}; it was left as it was") from None
        self._sig = file_signature(self.target)
        self._jsig = file_signature(self.journal_path)

