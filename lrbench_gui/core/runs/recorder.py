"""Turn a trial's event stream into one database record.

Both the CLI's runner and the GUI's QProcess bridge feed events here, so a trial is recorded the
same way whoever ran it. A process that dies without ``end`` becomes ``failed`` with the tail of
its stderr; a process the user cancelled becomes ``stopped`` even if it was killed before it
could say so.
"""

from __future__ import annotations

import getpass
import math
import platform
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from lrbench_gui import __version__
from lrbench_gui.core.records import TrialRecord, TrialStatus
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.runs.trial import TrialConfig

__all__ = ["TrialRecorder"]


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class TrialRecorder:
    """Accumulates one trial's events; :meth:`record` gives the database record."""

    def __init__(self, config: TrialConfig) -> None:
        self.config = config
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self.losses: list[float | None] = []
        self.evals: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.hello: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.log_tail: deque[str] = deque(maxlen=60)
        self.started = time.time()
        self.status = "pending"

    def feed(self, event: Event) -> None:
        kind, d = event.type, event.data
        if kind == "hello":
            self.hello = dict(d)
            self.status = TrialStatus.RUNNING.value
        elif kind == "step":
            self.steps.append(int(d["step"]))
            self.lrs.append(float(d["lr"]))
            self.losses.append(_finite_or_none(d["loss"]))
            self.last_step = dict(d)
            self.status = TrialStatus.RUNNING.value
        elif kind == "eval":
            step = int(d["step"])
            if self.evals and self.evals[-1][0] >= step:  # never two points at one step
                self.evals.pop()
            self.evals.append((step, dict(d.get("metrics") or {})))
        elif kind == "checkpoint":
            self.checkpoints.append(dict(d))
        elif kind == "error":
            self.errors.append(str(d.get("message", "")))
            self.log_tail.extend(str(x) for x in (d.get("log_tail") or []))
        elif kind == "end":
            self.end = dict(d)
            self.status = str(d["status"])

    def log(self, line: str) -> None:
        self.log_tail.append(line.rstrip("\n"))

    def finish(self, exit_code: int | None, stderr_tail: list[str], cancelled: bool = False) -> None:
        """The process is gone: settle the final status."""
        self.log_tail.extend(stderr_tail)
        if self.end is not None and not (cancelled and self.end.get("status") == TrialStatus.FAILED):
            self.status = str(self.end["status"])
            return
        if cancelled:
            self.status = TrialStatus.STOPPED.value
        else:
            self.status = TrialStatus.FAILED.value
            how = f"exit status {exit_code}" if exit_code is not None and exit_code >= 0 else (
                f"killed by signal {-exit_code}" if exit_code is not None else "crashed"
            )
            self.errors.append(f"the trainer ended without an end event ({how})")

    @property
    def progress(self) -> float:
        total = self.hello.get("steps") or (self.config.budget.steps or 0)
        return min(1.0, (self.steps[-1] + 1) / total) if total and self.steps else 0.0

    def record(self) -> TrialRecord:
        """The ``trials`` record for the database."""
        cfg = self.config
        end = self.end or {}
        metrics = {k: v for k, v in (end.get("metrics") or {}).items() if _finite_or_none(v) is not None}
        if not metrics and self.evals:
            metrics = {k: v for k, v in self.evals[-1][1].items() if _finite_or_none(v) is not None}
        if self.losses and "final_loss" not in metrics and self.losses[-1] is not None:
            metrics["final_loss"] = self.losses[-1]
        end_cost = dict(end.get("cost") or {})
        last = getattr(self, "last_step", {})
        cost = {
            "steps": int(end_cost.get("steps", len(self.steps))),
            "tokens": int(end_cost.get("tokens", last.get("tokens", 0))),
            "seconds": round(float(end_cost.get("seconds", last.get("time", 0.0))), 3),
        }
        info = self.hello.get("model") or {}
        model = {"family": info.get("family") or None, "parameters": self.hello.get("params")}
        curves = {
            "lr": (self.steps, self.lrs),
            "loss": ([s for s, v in zip(self.steps, self.losses) if v is not None],
                     [v for v in self.losses if v is not None]),
        }
        for name in sorted({k for _, m in self.evals for k in m}):
            pts = [(s, float(m[name])) for s, m in self.evals if _finite_or_none(m.get(name)) is not None]
            curves[f"eval/{name}"] = ([s for s, _ in pts], [v for _, v in pts])
        notes = self.errors + (list(self.log_tail)[-20:] if self.status == TrialStatus.FAILED else [])
        return {
            "id": cfg.trial_id,
            "study": cfg.study_id,
            "kind": "train",
            "task": cfg.task,
            "task_params": cfg.task_params,
            "model": model,
            "policy": cfg.policy,
            "optimizer": {"name": cfg.optimizer.name, "params": cfg.optimizer.model_dump(exclude={"name"}, mode="json")},
            "budget": cfg.budget.model_dump(exclude_none=True),
            "seed": cfg.seed,
            "status": self.status,
            "objective": {"metric": end.get("metric", "val_loss"), "mode": end.get("metric_mode", "min")},
            "metrics": metrics,
            "cost": cost,
            # whole curves: the database downsamples them to its bound when it stores the record
            "curves": {k: {"steps": list(xs), "values": list(ys)} for k, (xs, ys) in curves.items() if xs},
            "provenance": {
                "user": _user(),
                "host": platform.node(),
                "created": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
                "app_version": __version__,
            },
            "extra": {
                "backend": cfg.backend,
                "device": str(self.hello.get("device", cfg.device)),
                "samples": int(end_cost.get("samples", last.get("samples", 0))),
                "checkpoints": [c.get("path") for c in self.checkpoints][:64],
            },
            "notes": "\n".join(notes)[:8000],
        }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"
