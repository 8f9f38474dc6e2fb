"""Follow any lrbench policy, compositions included, from your own training script.

    from lrbench_gui.integrations import as_lr_scheduler
    scheduler = as_lr_scheduler({"name": "cosine", "params": {"lr": 3e-4, "warmup_steps": 100}},
                                optimizer, total_steps=10_000)

plain torch:  call ``scheduler.step()`` after every ``optimizer.step()``;
Hugging Face: ``Trainer(..., optimizers=(optimizer, scheduler))``;
DeepSpeed:    ``deepspeed.initialize(..., lr_scheduler=policy_scheduler(spec, total_steps))``.

The scheduler overwrites each parameter group's LR with the policy's value (times the group's
optional ``"lr_scale"``), so the policy is the only source of the LR whatever the optimizer was
created with. This module imports torch; nothing at app start-up imports it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim.lr_scheduler import LRScheduler

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import Schedule, Spec
from lrbench_gui.core.spec import build_schedule as _build_schedule
from lrbench_gui.core.spec import parse_spec as _parse_spec

__all__ = ["PolicyLR", "as_lr_scheduler", "policy_scheduler", "build_schedule"]


def _installed(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from lrbench_gui.plugins import get_registry

    return get_registry()


def parse_spec(spec: Spec | dict | str, registry: Registry | None = None) -> Spec:
    return _parse_spec(spec, _installed(registry))


def build_schedule(spec: Spec | dict | str, total_steps: int, registry: Registry | None = None) -> Schedule:
    """The schedule of ``spec`` over ``total_steps`` with the installed policies (or ``registry``'s):
    ``schedule.lr_at(step)``. This is what ``lrbench policy export --to torch`` code calls."""
    return _build_schedule(spec, total_steps, _installed(registry))


class PolicyLR(LRScheduler):
    """A torch LR scheduler whose LR at step k is ``schedule.lr_at(k)``."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule, last_epoch: int = -1) -> None:
        self.schedule = schedule
        self.scales = [float(g.get("lr_scale", 1.0)) for g in optimizer.param_groups]
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = self.schedule.lr_at(max(0, self.last_epoch))
        return [lr * s for s in self.scales]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "spec": self.schedule.spec.to_json(),
            "total_steps": self.schedule.total_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("spec") not in (None, self.schedule.spec.to_json()):
            raise ValueError("the saved scheduler followed a different policy spec")
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
