"""Follow any lrbench policy, compositions included, from your own training script.

    from lrbench_gui.integrations import as_lr_scheduler
    scheduler = as_lr_scheduler({"name": "cosine", "params": {"lr": 3e-4, "warmup_steps": 100}},
                                optimizer, total_steps=10_000)

plain torch:  call ``scheduler.step()`` after every ``optimizer.step()``;
Hugging Face: ``Trainer(..., callbacks=[FollowPolicy(spec)])`` from :mod:`lrbench_gui.integrations.hf`
              (survives ``model_init`` and ``hyperparameter_search``), or
              ``Trainer(..., optimizers=(optimizer, scheduler))``;
DeepSpeed:    ``deepspeed.initialize(..., lr_scheduler=policy_scheduler(spec, total_steps))``.

The scheduler overwrites each parameter group's LR with the policy's value (times the group's
optional ``"lr_scale"``), so the policy is the only source of the LR whatever the optimizer was
created with. Importing this package loads neither torch nor Qt: :func:`build_schedule` (what
``lrbench policy export --to torch`` code calls) needs neither, and the scheduler names import
torch on first use (from :mod:`lrbench_gui.integrations.scheduler`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import Schedule, Spec
from lrbench_gui.core.spec import build_schedule as _build_schedule
from lrbench_gui.core.spec import parse_spec as _parse_spec

if TYPE_CHECKING:
    from lrbench_gui.integrations.scheduler import PolicyLR, as_lr_scheduler, policy_scheduler

__all__ = ["PolicyLR", "as_lr_scheduler", "policy_scheduler", "build_schedule", "parse_spec"]

_TORCH_NAMES = ("PolicyLR", "as_lr_scheduler", "policy_scheduler")


def _installed(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from lrbench_gui.plugins import get_registry

    return get_registry()


def parse_spec(spec: Spec | dict | str, registry: Registry | None = None) -> Spec:
    """``spec`` validated against the installed policies (or ``registry``'s)."""
    return _parse_spec(spec, _installed(registry))


def build_schedule(spec: Spec | dict | str, total_steps: int, registry: Registry | None = None) -> Schedule:
    """The schedule of ``spec`` over ``total_steps`` with the installed policies (or ``registry``'s):
    ``schedule.lr_at(step)``. This is what ``lrbench policy export --to torch`` code calls."""
    return _build_schedule(spec, total_steps, _installed(registry))


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from lrbench_gui.integrations import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
