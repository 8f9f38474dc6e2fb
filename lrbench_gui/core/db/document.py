"""The records of the policy database and the export document: validation, hashing, reading.

Every record that enters the database (an add from this app, an import, a migration) goes
through :func:`normalize_record`, which checks every field, fills the optional ones with their
defaults, packs and bounds the curves, and computes the content hash. The export document is
described for other tools in ``docs/format.md``; this module is its reference reader.

Reading an untrusted file never executes or unpickles anything: the bytes go through a capped
gzip stream (:data:`MAX_DOCUMENT_BYTES`), then ``json.loads`` with hooks that turn NaN/Infinity
into markers the validators refuse by record and field, and that notice duplicate keys.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from lrbench_gui.core.db.curves import CurveError, normalize_curve
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import MAX_DEPTH, MAX_SEGMENTS, SpecError, parse_spec

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "TABLES",
    "MAX_DOCUMENT_BYTES",
    "MAX_RECORDS",
    "FieldError",
    "Problem",
    "DocumentError",
    "canonical_json",
    "record_hash",
    "normalize_record",
    "read_document",
    "parse_json_bytes",
    "TRIAL_STATUSES",
]

FORMAT_NAME = "lrbench-db-export"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
TABLES = ("studies", "trials", "policies")

MAX_DOCUMENT_BYTES = 512 * 1024 * 1024  # after decompression
MAX_GZIP_RATIO = 200  # decompressed/compressed, checked once past GZIP_RATIO_AFTER
GZIP_RATIO_AFTER = 64 * 1024 * 1024
MAX_RECORDS = 200_000  # per table, in one document
MAX_ID = 128
MAX_NAME = 256
MAX_TEXT = 20_000  # notes
MAX_STRING = 4_096  # any other string, including inside free-form objects
MAX_FREEFORM_NODES = 5_000
MAX_LIST = 64  # tags, metric maps, plugin maps, curves per trial
MAX_CURVES = 8

TRIAL_STATUSES = ("completed", "stopped", "diverged", "failed", "running", "pending")
STUDY_STATUSES = ("created", "running", "finished", "stopped", "failed")
TRIAL_KINDS = ("train", "range_test")
POLICY_KINDS = ("policy", "recipe", "rule_of_thumb")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+\-]{0,127}$")
_KEY = re.compile(r"^[A-Za-z0-9_.:/\-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


class FieldError(ValueError):
    """One field of one record is wrong; ``field`` is a dotted path inside the record."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"field {field}: {message}" if field else message)


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


class _NonFinite:
    """What the JSON reader puts where a file says NaN, Infinity or -Infinity."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


class _DupKeyDict(dict):
    """A JSON object that named a key twice (the last value is kept, but validation refuses it)."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        out = _DupKeyDict(d)
        seen: set[str] = set()
        out.duplicates = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        return out
    return d


