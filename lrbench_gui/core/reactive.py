"""Policies that react to a monitored metric: the plateau rule, its parameters, and the feed.

A reactive policy (``Policy.reactive``, and a sequence with a ``switch``) is still a function:
its LR at step ``k`` depends on ``k`` and on the *observations* made before ``k`` (an
observation at step ``j`` is the monitored value after optimizer step ``j``, and first moves the
LR of step ``j + 1``), never on when or how often ``lr_at`` is asked. Who trains feeds it:

- :meth:`Feed.step` / :meth:`Feed.eval` turn a run's raw numbers into observations: the train
  loss smoothed by an EMA and observed every ``every`` steps (``monitor: "loss"``), or an eval
  metric observed at each evaluation that reports it (``monitor: "val_loss"``, any evaluator's);
- ``observe(step, value)`` is one observation as is, torch's ``ReduceLROnPlateau.step(metric)``;
- ``Schedule.observations()`` is what a schedule was fed (compact rows), and ``restore`` replays
  them into a fresh one: a resumed trial's or scheduler's LR and switches continue exactly.

:class:`PlateauRule` is torch's rule exactly (``mode``, ``threshold_mode``, ``threshold``,
``patience``, ``cooldown``): it fires where torch's ``ReduceLROnPlateau`` would reduce.
:func:`synthetic_curve` gives the loss curves the visualizers draw a reactive policy against
before any run; a :class:`Trace` (synthetic, or a recorded trial's curves) is fed through a
schedule by :func:`drive`, and :func:`replay` observes values as they are, once per step.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

from pydantic import field_validator

from lrbench_gui.core.params import Params, clip, param

__all__ = ["MonitorParams", "PlateauParams", "PlateauRule", "Feed", "SYNTHETIC", "synthetic_curve", "Trace", "drive",
           "replay", "MAX_SWITCHES"]

#: switches kept per schedule (and per trial record): enough for any sensible run
MAX_SWITCHES = 256


class MonitorParams(Params):
    """What is watched, and when it is observed."""

    monitor: str = param("loss", "The metric watched: loss (the train loss, smoothed) or an eval metric "
                                 "(val_loss, any evaluator's metric), observed at each evaluation.")
    every: int = param(10, "With monitor loss: observe the smoothed train loss every this many steps.", ge=1,
                       unit="steps")
    smoothing: float = param(0.9, "With monitor loss: the EMA factor of the train loss (0: the raw loss).",
                             ge=0, lt=1)

    @field_validator("monitor")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or len(v) > 64 or not all(c.isalnum() or c in "_-./" for c in v):
            raise ValueError("must be a metric name (letters, digits, _ - . /), like loss or val_loss")
        return v


class PlateauParams(MonitorParams):
    """torch ``ReduceLROnPlateau``'s plateau test."""

    mode: Literal["min", "max"] = param("min", "min: lower is better (a loss); max: higher is better (an accuracy).")
    threshold: float = param(1e-4, "How much better a value must be to count as an improvement.", ge=0)
    threshold_mode: Literal["rel", "abs"] = param("rel", "rel: better than best x (1 -/+ threshold); "
                                                         "abs: better than best -/+ threshold.")
    patience: int = param(10, "Observations without improvement tolerated; one more is a plateau.", ge=0)
    cooldown: int = param(0, "Observations ignored after a plateau fired.", ge=0)


class PlateauRule:
    """torch ``ReduceLROnPlateau``'s bookkeeping (``best``, ``num_bad_epochs``,
    ``cooldown_counter``): :meth:`update` is True where torch would reduce the LR."""

    def __init__(self, p: PlateauParams) -> None:
        self.mode, self.threshold, self.threshold_mode = p.mode, p.threshold, p.threshold_mode
        self.patience, self.cooldown = p.patience, p.cooldown
        self.best = math.inf if p.mode == "min" else -math.inf
        self.num_bad = 0
        self.cooldown_counter = 0

    def better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def update(self, value: float) -> bool:
        current = float(value)
        if self.better(current, self.best):
            self.best = current
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad = 0
            return True
        return False

    def reason(self, value: float, monitor: str) -> str:
        return (f"{monitor} {value:.4g} did not improve on {self.best:.4g} for {self.patience + 1} "
                f"observation{'s' if self.patience else ''}")


class Feed:
    """A run's numbers -> observations of ``p.monitor`` (see the module's docstring)."""

    def __init__(self, p: MonitorParams) -> None:
        self.monitor, self.every, self.smoothing = p.monitor, p.every, p.smoothing
        self.ema: float | None = None

    def step(self, step: int, loss: float) -> float | None:
        """The observation after training step ``step`` with train loss ``loss``, or None."""
        if self.monitor != "loss" or not math.isfinite(loss):
            return None
        self.ema = loss if self.ema is None else self.smoothing * self.ema + (1.0 - self.smoothing) * loss
        return self.ema if (step + 1) % self.every == 0 else None

    def eval(self, step: int, metrics: dict[str, Any]) -> float | None:
        """The observation of an evaluation at ``step``, or None (not the metric watched)."""
        value = metrics.get(self.monitor, metrics.get("*"))  # "*": any metric (drive)
        if self.monitor == "loss" or value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            return None


