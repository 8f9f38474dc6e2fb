"""Reading an evaluation set: a local JSONL file, or a shipped one named ``builtin:NAME``
(``plugins/lrbench_builtins/data/NAME.jsonl``, made by ``data/make_tinylm_sets.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["resolve", "read_jsonl", "BUILTIN_DIR", "MAX_BYTES"]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "data"
#: an evaluation set larger than this is refused (it is read whole, once per trial)
MAX_BYTES = 256 * 1024 * 1024


def resolve(path: str) -> Path:
    """The file of ``path``: ``builtin:NAME`` is a shipped set, anything else a local path."""
    if path.startswith("builtin:"):
        name = path.removeprefix("builtin:")
        target = BUILTIN_DIR / f"{name}.jsonl"
        if not name or "/" in name or "\\" in name or not target.is_file():
            known = ", ".join(sorted(f"builtin:{p.stem}" for p in BUILTIN_DIR.glob("*.jsonl"))) or "none"
            raise ValueError(f"no shipped evaluation set {path!r} (shipped: {known})")
        return target
    return Path(path).expanduser()


def read_jsonl(path: str, fields: dict[str, type | tuple[type, ...]], what: str) -> list[dict[str, Any]]:
    """The records of a JSONL file, each an object with ``fields`` of the given types;
    ``ValueError`` in one line naming the file and the line otherwise."""
    file = resolve(path)
    if not file.is_file():
        raise ValueError(f"{what}: path {path!r} is not a file: give a local JSONL file or a builtin:NAME set")
    if file.stat().st_size > MAX_BYTES:
        raise ValueError(f"{what}: {path!r} is larger than {MAX_BYTES >> 20} MiB")
    records = []
    with file.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{what}: {file.name} line {n} is not JSON ({exc})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{what}: {file.name} line {n} is not a JSON object")
            for key, kind in fields.items():
                if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
                    names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
                    raise ValueError(f"{what}: {file.name} line {n} needs {key!r} as {names}, got {rec.get(key)!r:.80}")
            records.append(rec)
    if not records:
        raise ValueError(f"{what}: {path!r} has no records")
    return records
