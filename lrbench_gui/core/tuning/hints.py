"""How a policy is searched, read from its parameter schema.

Each parameter may say what it is to a tuner (``param(..., role=, tune=, derive=)``, see
:func:`lrbench_gui.core.params.param`): the LR (``role="lr"``), a lower LR (``"min_lr"``), a
warmup length (``"warmup"``); whether it is searched by default (``tune``); and how it follows the
run's length when it is not (``derive``). A policy may also name its ordered pairs
(``Policy.ordered``); by default every ``min_lr``-role parameter is kept at or below every
``lr``-role one.

A policy whose schema declares none of these (one written before they existed) is read by the
conventions of torch and Hugging Face parameter names (:data:`CONVENTIONS`): a log-scale float
named ``lr`` or ``*_lr`` is an LR, ``warmup_steps`` is a warmup of 5 % of the run, and so on. No
rule here names a policy: a third-party policy takes part exactly like a built-in one.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from lrbench_gui.core.params import (
    ParamInfo,
    derive_value,
    describe,
    run_divisor,
    run_fraction,
    run_fractions,
)

__all__ = ["PolicyHints", "policy_hints", "CONVENTIONS", "LR_NAME"]

#: a parameter is an LR by convention when its name matches this and its schema says log=True
LR_NAME = re.compile(r"(^|_)lr$")

#: how an int parameter follows the run's length, by conventional name, for policies that
#: declare no ``derive`` of their own
CONVENTIONS: dict[str, dict[str, Any]] = {
    "warmup_steps": run_fraction(0.05),  # 5 % of the run
    "warmup_num_steps": run_fraction(0.05, 1),  # DeepSpeed's warmups: 5 %, at least 1
    "half_cycle": run_divisor(8),  # 4 full cycles per run
    "cycle_steps": run_divisor(4),  # 4 restarts per run
    "step_size": run_divisor(3),  # two decays (torch StepLR-style)
    "decay_steps": run_fraction(0.2),  # WSD: decay over the last 20 %
    "center": run_divisor(2),  # sigmoid: half-way
    "milestones": run_fractions(0.5, 0.75),  # 50 % and 75 % (the ResNet recipe)
}
_CONVENTIONAL_WARMUPS = ("warmup_steps", "warmup_num_steps")


@dataclass(frozen=True)
class PolicyHints:
    """What a tuner needs to know about one policy's parameters."""

    rows: tuple[ParamInfo, ...]
    #: parameter -> role ("lr", "min_lr", "warmup"), declared or by convention
    roles: dict[str, str]
    #: the parameters searched when the user narrows nothing
    searched: tuple[str, ...]
    #: the LR parameters that scale together (log-scale LRs of either role)
    lr_names: tuple[str, ...]
    #: parameter -> rule (see lrbench_gui.core.params.derive_value)
    derived: dict[str, dict[str, Any]]
    #: (lower, upper) pairs a schema refuses out of order
    ordered: tuple[tuple[str, str], ...]

    @property
    def warmups(self) -> tuple[str, ...]:
        return tuple(n for n, r in self.roles.items() if r == "warmup")

    @property
    def lr(self) -> str | None:
        """The policy's LR parameter (the one a label shows and a recipe's LR sets)."""
        return next((n for n, r in self.roles.items() if r == "lr"), None)

    def row(self, name: str) -> ParamInfo:
        return next(r for r in self.rows if r.name == name)

    def derive(self, name: str, steps: int) -> Any:
        """The value of derived parameter ``name`` for a run of ``steps``, inside its bounds."""
        value = derive_value(self.derived[name], steps)
        row = self.row(name)
        if row.kind == "int" and row.minimum is not None:
            value = max(int(math.ceil(row.minimum + (1 if row.exclusive_minimum else 0))), value)
        return value

    def zero(self, name: str) -> Any:
        """The smallest value the schema allows for a warmup (0, or its lower bound)."""
        row = self.row(name)
        if row.minimum is None:
            return 0
        return max(0, int(math.ceil(row.minimum + (1 if row.exclusive_minimum else 0))))


def _declares(rows: list[ParamInfo]) -> bool:
    return any(r.role or r.tune is not None or r.derive is not None for r in rows)


@functools.lru_cache(maxsize=1024)
def policy_hints(policy_cls: type) -> PolicyHints:
    """The search hints of a policy class (declared on its schema, or by convention). A class's
    schema never changes, so they are read once per class (labels ask for them per row)."""
    rows = describe(policy_cls.Params)
    declared = _declares(rows)
    roles: dict[str, str] = {}
    derived: dict[str, dict[str, Any]] = {}
    for r in rows:
        if declared:
            if r.role:
                roles[r.name] = r.role
            if r.derive is not None:
                derived[r.name] = r.derive
            continue
        if r.kind == "float" and r.log and LR_NAME.search(r.name):
            roles[r.name] = "min_lr" if r.name.startswith(("min_", "start_")) else "lr"
        elif r.name in _CONVENTIONAL_WARMUPS and r.kind == "int":
            roles[r.name] = "warmup"
        if r.kind in ("int", "int_list") and r.name in CONVENTIONS:
            derived[r.name] = CONVENTIONS[r.name]
    lr_names = tuple(r.name for r in rows if roles.get(r.name) in ("lr", "min_lr") and r.log and r.kind == "float")
    searched = tuple(
        r.name for r in rows
        if r.kind in ("float", "int") and (r.tune if r.tune is not None else r.name in lr_names)
    )
    ordered = tuple(getattr(policy_cls, "ordered", ()) or ())
    if not ordered:
        lows = [n for n, role in roles.items() if role == "min_lr"]
        highs = [n for n, role in roles.items() if role == "lr"]
        ordered = tuple((lo, hi) for lo in lows for hi in highs)
    return PolicyHints(tuple(rows), roles, searched, lr_names, derived, ordered)


def order_values(values: dict[str, Any], searched: set[str], ordered: tuple[tuple[str, str], ...]) -> None:
    """Put ordered pairs in order: a searched pair is sorted (it is symmetric), a pair with one
    searched value is clamped to the fixed one."""
    for lo, hi in ordered:
        if lo in values and hi in values and values[lo] > values[hi]:
            if lo in searched and hi in searched:
                values[lo], values[hi] = values[hi], values[lo]
            elif lo in searched:
                values[lo] = values[hi]
            else:
                values[hi] = values[lo]


