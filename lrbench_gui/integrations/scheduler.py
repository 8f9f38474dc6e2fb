"""The torch side of :mod:`lrbench_gui.integrations`: a scheduler that follows an lrbench policy.

Imported on first use of one of its names through the package, so the package itself loads
without torch (the exported torch code of a composed policy needs only ``build_schedule``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim.lr_scheduler import LRScheduler

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import Schedule, Spec
from lrbench_gui.integrations import build_schedule, parse_spec

__all__ = ["PolicyLR", "as_lr_scheduler", "policy_scheduler"]


class PolicyLR(LRScheduler):
    """A torch LR scheduler whose LR at step k is ``schedule.lr_at(k)``.

    A reactive policy (``reduce_on_plateau``, a sequence's ``switch``) takes its metric like
    torch's ``ReduceLROnPlateau``: ``scheduler.step(value)`` after the optimizer step the value
    was measured at (``scheduler.step()`` alone makes no observation); :attr:`switches` says
    where the LR changed. ``step(value)`` on a policy that reacts to nothing is a ``TypeError``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1) -> None:
        self.schedule = schedule
        #: the observations ``step(value)`` made, ``[step, value]`` (kept in the state dict)
        self.observations: list[list[float]] = []
        self.scales = [float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]
        super().__init__(optimizer, last_epoch)

    def step(self, metrics: Any = None, epoch: Any = None) -> None:  # type: ignore[override]
        if metrics is not None and epoch is None:
            at = max(0, self.last_epoch)
            self.schedule.observe(at, float(metrics))
            self.observations.append([at, float(metrics)])
        if epoch is None:
            super().step()
        else:
            super().step(epoch)

    @property
    def switches(self) -> list[dict[str, Any]]:
        """Where the observations changed the LR: ``{"step", "lr", "reason"}``."""
        return self.schedule.switches()

    def get_lr(self) -> list[float]:
        lr = self.schedule.lr_at(max(0, self.last_epoch))
        return [lr * s for s in self.scales]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "spec": self.schedule.spec.to_json(),
            "total_steps": self.schedule.total_steps,
            # what the schedule was fed ([step, what, value]: step(value)'s, and schedule.observe/feed's)
            **({"observations": [list(o) for o in fed]} if (fed := self.schedule.observations()) else {}),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("spec") not in (None, self.schedule.spec.to_json()):
            raise ValueError("the saved scheduler followed a different policy spec")
        observations = state_dict.get("observations") or []
        if observations:  # a reactive schedule: its observations replayed into a fresh one
            if self.schedule.observations():
                raise ValueError("load_state_dict: this scheduler has observations of its own; load into a new one")
            if all(len(o) == 2 for o in observations):  # an older state dict: step(value)'s [step, value]
                observations = [[at, "", value] for at, value in observations]
            self.schedule.restore(observations)
            self.observations = [[int(at), float(value)] for at, what, value in observations if what == ""]
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict.get("_step_count", self.last_epoch + 1))
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


def as_lr_scheduler(
    spec: Spec | dict | str, optimizer: torch.optim.Optimizer, total_steps: int, registry: Registry | None = None
) -> PolicyLR:
    """A :class:`PolicyLR` on ``optimizer`` that follows ``spec`` over ``total_steps`` steps."""
    if isinstance(spec, (dict, str)):
        spec = parse_spec(spec, registry)
    return PolicyLR(optimizer, build_schedule(spec, total_steps, registry))


def policy_scheduler(
    spec: Spec | dict | str, total_steps: int, registry: Registry | None = None
) -> Callable[[torch.optim.Optimizer], PolicyLR]:
    """A factory ``optimizer -> scheduler``, the form ``deepspeed.initialize(lr_scheduler=...)`` takes."""
    parsed = parse_spec(spec, registry) if isinstance(spec, (dict, str)) else spec
    return lambda optimizer: as_lr_scheduler(parsed, optimizer, total_steps, registry)
