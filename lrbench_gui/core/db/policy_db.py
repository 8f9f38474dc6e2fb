"""The policy database: studies, trials and recipes in one TinyDB JSON file.

>>> db = PolicyDB(tmp / "policies.json", registry=registry)  # doctest: +SKIP
>>> with db.batch():                               # one atomic write for many adds
...     db.add_study({"id": "s1", "name": "digits lr"})
...     db.add_trial({"id": "t1", "study": "s1", "task": "digits", ...})
>>> db.recommend("digits", k=3)                    # top policies, their metric and cost
>>> db.export("share.json.gz", study_ids=["s1"])   # versioned document, see docs/format.md
>>> db.import_file("share.json.gz", dry_run=True)  # validates every field, writes nothing

How it stays safe (see ``docs/database.md``): the file is TinyDB's JSON layout, written only
through :class:`~lrbench_gui.core.db.storage.AtomicJSONStorage` once per
:meth:`PolicyDB.batch`, under a lock file that stops two processes writing at once: a small
batch into a large file is one fsync'd line of the journal beside it
(:mod:`~lrbench_gui.core.db.journal`), anything else an atomic rewrite (temp file, fsync,
rename). Before each write the database reads what another process wrote since, so two
writers never lose each other's records. Imports and migrations take a backup first; a file
that cannot be read is refused with the latest backup named, never replaced. A write the
database cannot make (locked too long, read-only, a full disk) is kept in a recovery file by
:meth:`PolicyDB.add_trial_or_recover` (:mod:`~lrbench_gui.core.db.recovery`).

Records handed out by the read methods are the stored objects: treat them as read-only.
"""

from __future__ import annotations

import copy
import gzip
import os
import zlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinydb import where

from lrbench_gui import __version__
from lrbench_gui.core.db import migrations
from lrbench_gui.core.db.curves import CurveError, unpack
from lrbench_gui.core.db.document import DocumentError, encode_document, read_document
from lrbench_gui.core.db.fields import MAX_TEXT, FieldError
from lrbench_gui.core.db.migrations import META_TABLE, normalized_seeds
from lrbench_gui.core.db.query import lr_range as _lr_range
from lrbench_gui.core.db.query import recommend as _recommend
from lrbench_gui.core.db.query import SYSTEM_TAGS, trial_row, validate_tags
from lrbench_gui.core.db.storage import (
    DatabaseCorrupt,
    DatabaseError,
    DatabaseLocked,
    DatabaseReadOnly,
    DatabaseTooNew,
    DatabaseWriteError,
    atomic_write_bytes,
    backup_dir,
    check_output_path,
    file_signature,
    list_backups,
    make_backup,
    os_error_text,
)
from lrbench_gui.core.db.store import DEFAULT_LOCK_TIMEOUT, DatabaseFile
from lrbench_gui.core.db.transfer import ON_CONFLICT, TABLE_WORD, ImportRefused, ImportReport, Validated, plan_import, validate_import
from lrbench_gui.core.db.validate import TABLES, finite_curves, normalize_record
from lrbench_gui.core.records import StudyRecord, TrialRecord

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.db.recovery import RecoveryResult

__all__ = [
    "PolicyDB",
    "DatabaseError",
    "DatabaseLocked",
    "DatabaseCorrupt",
    "DatabaseTooNew",
    "DatabaseReadOnly",
    "DatabaseWriteError",
    "RecordInvalid",
    "ImportRefused",
    "ImportReport",
    "DEFAULT_LOCK_TIMEOUT",
]


class RecordInvalid(DatabaseError, ValueError):
    """A record handed to ``add_*`` was refused; the message names the record and field."""


