"""The task: a training workload (model + data + metric) that a trial runs.

Lifecycle: the host validates the parameters against ``Task.Params`` in the app process (no
torch needed); the trial subprocess then builds the task and calls :meth:`Task.setup` to make the
model and data, after which the trainer drives the steps. Only the trainer imports torch, so a
task module must import torch inside :meth:`setup`, never at module level.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from .params import Params

__all__ = ["Task"]


class Task(abc.ABC):
    """Base of every training workload (digits, tiny LMs, LLM fine-tuning...)."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    metric: ClassVar[str] = "val_loss"
    metric_mode: ClassVar[str] = "min"

    def __init__(self, params: Params) -> None:
        self.params = params

    @abc.abstractmethod
    def setup(self, device: Any, seed: int) -> Any:
        """Build the model and the data inside the trial process."""