#: the synthetic loss curves a reactive policy is drawn against before a run
SYNTHETIC = {
    "plateaus": "a decaying loss with two flat stretches (at 25-45 % and 60-85 % of the run)",
    "decay": "a loss that decays to a floor (flat within torch's default threshold from about 65 % of the run)",
    "noisy": "the plateaus curve with +-2 % noise (a fixed seed)",
}


def synthetic_curve(name: str, steps: int) -> list[float]:
    """The ``steps`` values of synthetic loss curve ``name`` (one of :data:`SYNTHETIC`)."""
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic curve {clip(name)}; choose one of {', '.join(SYNTHETIC)}")
    n = max(1, int(steps))
    out: list[float] = []
    level = 2.5
    for k in range(n):
        t = k / n
        if name == "decay":
            out.append(0.4 + 2.1 * math.exp(-t / 0.06))
            continue
        flat = 0.25 <= t < 0.45 or 0.60 <= t < 0.85
        if k:
            level = level if flat else level * (1 - 4.0 / n) + 0.3 * (4.0 / n)
        out.append(level)
    if name == "noisy":
        import random

        rng = random.Random(1234)
        out = [v * (1 + 0.02 * (2 * rng.random() - 1)) for v in out]
    return out


class Trace:
    """What a reactive policy is drawn against: the train loss of each step (``loss[k]``; shorter
    than the run is fine) and evaluations (``evals[step] = {metric: value}``; the metric ``"*"``
    stands for whichever one a policy watches)."""

    def __init__(self, loss: Sequence[float] = (), evals: dict[int, dict[str, float]] | None = None,
                 label: str = "") -> None:
        self.loss = [float(v) for v in loss]
        self.evals = dict(evals or {})
        self.label = label

    @classmethod
    def synthetic(cls, name: str, steps: int) -> "Trace":
        """Synthetic curve ``name`` as the train loss and as an eval metric at every step."""
        values = synthetic_curve(name, steps)
        return cls(values, {k: {"*": v} for k, v in enumerate(values)}, f"synthetic {name} loss")

    @classmethod
    def of_record(cls, record: dict[str, Any]) -> "Trace":
        """A recorded trial's curves: its ``loss`` linearly interpolated between the stored points
        (a stored curve keeps at most 1,000 of them), its ``eval/*`` curves at their steps."""
        from lrbench_gui.core.records import curve_points

        curves = record.get("curves") if isinstance(record.get("curves"), dict) else {}
        pts = curve_points(curves.get("loss"))
        if not pts:
            raise ValueError(f"trial {clip(str(record.get('id', '?')))} has no loss curve to draw against")
        loss: list[float] = []
        for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
            loss += [v0 + (v1 - v0) * (k - s0) / (s1 - s0) for k in range(s0, s1)] if s1 > s0 else []
        loss.append(pts[-1][1])
        loss = [pts[0][1]] * pts[0][0] + loss
        evals: dict[int, dict[str, float]] = {}
        for name, curve in curves.items():
            if isinstance(name, str) and name.startswith("eval/"):
                for step, value in curve_points(curve):
                    evals.setdefault(step, {})[name[5:]] = value
        return cls(loss, evals, f"trial {clip(str(record.get('id', '?')), 40)}")


def drive(schedule: Any, trace: Trace, steps: int | None = None) -> list[float]:
    """The LRs of ``schedule`` (a fresh :class:`~lrbench_gui.core.spec.Schedule`) over ``steps``
    (default: the trace's length), fed ``trace`` as a run would feed it: the train loss after
    each step, then the evaluation of that step if there is one."""
    n = len(trace.loss) if steps is None else int(steps)
    lrs = []
    for k in range(n):
        lrs.append(schedule.checked_lr(k))
        if k < len(trace.loss):
            schedule.feed(k, loss=trace.loss[k])
        if k in trace.evals:
            schedule.feed(k, metrics=trace.evals[k])
    return lrs


def replay(schedule: Any, values: Sequence[float]) -> list[float]:
    """The LRs of ``schedule`` when ``values[k]`` is observed as is after each step ``k``
    (torch's ``scheduler.step(values[k])`` once per step)."""
    lrs = []
    for k, v in enumerate(values):
        lrs.append(schedule.checked_lr(k))
        schedule.observe(k, float(v))
    return lrs
