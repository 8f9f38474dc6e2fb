"""The write-ahead journal: a small write to a large database costs what it writes.

Rewriting a 77 MB database to add one 8 KB trial takes about a second; appending the trial to
``<db>.journal`` beside it takes a few milliseconds. The journal is a text file of lines, each
``CRC32 JSON\\n`` (the CRC32 of the JSON's bytes, as 8 hex digits, then one space):

* the first line is the header ``{"lrbench_journal": 1, "generation": G}``. ``G`` is the
  ``generation`` of the document the journal continues (``_meta`` document 1 of the database
  file), which changes on every rewrite of the file; a journal whose generation is not the
  file's belongs to an older file and is ignored (its records were folded into the file before
  it was rewritten, or the file was replaced by hand: then the next writer moves it into the
  backup folder instead of deleting it).
* every other line is one batch: ``{"set": {table: {doc id: record}}, "del": {table: [doc id]}}``.

Appends are made under the database lock, ``fsync``'d before the lock is released. A reader
replays the lines in order on top of the file. The last line may be torn (a writer killed or a
machine losing power mid-append): a last line without its newline, or whose CRC does not
match, is ignored, and the next writer cuts it off before it appends. A damaged line followed
by good ones cannot come from a crash, so the journal is then refused like a corrupt database,
never silently skipped. The database folds the journal into the file (a normal atomic rewrite,
a new generation, then the journal is removed) when it grows past :func:`compact_after`, on
:meth:`~lrbench_gui.core.db.PolicyDB.close`, before a backup or an import and on export.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "JOURNAL_VERSION",
    "JOURNAL_AFTER_BYTES",
    "JournalError",
    "JournalRead",
    "journal_path",
    "new_generation",
    "compact_after",
    "diff_tables",
    "apply_entry",
    "read_journal",
    "append_entry",
]

JOURNAL_VERSION = 1
#: a database file smaller than this is rewritten instead of journaled: below it a rewrite costs
#: about what an fsync'd append does, and the file stays one plain TinyDB document
JOURNAL_AFTER_BYTES = 1 << 20


class JournalError(ValueError):
    """A journal line that is damaged although more lines follow it."""


def journal_path(target: Path) -> Path:
    return target.with_name(target.name + ".journal")


def new_generation() -> str:
    return uuid.uuid4().hex


def compact_after(base_bytes: int) -> int:
    """Journal size past which the next write folds the journal into the file: a quarter of the
    file, at least 8 MiB, so a rewrite's cost is spread over many appends."""
    return max(8 << 20, base_bytes // 4)


def _line(obj: Any) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode(line: bytes) -> Any | None:
    """The JSON of one complete line (without its newline), or None when it is damaged."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        return json.loads(body)
    except ValueError:
        return None


def diff_tables(before: dict[str, dict[str, Any]], data: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """What changed from ``before`` (table -> doc id -> record, shallow copies taken when the
    batch began) to ``data``: a journal entry, or None when nothing did. Records are compared by
    identity (TinyDB stores a new dict for every insert and keeps the others as they are)."""
    sets: dict[str, dict[str, Any]] = {}
    dels: dict[str, list[str]] = {}
    for name, table in data.items():
        old = before.get(name)
        if old is None:
            if table:
                sets[name] = dict(table)
            continue
        changed = {k: v for k, v in table.items() if old.get(k) is not v}
        gone = [k for k in old if k not in table]
        if changed:
            sets[name] = changed
        if gone:
            dels[name] = gone
    for name, old in before.items():
        if name not in data and old:
            dels[name] = list(old)
    if not sets and not dels:
        return None
    return {"set": sets, "del": dels}


def apply_entry(data: dict[str, dict[str, Any]], entry: Any) -> None:
    """Replay one journal entry onto ``data`` in place; JournalError if it is not one."""
    if not isinstance(entry, dict) or not isinstance(entry.get("set", {}), dict) or not isinstance(entry.get("del", {}), dict):
        raise JournalError("a line is not a journal entry")
    for name, ids in entry.get("del", {}).items():
        table = data.get(name)
        if not isinstance(ids, list):
            raise JournalError(f"table {name!r}: del must be a list of doc ids")
        if table:
            for doc_id in ids:
                table.pop(str(doc_id), None)
    for name, docs in entry.get("set", {}).items():
        if not isinstance(docs, dict) or not all(isinstance(d, dict) and str(k).isdigit() for k, d in docs.items()):
            raise JournalError(f"table {name!r}: set must map doc ids to records")
        data.setdefault(name, {}).update(docs)


@dataclass
class JournalRead:
    """What reading a journal found: its entries (from ``start``), where the good part ends."""

    exists: bool = False
    stale: bool = False  # written for another generation of the file
    entries: list[Any] = field(default_factory=list)
    end: int = 0  # offset just past the last good line (the header counts)
    torn: bool = False  # bytes after ``end`` that are not a good line
    size: int = 0


def read_journal(path: Path, generation: str | None, start: int = 0) -> JournalRead:
    """Read ``path`` from offset ``start`` (0: from the header, which must name ``generation``).

    Raises :class:`JournalError` for damage that a crash cannot explain; OSError as the OS
    raises it (the caller words it)."""
    out = JournalRead()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return out
    with f:
        out.exists = True
        f.seek(start)
        raw = f.read()
    out.size = start + len(raw)
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    pos = start
    for i, line in enumerate(lines):
        obj = _decode(line)
        last = i == len(lines) - 1 and not tail
        if obj is None:
            if last:
                out.torn = True
                break
            raise JournalError(f"line at byte {pos} is damaged and more lines follow it")
        if pos == 0:
            if not isinstance(obj, dict) or obj.get("lrbench_journal") != JOURNAL_VERSION:
                raise JournalError("the first line is not an lrbench journal header")
            if generation is None or obj.get("generation") != generation:
                out.stale = True
                out.end = 0
                return out
        else:
            out.entries.append(obj)
        pos += len(line) + 1
        out.end = pos
    if tail:
        out.torn = True
    if start == 0 and out.end == 0 and not out.torn:
        out.exists = out.size > 0
    return out


def append_entry(path: Path, entry: dict[str, Any], generation: str, end: int) -> int:
    """Append ``entry`` after the good part (``end``; 0: a new journal for ``generation``),
    cutting off a torn tail first; fsync it. Returns the new end. On an OS error the journal is
    cut back to ``end`` (best effort) and the error raised: nothing half-written stays."""
    data = _line(entry)
    if end == 0:
        data = _line({"lrbench_journal": JOURNAL_VERSION, "generation": generation}) + data
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            if os.fstat(fd).st_size != end:
                os.ftruncate(fd, end)
            view = memoryview(data)
            offset = end
            while view:
                n = os.pwrite(fd, view, offset)
                view = view[n:]
                offset += n
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, end)
                os.fsync(fd)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
    if created and os.name == "posix":
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return end + len(data)
