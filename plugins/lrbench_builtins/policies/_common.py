"""Pieces the built-in policy families share."""

from __future__ import annotations

import json

from lrbench_gui.core.params import param

LR_SEARCH = (1e-6, 1.0)


def lr_param(default: float, description: str = "Learning rate.") -> float:
    return param(default, description, gt=0, log=True, search=LR_SEARCH)


def min_lr_param(default: float = 0.0, description: str = "Lowest learning rate reached.") -> float:
    return param(default, description, ge=0, search=(0.0, 1e-3))


def steps_param(default: int, description: str, minimum: int = 1, search: tuple[int, int] | None = None) -> int:
    return param(default, description, ge=minimum, unit="steps", search=search)


def gamma_param(default: float, description: str, search: tuple[float, float] = (0.9, 1.0)) -> float:
    return param(default, description, gt=0, search=search)


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
