"""The trial event protocol: one JSON object per line on the trial's stdout.

Every event has ``"v"`` (the protocol version), ``"type"`` and ``"trial"`` (the trial id). Types
and their fields are documented in docs/protocol.md. The reader treats a line it cannot parse as
log text, never as a crash, and so is an event whose fields have the wrong types (a step that is
not a whole number, an LR that is neither a number nor ``"nan"``/``"inf"``/``"-inf"``): whoever
reads events can trust their types. A step's ``lr`` or ``loss`` may be null (a script that does
not know it): readers get NaN, and the step's ``unreported`` lists it. A process that dies without ``end`` is recorded as failed by
the runner, with the tail of its stderr.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PROTOCOL_VERSION",
    "EVENT_TYPES",
    "END_STATUSES",
    "Event",
    "encode",
    "parse_line",
]

PROTOCOL_VERSION = 1
#: a longer line is log text (a protocol event is a few hundred bytes; an eval, a few KB)
MAX_LINE = 1 << 20
EVENT_TYPES = ("hello", "step", "eval", "checkpoint", "end", "error")
END_STATUSES = ("completed", "stopped", "diverged", "failed")
_REQUIRED = {
    "hello": ("pid",),
    "step": ("step", "lr", "loss"),
    "eval": ("step", "metrics"),
    "checkpoint": ("step", "path"),
    "end": ("status",),
    "error": ("message",),
}


@dataclass
class Event:
    type: str
    trial: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def _finite(obj: Any) -> Any:
    """NaN and infinities are not JSON: send them as strings ("nan", "inf", "-inf")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def encode(type_: str, trial: str, **fields: Any) -> str:
    """One protocol line (no newline)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    return json.dumps({"v": PROTOCOL_VERSION, "type": type_, "trial": trial, **_finite(fields)}, allow_nan=False)


def _number(value: Any) -> Any:
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _numeric(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("nan", "inf", "-inf")


def _typed(kind: str, data: dict[str, Any]) -> bool:
    """Whether an event's required fields have their documented types."""
    if kind in ("step", "eval", "checkpoint") and not _whole(data["step"]):
        return False
    if kind == "step":  # null: a script that does not know its LR or loss (lrbench_gui.report)
        return all(_numeric(data[k]) or data[k] is None for k in ("lr", "loss"))
    if kind == "eval":
        return isinstance(data["metrics"], dict)
    if kind == "checkpoint":
        return isinstance(data["path"], str)
    if kind == "end":
        return data["status"] in END_STATUSES
    if kind == "error":
        return isinstance(data["message"], str)
    return True


def parse_line(line: str | bytes) -> Event | None:
    """The event on ``line``, or None when the line is not a valid protocol event (log text)."""
    if len(line) > MAX_LINE:
        return None
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("v") != PROTOCOL_VERSION:
        return None
    kind, trial = obj.get("type"), obj.get("trial")
    if kind not in _REQUIRED or not isinstance(trial, str):
        return None
    if any(k not in obj for k in _REQUIRED[kind]):
        return None
    data = {k: v for k, v in obj.items() if k not in ("v", "type", "trial")}
    if not _typed(kind, data):
        return None
    if kind == "step":
        # readers get floats: a null becomes NaN, and "unreported" names it (not a non-finite value)
        unreported = [k for k in ("lr", "loss") if data[k] is None]
        data.pop("unreported", None)
        if unreported:
            data["unreported"] = unreported
        for key in ("loss", "lr"):
            data[key] = math.nan if data[key] is None else _number(data[key])
    else:
        for key in ("loss", "lr"):
            if key in data:
                data[key] = _number(data[key])
    return Event(kind, trial, data)
