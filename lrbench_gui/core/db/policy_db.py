"""The policy database: studies, trials and recipes in one TinyDB JSON file.

>>> db = PolicyDB(tmp / "policies.json")          # doctest: +SKIP
>>> with db.batch():                               # one atomic write for many adds
...     db.add_study({"id": "s1", "name": "digits lr"})
...     db.add_trial({"id": "t1", "study": "s1", "task": "digits", ...})
>>> db.recommend("digits", k=3)                    # top policies, their metric and cost
>>> db.export("share.json.gz", study_ids=["s1"])   # versioned document, see docs/format.md
>>> db.import_file("share.json.gz", dry_run=True)  # validates every field, writes nothing

How it stays safe (see ``docs/database.md``): the file is TinyDB's JSON layout, written only
through :class:`~lrbench_gui.core.db_storage.AtomicJSONStorage` (temp file, fsync, rename) once
per :meth:`PolicyDB.batch`, under a lock file that stops two processes writing at once. Before
each write the database re-reads the file if another process replaced it, so two writers never
lose each other's records. Imports and migrations take a backup first; a file that cannot be
read is refused with the latest backup named, never replaced.

Records handed out by the read methods are the stored objects: treat them as read-only.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from tinydb import TinyDB, where

from lrbench_gui import __version__
from lrbench_gui.core.db.curves import unpack
from lrbench_gui.core.db.document import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLES,
    DocumentError,
    FieldError,
    Problem,
    normalize_record,
    read_document,
)
from lrbench_gui.core.db.query import lr_range as _lr_range
from lrbench_gui.core.db.query import recommend as _recommend
from lrbench_gui.core.db.query import spec_label
from lrbench_gui.core.db.storage import (
    AtomicJSONStorage,
    DatabaseError,
    DatabaseLocked,
    FileLock,
    atomic_write_bytes,
    file_signature,
    list_backups,
    make_backup,
    remove_stale_temps,
)
from lrbench_gui.core.paths import default_db_path
from lrbench_gui.core.db.recipes import seed_policies
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
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "DEFAULT_LOCK_TIMEOUT",
]

SCHEMA_VERSION = 1
META_TABLE = "_meta"
DEFAULT_LOCK_TIMEOUT = 10.0
MAX_PROBLEMS = 50  # an import stops collecting refusals after this many
_TABLE_WORD = {"studies": "study", "trials": "trial", "policies": "policy"}


class DatabaseCorrupt(DatabaseError):
    """The database file exists but cannot be read; it is left untouched."""


class DatabaseTooNew(DatabaseError):
    """The database was written by a newer lrbench whose schema this one does not know."""


class RecordInvalid(DatabaseError, ValueError):
    """A record handed to ``add_*`` was refused; the message names the record and field."""


@dataclass
class ImportReport:
    """What an import added, skipped (already present), kept or replaced, and refused."""

    file: str
    dry_run: bool
    added: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLES})
    skipped: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLES})
    kept: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLES})
    replaced: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLES})
    refused: list[Problem] = field(default_factory=list)
    unknown_policies: list[str] = field(default_factory=list)
    added_ids: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TABLES})
    backup: str | None = None
    truncated: bool = False  # more refusals than MAX_PROBLEMS were found

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "added": self.added,
            "skipped": self.skipped,
            "kept": self.kept,
            "replaced": self.replaced,
            "refused": [p.to_json() for p in self.refused],
            "refused_truncated": self.truncated,
            "unknown_policies": self.unknown_policies,
            "backup": self.backup,
        }

    def summary(self) -> str:
        """The report in plain words, a few lines."""
        def counts(d: dict[str, int]) -> str:
            parts = [f"{n} {_TABLE_WORD[t] if n == 1 else t}" for t, n in d.items() if n]
            return ", ".join(parts) or "nothing"

        verb = "would add" if self.dry_run else "added"
        lines = []
        if self.refused:
            more = " (and more)" if self.truncated else ""
            lines.append(f"Refused: {len(self.refused)} problem(s){more}; nothing was written.")
            lines.extend(f"  {p}" for p in self.refused[:10])
            if len(self.refused) > 10:
                lines.append(f"  ... {len(self.refused) - 10} more")
        else:
            lines.append(f"{'Dry run: ' if self.dry_run else ''}{verb} {counts(self.added)}.")
            lines.append(f"Skipped (already here, same content): {counts(self.skipped)}.")
            if any(self.kept.values()):
                lines.append(f"Kept the local version of: {counts(self.kept)}.")
            if any(self.replaced.values()):
                lines.append(f"{'Would replace' if self.dry_run else 'Replaced'}: {counts(self.replaced)}.")
        if self.unknown_policies:
            lines.append(
                "Policies not installed here (stored as they are, not checked beyond their structure): "
                + ", ".join(self.unknown_policies)
            )
        if self.backup:
            lines.append(f"Backup of the previous database: {self.backup}")
        return "\n".join(lines)


class ImportRefused(DatabaseError):
    """An import that was refused as a whole; ``report.refused`` lists every problem found."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        first = str(report.refused[0]) if report.refused else "refused"
        more = len(report.refused) - 1
        super().__init__(first + (f" (and {more} more problem{'s' if more > 1 else ''}{'+' if report.truncated else ''})" if more > 0 else ""))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta() -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "created": _now(), "app": "lrbench-gui", "app_version": __version__}


