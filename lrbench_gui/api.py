"""The public plugin API: everything a plugin author (or a script) needs, from one module.

::

    from lrbench_gui.api import Params, Policy, SearchTuner, Task, hookimpl, param

The names here are the supported surface; the modules they come from may move between releases
(the older import paths, ``lrbench_gui.core.params`` and the rest, keep working for at least one
release). docs/plugins.md is the reference: the lifecycle of each kind, every method and
attribute with its contract, and tested examples of a policy, a tuner and a task.

This module is an edge of the design, like the CLI and the app: :func:`load_registry` gives a
script the installed plugins (the core never looks them up by itself; it is always handed a
registry).
"""

from __future__ import annotations

from typing import Any

from lrbench_gui.core.params import (
    Params,
    decay_over_run,
    inverse_run,
    param,
    run_divisor,
    run_fraction,
    run_fractions,
)
from lrbench_gui.core.evaluator import EvalContext, Evaluator
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.core.records import TrialStatus, spec_label
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.core.tuner import Objective, StudyBudget, TrialRequest, TrialResult, Tuner
from lrbench_gui.core.tuning.search import PlannedTuner, SearchTuner
from lrbench_gui.core.tuning.space import Dim, Family, SearchSpace
from lrbench_gui.hookspecs import hookimpl

__all__ = [
    "hookimpl",
    "Policy",
    "Export",
    "Params",
    "param",
    "run_fraction",
    "run_divisor",
    "run_fractions",
    "decay_over_run",
    "inverse_run",
    "Task",
    "TaskContext",
    "Evaluator",
    "EvalContext",
    "Tuner",
    "TrialRequest",
    "TrialResult",
    "Objective",
    "StudyBudget",
    "SearchTuner",
    "PlannedTuner",
    "SearchSpace",
    "Family",
    "Dim",
    "policy_space",
    "TrialStatus",
    "spec_label",
    "Registry",
    "load_registry",
    "compose_space",
    "parse_spec",
    "build_schedule",
    "sample",
]


def load_registry(reload: bool = False) -> Registry:
    """The registry of the installed plugins: the built-ins, entry points of the ``lrbench``
    group and the user plugins folder, as ``lrbench plugins`` lists them. It is loaded once per
    process and shared; ``reload=True`` loads the plugins again (after a new file was dropped in
    the plugins folder). Pass it wherever the core asks for a registry::

        reg = load_registry()
        space = policy_space(["cosine", "my-policy"], registry=reg)
    """
    from lrbench_gui.plugins import get_registry, reset_registry

    if reload:
        reset_registry()
    return get_registry()


def _reg(registry: Registry | None) -> Registry:
    return registry if registry is not None else load_registry()


def policy_space(names: Any, registry: Registry | None = None, overrides: dict[str, Any] | None = None,
                 lr_range: Any = None) -> SearchSpace:
    """One search-space family per policy (see docs/tuning.md), with the installed policies
    unless ``registry`` is given."""
    from lrbench_gui.core.tuning.families import policy_space as _policy_space

    return _policy_space(names, _reg(registry), overrides=overrides, lr_range=lr_range)


def compose_space(first: Any, second: Any = None, registry: Registry | None = None, **kw: Any) -> SearchSpace:
    """Multi-policy compositions (see docs/tuning.md), with the installed policies unless
    ``registry`` is given."""
    from lrbench_gui.core.tuning.families import compose_space as _compose_space

    return _compose_space(first, second, _reg(registry), **kw)


def parse_spec(spec: Any, registry: Registry | None = None) -> Any:
    """A policy spec (dict or JSON text) validated against the installed policies."""
    from lrbench_gui.core.spec import parse_spec as _parse_spec

    return _parse_spec(spec, _reg(registry))


def build_schedule(spec: Any, total_steps: int, registry: Registry | None = None) -> Any:
    """The schedule of a spec over ``total_steps``: ``schedule.lr_at(step)``."""
    from lrbench_gui.core.spec import build_schedule as _build_schedule

    return _build_schedule(spec, total_steps, _reg(registry))


def sample(spec: Any, steps: int, registry: Registry | None = None) -> list[float]:
    """The LRs of steps ``0 .. steps-1`` of a run of ``steps`` steps."""
    return build_schedule(spec, steps, registry).lrs()
