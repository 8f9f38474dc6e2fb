"""The export document: the envelope that carries studies, trials and policies between databases.

``docs/format.md`` specifies it for other tools; this module is its reference reader and writer.
:func:`read_document` reads an untrusted file and checks the envelope (format name, version,
top-level fields, record counts), not the records, which go through
:func:`lrbench_gui.core.db.validate.normalize_record` one by one; :func:`encode_document` writes
one, deterministically.

Reading never executes or unpickles anything: the bytes are streamed through a capped gzip
stream (:data:`MAX_DOCUMENT_BYTES`) and scanned as they arrive
(:class:`lrbench_gui.core.jsonio.JSONScanner`: depth, value count, record count, string
length, bytes that cannot be JSON), so a bomb is refused before any object is built; only then
``json.loads`` runs, with hooks that turn NaN/Infinity into markers the validators refuse by
record and field, and that notice duplicate keys
(:func:`lrbench_gui.core.db.fields.parse_json_bytes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from lrbench_gui.core.jsonio import JSONBoundsError, JSONScanner, read_bytes_bounded
from lrbench_gui.core.db.fields import FieldError, as_int, as_object, parse_json_bytes, type_name
from lrbench_gui.core.db.validate import TABLES

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "TABLES",
    "MAX_DOCUMENT_BYTES",
    "MAX_RECORDS",
    "MAX_VALUES",
    "MAX_DEPTH",
    "Problem",
    "DocumentError",
    "read_document",
    "read_document_bytes",
    "encode_document",
]

FORMAT_NAME = "lrbench-db-export"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # after decompression
MAX_GZIP_RATIO = 200  # decompressed/compressed, checked once past GZIP_RATIO_AFTER
GZIP_RATIO_AFTER = 64 * 1024 * 1024
MAX_RECORDS = 200_000  # per table, in one document
#: JSON values (containers and comma-separated items) in one document, counted before parsing:
#: what bounds the memory the parsed objects take (a 10,000-trial export holds ~1.5 million)
MAX_VALUES = 6_000_000
MAX_DEPTH = 64
MAX_STRING = 2_000_000  # the longest string a record may hold (a packed curve's base64)


@dataclass
class Problem:
    """Why a document, or one record of it, was refused; :meth:`__str__` is the plain-words line."""

    file: str
    message: str
    table: str | None = None
    index: int | None = None
    record_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = [self.file] if self.file else []
        if self.table is not None:
            rec = f"{self.table}[{self.index}]" if self.index is not None else self.table
            if self.record_id is not None:
                rid = self.record_id if len(self.record_id) <= 60 else self.record_id[:57] + "..."
                rec += f" (id {rid!r})"
            where.append(rec)
        if self.field:
            where.append(f"field {self.field}")
        return ": ".join([*where, self.message])

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "table": self.table,
            "index": self.index,
            "id": self.record_id,
            "field": self.field,
            "message": self.message,
            "text": str(self),
        }


class DocumentError(ValueError):
    """A whole document (or database file) that cannot be read; carries one :class:`Problem`."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def encode_document(tables: Mapping[str, Sequence[Mapping[str, Any]]], *, app_version: str, schema: int) -> bytes:
    """The export document of ``tables`` (table name -> records, in the order given), as UTF-8.

    One record a line, no timestamp: the same records always encode to the same bytes.
    """
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    parts = [
        '{"format":%s,"version":%d,"app_version":%s,"schema":%d'
        % (json.dumps(FORMAT_NAME), FORMAT_VERSION, json.dumps(app_version), schema)
    ]
    for name in TABLES:
        records = tables.get(name) or []
        body = ",\n".join(dumps(r) for r in records)
        parts.append(f',\n"{name}":[\n{body}\n]' if records else f',\n"{name}":[]')
    parts.append("}\n")
    return "".join(parts).encode("utf-8")


def _problem(file: str, message: str) -> DocumentError:
    return DocumentError(Problem(file, message))


def read_document_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, gunzipped through a capped stream when it is gzip (by name or magic),
    scanned within the document's bounds as they are read; DocumentError in one line."""
    name = str(path)
    scanner = JSONScanner(name, max_depth=MAX_DEPTH, max_values=MAX_VALUES, max_string=MAX_STRING)
    try:
        data = read_bytes_bounded(
            Path(path),
            max_bytes=MAX_DOCUMENT_BYTES if max_bytes is None else max_bytes,
            scanner=scanner,
            max_ratio=MAX_GZIP_RATIO,
            ratio_after=GZIP_RATIO_AFTER,
            name=name,
        )
    except JSONBoundsError as exc:
        raise _problem(name, exc.message) from None
    if scanner.records > len(TABLES) * MAX_RECORDS:
        raise _problem(name, f"holds {scanner.records} records; the limit is {MAX_RECORDS} per table")
    return data


def read_document(path: Path) -> dict[str, Any]:
    """Read and parse an export document; checks the envelope, not the records.

    Raises :class:`DocumentError` naming the file and what is wrong with it.
    """
    name = str(path)
    data = read_document_bytes(path)
    try:
        doc = parse_json_bytes(data)
    except UnicodeDecodeError as exc:
        raise _problem(name, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        hint = " (the file ends too early: truncated?)" if exc.pos >= len(exc.doc) - 1 else ""
        raise _problem(name, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}") from None
    except RecursionError:
        raise _problem(name, "nests JSON too deeply") from None
    if not isinstance(doc, dict):
        raise _problem(name, f"must hold a JSON object, got {type_name(doc)}")
    try:
        as_object(doc, "")
    except FieldError as exc:
        raise _problem(name, exc.message) from None
    if doc.get("format") != FORMAT_NAME:
        raise _problem(name, f"is not an lrbench export (field format must be {FORMAT_NAME!r}, got {_short(doc.get('format'))})")
    version = doc.get("version")
    try:
        version = as_int(version, "version")  # a whole number may be written 1.0
    except FieldError:
        pass
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise _problem(
            name,
            f"field version: unknown format version {_short(version)} (this lrbench reads {', '.join(map(str, SUPPORTED_VERSIONS))}); "
            "a newer lrbench may read it",
        )
    allowed = {"format", "version", "app_version", "schema", *TABLES}
    for key in doc:
        if key not in allowed:
            raise _problem(name, f"field {key}: unknown top-level field (allowed: {', '.join(sorted(allowed))})")
    for key in ("app_version",):
        if key in doc and doc[key] is not None and (not isinstance(doc[key], str) or len(doc[key]) > 64):
            raise _problem(name, f"field {key}: must be a short string")
    if "schema" in doc:
        try:
            as_int(doc["schema"], "schema")
        except FieldError:
            raise _problem(name, "field schema: must be a whole number") from None
    for table in TABLES:
        records = doc.get(table, [])
        if not isinstance(records, list):
            raise _problem(name, f"field {table}: must be a list of records, got {type_name(records)}")
        if len(records) > MAX_RECORDS:
            raise _problem(name, f"field {table}: holds {len(records)} records; the limit is {MAX_RECORDS}")
    return doc


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else type_name(value)
    return text if len(text) <= 60 else text[:57] + "..."
