"""The trial event protocol: one JSON object per line on the trial's stdout.

Every event has ``"v"`` (the protocol version), ``"type"`` and ``"trial"`` (the trial id). Types
and their fields are documented in docs/protocol.md. The reader treats a line it cannot parse as
log text, never as a crash; a process that dies without ``end`` is recorded as failed by the
runner, with the tail of its stderr.
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


def parse_line(line: str | bytes) -> Event | None:
    """The event on ``line``, or None when the line is not a valid protocol event (log text)."""
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
    for key in ("loss", "lr"):
        if key in data:
            data[key] = _number(data[key])
    if kind == "end" and data.get("status") not in END_STATUSES:
        return None
    return Event(kind, trial, data)