_SEEDS: list[dict[str, Any]] | None = None


def _normalized_seeds() -> list[dict[str, Any]]:
    """The seed recipes, validated for structure and hashed (once per process)."""
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = [normalize_record("policies", rec, None).record for rec in seed_policies()]
    return copy.deepcopy(_SEEDS)


def _migrate_0_to_1(data: dict[str, Any]) -> dict[str, Any]:
    """A plain TinyDB file (no ``_meta``): normalize and hash every record, pack plain curves,
    add the seed recipes that are missing. Tables other than ours are kept as they are."""
    out = {k: v for k, v in data.items() if k not in TABLES and k != META_TABLE}
    for table in TABLES:
        migrated: dict[str, Any] = {}
        for doc_id, rec in (data.get(table) or {}).items():
            try:
                migrated[doc_id] = normalize_record(table, rec, None).record
            except FieldError as exc:
                rid = rec.get("id") if isinstance(rec, dict) else None
                raise DatabaseError(f"{table} record {doc_id} (id {rid!r}): {exc}") from None
        out[table] = migrated
    have = {r["id"] for r in out["policies"].values()}
    next_id = max((int(k) for k in out["policies"]), default=0) + 1
    for seed in _normalized_seeds():
        if seed["id"] not in have:
            out["policies"][str(next_id)] = seed
            next_id += 1
    out[META_TABLE] = {"1": _meta()}
    return out


#: schema version -> function turning data of that version into the next version's.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1}


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


