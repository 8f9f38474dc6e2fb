"""The policy database: studies, trials and recipes in one TinyDB JSON file.

>>> db = PolicyDB(tmp / "policies.json", registry=registry)  # doctest: +SKIP
>>> with db.batch():                               # one atomic write for many adds
...     db.add_study({"id": "s1", "name": "digits lr"})
...     db.add_trial({"id": "t1", "study": "s1", "task": "digits", ...})
>>> db.recommend("digits", k=3)                    # top policies, their metric and cost
>>> db.export("share.json.gz", study_ids=["s1"])   # versioned document, see docs/format.md
>>> db.import_file("share.json.gz", dry_run=True)  # validates every field, writes nothing

How it stays safe (see ``docs/database.md``): the file is TinyDB's JSON layout, written only
through :class:`~lrbench_gui.core.db.storage.AtomicJSONStorage` (temp file, fsync, rename) once
per :meth:`PolicyDB.batch`, under a lock file that stops two processes writing at once. Before
each write the database re-reads the file if another process replaced it, so two writers never
lose each other's records. Imports and migrations take a backup first; a file that cannot be
read is refused with the latest backup named, never replaced.

Records handed out by the read methods are the stored objects: treat them as read-only.
"""

from __future__ import annotations

import copy
import gzip
import os
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tinydb import TinyDB, where

from lrbench_gui import __version__
from lrbench_gui.core.db import migrations
from lrbench_gui.core.db.curves import unpack
from lrbench_gui.core.db.document import DocumentError, encode_document, read_document
from lrbench_gui.core.db.fields import FieldError
from lrbench_gui.core.db.migrations import META_TABLE, new_meta, normalized_seeds, parse_database
from lrbench_gui.core.db.query import lr_range as _lr_range
from lrbench_gui.core.db.query import recommend as _recommend
from lrbench_gui.core.db.query import trial_row
from lrbench_gui.core.db.storage import (
    AtomicJSONStorage,
    DatabaseCorrupt,
    DatabaseError,
    DatabaseLocked,
    DatabaseTooNew,
    FileLock,
    atomic_write_bytes,
    file_signature,
    list_backups,
    make_backup,
    remove_stale_temps,
)
from lrbench_gui.core.db.transfer import ON_CONFLICT, TABLE_WORD, ImportRefused, ImportReport, Validated, plan_import, validate_import
from lrbench_gui.core.db.validate import TABLES, normalize_record
from lrbench_gui.core.paths import default_db_path
from lrbench_gui.core.records import StudyRecord, TrialRecord
from lrbench_gui.core.registry import Registry

__all__ = [
    "PolicyDB",
    "DatabaseError",
    "DatabaseLocked",
    "DatabaseCorrupt",
    "DatabaseTooNew",
    "RecordInvalid",
    "ImportRefused",
    "ImportReport",
    "DEFAULT_LOCK_TIMEOUT",
]

DEFAULT_LOCK_TIMEOUT = 10.0


class RecordInvalid(DatabaseError, ValueError):
    """A record handed to ``add_*`` was refused; the message names the record and field."""


