"""Turn a trial's event stream into one database record.

Both the CLI's runner and the GUI's QProcess bridge feed events here, so a trial is recorded the
same way whoever ran it. A process that dies without ``end`` becomes ``failed`` with the tail of
its stderr; a process the user cancelled becomes ``stopped`` even if it was killed before it
could say so.

The record is always one the database accepts, whatever the trainer sent: the first ``end``
event is the trial's end (a second one is ignored), and points the protocol allows but a stored
curve does not (an ``"inf"`` LR or loss), metrics that are not finite numbers, and names that are
not valid keys are dropped, each kind said once in the record's notes.

A command trial (the user's script) need not send ``end``: exit status 0 is ``completed`` with
the metrics of its last ``eval``, another is ``failed`` with the log tail, and a trial stopped
by the runner is ``stopped`` whatever it said last. One that reported nothing gets a note that
points at the report API.
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
from lrbench_gui.core.db.curves import MAX_INPUT_POINTS, MAX_STORED_POINTS, downsample
from lrbench_gui.core.db.fields import KEY
from lrbench_gui.core.reactive import MAX_SWITCHES
from lrbench_gui.core.records import TrialRecord, TrialStatus
from lrbench_gui.core.runs.command import NO_REPORT_NOTE
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.runs.trial import TrialConfig

__all__ = ["TrialRecorder"]

#: step points a recorder keeps in memory before it thins them (a 10M-step run stays bounded)
_KEEP_POINTS = 4 * MAX_INPUT_POINTS


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _whole(x: Any, default: int = 0) -> int:
    v = _finite_or_none(x)
    return int(v) if v is not None and v >= 0 else default


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
        #: why points or events were left out of the record, once per reason
        self.dropped: dict[str, str] = {}
        self.last_step: dict[str, Any] = {}
        #: seconds from the recorder's start to :meth:`finish`
        self.elapsed = 0.0
        #: where the trial ran (``gpus.trial_resources``: GPU ids, host, the launcher's include
        #: list), set by whoever started it; the record's ``resources`` when set
        self.resources: dict[str, Any] | None = None
        #: where a reactive policy changed the LR (a step event's ``switch``): ``{step, lr, reason}``
        self.switches: list[dict[str, Any]] = []

    def _drop(self, reason: str, text: str) -> None:
        self.dropped.setdefault(reason, text)

    def _cap_curves(self, curves: dict[str, Any], first: str) -> None:
        """Keep the database's number of curves (evaluators may report many metrics): ``lr``,
        ``loss``, the task's metric, then the shortest names (``mc_acc`` before ``mc_acc_words``);
        the final values of the ones left out stay in ``metrics``."""
        from lrbench_gui.core.db.validate import MAX_CURVES

        if len(curves) <= MAX_CURVES:
            return
        evals = sorted((k for k in curves if k.startswith("eval/")), key=lambda k: (k != first, len(k), k))
        out = evals[MAX_CURVES - (len(curves) - len(evals)):]
        for name in out:
            curves.pop(name)
        self._drop("curves", f"a record keeps {MAX_CURVES} curves: {', '.join(out)[:300]} left out (their final "
                             "values are in metrics)")

    def feed(self, event: Event) -> None:
        kind, d = event.type, event.data
        if kind == "hello":
            self.hello = dict(d)
            self.status = TrialStatus.RUNNING.value
        elif kind == "step":
            step, lr = int(d["step"]), _finite_or_none(d["lr"])
            if lr is None and "lr" not in (d.get("unreported") or ()):
                self._drop("lr", f"step {step}: the trainer reported a non-finite LR ({d['lr']}); "
                                 "such points are left out of the lr curve")
            self.steps.append(step)
            self.lrs.append(lr)  # type: ignore[arg-type]
            self.losses.append(_finite_or_none(d["loss"]))
            if len(self.steps) > _KEEP_POINTS:  # a very long run: memory stays bounded
                self._thin()
            self.last_step = dict(d)
            if isinstance(d.get("switch"), str) and len(self.switches) < MAX_SWITCHES:
                self.switches.append({"step": step, "lr": lr, "reason": d["switch"][:300]})
            if self.end is None:
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
            if self.end is not None:  # the first end is the trial's end
                self._drop("end", f"a second end event (status {d['status']}) was ignored")
                return
            self.end = dict(d)
            self.status = str(d["status"])

    def _thin(self) -> None:
        """Keep one point of every two of the step curves, the one with the higher loss (a spike
        survives), the first and the newest always kept."""
        n = len(self.steps)

        def loss(i: int) -> float:
            v = self.losses[i]
            return -math.inf if v is None else v

        keep = [0] + [i if loss(i) >= loss(i + 1) else i + 1 for i in range(1, n - 2, 2)] + [n - 1]
        self.steps = [self.steps[i] for i in keep]
        self.lrs = [self.lrs[i] for i in keep]
        self.losses = [self.losses[i] for i in keep]
        self._drop("thinned", f"the run's step curves were thinned to one point in two (the higher loss) past "
                              f"{_KEEP_POINTS:,} points (the database stores at most 1,000 a curve anyway)")

    def log(self, line: str) -> None:
        self.log_tail.append(line.rstrip("\n"))

    @property
    def is_command(self) -> bool:
        return self.config.command is not None

    def finish(self, exit_code: int | None, stderr_tail: list[str], cancelled: bool = False) -> None:
        """The process is gone: settle the final status."""
        self.log_tail.extend(stderr_tail)
        self.elapsed = time.time() - self.started
        if cancelled and self.is_command:
            self.status = TrialStatus.STOPPED.value
            return
        if self.end is not None and not (cancelled and self.end.get("status") == TrialStatus.FAILED):
            self.status = str(self.end["status"])
            return
        if cancelled:
            self.status = TrialStatus.STOPPED.value
        elif self.is_command and exit_code == 0:
            self.status = TrialStatus.COMPLETED.value
        else:
            self.status = TrialStatus.FAILED.value
            how = f"exit status {exit_code}" if exit_code is not None and exit_code >= 0 else (
                f"killed by signal {-exit_code}" if exit_code is not None else "crashed"
            )
            who = "the script" if self.is_command else "the trainer"
            self.errors.append(f"{who} ended without an end event ({how})")

    @property
    def progress(self) -> float:
        total = _whole(self.hello.get("steps")) or (self.config.budget.steps or 0)
        return min(1.0, (self.steps[-1] + 1) / total) if total and self.steps else 0.0

    def record(self) -> TrialRecord:
        """The ``trials`` record for the database."""
        cfg = self.config
        end = self.end if isinstance(self.end, dict) else {}
        metrics = self._metrics(end.get("metrics"))
        if not metrics and self.evals:
            metrics = self._metrics(self.evals[-1][1])
        if self.losses and "final_loss" not in metrics and self.losses[-1] is not None:
            metrics["final_loss"] = self.losses[-1]
        finite_losses = [v for v in self.losses if v is not None]
        if self.is_command and finite_losses and "best_loss" not in metrics:
            metrics["best_loss"] = min(finite_losses)
        if self.is_command and not self.steps and not self.evals and self.end is None:
            self._drop("no-report", NO_REPORT_NOTE)
        end_cost = end.get("cost") if isinstance(end.get("cost"), dict) else {}
        last = self.last_step
        # a script's steps carry "wall"; one that reported nothing is timed by its process
        fallback = last.get("time", last.get("wall", self.elapsed if self.is_command else 0.0))
        seconds = _finite_or_none(end_cost.get("seconds", fallback))
        cost = {
            "steps": _whole(end_cost.get("steps", len(self.steps)), len(self.steps)),
            "tokens": _whole(end_cost.get("tokens", last.get("tokens", 0))),
            "seconds": round(seconds, 3) if seconds is not None and seconds >= 0 else 0.0,
        }
        eval_seconds = _finite_or_none(end_cost.get("eval_seconds"))
        if eval_seconds is not None and eval_seconds >= 0:  # the evaluators' time, apart from training's
            cost["eval_seconds"] = round(eval_seconds, 3)
        info = self.hello.get("model") if isinstance(self.hello.get("model"), dict) else {}
        params = self.hello.get("params")
        model = {"family": str(info.get("family"))[:256] if info.get("family") else None,
                 "parameters": params if isinstance(params, int) and not isinstance(params, bool) else None}
        curves = {
            "lr": ([s for s, v in zip(self.steps, self.lrs) if v is not None], [v for v in self.lrs if v is not None]),
            "loss": ([s for s, v in zip(self.steps, self.losses) if v is not None],
                     [v for v in self.losses if v is not None]),
        }
        for name in sorted({k for _, m in self.evals for k in m}):
            if not KEY.match(f"eval/{name}"):
                self._drop("eval-name", f"an evaluation metric named {str(name)[:80]!r} is not a valid name; left out")
                continue
            pts = [(s, _finite_or_none(m.get(name))) for s, m in self.evals]
            curves[f"eval/{name}"] = ([s for s, v in pts if v is not None], [v for _, v in pts if v is not None])
        metric = end.get("metric", "val_loss")
        self._cap_curves(curves, f"eval/{metric}")
        objective = {"metric": metric if isinstance(metric, str) and KEY.match(metric) else "val_loss",
                     "mode": "max" if end.get("metric_mode") == "max" else "min"}
        notes = self.errors + list(self.dropped.values()) + (
            list(self.log_tail)[-20:] if self.status == TrialStatus.FAILED else [])
        record: dict[str, Any] = {
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
            "objective": objective,
            "metrics": metrics,
            "cost": cost,
            # whole curves: the database downsamples them to its bound when it stores the record
            "curves": {k: _bounded_curve(xs, ys) for k, (xs, ys) in curves.items() if xs},
            "provenance": {
                "user": _user(),
                "host": platform.node(),
                "created": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
                "app_version": __version__,
            },
            "extra": {
                "backend": cfg.backend,
                "precision": str(self.hello.get("precision", cfg.precision))[:32],
                "device": str(self.hello.get("device", cfg.device))[:64],
                "samples": _whole(end_cost.get("samples", last.get("samples", 0))),
                # the last 64: a merge and a resume take the latest ones
                "checkpoints": [str(c.get("path"))[:4096] for c in self.checkpoints][-64:],
                # what makes two runs comparable (the database's recommendations group by it)
                "world_size": _whole(self.hello.get("world_size")) or 1,
                # when the process started (unix time) and how long it lived, start-up included
                "started": round(self.started, 3),
                "wall_seconds": round(self.elapsed, 3),
                **({"tokenizer": str(self.hello["tokenizer"])[:256]} if self.hello.get("tokenizer") else {}),
                **({"switches": [dict(s) for s in self.switches]} if self.switches else {}),
                **({"command": list(cfg.command), "cwd": cfg.cwd} if cfg.command is not None else {}),
            },
            "notes": "\n".join(notes)[:8000],
        }
        if self.resources is not None:
            record["resources"] = dict(self.resources)
        return record  # type: ignore[return-value]

    def _metrics(self, raw: Any) -> dict[str, float]:
        """The finite, validly named numbers of a metrics object, as floats."""
        out: dict[str, float] = {}
        for key, value in (raw.items() if isinstance(raw, dict) else ()):
            v = _finite_or_none(value) if not isinstance(value, bool) else None
            if value is None:  # "not measured" (a best loss before any finite loss)
                continue
            if v is None:
                self._drop(f"metric:{str(key)[:80]}", f"metric {str(key)[:80]}: {str(value)[:40]} is not a finite "
                                                       "number; left out")
            elif not KEY.match(str(key)):
                self._drop("metric-name", f"a metric named {str(key)[:80]!r} is not a valid name; left out")
            elif len(out) < 64:
                out[str(key)] = v
        return out


def _bounded_curve(steps: list, values: list) -> dict[str, list]:
    """A curve the database accepts whatever the run's length: above its input bound, the
    database's own peak-keeping downsampling (it stores at most 1,000 points anyway)."""
    if len(steps) <= MAX_INPUT_POINTS:
        return {"steps": list(steps), "values": list(values)}
    import numpy as np

    xs, ys = downsample(np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64), MAX_STORED_POINTS)
    return {"steps": [int(x) for x in xs], "values": [float(y) for y in ys]}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"
