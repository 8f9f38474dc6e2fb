"""The learning-rate policy: a pure function of the step.

Lifecycle: the host validates a parameter set against ``Policy.Params``, then builds
``Policy(params, total_steps)`` once per run (or per segment of a composition) and calls
:meth:`Policy.lr_at` for any step, in any order, as often as it likes. A policy keeps no state
between calls, so it can be plotted before a run, serialized as its spec, and composed.

Step convention: ``lr_at(k)`` is the learning rate used by the k-th optimizer step (k = 0 is the
first). It is what a torch scheduler shows in ``optimizer.param_groups[i]["lr"]`` after ``k``
calls to ``scheduler.step()``, and what DeepSpeed's engine applies on its k-th step.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from lrbench_gui.core.params import Params

__all__ = ["Policy", "Export"]


class Export:
    """What a policy says about its equivalent in another framework.

    ``exact`` is True when the framework's own scheduler reproduces :meth:`Policy.lr_at` at every
    step; ``value`` is the framework's configuration (a dict for DeepSpeed and Hugging Face, a
    Python source string for torch); ``note`` explains a caveat or why there is none.
    """

    __slots__ = ("value", "exact", "note")

    def __init__(self, value: Any, exact: bool = True, note: str = "") -> None:
        self.value = value
        self.exact = exact
        self.note = note


class Policy(abc.ABC):
    """Base of every LR policy. Subclasses set the class attributes and implement :meth:`lr_at`.

    Class attributes:
        name: unique registry name, lower case (``cosine``, ``triangle2``).
        Params: the pydantic parameter model (see :mod:`lrbench_gui.core.params`).
        version: the policy's version; bump it when the formula changes.
        summary: one line for lists and tooltips.
        family: a grouping for menus (``classic``, ``cyclic``, ``restart``, ``llm``, ``deepspeed``).
        reference: the implementation the policy reproduces, if any, in words.
        uses_total_steps: whether the curve depends on the run's length (cosine, poly...).
        reactive: whether the curve also depends on a monitored metric (``reduce_on_plateau``):
            such a policy implements :meth:`observe` and :meth:`feed`, and ``lr_at(k)`` reads only
            the observations made before step ``k`` (see :mod:`lrbench_gui.core.reactive`).
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    family: ClassVar[str] = "other"
    reference: ClassVar[str] = ""
    uses_total_steps: ClassVar[bool] = False
    reactive: ClassVar[bool] = False

    def __init__(self, params: Params, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1 (got {total_steps})")
        self.params = params
        self.total_steps = int(total_steps)

    @abc.abstractmethod
    def lr_at(self, step: int) -> float:
        """The learning rate for optimizer step ``step`` (0-based). Must be finite and >= 0."""

    def lrs(self, n: int | None = None) -> list[float]:
        """The learning rates of steps ``0 .. n-1`` (``n`` defaults to the run's length)."""
        return [self.lr_at(s) for s in range(self.total_steps if n is None else n)]

    def peak_lr(self) -> float:
        """The largest LR over the run; tuners scale a policy by it."""
        return max(self.lrs())

    # A reactive policy's side; a plain policy observes nothing.
    def observe(self, step: int, value: float) -> None:
        """One observation of the monitored metric after step ``step`` (torch's
        ``ReduceLROnPlateau.step(value)``); it first moves the LR of step ``step + 1``."""
        raise TypeError(f"policy {self.name} does not react to a metric")

    def feed(self, step: int, loss: float | None = None, metrics: dict[str, float] | None = None) -> None:
        """A run's train loss after ``step`` and/or an evaluation's metrics at ``step``; a reactive
        policy turns them into observations of its ``monitor`` (no-op for a plain policy)."""

    def switches(self) -> list[dict]:
        """Where the LR was changed by an observation: ``{"step", "lr", "reason"}``, ``step``
        being the first step with the new LR ([] for a plain policy)."""
        return []

    # Exports to other frameworks. None means "no equivalent": the exporter then says so.
    def to_deepspeed(self) -> Export | None:
        """A DeepSpeed ``scheduler`` block (``{"type": ..., "params": {...}}``)."""
        return None

    def to_hf(self) -> Export | None:
        """Hugging Face ``TrainingArguments`` fields (``lr_scheduler_type``, ...)."""
        return None

    def to_torch(self) -> Export | None:
        """Python source that builds a native ``torch.optim.lr_scheduler`` on ``optimizer``."""
        return None
