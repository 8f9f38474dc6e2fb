"""Bounded JSON values: the reader that never yields NaN, and the checks every field goes through.

An untrusted document is parsed by :func:`parse_json_bytes`, which puts a marker where the file
says NaN or Infinity and notices an object that names a key twice, so the checks here refuse
both by record and field instead of storing them. Each check raises :class:`FieldError` with the
dotted path of the field (``curves.loss.values[7]``) and a plain-words reason; the record
validators (:mod:`lrbench_gui.core.db.validate`) and the envelope reader
(:mod:`lrbench_gui.core.db.document`) are built from them.
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import datetime
from typing import Any, Callable

__all__ = [
    "FieldError",
    "MAX_ID",
    "MAX_NAME",
    "MAX_TEXT",
    "MAX_STRING",
    "MAX_FREEFORM_NODES",
    "MAX_LIST",
    "KEY",
    "parse_json_bytes",
    "canonical_json",
    "type_name",
    "join",
    "fail",
    "as_object",
    "with_fields",
    "as_str",
    "as_number",
    "as_int",
    "as_choice",
    "as_time",
    "as_id",
    "as_tags",
    "freeform",
    "name_map",
]

MAX_ID = 128
MAX_NAME = 256
MAX_TEXT = 20_000  # notes
MAX_STRING = 4_096  # any other string, including inside free-form objects
MAX_FREEFORM_NODES = 5_000
MAX_LIST = 64  # tags, metric maps, plugin maps

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+\-]{0,127}$")
#: a metric, curve, plugin or map key
KEY = re.compile(r"^[A-Za-z0-9_.:/\-]{1,64}$")


class FieldError(ValueError):
    """One field of one record is wrong; ``field`` is a dotted path inside the record."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"field {field}: {message}" if field else message)


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


def type_name(value: Any) -> str:
    """What a value is, in the words of an error message (``a string``, ``null``, ``NaN``)."""
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


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def fail(path: str, message: str) -> Any:
    raise FieldError(path, message)


def as_object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(path, f"must be an object, got {type_name(value)}")
    if isinstance(value, _DupKeyDict):
        raise FieldError(path, f"names the key {value.duplicates[0]!r} more than once")
    return value


def with_fields(value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] | frozenset[str]) -> dict:
    """An object with exactly these fields: every required one, and nothing outside the two."""
    d = as_object(value, path)
    allowed = _allowed(required, optional)
    if not allowed.issuperset(d):
        key = next(k for k in d if k not in allowed)
        raise FieldError(join(path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in d:
            raise FieldError(join(path, key), "missing required field")
    return d


@functools.lru_cache(maxsize=64)
def _allowed(required: tuple[str, ...], optional: Any) -> frozenset[str]:
    return frozenset(required) | frozenset(optional)


def as_str(value: Any, path: str, *, max_len: int = MAX_STRING, null: bool = False, pattern: re.Pattern | None = None, what: str = "") -> str | None:
    if value is None and null:
        return None
    if not isinstance(value, str):
        return fail(path, f"must be a string{' or null' if null else ''}, got {type_name(value)}")
    if len(value) > max_len:
        raise FieldError(path, f"is {len(value)} characters long; the limit is {max_len}")
    if pattern is not None and not pattern.match(value):
        raise FieldError(path, f"{value[:80]!r} is not {what or 'allowed here'}")
    return value


def as_number(value: Any, path: str, *, null: bool = False, ge: float | None = None, gt: float | None = None, lt: float | None = None) -> float | int | None:
    if value is None and null:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return fail(path, f"must be a finite number{' or null' if null else ''}, got {type_name(value)}")
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


def as_int(value: Any, path: str, *, null: bool = False, ge: int | None = None) -> int | None:
    """A whole number; ``3.0`` is accepted as ``3``."""
    if value is None and null:
        return None
    if type(value) is not int:
        if type(value) is float and math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        else:
            return fail(path, f"must be a whole number{' or null' if null else ''}, got {type_name(value)}")
    if abs(value) >= 2**63:
        raise FieldError(path, "is too large")
    if ge is not None and value < ge:
        raise FieldError(path, f"must be >= {ge}, got {value}")
    return value


def as_choice(value: Any, path: str, choices: tuple[str, ...], *, null: bool = False) -> str | None:
    """One of ``choices``, returned as a plain ``str`` (a str enum member is stored as its value)."""
    if value is None and null:
        return None
    if value not in choices or not isinstance(value, str):
        got = repr(str.__str__(value)) if isinstance(value, str) else type_name(value)
        return fail(path, f"must be one of {', '.join(choices)}, got {got}")
    return str.__str__(value)


def as_time(value: Any, path: str) -> str | None:
    if value is None:
        return None
    text = as_str(value, path, max_len=64)
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))  # type: ignore[union-attr]
    except ValueError:
        raise FieldError(path, f"must be an ISO 8601 time like 2024-05-01T12:00:00Z, got {text!r}") from None
    return text


def as_id(value: Any, path: str = "id") -> str:
    return as_str(value, path, max_len=MAX_ID, pattern=_ID, what="a valid id (letters, digits and _ . : @ + -, at most 128)")  # type: ignore[return-value]


def as_tags(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        return fail(path, f"must be a list of strings, got {type_name(value)}")
    if len(value) > MAX_LIST:
        raise FieldError(path, f"has {len(value)} entries; the limit is {MAX_LIST}")
    return [as_str(v, join(path, i), max_len=MAX_NAME) for i, v in enumerate(value)]  # type: ignore[misc]


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


def freeform(value: Any, path: str, budget: list[int] | None = None, depth: int = 0) -> Any:
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
        return as_number(value, path)
    if isinstance(value, str):
        return as_str(value, path)
    if isinstance(value, list):
        return [freeform(v, join(path, i), budget, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        as_object(value, path)
        out = {}
        for k, v in value.items():
            as_str(k, join(path, "<key>"), max_len=MAX_NAME)
            out[k] = freeform(v, join(path, k), budget, depth + 1)
        return out
    return fail(path, f"must be a JSON value, got {type_name(value)}")


def name_map(value: Any, path: str, check_value: Callable[[Any, str], Any]) -> dict:
    """``{name: value}`` with at most :data:`MAX_LIST` entries, each value checked by ``check_value``."""
    d = as_object(value, path)
    if len(d) > MAX_LIST:
        raise FieldError(path, f"has {len(d)} entries; the limit is {MAX_LIST}")
    out = {}
    for k, v in d.items():
        if not KEY.match(k):
            raise FieldError(join(path, k), "is not a valid name (letters, digits and _ . : / -, at most 64)")
        out[k] = check_value(v, join(path, k))
    return out