class PolicyDB(DatabaseFile):
    """The database at ``path`` (default: ``$LRBENCH_DB`` or the user data folder).

    Opening reads the whole file and its journal (missing: an empty database with the seed
    recipes, written on the first change) and migrates an older schema after a backup.
    ``lock_timeout`` is how long a write waits for another process's write to finish; while it
    waits, ``on_wait`` gets one line saying who holds the lock (default: printed on stderr).
    ``journal_after`` is the file size from which a small batch is appended to the journal
    instead of rewriting the file (:data:`lrbench_gui.core.db.journal.JOURNAL_AFTER_BYTES`).

    ``registry`` is what the database knows of policies: the specs of added and imported
    records whose policy it has are validated by that policy's schema, and labels name the
    parameter whose role is the LR. A policy it does not have, and every policy when
    ``registry`` is None, is stored as written with its parameters checked only as a free-form
    object, and an import report lists its name. The edges (CLI, app) pass the installed
    plugins' registry; the database never looks it up itself.

    A symlinked ``path`` is read and written through the link (the lock, journal and backups
    sit beside the file it points to). Thread-safe within a process; across processes, writers
    take turns through the lock file.
    """

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

    def add_trial_or_recover(self, record: dict[str, Any], *, replace: bool = False, study: dict[str, Any] | None = None) -> "RecoveryResult":
        """Store a trial, or, when the database cannot take it for any reason (locked past the
        wait, read-only, a full disk, a damaged file, a refused field), keep it in a recovery
        file and say how to apply it: see :func:`lrbench_gui.core.db.recovery.write_or_recover`.
        ``study`` (its study's record) goes into the recovery file with it, so that file imports
        on its own. Never raises for a database problem."""
        from lrbench_gui.core.db.recovery import write_or_recover

        return write_or_recover(self, "trials", [record], replace=replace, with_studies=[study])

    def add_study_or_recover(self, record: dict[str, Any], *, replace: bool = False) -> "RecoveryResult":
        """:meth:`add_trial_or_recover` for a study record."""
        from lrbench_gui.core.db.recovery import write_or_recover

        return write_or_recover(self, "studies", [record], replace=replace)

    def add_policy(self, record: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        return self.add("policies", record, replace=replace)

    def add_many(self, table: str, records: list[dict[str, Any]], *, replace: bool = False,
                 keep_annotations: bool = True) -> list[dict[str, Any]]:
        """Validate and store many records of one table in one write.

        A replaced study or trial keeps what the user wrote on it (its tags and notes, see
        :meth:`set_tags`) unless ``keep_annotations`` is False.

        A trial's plain curves may hold non-finite points (a run whose LR or loss went to
        infinity): they are dropped and the record says so in its notes and in
        ``extra.dropped_points``, so the trial is stored instead of refused. Everything else is
        validated as an import is.
        """
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r} (tables: {', '.join(TABLES)})")
        word = TABLE_WORD[table]
        if replace and keep_annotations and table in ("studies", "trials"):  # a recipe is saved as given
            records = self._keep_annotations(table, records)
        normalized = []
        for i, rec in enumerate(records):
            try:
                if table == "trials":
                    rec = finite_curves(rec)
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

    def _keep_annotations(self, table: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the user wrote on a stored record survives its replacement (a study saved again
        as it ends, a resumed trial run again): its own tags join the new record's, and its
        notes stay unless the new record brings notes of its own."""
        with self._mutex:
            self._sync()
            stored = {doc.get("id"): doc for doc in self._docs(table).values()}
        out = []
        for rec in records:
            old = stored.get(rec.get("id")) if isinstance(rec, dict) else None
            if old is not None:
                user = [t for t in old.get("tags") or [] if t not in SYSTEM_TAGS]
                tags = list(rec.get("tags") or [])
                rec = {**rec, "tags": tags + [t for t in user if t not in tags]}
                if not rec.get("notes") and old.get("notes"):
                    rec["notes"] = old["notes"]
            out.append(rec)
        return out

    # Tags and notes.

    def set_tags(self, record_id: str, tags: list[str]) -> list[str]:
        """Give a trial, study or recipe these tags (replacing the user's earlier ones; the tags
        lrbench sets itself, :data:`SYSTEM_TAGS`, stay); returns the stored tags. A tag is a
        word of at most 128 characters; a bad one is refused with the reason."""
        found = self.get(record_id)
        if found is None:
            raise RecordInvalid(f"no trial, study or recipe {record_id!r} in {self.path} (lrbench db list shows the ids)")
        table = found.pop("_table")
        clean = validate_tags(tags)
        kept = [t for t in found.get("tags") or [] if t in SYSTEM_TAGS]
        found["tags"] = kept + [t for t in clean if t not in kept]
        found.pop("hash", None)
        return list(self.add_many(table, [found], replace=True, keep_annotations=False)[0]["tags"])

    def set_note(self, record_id: str, text: str) -> str:
        """Replace the notes of a trial, study or recipe with ``text`` (at most 20,000
        characters; empty clears them); returns the stored notes."""
        found = self.get(record_id)
        if found is None:
            raise RecordInvalid(f"no trial, study or recipe {record_id!r} in {self.path} (lrbench db list shows the ids)")
        table = found.pop("_table")
        if not isinstance(text, str):
            raise RecordInvalid(f"a note is text, got {type(text).__name__}")
        if len(text) > MAX_TEXT:
            raise RecordInvalid(f"the note has {len(text)} characters; the limit is {MAX_TEXT} (shorten it)")
        found["notes"] = text
        found.pop("hash", None)
        return str(self.add_many(table, [found], replace=True, keep_annotations=False)[0]["notes"])

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
        """One flat row per trial for tables (see :func:`lrbench_gui.core.db.query.trial_row`),
        with ``label``, short but telling the trials apart, and ``full_label``, every parameter
        (:mod:`lrbench_gui.core.labels`)."""
        from lrbench_gui.core.labels import short_labels, trial_label

        trials = self.records("trials")
        labels = short_labels(trials, self.registry)
        return [{**trial_row(t, self.registry), "label": labels.get(t["id"], ""), "full_label": trial_label(t, self.registry)}
                for t in trials]

    def curves(self, trial_id: str) -> dict[str, tuple[Any, Any]]:
        """The decoded curves of a trial: name -> (steps int64 array, values float32 array)."""
        with self._mutex:
            self._sync()
            for doc in self._docs("trials").values():
                if doc.get("id") == trial_id:
                    out = {}
                    for name, c in (doc.get("curves") or {}).items():
                        try:
                            out[name] = unpack(c)
                        except (CurveError, ValueError, TypeError, KeyError, zlib.error) as exc:
                            raise DatabaseCorrupt(f"trial {trial_id!r} in {self.path}: field curves.{name}: cannot be decoded ({exc})") from None
                    return out
        raise KeyError(f"no trial {trial_id!r} in {self.path}")

    def recommend(self, task: str, *, k: int = 5, model_family: str | None = None, model_size: str | None = None, metric: str | None = None,
                  steps: int | None = None, world_size: int | None = None) -> dict[str, Any]:
        """The top ``k`` policies for ``task`` among comparable trials (see
        :func:`lrbench_gui.core.db.query.recommend`)."""
        return _recommend(self.trials(task=task), task, k=k, model_family=model_family, model_size=model_size, metric=metric,
                          registry=self.registry, steps=steps, world_size=world_size)

    def lr_range(self, task: str, *, model_family: str | None = None, model_size: str | None = None, metric: str | None = None) -> dict[str, Any]:
        """What LR range worked for ``task`` (see :func:`lrbench_gui.core.db.query.lr_range`)."""
        return _lr_range(self.trials(task=task), task, model_family=model_family, model_size=model_size, metric=metric, registry=self.registry)

    def stats(self) -> dict[str, Any]:
        with self._mutex:
            self._sync()
            trials = list(self._docs("trials").values())
            counts = {t: len(self._docs(t)) for t in TABLES}
            meta = self._docs(META_TABLE).get("1", {})
        backups = list_backups(self.target)
        size = file_signature(self.target)
        jsize = file_signature(self.journal_path)
        return {
            "path": str(self.path),
            "exists": size is not None,
            "bytes": size[2] if size else 0,
            "journal_bytes": jsize[2] if jsize else 0,
            "schema": self.schema,
            "created": meta.get("created"),
            "counts": counts,
            "tasks": dict(sorted(Counter(t["task"] for t in trials).items())),
            "statuses": dict(sorted(Counter(t["status"] for t in trials).items())),
            "backups": len(backups),
            "latest_backup": str(backups[-1]) if backups else None,
            "backup_dir": str(backup_dir(self.target)),
        }

    # Backups, export, import.

    def backup(self, dest: str | os.PathLike | None = None, reason: str = "manual") -> Path:
        """Copy the database file now (into its backup folder unless ``dest``); returns the copy.

        ``dest`` may not be the database (or its journal or lock, also through a link) nor a
        folder. The journal is folded into the file first, so the copy holds everything.
        """
        out = check_output_path(Path(dest), self._protected(), "backup") if dest is not None else None
        if not self.target.exists():
            raise DatabaseError(f"there is no database file at {self.path} yet, so nothing to back up")
        with self.batch():  # the lock keeps another writer from replacing the file mid-copy
            self._fold_journal()
            try:
                made = make_backup(self.target, reason, out)
            except OSError as exc:
                raise DatabaseWriteError(f"cannot write the backup {out or 'copy'}: {os_error_text(exc)}") from None
        if made is None:
            raise DatabaseError(f"there is no database file at {self.path} yet, so nothing to back up")
        return made

    def latest_backup(self) -> Path | None:
        backups = list_backups(self.target)
        return backups[-1] if backups else None

    def export_bytes(self, study_ids: list[str] | None = None, *, trial_ids: list[str] | None = None,
                     include_policies: bool = True) -> tuple[bytes, dict[str, int]]:
        """The export document (see docs/format.md): studies, their trials, and the policies.

        ``trial_ids`` exports just those trials (a selection), with the records of the studies
        they belong to, so the document imports on its own; it may not be given with ``study_ids``.
        """
        with self._mutex:
            self._sync()
            studies = list(self._docs("studies").values())
            trials = list(self._docs("trials").values())
            policies = list(self._docs("policies").values()) if include_policies else []
        if trial_ids is not None:
            if study_ids is not None:
                raise ValueError("export a selection of trials or whole studies, not both")
            wanted_trials = list(dict.fromkeys(trial_ids))
            by_id = {t["id"]: t for t in trials}
            missing = [t for t in wanted_trials if t not in by_id]
            if missing:
                raise DatabaseError(f"no trial {missing[0]!r} in {self.path} (lrbench db list shows the trials)")
            trials = [by_id[t] for t in wanted_trials]
            keep_studies = {t.get("study") for t in trials}
            studies = [s for s in studies if s["id"] in keep_studies]
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

    def export(self, dest: str | os.PathLike, study_ids: list[str] | None = None, *, trial_ids: list[str] | None = None,
               include_policies: bool = True) -> dict[str, Any]:
        """Write the export document to ``dest`` atomically; gzip when the name ends in ``.gz``.
        ``study_ids``: only those studies and their trials; ``trial_ids``: only those trials and
        their studies' records (see :meth:`export_bytes`).

        The output is deterministic (records sorted by id, no timestamps, gzip mtime 0), so the
        same content exports to the same bytes. ``dest`` may not be the database itself (nor its
        journal or lock, also through a symlink or a hard link) nor a folder. The journal is
        folded into the database first when the lock is free and the file writable (skipped
        otherwise: the export is made from what was read either way).
        """
        dest = Path(dest)
        out = check_output_path(dest, self._protected(), "export")
        self.close()
        data, counts = self.export_bytes(study_ids, trial_ids=trial_ids, include_policies=include_policies)
        if dest.name.endswith(".gz"):
            data = gzip.compress(data, compresslevel=6, mtime=0)
        try:
            atomic_write_bytes(out, data)
        except OSError as exc:
            raise DatabaseWriteError(f"cannot write the export {dest}: {os_error_text(exc)}") from None
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
                self._fold_journal()
                made = make_backup(self.target, "import")
                report.backup = str(made) if made else None
                self._storage.rewrite = True
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
