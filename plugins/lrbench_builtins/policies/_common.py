"""Pieces the built-in policy families share."""

from __future__ import annotations

import json

from typing import Any

from lrbench_gui.core.params import param

LR_SEARCH = (1e-6, 1.0)


def lr_param(default: float, description: str = "Learning rate.", role: str = "lr") -> float:
    """An LR on a log scale, searched by default: the policy's peak (``role="lr"``) or a lower
    one kept at or below it (``role="min_lr"``)."""
    return param(default, description, gt=0, log=True, search=LR_SEARCH, role=role)


def min_lr_param(default: float = 0.0, description: str = "Lowest learning rate reached.") -> float:
    """A floor LR (0 allowed, so not log-scale and not searched by default)."""
    return param(default, description, ge=0, search=(0.0, 1e-3), role="min_lr")


def steps_param(default: int, description: str, minimum: int = 1, search: tuple[int, int] | None = None,
                derive: dict[str, Any] | None = None, role: str = "") -> int:
    """A length in steps; ``derive`` sets it from the run's length when a tuner does not search it."""
    return param(default, description, ge=minimum, unit="steps", search=search, derive=derive, role=role)


def gamma_param(default: float, description: str, search: tuple[float, float] = (0.9, 1.0),
                tune: bool | None = None, derive: dict[str, Any] | None = None) -> float:
    return param(default, description, gt=0, search=search, tune=tune, derive=derive)


def check_order(low_name: str, low: float, high_name: str, high: float) -> None:
    """Refuse ``low > high`` with the reason: torch and Hugging Face would draw such a curve
    upside down, but here the names say which end is which, and tuners search the low one below
    the high one."""
    if low > high:
        raise ValueError(f"{low_name} ({low}) must not exceed {high_name} ({high}): {low_name} is this curve's low "
                         f"end (torch would draw it upside down; tuners search {low_name} below {high_name}), so "
                         f"swap the two or pick a rising policy")


def torch_code(comment_lr: float, line: str) -> str:
    """Python source for a native torch scheduler on ``optimizer``."""
    return (
        "import torch\n\n"
        f"# Create the optimizer with lr={comment_lr!r}: the scheduler scales from that value.\n"
        f"scheduler = {line}\n"
        "# Call scheduler.step() once after every optimizer.step().\n"
    )


def as_json(value: object) -> str:
    return json.dumps(value)
