"""Nothing trained is lost: records the database cannot take go to a recovery file.

A trial costs minutes to hours of compute; the database refusing it (another writer holding
the lock past the wait, a read-only file or folder, a full disk, a damaged file, a field it
refuses) must never throw it away. :func:`write_or_recover` tries the write and, if it fails
for any reason, writes the records as an export document (docs/format.md) to a recovery file:
beside the database, else in the data folder, else in the temporary folder. The
:class:`RecoveryResult` says what happened in one line, with the exact command that applies
the file later (``lrbench db import FILE --db DB``). The CLI exits with
:data:`EXIT_RECOVERED` when it had to do this; the app shows the line.

This is the one implementation; ``lrbench run``, ``lrbench tune`` and the app call it through
:meth:`PolicyDB.add_trial_or_recover <lrbench_gui.core.db.policy_db.PolicyDB.add_trial_or_recover>`
or, when even opening the database failed, through :func:`write_or_recover` with the path.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from lrbench_gui.core.db.document import FORMAT_NAME, FORMAT_VERSION
from lrbench_gui.core.db.storage import DatabaseError, atomic_write_bytes, os_error_text, write_target
from lrbench_gui.core.db.transfer import TABLE_WORD
from lrbench_gui.core.db.validate import TABLES, finite_curves
from lrbench_gui.core.paths import data_dir, default_db_path

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.db.policy_db import PolicyDB
    from lrbench_gui.core.registry import Registry

__all__ = ["RecoveryResult", "write_or_recover", "save_recovery", "import_command", "recovery_folders", "EXIT_RECOVERED"]

#: exit status of a CLI command whose result went to a recovery file instead of the database
EXIT_RECOVERED = 3
_MAX_REASON = 300


@dataclass
class RecoveryResult:
    """What became of a write: stored (``ok``), or kept in ``file`` for ``command`` to apply.

    ``stored`` holds the records as the database stored them (normalized), when it did.
    ``document`` is the recovery document's bytes, kept even when no folder took the file, so
    a caller can still print it as the very last resort.
    """

    database: Path
    table: str
    ids: list[str]
    stored: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    file: Path | None = None
    command: str | None = None
    document: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def _what(self) -> str:
        word = TABLE_WORD.get(self.table, self.table)
        if len(self.ids) == 1:
            return f"{word} {self.ids[0]}"
        return f"{len(self.ids)} {self.table}"

    def message(self) -> str:
        """One line for the user."""
        if self.ok:
            return f"recorded {self._what()} in {self.database}"
        if self.file is None:
            return f"could not record {self._what()} in {self.database}: {self.error}; no folder would take a recovery file either"
        return f"could not record {self._what()} in {self.database}: {self.error}. Saved it to {self.file}; to add it: {self.command}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": str(self.database),
            "table": self.table,
            "ids": self.ids,
            "error": self.error,
            "recovery_file": str(self.file) if self.file else None,
            "command": self.command,
            "message": self.message(),
        }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DatabaseError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = os_error_text(exc) + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _jsonable(value: Any) -> Any:
    """A copy that ``json.dumps(allow_nan=False)`` takes: non-finite floats as the strings the
    trial protocol uses, anything else unknown as its text (the import then names the field)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def recovery_folders(database: Path) -> list[Path]:
    """Where a recovery file may go, in order: beside the database (the file a symlink points
    to), the data folder, the temporary folder."""
    out: list[Path] = []
    for folder in (write_target(database).parent, data_dir(), Path(tempfile.gettempdir())):
        folder = Path(folder).absolute()
        if folder not in out:
            out.append(folder)
    return out


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.stat(folder).st_mode & 0o222 != 0
    except OSError:
        return False


def save_recovery(database: Path, tables: dict[str, list[dict[str, Any]]], label: str) -> tuple[Path | None, bytes]:
    """Write ``tables`` as an export document to the first recovery folder that takes it.

    Returns (the file or None, the document's bytes)."""
    doc: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    for table in TABLES:
        doc[table] = [_jsonable(r) for r in tables.get(table) or []]
    data = (json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=1) + "\n").encode("utf-8")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:80] or "records"
    stem = write_target(database).stem
    for folder in recovery_folders(database):
        if not _writable_folder(folder):
            continue
        for n in range(100):
            name = f"{stem}.recovered-{stamp}-{safe}{'' if n == 0 else f'-{n}'}.json"
            path = folder / name
            if path.exists():
                continue
            try:
                atomic_write_bytes(path, data)
            except OSError:
                break
            return path, data
    return None, data


def import_command(file: Path, database: Path, on_conflict: str | None = None) -> str:
    """The exact command line that applies a recovery file to the database."""
    cmd = ["lrbench", "db", "import", str(file), "--db", str(database)]
    if on_conflict:
        cmd += ["--on-conflict", on_conflict]
    return " ".join(shlex.quote(c) for c in cmd)


def write_or_recover(
    db: "PolicyDB | str | os.PathLike | None",
    table: str = "trials",
    records: Iterable[dict[str, Any]] = (),
    *,
    replace: bool = False,
    with_studies: Iterable[dict[str, Any] | None] = (),
    registry: "Registry | None" = None,
) -> RecoveryResult:
    """Store ``records`` in ``table`` of ``db`` (an open :class:`PolicyDB`, or a path to open
    with ``registry``; None: the default database) in one write, or keep them in a recovery file.

    ``with_studies`` are the records' study records: not written here (the caller stores its
    study itself), but put into the recovery file too, so that file imports on its own. Never
    raises for a database or OS problem: the result says what happened.
    """
    from lrbench_gui.core.db.policy_db import PolicyDB

    records = [r for r in records]
    studies = [s for s in with_studies if s]
    path = db.path if isinstance(db, PolicyDB) else (Path(db).expanduser().absolute() if db is not None and str(db).strip() else default_db_path().absolute())
    ids = [str(r.get("id")) if isinstance(r, dict) else "?" for r in records]
    result = RecoveryResult(database=path, table=table, ids=ids)
    try:
        handle = db if isinstance(db, PolicyDB) else PolicyDB(path, registry=registry)
        result.stored = handle.add_many(table, records, replace=replace)
        return result
    except Exception as exc:  # noqa: BLE001 - any failure: keep the records rather than lose them
        result.error = _describe(exc)
    keep: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    keep[table] = [finite_curves(r) for r in records] if table == "trials" else list(records)
    if table == "trials":
        wanted = {r.get("study") for r in records if isinstance(r, dict)}
        keep["studies"] = [s for s in studies if s.get("id") in wanted]
    label = ids[0] if len(ids) == 1 else f"{len(ids)}-{table}"
    result.file, result.document = save_recovery(path, keep, label)
    if result.file is not None:
        conflict = "replace" if replace else ("keep" if keep["studies"] else None)
        result.command = import_command(result.file, path, conflict)
    return result