class PolicyDB:
    """The database at ``path`` (default: ``$LRBENCH_DB`` or the user data folder).

    Opening reads the whole file (missing: an empty database with the seed recipes, written on
    the first change) and migrates an older schema after a backup. ``lock_timeout`` is how long
    a write waits for another process's write to finish.

    ``registry`` is what the database knows of policies: the specs of added and imported
    records whose policy it has are validated by that policy's schema, and labels name the
    parameter whose role is the LR. A policy it does not have, and every policy when
    ``registry`` is None, is stored as written with its parameters checked only as a free-form
    object, and an import report lists its name. The edges (CLI, app) pass the installed
    plugins' registry; the database never looks it up itself.

    Thread-safe within a process; across processes, writers take turns through the lock file.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, registry: Registry | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = Path(path).expanduser().absolute() if path is not None else default_db_path().absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.registry = registry
        self._lock = FileLock(self.lock_path, lock_timeout)
        self._mutex = threading.RLock()
        self._depth = 0
        self._sig: tuple | None = None
        self._storage: AtomicJSONStorage
        self._tdb: TinyDB
        self.schema = migrations.SCHEMA_VERSION
        self._load()
        if self.schema < migrations.SCHEMA_VERSION:
            self._migrate()

    def __repr__(self) -> str:
        return f"PolicyDB({str(self.path)!r})"

    def __enter__(self) -> "PolicyDB":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between calls; kept so ``with PolicyDB(...)`` reads naturally."""

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def _load(self) -> None:
        """(Re)read the file into memory; a missing file is a fresh, seeded database."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            seeds = {str(i): r for i, r in enumerate(normalized_seeds(), 1)}
            data = {META_TABLE: {"1": new_meta()}, "studies": {}, "trials": {}, "policies": seeds}
            self._install(data, None, migrations.SCHEMA_VERSION)  # the first write creates the file
            return
        except OSError as exc:
            raise DatabaseError(f"cannot read the database {self.path}: {exc.strerror or exc}") from None
        with f:
            st = os.fstat(f.fileno())
            raw = f.read()
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        data, schema = parse_database(raw, self.path)
        self._install(data, sig, schema)

    def _install(self, data: dict[str, Any], sig: tuple | None, schema: int) -> None:
        self._storage = AtomicJSONStorage(self.path, data)
        self._tdb = TinyDB(storage=lambda: self._storage)
        self._sig = sig
        self.schema = schema

    def _sync(self) -> None:
        """Re-read the file if another process replaced it since we read or wrote it."""
        if file_signature(self.path) != self._sig:
            self._load()
            if self.schema < migrations.SCHEMA_VERSION:
                raise DatabaseError(f"the database {self.path} was replaced by an older schema version; open it again to migrate it")

    def _migrate(self) -> None:
        with self.batch():
            target = migrations.SCHEMA_VERSION
            if self.schema >= target:
                return  # another process migrated it while we waited for the lock
            make_backup(self.path, f"migrate-v{self.schema}")
            data = self._storage.data
            version = self.schema
            try:
                while version < target:
                    data = migrations.MIGRATIONS[version](data)
                    version += 1
            except DatabaseError as exc:
                raise DatabaseError(f"cannot migrate the database {self.path} to schema {target}: {exc}; the file was left as it is") from None
            self._storage.write(data)
            self._tdb = TinyDB(storage=lambda: self._storage)
            self.schema = version

    @contextmanager
    def batch(self) -> Iterator["PolicyDB"]:
        """Group changes into one atomic write, under the lock; nested batches join the outer one.

        On entry the lock is taken (waiting up to ``lock_timeout``) and the file is re-read if
        another process changed it. If an exception leaves the outermost batch, its changes are
        discarded and the file is not touched.
        """
        with self._mutex:
            if self._depth == 0:
                self._lock.acquire()
                try:
                    self._sync()
                    remove_stale_temps(self.path)
                except BaseException:
                    self._lock.release()
                    raise
            self._depth += 1
            ok = False
            try:
                yield self
                ok = True
            finally:
                self._depth -= 1
                if self._depth == 0:
                    try:
                        if self._storage.dirty:
                            if ok:
                                self._storage.flush()
                                self._sig = file_signature(self.path)
                            else:
                                self._load()
                    except BaseException:
                        self._load()
                        raise
                    finally:
                        self._lock.release()

    def _table(self, name: str):
        return self._tdb.table(name)

    def _docs(self, table: str) -> dict[str, dict[str, Any]]:
        return self._storage.data.get(table, {})

    # Adding records.

    def add(self, table: str, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        """Validate and store one record of ``table``; returns the stored (normalized) record.

        Adding a record identical to a stored one (same hash) is a no-op. A different record
        under an existing id is refused unless ``replace``.
        """
        return self.add_many(table, [record], replace=replace)[0]

    def add_study(self, record: dict[str, Any], *, replace: bool = False) -> StudyRecord:
        return self.add("studies", record, replace=replace)  # type: ignore[return-value]

    def add_trial(self, record: dict[str, Any], *, replace: bool = False) -> TrialRecord:
        return self.add("trials", record, replace=replace)  # type: ignore[return-value]

    def add_policy(self, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        return self.add("policies", record, replace=replace)

    def add_many(self, table: str, records: list[dict[str, Any]], *, replace: bool = False) -> list[dict[str, Any]]:
        """Validate and store many records of one table in one write."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        word = TABLE_WORD[table]
        normalized = []
        for i, rec in enumerate(records):
            try:
                normalized.append(normalize_record(table, rec, self.registry).record)
            except FieldError as exc:
                rid = rec.get("id") if isinstance(rec, dict) else None
                raise RecordInvalid(f"{word} {rid!r}: {exc}" if rid is not None else f"{word} #{i}: {exc}") from None
        with self.batch():
            index = {doc["id"]: (int(doc_id), doc) for doc_id, doc in self._docs(table).items()}
            studies = {doc["id"] for doc in self._docs("studies").values()}
            out, new, remove = [], [], []
            for rec in normalized:
                if table == "trials" and rec["study"] is not None and rec["study"] not in studies:
                    raise RecordInvalid(f"trial {rec['id']!r}: field study: no study {rec['study']!r} in {self.path}")
                found = index.get(rec["id"])
                if found is not None:
                    if found[1]["hash"] == rec["hash"]:
                        out.append(found[1])
                        continue
                    if not replace:
                        raise RecordInvalid(f"{word} {rec['id']!r} already exists with different content (pass replace=True to overwrite it)")
                    remove.append(found[0])
                index[rec["id"]] = (-1, rec)
                new.append(rec)
                out.append(rec)
            if remove:
                self._table(table).remove(doc_ids=remove)
            if new:
                self._table(table).insert_multiple(new)
        return out

    # Reading.

    def get(self, record_id: str, table: str | None = None) -> dict[str, Any] | None:
        """A copy of the record with this id (trials, then studies, then policies), or None."""
        with self._mutex:
            self._sync()
            for t in (table,) if table else ("trials", "studies", "policies"):
                for doc in self._docs(t).values():
                    if doc.get("id") == record_id:
                        out = copy.deepcopy(doc)
                        out["_table"] = t
                        return out
        return None

    def records(self, table: str) -> list[dict[str, Any]]:
        """Every record of ``table`` (the stored objects: do not modify them)."""
        with self._mutex:
            self._sync()
            return list(self._docs(table).values())

    def trials(self, *, task: str | None = None, study: str | None = None, status: str | None = None) -> list[TrialRecord]:
        """Trials, filtered; uses TinyDB's query (and its cache) for the task."""
        with self._mutex:
            self._sync()
            if task is not None:
                found = self._table("trials").search(where("task") == task)
            else:
                found = list(self._docs("trials").values())
        return [t for t in found if (study is None or t.get("study") == study) and (status is None or t.get("status") == status)]

    def studies(self) -> list[StudyRecord]:
        return self.records("studies")  # type: ignore[return-value]

    def policies(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.records("policies") if kind is None or p.get("kind") == kind]

    def tasks(self) -> dict[str, int]:
        """Task name -> number of trials."""
        return dict(sorted(Counter(t["task"] for t in self.records("trials")).items()))

    def trial_rows(self) -> list[dict[str, Any]]:
        """One flat row per trial for tables (see :func:`lrbench_gui.core.db.query.trial_row`)."""
        return [trial_row(t, self.registry) for t in self.records("trials")]

    def curves(self, trial_id: str) -> dict[str, tuple[Any, Any]]:
        """The decoded curves of a trial: name -> (steps int64 array, values float32 array)."""
        with self._mutex:
            self._sync()
            for doc in self._docs("trials").values():
                if doc.get("id") == trial_id:
                    return {name: unpack(c) for name, c in (doc.get("curves") or {}).items()}
        raise KeyError(f"no trial {trial_id!r} in {self.path}")

    def recommend(self, task: str, *, k: int = 5, model_family: str | None = None, model_size: str | None = None, metric: str | None = None) -> dict[str, Any]:
        """The top ``k`` policies for ``task`` (see :func:`lrbench_gui.core.db.query.recommend`)."""
        return _recommend(self.trials(task=task), task, k=k, model_family=model_family, model_size=model_size, metric=metric, registry=self.registry)

    def lr_range(self, task: str, *, model_family: str | None = None, model_size: str | None = None, metric: str | None = None) -> dict[str, Any]:
        """What LR range worked for ``task`` (see :func:`lrbench_gui.core.db.query.lr_range`)."""
        return _lr_range(self.trials(task=task), task, model_family=model_family, model_size=model_size, metric=metric, registry=self.registry)

    def stats(self) -> dict[str, Any]:
        with self._mutex:
            self._sync()
            trials = list(self._docs("trials").values())
            counts = {t: len(self._docs(t)) for t in TABLES}
            meta = self._docs(META_TABLE).get("1", {})
        backups = list_backups(self.path)
        return {
            "path": str(self.path),
            "exists": self.path.exists(),
            "bytes": self.path.stat().st_size if self.path.exists() else 0,
            "schema": self.schema,
            "created": meta.get("created"),
            "counts": counts,
            "tasks": dict(sorted(Counter(t["task"] for t in trials).items())),
            "statuses": dict(sorted(Counter(t["status"] for t in trials).items())),
            "backups": len(backups),
            "latest_backup": str(backups[-1]) if backups else None,
        }

    # Backups, export, import.

    def backup(self, dest: str | os.PathLike | None = None, reason: str = "manual") -> Path:
        """Copy the database file now (into its backup folder unless ``dest``); returns the copy."""
        with self.batch():  # the lock keeps another writer from replacing the file mid-copy
            made = make_backup(self.path, reason, Path(dest) if dest is not None else None)
        if made is None:
            raise DatabaseError(f"there is no database file at {self.path} yet, so nothing to back up")
        return made

    def latest_backup(self) -> Path | None:
        backups = list_backups(self.path)
        return backups[-1] if backups else None

    def export_bytes(self, study_ids: list[str] | None = None, *, include_policies: bool = True) -> tuple[bytes, dict[str, int]]:
        """The export document (see docs/format.md): studies, their trials, and the policies."""
        with self._mutex:
            self._sync()
            studies = list(self._docs("studies").values())
            trials = list(self._docs("trials").values())
            policies = list(self._docs("policies").values()) if include_policies else []
        if study_ids is not None:
            wanted = list(dict.fromkeys(study_ids))
            have = {s["id"] for s in studies}
            missing = [s for s in wanted if s not in have]
            if missing:
                raise DatabaseError(f"no study {missing[0]!r} in {self.path} (studies: {', '.join(sorted(have)) or 'none'})")
            keep = set(wanted)
            studies = [s for s in studies if s["id"] in keep]
            trials = [t for t in trials if t.get("study") in keep]
        tables = {
            "studies": sorted(studies, key=lambda r: r["id"]),
            "trials": sorted(trials, key=lambda r: r["id"]),
            "policies": sorted(policies, key=lambda r: r["id"]),
        }
        data = encode_document(tables, app_version=__version__, schema=migrations.SCHEMA_VERSION)
        return data, {t: len(r) for t, r in tables.items()}

    def export(self, dest: str | os.PathLike, study_ids: list[str] | None = None, *, include_policies: bool = True) -> dict[str, Any]:
        """Write the export document to ``dest`` atomically; gzip when the name ends in ``.gz``.

        The output is deterministic (records sorted by id, no timestamps, gzip mtime 0), so the
        same content exports to the same bytes.
        """
        dest = Path(dest)
        data, counts = self.export_bytes(study_ids, include_policies=include_policies)
        if dest.name.endswith(".gz"):
            data = gzip.compress(data, compresslevel=6, mtime=0)
        atomic_write_bytes(dest, data)
        return {"path": str(dest), "bytes": len(data), "counts": counts}

    def import_file(self, src: str | os.PathLike, *, dry_run: bool = False, on_conflict: str = "refuse") -> ImportReport:
        """Import an export document, all or nothing.

        Every field of every record is validated before anything is written. A record whose id
        is here with the same hash is skipped; with a different hash it is a conflict:
        ``on_conflict`` ``"refuse"`` (the default) refuses the import, ``"keep"`` keeps the local
        record, ``"replace"`` overwrites it. (Seed recipes always keep the local version.)
        Raises :class:`ImportRefused` with the full report when anything is refused; the
        database is then untouched. A backup is taken before a write.
        """
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be refuse, keep or replace, got {on_conflict!r}")
        path = Path(src)
        report = ImportReport(file=str(path), dry_run=dry_run)
        try:
            doc = read_document(path)
        except DocumentError as exc:
            report.refused.append(exc.problem)
            raise ImportRefused(report) from None
        records = validate_import(doc, self.registry, report)
        if report.refused:
            raise ImportRefused(report)
        if dry_run:
            with self._mutex:
                self._sync()
                self._plan(records, report, on_conflict)
            if report.refused:
                raise ImportRefused(report)
            return report
        with self.batch():
            plan = self._plan(records, report, on_conflict)
            if report.refused:
                raise ImportRefused(report)
            if any(plan["new"].values()):
                made = make_backup(self.path, "import")
                report.backup = str(made) if made else None
                for table in TABLES:
                    if plan["remove"][table]:
                        self._table(table).remove(doc_ids=plan["remove"][table])
                    if plan["new"][table]:
                        self._table(table).insert_multiple(plan["new"][table])
        return report

    def _plan(self, records: Validated, report: ImportReport, on_conflict: str) -> dict[str, Any]:
        """Decide, against the database as it is now, what each validated record does."""
        seeds = {s["id"] for s in normalized_seeds()}
        return plan_import(records, self._docs, report, on_conflict, seeds)
