"""Names shared by the stdlib-only :mod:`lrbench_gui.report` and the core (no imports beyond os)."""

from __future__ import annotations

import os

__all__ = ["file_trial_id"]


def file_trial_id(path: str) -> str:
    """A safe trial id from a report file's name (``runs/lr-3e-4.jsonl`` -> ``lr-3e-4``)."""
    stem = os.path.basename(path).split(".jsonl")[0].split(".json")[0]
    safe = "".join(ch if ch.isalnum() or ch in "_.:@+-" else "-" for ch in stem).strip(".-")[:128]
    return safe if safe and safe[0].isalnum() else "script"
