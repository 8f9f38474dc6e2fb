"""Schema versions of the database file, the migrations between them, and the seed records.

:func:`parse_database` reads the file's bytes into its tables and says which schema version
they are, refusing a damaged file (naming the latest backup) or one from a newer lrbench.

:data:`MIGRATIONS` maps a schema version to a function that turns the file's data (TinyDB's
``{"table": {"doc id": record}}``) of that version into the next version's;
:class:`~lrbench_gui.core.db.policy_db.PolicyDB` runs them in order, after a backup, when it
opens an older file. Migrations validate records for structure only (no registry): a file
written by an older lrbench is accepted as it was, whatever plugins are installed now.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from lrbench_gui import __version__
from lrbench_gui.core.db.fields import FieldError
from lrbench_gui.core.db.recipes import seed_policies
from lrbench_gui.core.db.storage import DatabaseCorrupt, DatabaseError, DatabaseTooNew, list_backups
from lrbench_gui.core.db.validate import REQUIRED, TABLES, normalize_record

__all__ = ["SCHEMA_VERSION", "META_TABLE", "MIGRATIONS", "new_meta", "normalized_seeds", "parse_database", "corrupt"]

SCHEMA_VERSION = 1
META_TABLE = "_meta"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_meta() -> dict[str, Any]:
    """The ``_meta`` document of a database created now."""
    return {"schema": SCHEMA_VERSION, "created": _now(), "app": "lrbench-gui", "app_version": __version__}


_SEEDS: list[dict[str, Any]] | None = None


def normalized_seeds() -> list[dict[str, Any]]:
    """Fresh copies of the seed recipes, validated for structure and hashed (once per process)."""
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
    for seed in normalized_seeds():
        if seed["id"] not in have:
            out["policies"][str(next_id)] = seed
            next_id += 1
    out[META_TABLE] = {"1": new_meta()}
    return out


#: schema version -> function turning data of that version into the next version's.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1}


def corrupt(path: Path, reason: str) -> DatabaseCorrupt:
    """The one-line refusal of a database file that cannot be read, naming the latest backup."""
    backups = list_backups(path)
    if backups:
        hint = (
            f"The latest backup is {backups[-1]}; to go back to it, copy it over {path} "
            "(or move the damaged file away to start an empty database)."
        )
    else:
        hint = f"There is no backup in {path.stem}-backups/; move the damaged file away to start an empty database."
    return DatabaseCorrupt(f"the database {path} cannot be read ({reason}); it was left as it is. {hint}")


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def parse_database(raw: bytes, path: Path) -> tuple[dict[str, Any], int]:
    """The tables of the database file ``path`` holding ``raw``, and its schema version (0: a
    plain TinyDB file). Raises :class:`DatabaseCorrupt` or :class:`DatabaseTooNew`."""
    if not raw.strip():
        raise corrupt(path, "the file is empty")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise corrupt(path, f"not UTF-8 text at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise corrupt(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise corrupt(path, str(exc) or "nested too deeply") from None
    if not isinstance(data, dict):
        raise corrupt(path, "the file does not hold a JSON object of tables")
    for name, table in data.items():
        if not isinstance(table, dict) or not all(isinstance(doc, dict) for doc in table.values()):
            raise corrupt(path, f"table {name!r} is not a TinyDB table (an object of documents)")
    meta = data.get(META_TABLE, {}).get("1")
    if meta is None:
        if META_TABLE in data:
            raise corrupt(path, f"table {META_TABLE} has no document 1")
        return data, 0
    schema = meta.get("schema")
    if type(schema) is not int or schema < 1:
        raise corrupt(path, f"{META_TABLE}.schema must be a whole number >= 1, got {schema!r}")
    if schema > SCHEMA_VERSION:
        raise DatabaseTooNew(
            f"the database {path} has schema version {schema}, written by a newer lrbench "
            f"(this one, {__version__}, reads up to {SCHEMA_VERSION}); upgrade lrbench to open it"
        )
    for table in TABLES:
        data.setdefault(table, {})
        _check_table(path, table, data[table])
    return data, schema


def _check_table(path: Path, table: str, docs: dict[str, Any]) -> None:
    """The structure every reader relies on, checked in one pass when the file is opened: doc
    ids TinyDB can read (whole numbers), and each record's id, hash and required fields. (The
    fields themselves were validated when the record was added.)"""
    required = REQUIRED[table]
    for doc_id, doc in docs.items():
        if not doc_id.isdigit() or len(doc_id) > 18:
            raise corrupt(path, f"table {table!r} has the document id {doc_id[:40]!r}, which is not a whole number")
        missing = next((f for f in required if f not in doc), None)
        if missing is not None:
            raise corrupt(path, f"{table} document {doc_id}: missing field {missing}")
        if not isinstance(doc["id"], str) or not isinstance(doc.get("hash"), str):
            raise corrupt(path, f"{table} document {doc_id}: field {'id' if not isinstance(doc['id'], str) else 'hash'} must be a string")