class PolicyDB:
    """The database at ``path`` (default: ``$LRBENCH_DB`` or the user data folder).

    Opening reads the whole file (missing: an empty database with the seed recipes, written on
    the first change) and migrates an older schema after a backup. ``registry`` validates the
    specs of added and imported records (default: the installed plugins). ``lock_timeout`` is
    how long a write waits for another process's write to finish.

    Thread-safe within a process; across processes, writers take turns through the lock file.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, registry: Registry | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = Path(path).expanduser().absolute() if path is not None else default_db_path().absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._registry = registry
        self._lock = FileLock(self.lock_path, lock_timeout)
        self._mutex = threading.RLock()
        self._depth = 0
        self._sig: tuple | None = None
        self._storage: AtomicJSONStorage
        self._tdb: TinyDB
        self.schema = SCHEMA_VERSION
        self._load()
        if self.schema < SCHEMA_VERSION:
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
    def registry(self) -> Registry:
        if self._registry is None:
            from lrbench_gui.plugins import get_registry

            self._registry = get_registry()
        return self._registry

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def _load(self) -> None:
        """(Re)read the file into memory; a missing file is a fresh, seeded database."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            data = {META_TABLE: {"1": _meta()}, "studies": {}, "trials": {}, "policies": {str(i): r for i, r in enumerate(_normalized_seeds(), 1)}}
            self._install(data, None, SCHEMA_VERSION)  # the first write creates the file
            return
        except OSError as exc:
            raise DatabaseError(f"cannot read the database {self.path}: {exc.strerror or exc}") from None
        with f:
            st = os.fstat(f.fileno())
            raw = f.read()
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        data, schema = self._parse(raw)
        self._install(data, sig, schema)

    def _install(self, data: dict[str, Any], sig: tuple | None, schema: int) -> None:
        self._storage = AtomicJSONStorage(self.path, data)
        self._tdb = TinyDB(storage=lambda: self._storage)
        self._sig = sig
        self.schema = schema

    def _corrupt(self, reason: str) -> DatabaseCorrupt:
        backups = list_backups(self.path)
        if backups:
            hint = (
                f"The latest backup is {backups[-1]}; to go back to it, copy it over {self.path} "
                "(or move the damaged file away to start an empty database)."
            )
        else:
            hint = f"There is no backup in {self.path.stem}-backups/; move the damaged file away to start an empty database."
        return DatabaseCorrupt(f"the database {self.path} cannot be read ({reason}); it was left as it is. {hint}")

    def _parse(self, raw: bytes) -> tuple[dict[str, Any], int]:
        if not raw.strip():
            raise self._corrupt("the file is empty")
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except UnicodeDecodeError as exc:
            raise self._corrupt(f"not UTF-8 text at byte {exc.start}") from None
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except (ValueError, RecursionError) as exc:
            raise self._corrupt(str(exc) or "nested too deeply") from None
        if not isinstance(data, dict):
            raise self._corrupt("the file does not hold a JSON object of tables")
        for name, table in data.items():
            if not isinstance(table, dict) or not all(isinstance(doc, dict) for doc in table.values()):
                raise self._corrupt(f"table {name!r} is not a TinyDB table (an object of documents)")
        meta = data.get(META_TABLE, {}).get("1")
        if meta is None:
            if META_TABLE in data:
                raise self._corrupt(f"table {META_TABLE} has no document 1")
            return data, 0
        schema = meta.get("schema")
        if type(schema) is not int or schema < 1:
            raise self._corrupt(f"{META_TABLE}.schema must be a whole number >= 1, got {schema!r}")
        if schema > SCHEMA_VERSION:
            raise DatabaseTooNew(
                f"the database {self.path} has schema version {schema}, written by a newer lrbench "
                f"(this one, {__version__}, reads up to {SCHEMA_VERSION}); upgrade lrbench to open it"
            )
        for table in TABLES:
            data.setdefault(table, {})
        return data, schema

    def _sync(self) -> None:
        """Re-read the file if another process replaced it since we read or wrote it."""
        if file_signature(self.path) != self._sig:
            self._load()
            if self.schema < SCHEMA_VERSION:
                raise DatabaseError(f"the database {self.path} was replaced by an older schema version; open it again to migrate it")

    def _migrate(self) -> None:
        with self.batch():
            if self.schema >= SCHEMA_VERSION:
                return  # another process migrated it while we waited for the lock
            make_backup(self.path, f"migrate-v{self.schema}")
            data = self._storage.data
            version = self.schema
            try:
                while version < SCHEMA_VERSION:
                    data = MIGRATIONS[version](data)
                    version += 1
            except DatabaseError as exc:
                raise DatabaseError(f"cannot migrate the database {self.path} to schema {SCHEMA_VERSION}: {exc}; the file was left as it is") from None
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

    def add_study(self, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        return self.add("studies", record, replace=replace)

    def add_trial(self, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        return self.add("trials", record, replace=replace)

    def add_policy(self, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        return self.add("policies", record, replace=replace)

    def add_many(self, table: str, records: list[dict[str, Any]], *, replace: bool = False) -> list[dict[str, Any]]:
        """Validate and store many records of one table in one write."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        word = _TABLE_WORD[table]
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

    def trials(self, *, task: str | None = None, study: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Trials, filtered; uses TinyDB's query (and its cache) for the task."""
        with self._mutex:
            self._sync()
            if task is not None:
                found = self._table("trials").search(where("task") == task)
            else:
                found = list(self._docs("trials").values())
        return [t for t in found if (study is None or t.get("study") == study) and (status is None or t.get("status") == status)]

    def studies(self) -> list[dict[str, Any]]:
        return self.records("studies")

    def policies(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.records("policies") if kind is None or p.get("kind") == kind]

    def tasks(self) -> dict[str, int]:
        """Task name -> number of trials."""
        return dict(sorted(Counter(t["task"] for t in self.records("trials")).items()))

    def trial_rows(self) -> list[dict[str, Any]]:
        """One flat row per trial for tables: no curves, the objective metric's value, the cost."""
        rows = []
        for t in self.records("trials"):
            objective = t.get("objective") or {}
            metric = objective.get("metric")
            metrics = t.get("metrics") or {}
            if metric is None and metrics:
                metric = next(iter(metrics))
            cost = t.get("cost") or {}
            rows.append(
                {
                    "id": t["id"],
                    "study": t.get("study"),
                    "task": t["task"],
                    "kind": t.get("kind", "train"),
                    "model": (t.get("model") or {}).get("family"),
                    "policy": spec_label(t["policy"]),
                    "status": t["status"],
                    "metric": metric,
                    "value": metrics.get(metric) if metric else None,
                    "mode": objective.get("mode"),
                    "steps": cost.get("steps"),
                    "tokens": cost.get("tokens"),
                    "seconds": cost.get("seconds"),
                    "curves": sorted((t.get("curves") or {}).keys()),
                }
            )
        return rows

    def curves(self, trial_id: str) -> dict[str, tuple[Any, Any]]:
        """The decoded curves of a trial: name -> (steps int64 array, values float32 array)."""
        with self._mutex:
            self._sync()
            for doc in self._docs("trials").values():
                if doc.get("id") == trial_id:
                    return {name: unpack(c) for name, c in (doc.get("curves") or {}).items()}
        raise KeyError(f"no trial {trial_id!r} in {self.path}")

    def recommend(self, task: str, *, k: int = 5, model_family: str | None = None, model_size: str | None = None, metric: str | None = None) -> dict[str, Any]:
        """The top ``k`` policies for ``task`` (see :func:`lrbench_gui.core.db_query.recommend`)."""
        return _recommend(self.trials(task=task), task, k=k, model_family=model_family, model_size=model_size, metric=metric)

    def lr_range(self, task: str, *, model_family: str | None = None, model_size: str | None = None, metric: str | None = None) -> dict[str, Any]:
        """What LR range worked for ``task`` (see :func:`lrbench_gui.core.db_query.lr_range`)."""
        return _lr_range(self.trials(task=task), task, model_family=model_family, model_size=model_size, metric=metric)

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
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
        parts = [
            '{"format":%s,"version":%d,"app_version":%s,"schema":%d'
            % (json.dumps(FORMAT_NAME), FORMAT_VERSION, json.dumps(__version__), SCHEMA_VERSION)
        ]
        for name, records in tables.items():
            body = ",\n".join(dumps(r) for r in records)
            parts.append(f',\n"{name}":[\n{body}\n]' if records else f',\n"{name}":[]')
        parts.append("}\n")
        return "".join(parts).encode("utf-8"), {t: len(r) for t, r in tables.items()}

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
        if on_conflict not in ("refuse", "keep", "replace"):
            raise ValueError(f"on_conflict must be refuse, keep or replace, got {on_conflict!r}")
        path = Path(src)
        report = ImportReport(file=str(path), dry_run=dry_run)
        try:
            doc = read_document(path)
        except DocumentError as exc:
            report.refused.append(exc.problem)
            raise ImportRefused(report) from None
        records = self._validate_import(doc, report)
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

    def _validate_import(self, doc: dict[str, Any], report: ImportReport) -> dict[str, list[tuple[int, dict]]]:
        out: dict[str, list[tuple[int, dict]]] = {t: [] for t in TABLES}
        unknown: set[str] = set()
        registry = self.registry
        for table in TABLES:
            seen: dict[str, int] = {}
            for i, raw in enumerate(doc.get(table, [])):
                if len(report.refused) >= MAX_PROBLEMS:
                    report.truncated = True
                    return out
                rid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
                try:
                    n = normalize_record(table, raw, registry)
                except FieldError as exc:
                    report.refused.append(Problem(report.file, exc.message, table, i, rid, exc.field))
                    continue
                rid = n.record["id"]
                if rid in seen:
                    report.refused.append(Problem(report.file, f"duplicate id: {table}[{seen[rid]}] has the same id", table, i, rid, "id"))
                    continue
                seen[rid] = i
                unknown |= n.unknown_policies
                out[table].append((i, n.record))
        report.unknown_policies = sorted(unknown)
        return out

    def _plan(self, records: dict[str, list[tuple[int, dict]]], report: ImportReport, on_conflict: str) -> dict[str, Any]:
        """Decide, against the database as it is now, what each validated record does."""
        plan: dict[str, Any] = {"new": {t: [] for t in TABLES}, "remove": {t: [] for t in TABLES}}
        seeds = {s["id"] for s in _normalized_seeds()}
        study_ids = {d["id"] for d in self._docs("studies").values()} | {r["id"] for _, r in records["studies"]}
        for table in TABLES:
            index = {doc["id"]: (int(doc_id), doc["hash"]) for doc_id, doc in self._docs(table).items()}
            for i, rec in records[table]:
                if table == "trials" and rec["study"] is not None and rec["study"] not in study_ids:
                    report.refused.append(
                        Problem(report.file, f"no study {rec['study']!r} in the file or the database", table, i, rec["id"], "study")
                    )
                    continue
                found = index.get(rec["id"])
                if found is not None and found[1] == rec["hash"]:
                    report.skipped[table] += 1
                    continue
                if found is not None:
                    if on_conflict == "keep" or (table == "policies" and rec["id"] in seeds):
                        report.kept[table] += 1
                        continue
                    if on_conflict == "refuse":
                        report.refused.append(
                            Problem(
                                report.file,
                                "a record with this id is already in the database with different content "
                                "(choose --on-conflict keep or replace)",
                                table,
                                i,
                                rec["id"],
                                "id",
                            )
                        )
                        continue
                    plan["remove"][table].append(found[0])
                    report.replaced[table] += 1
                else:
                    report.added[table] += 1
                report.added_ids[table].append(rec["id"])
                plan["new"][table].append(rec)
        return plan