def parse_json_bytes(data: bytes) -> Any:
    """``json.loads`` that never yields NaN/Infinity floats (markers instead). Raises ValueError/RecursionError."""
    return json.loads(data, parse_constant=_NonFinite, object_pairs_hook=_pairs_hook)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def record_hash(record: dict[str, Any], curve_digests: dict[str, tuple[int, str]] | None = None) -> str:
    """sha256 of the canonical JSON of ``record`` without ``hash``, curves replaced by their digests.

    ``curve_digests`` maps a curve name to (points, digest of the decoded arrays); when it is not
    given the curves are decoded from the record.
    """
    body = {k: v for k, v in record.items() if k != "hash"}
    if "curves" in body:
        if curve_digests is None:
            curve_digests = {}
            for name, c in body["curves"].items():
                cv = normalize_curve(c)
                curve_digests[name] = (len(cv), cv.digest())
        body["curves"] = {name: {"n": n, "sha256": d} for name, (n, d) in curve_digests.items()}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _tname(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return repr(value) if not math.isfinite(value) else "a number"
    return str(value)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _obj(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {_tname(value)}")
    if isinstance(value, _DupKeyDict):
        raise FieldError(path, f"names the key {value.duplicates[0]!r} more than once")
    return value


def _fields(value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] | frozenset[str]) -> dict:
    d = _obj(value, path)
    allowed = _allowed(required, optional)
    if not allowed.issuperset(d):
        key = next(k for k in d if k not in allowed)
        raise FieldError(_join(path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in d:
            raise FieldError(_join(path, key), "missing required field")
    return d


@functools.lru_cache(maxsize=64)
def _allowed(required: tuple[str, ...], optional: Any) -> frozenset[str]:
    return frozenset(required) | frozenset(optional)


def _str(value: Any, path: str, *, max_len: int = MAX_STRING, null: bool = False, pattern: re.Pattern | None = None, what: str = "") -> str | None:
    if value is None and null:
        return None
    if not isinstance(value, str):
        return _fail(path, f"must be a string{' or null' if null else ''}, got {_tname(value)}")
    if len(value) > max_len:
        raise FieldError(path, f"is {len(value)} characters long; the limit is {max_len}")
    if pattern is not None and not pattern.match(value):
        raise FieldError(path, f"{value[:80]!r} is not {what or 'allowed here'}")
    return value


def _fail(path: str, message: str) -> Any:
    raise FieldError(path, message)


def _num(value: Any, path: str, *, null: bool = False, ge: float | None = None, gt: float | None = None, lt: float | None = None) -> float | int | None:
    if value is None and null:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _fail(path, f"must be a finite number{' or null' if null else ''}, got {_tname(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(path, f"must be a finite number, got {value!r}")
    if isinstance(value, int) and abs(value) > 2**63:
        raise FieldError(path, "is too large")
    if ge is not None and value < ge:
        raise FieldError(path, f"must be >= {ge:g}, got {value!r}")
    if gt is not None and value <= gt:
        raise FieldError(path, f"must be > {gt:g}, got {value!r}")
    if lt is not None and value >= lt:
        raise FieldError(path, f"must be < {lt:g}, got {value!r}")
    return value


def _int(value: Any, path: str, *, null: bool = False, ge: int | None = None) -> int | None:
    if value is None and null:
        return None
    if type(value) is not int:
        if type(value) is float and math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        else:
            return _fail(path, f"must be a whole number{' or null' if null else ''}, got {_tname(value)}")
    if abs(value) >= 2**63:
        raise FieldError(path, "is too large")
    if ge is not None and value < ge:
        raise FieldError(path, f"must be >= {ge}, got {value}")
    return value


def _enum(value: Any, path: str, choices: tuple[str, ...], *, null: bool = False) -> str | None:
    if value is None and null:
        return None
    if value not in choices or not isinstance(value, str):
        return _fail(path, f"must be one of {', '.join(choices)}, got {value!r}" if isinstance(value, str) else f"must be one of {', '.join(choices)}, got {_tname(value)}")
    return value


def _timestamp(value: Any, path: str) -> str | None:
    if value is None:
        return None
    text = _str(value, path, max_len=64)
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))  # type: ignore[union-attr]
    except ValueError:
        raise FieldError(path, f"must be an ISO 8601 time like 2024-05-01T12:00:00Z, got {text!r}") from None
    return text


def _flat_ok(d: dict) -> bool:
    """True when every value of ``d`` is a plain scalar within limits (the common case)."""
    for k, v in d.items():
        t = type(v)
        if t is float:
            if v - v != 0.0:  # NaN or infinity
                return False
        elif t is str:
            if len(v) > MAX_STRING:
                return False
        elif t is int:
            if not -(2**63) <= v <= 2**63:
                return False
        elif not (v is None or t is bool):
            return False
        if len(k) > MAX_NAME:
            return False
    return True


def _freeform(value: Any, path: str, budget: list[int] | None = None, depth: int = 0) -> Any:
    """Any JSON value, bounded: finite numbers, strings <= MAX_STRING, <= 8 deep, <= 5,000 nodes."""
    if budget is None:
        if type(value) is dict and len(value) < MAX_FREEFORM_NODES and _flat_ok(value):
            return value
        budget = [MAX_FREEFORM_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise FieldError(path, f"holds more than {MAX_FREEFORM_NODES} values; the limit is {MAX_FREEFORM_NODES}")
    if depth > 8:
        raise FieldError(path, "nests more than 8 levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _num(value, path)
    if isinstance(value, str):
        return _str(value, path)
    if isinstance(value, list):
        return [_freeform(v, _join(path, i), budget, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        _obj(value, path)
        out = {}
        for k, v in value.items():
            _str(k, _join(path, "<key>"), max_len=MAX_NAME)
            out[k] = _freeform(v, _join(path, k), budget, depth + 1)
        return out
    return _fail(path, f"must be a JSON value, got {_tname(value)}")


def _id(value: Any, path: str = "id") -> str:
    return _str(value, path, max_len=MAX_ID, pattern=_ID, what="a valid id (letters, digits and _ . : @ + -, at most 128)")  # type: ignore[return-value]


def _name_map(value: Any, path: str, check_value: Callable[[Any, str], Any]) -> dict:
    d = _obj(value, path)
    if len(d) > MAX_LIST:
        raise FieldError(path, f"has {len(d)} entries; the limit is {MAX_LIST}")
    out = {}
    for k, v in d.items():
        if not _KEY.match(k):
            raise FieldError(_join(path, k), "is not a valid name (letters, digits and _ . : / -, at most 64)")
        out[k] = check_value(v, _join(path, k))
    return out


def _tags(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        return _fail(path, f"must be a list of strings, got {_tname(value)}")
    if len(value) > MAX_LIST:
        raise FieldError(path, f"has {len(value)} entries; the limit is {MAX_LIST}")
    return [_str(v, _join(path, i), max_len=MAX_NAME) for i, v in enumerate(value)]  # type: ignore[misc]


def _model(value: Any, path: str) -> dict:
    d = _fields(value, path, (), ("family", "size", "parameters"))
    return {
        "family": _str(d.get("family"), _join(path, "family"), max_len=MAX_NAME, null=True),
        "size": _str(d.get("size"), _join(path, "size"), max_len=MAX_NAME, null=True),
        "parameters": _int(d.get("parameters"), _join(path, "parameters"), null=True, ge=0),
    }


def _named_params(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    d = _fields(value, path, ("name",), ("params",))
    return {
        "name": _str(d["name"], _join(path, "name"), max_len=MAX_NAME),
        "params": _freeform(_obj(d.get("params", {}), _join(path, "params")), _join(path, "params")),
    }


def _objective(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    d = _fields(value, path, ("metric",), ("mode",))
    return {
        "metric": _str(d["metric"], _join(path, "metric"), max_len=64, pattern=_KEY, what="a metric name"),
        "mode": _enum(d.get("mode", "min"), _join(path, "mode"), ("min", "max")),
    }


def _budget(value: Any, path: str) -> dict:
    d = _fields(value, path, (), ("steps", "epochs", "tokens", "seconds"))
    return {
        "steps": _int(d.get("steps"), _join(path, "steps"), null=True, ge=0),
        "epochs": _num(d.get("epochs"), _join(path, "epochs"), null=True, ge=0),
        "tokens": _int(d.get("tokens"), _join(path, "tokens"), null=True, ge=0),
        "seconds": _num(d.get("seconds"), _join(path, "seconds"), null=True, ge=0),
    }


def _cost(value: Any, path: str) -> dict:
    d = _fields(value, path, (), ("steps", "tokens", "seconds"))
    return {
        "steps": _int(d.get("steps"), _join(path, "steps"), null=True, ge=0),
        "tokens": _int(d.get("tokens"), _join(path, "tokens"), null=True, ge=0),
        "seconds": _num(d.get("seconds"), _join(path, "seconds"), null=True, ge=0),
    }


def _provenance(value: Any, path: str) -> dict:
    d = _fields(value, path, (), ("user", "host", "created", "app_version"))
    return {
        "user": _str(d.get("user"), _join(path, "user"), max_len=MAX_NAME, null=True),
        "host": _str(d.get("host"), _join(path, "host"), max_len=MAX_NAME, null=True),
        "created": _timestamp(d.get("created"), _join(path, "created")),
        "app_version": _str(d.get("app_version"), _join(path, "app_version"), max_len=64, null=True),
    }


def _source(value: Any, path: str) -> dict:
    d = _fields(value, path, ("title",), ("url", "citation"))
    return {
        "title": _str(d["title"], _join(path, "title"), max_len=MAX_NAME),
        "url": _str(d.get("url"), _join(path, "url"), max_len=2048, null=True),
        "citation": _str(d.get("citation"), _join(path, "citation"), max_len=MAX_STRING, null=True),
    }


def check_spec(value: Any, path: str, registry: Registry | None, unknown: set[str], depth: int = 0) -> dict:
    """Validate a policy spec's structure; leaves naming an installed policy are fully parsed.

    A leaf naming a policy not installed here (a colleague's plugin) is kept as written, its
    parameters checked only as bounded JSON, and its name added to ``unknown``.
    """
    if depth > MAX_DEPTH:
        raise FieldError(path, f"compositions nest at most {MAX_DEPTH} deep")
    d = _obj(value, path)
    if "sequence" in d:
        _fields(d, path, ("sequence", "boundaries"), ())
        seq, bounds = d["sequence"], d["boundaries"]
        if not isinstance(seq, list) or not seq or len(seq) > MAX_SEGMENTS:
            raise FieldError(_join(path, "sequence"), f"must be a list of 1 to {MAX_SEGMENTS} specs")
        if not isinstance(bounds, list) or len(bounds) != len(seq) - 1:
            raise FieldError(_join(path, "boundaries"), f"must be a list of {len(seq) - 1} step number(s)")
        prev = 0
        for i, b in enumerate(bounds):
            b = _int(b, _join(_join(path, "boundaries"), i), ge=prev + 1)
            prev = b  # type: ignore[assignment]
        return {
            "sequence": [check_spec(s, _join(_join(path, "sequence"), i), registry, unknown, depth + 1) for i, s in enumerate(seq)],
            "boundaries": [int(b) for b in bounds],
        }
    _fields(d, path, ("name",), ("params",))
    name = _str(d["name"], _join(path, "name"), max_len=64, pattern=_POLICY_NAME, what="a policy name")
    params = _freeform(_obj(d.get("params", {}), _join(path, "params")), _join(path, "params"))
    if registry is not None and name in registry.policies:
        try:
            parse_spec({"name": name, "params": params}, registry, path=path)
        except SpecError as exc:
            raise FieldError(exc.path, exc.message) from None
    else:
        unknown.add(name)  # type: ignore[arg-type]
    return {"name": name, "params": params}


@dataclass
class Normalized:
    """A record after validation, with what the importer needs to know about it."""

    record: dict[str, Any]
    unknown_policies: set[str] = field(default_factory=set)
    given_hash: str | None = None


def _common_tail(d: dict, out: dict) -> None:
    out["provenance"] = _provenance(d.get("provenance", {}), "provenance")
    out["tags"] = _tags(d.get("tags", []), "tags")
    out["notes"] = _str(d.get("notes", ""), "notes", max_len=MAX_TEXT)
    out["extra"] = _freeform(_obj(d.get("extra", {}), "extra"), "extra")


_STUDY_FIELDS = ("id", "name", "task", "task_params", "model", "tuner", "objective", "budget", "status", "provenance", "tags", "notes", "extra", "hash")
_TRIAL_FIELDS = (
    "id", "study", "kind", "task", "task_params", "model", "policy", "optimizer", "budget", "seed", "status",
    "objective", "metrics", "cost", "curves", "plugins", "provenance", "tags", "notes", "extra", "hash",
)
_POLICY_FIELDS = (
    "id", "name", "kind", "spec", "lr", "lr_range", "optimizer", "epochs", "warmup_ratio", "warmup_steps",
    "scheduler", "model", "task", "source", "provenance", "tags", "notes", "extra", "hash",
)
REQUIRED = {"studies": ("id", "name"), "trials": ("id", "task", "policy", "status"), "policies": ("id", "name", "kind", "source")}
FIELDS = {"studies": _STUDY_FIELDS, "trials": _TRIAL_FIELDS, "policies": _POLICY_FIELDS}


def _study(d: dict, registry: Registry | None, n: Normalized) -> dict:
    return {
        "id": _id(d["id"]),
        "name": _str(d["name"], "name", max_len=MAX_NAME),
        "task": _str(d.get("task"), "task", max_len=MAX_NAME, null=True),
        "task_params": _freeform(_obj(d.get("task_params", {}), "task_params"), "task_params"),
        "model": _model(d.get("model", {}), "model"),
        "tuner": _named_params(d.get("tuner"), "tuner"),
        "objective": _objective(d.get("objective"), "objective"),
        "budget": _budget(d.get("budget", {}), "budget"),
        "status": _enum(d.get("status", "created"), "status", STUDY_STATUSES),
    }


def _trial(d: dict, registry: Registry | None, n: Normalized) -> tuple[dict, dict[str, tuple[int, str]]]:
    out = {
        "id": _id(d["id"]),
        "study": None if d.get("study") is None else _id(d["study"], "study"),
        "kind": _enum(d.get("kind", "train"), "kind", TRIAL_KINDS),
        "task": _str(d["task"], "task", max_len=MAX_NAME),
        "task_params": _freeform(_obj(d.get("task_params", {}), "task_params"), "task_params"),
        "model": _model(d.get("model", {}), "model"),
        "policy": check_spec(d["policy"], "policy", registry, n.unknown_policies),
        "optimizer": _named_params(d.get("optimizer"), "optimizer"),
        "budget": _budget(d.get("budget", {}), "budget"),
        "seed": _int(d.get("seed"), "seed", null=True),
        "status": _enum(d["status"], "status", TRIAL_STATUSES),
        "objective": _objective(d.get("objective"), "objective"),
        "metrics": _name_map(d.get("metrics", {}), "metrics", lambda v, p: _num(v, p)),
        "cost": _cost(d.get("cost", {}), "cost"),
    }
    curves_in = _obj(d.get("curves", {}), "curves")
    if len(curves_in) > MAX_CURVES:
        raise FieldError("curves", f"has {len(curves_in)} curves; the limit is {MAX_CURVES}")
    curves: dict[str, Any] = {}
    digests: dict[str, tuple[int, str]] = {}
    for name, c in curves_in.items():
        if not _KEY.match(name):
            raise FieldError(_join("curves", name), "is not a valid curve name (letters, digits and _ . : / -)")
        try:
            cv = normalize_curve(c)
        except CurveError as exc:
            raise FieldError(_join(_join("curves", name), exc.field) if exc.field else _join("curves", name), exc.message) from None
        curves[name] = cv.packed()
        digests[name] = (len(cv), cv.digest())
    out["curves"] = curves
    out["plugins"] = _name_map(d.get("plugins", {}), "plugins", lambda v, p: _str(v, p, max_len=64))
    return out, digests


def _policy(d: dict, registry: Registry | None, n: Normalized) -> dict:
    lr_range = d.get("lr_range")
    if lr_range is not None:
        if not isinstance(lr_range, list) or len(lr_range) != 2:
            raise FieldError("lr_range", f"must be a list [low, high] or null, got {_tname(lr_range)}")
        lo = _num(lr_range[0], "lr_range[0]", gt=0)
        hi = _num(lr_range[1], "lr_range[1]", gt=0)
        if hi < lo:  # type: ignore[operator]
            raise FieldError("lr_range[1]", f"must be >= lr_range[0] ({lo!r}), got {hi!r}")
        lr_range = [lo, hi]
    spec = d.get("spec")
    return {
        "id": _id(d["id"]),
        "name": _str(d["name"], "name", max_len=MAX_NAME),
        "kind": _enum(d["kind"], "kind", POLICY_KINDS),
        "spec": None if spec is None else check_spec(spec, "spec", registry, n.unknown_policies),
        "lr": _num(d.get("lr"), "lr", null=True, gt=0),
        "lr_range": lr_range,
        "optimizer": _str(d.get("optimizer"), "optimizer", max_len=64, null=True),
        "epochs": _num(d.get("epochs"), "epochs", null=True, ge=0),
        "warmup_ratio": _num(d.get("warmup_ratio"), "warmup_ratio", null=True, ge=0, lt=1),
        "warmup_steps": _int(d.get("warmup_steps"), "warmup_steps", null=True, ge=0),
        "scheduler": _str(d.get("scheduler"), "scheduler", max_len=MAX_NAME, null=True),
        "model": _model(d.get("model", {}), "model"),
        "task": _str(d.get("task"), "task", max_len=MAX_NAME, null=True),
        "source": _source(d["source"], "source"),
    }


def normalize_record(table: str, raw: Any, registry: Registry | None) -> Normalized:
    """Validate one record of ``table`` and return it complete, packed and hashed.

    Raises :class:`FieldError` naming the first wrong field. A ``hash`` in the input must match
    the computed one (a record edited after export is refused; leave ``hash`` out to have it
    computed).
    """
    d = _fields(raw, "", REQUIRED[table], FIELDS[table])
    n = Normalized(record={})
    given = d.get("hash")
    if given is not None:
        n.given_hash = _str(given, "hash", max_len=64, pattern=_HEX64, what="a sha256 hex digest")
    digests = None
    if table == "studies":
        out = _study(d, registry, n)
    elif table == "trials":
        out, digests = _trial(d, registry, n)
    else:
        out = _policy(d, registry, n)
    _common_tail(d, out)
    out["hash"] = record_hash(out, digests)
    if n.given_hash is not None and n.given_hash != out["hash"]:
        raise FieldError(
            "hash",
            "does not match the record's content (it was changed after export); "
            "remove the hash field to accept the record as it is now",
        )
    n.record = out
    return n


def _problem(file: str, message: str) -> DocumentError:
    return DocumentError(Problem(file, message))


def read_document_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, gunzipped through a capped stream when it is gzip (by name or magic)."""
    name = str(path)
    if max_bytes is None:
        max_bytes = MAX_DOCUMENT_BYTES
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise _problem(name, f"cannot be read: {exc.strerror or exc}") from None
    with f:
        head = f.read(2)
        f.seek(0)
        is_gz = head == b"\x1f\x8b"
        if path.name.endswith(".gz") and not is_gz:
            raise _problem(name, "is named .gz but is not a gzip file")
        if not is_gz:
            size = f.seek(0, 2)
            f.seek(0)
            if size > max_bytes:
                raise _problem(name, f"is {size} bytes; the limit is {max_bytes}")
            return f.read()
        chunks: list[bytes] = []
        total = 0
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                while True:
                    chunk = gz.read(1 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > max_bytes:
                        raise _problem(name, f"decompresses to more than {max_bytes} bytes (a size bomb?); refused")
                    if total > GZIP_RATIO_AFTER and total > MAX_GZIP_RATIO * max(1, f.tell()):
                        raise _problem(name, f"decompresses more than {MAX_GZIP_RATIO} times its size (a size bomb?); refused")
                    chunks.append(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise _problem(name, f"is not a valid gzip file ({exc or type(exc).__name__}); truncated?") from None
        return b"".join(chunks)


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
        raise _problem(name, f"must hold a JSON object, got {_tname(doc)}")
    try:
        _obj(doc, "")
    except FieldError as exc:
        raise _problem(name, exc.message) from None
    if doc.get("format") != FORMAT_NAME:
        raise _problem(name, f"is not an lrbench export (field format must be {FORMAT_NAME!r}, got {_short(doc.get('format'))})")
    version = doc.get("version")
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
    if "schema" in doc and type(doc["schema"]) is not int:
        raise _problem(name, "field schema: must be a whole number")
    for table in TABLES:
        records = doc.get(table, [])
        if not isinstance(records, list):
            raise _problem(name, f"field {table}: must be a list of records, got {_tname(records)}")
        if len(records) > MAX_RECORDS:
            raise _problem(name, f"field {table}: holds {len(records)} records; the limit is {MAX_RECORDS}")
    return doc


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else _tname(value)
    return text if len(text) <= 60 else text[:57] + "..."
