"""Every hook a plugin can implement.

A plugin is a module (or package) with functions decorated by :data:`hookimpl` whose names are
the hooks below. Built-in policies, tuners, tasks and evaluators use exactly these hooks.
"""

from __future__ import annotations

from typing import Callable

from pluggy import HookimplMarker, HookspecMarker

__all__ = ["hookspec", "hookimpl", "Register"]

hookspec = HookspecMarker("lrbench")
hookimpl = HookimplMarker("lrbench")

#: The host's callback: ``register(cls)`` adds one item. A refused item (duplicate name, bad
#: schema) is recorded as a plugin problem and the call returns, so the hook goes on.
Register = Callable[[type], None]


@hookspec
def register_policies(register: Register) -> None:
    """Register LR policies: call ``register(PolicySubclass)`` once per policy.

    Called once when plugins load, before the app or the CLI uses any policy. The host rejects a
    duplicate name or an invalid schema, records the reason and goes on with the next item; a
    hook that raises loses all the items it registered in that call.
    """


@hookspec
def register_tuners(register: Register) -> None:
    """Register search strategies: call ``register(TunerSubclass)`` once per tuner.

    Called once when plugins load. Same rules as :func:`register_policies`.
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register training workloads: call ``register(TaskSubclass)`` once per task.

    Called once when plugins load, in the app and again inside each trial subprocess. A task
    module must not import torch at module level (the app must start without it).
    """


@hookspec
def register_evaluators(register: Register) -> None:
    """Register evaluators (:class:`lrbench_gui.core.evaluator.Evaluator` subclasses): call
    ``register(EvaluatorSubclass)`` once per evaluator.

    Called once when plugins load, in the app and again inside each trial subprocess. Same rules
    as :func:`register_tasks`: no torch import at module level.
    """
