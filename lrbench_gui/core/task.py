"""The task: a training workload (model + data + metric) that a trial runs.

Lifecycle, inside the trial subprocess (the app only validates ``Task.Params``, torch-free):

1. ``task = TaskClass(params)``; ``task.setup(ctx)`` builds the data and returns the model (on
   the CPU; the trainer moves it to the device, or hands it to DeepSpeed). ``ctx`` carries the
   seed, the device, the rank and world size, the batch size and a scratch folder.
2. ``task.train_batches()`` is an endless iterator of micro-batches for this rank;
   ``task.loss(model, batch)`` returns ``(loss_tensor, counts)`` where counts has ``samples``
   and, for language models, ``tokens``.
3. Every ``eval_every`` steps and at the end, ``task.evaluate(model)`` returns finite metrics,
   including ``task.metric`` (lower is better when ``metric_mode == "min"``).
4. ``task.save_model(model, folder)`` may save the trained model (``save_pretrained`` for HF).
5. A task that opts in (:meth:`Task.warm_reuse`) may run in a warm worker, trial after trial in
   one process: ``ctx.cache`` then outlives the trial, and ``task.release(model)`` follows it.

``samples_per_epoch()`` and ``tokens_per_sample()`` let the trainer turn an epoch or token
budget into steps. A task module must not import torch at module level: the app must start
without it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from lrbench_gui.core.params import Params

__all__ = ["Task", "TaskContext"]


@dataclass
class TaskContext:
    seed: int
    device: Any  # a torch.device inside the trainer
    batch_size: int
    rank: int = 0
    world_size: int = 1
    workdir: Path = field(default_factory=Path.cwd)
    log: Any = print  # human log (stderr in the trainer)
    #: the trial's precision (fp32, bf16-mixed, fp16-mixed, bf16-true); the trainer applies it
    precision: str = "fp32"
    #: the DeepSpeed config the trial runs under (None without DeepSpeed), e.g. for ZeRO-3 model init
    deepspeed_config: dict | None = None
    #: a warm worker's store that outlives one trial (None in a fresh process): a task may keep
    #: what is expensive and never changed by training here (a frozen base model, tokenized data)
    cache: dict | None = None


class Task(abc.ABC):
    """Base of every training workload (digits, tiny LMs, LLM fine-tuning...)."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    #: the metric tuners rank by, and whether lower ("min") or higher ("max") is better
    metric: ClassVar[str] = "val_loss"
    metric_mode: ClassVar[str] = "min"
    #: model family and size for the database's recommendations ("mlp", "llama"...)
    model_family: ClassVar[str] = ""

    def __init__(self, params: Params) -> None:
        self.params = params

    @abc.abstractmethod
    def setup(self, ctx: TaskContext) -> Any:
        """Build the data; return the model (a ``torch.nn.Module`` on the CPU)."""

    @abc.abstractmethod
    def train_batches(self) -> Iterator[Any]:
        """An endless iterator of training micro-batches for this rank."""

    @abc.abstractmethod
    def loss(self, model: Any, batch: Any) -> tuple[Any, dict[str, int]]:
        """The training loss of one micro-batch and its counts (``samples``, ``tokens``)."""

    @abc.abstractmethod
    def evaluate(self, model: Any) -> dict[str, float]:
        """Validation metrics; must include :attr:`metric`."""

    def samples_per_epoch(self) -> int | None:
        """Training samples in one epoch, when the data is finite."""
        return None

    def tokens_per_sample(self) -> int | None:
        """Tokens in one training sample, for token budgets (language models)."""
        return None

    def model_info(self) -> dict[str, Any]:
        """Model family and size for the database (``{"family": "llama", "params": 2.6e6}``)."""
        return {"family": self.model_family}

    def save_model(self, model: Any, folder: Path) -> None:
        """Save the trained model (optional; HF tasks use ``save_pretrained``)."""
        raise NotImplementedError(f"task {self.name} cannot save its model")

    def eval_context(self) -> dict[str, Any] | None:
        """What evaluators (:mod:`lrbench_gui.core.evaluator`) need from this task after
        ``setup``: ``{"tokenizer": ..., "device": ...}`` for a language model (other keys go to
        ``EvalContext.extra``). Default None: only evaluators that need nothing can run."""
        return None

    @classmethod
    def warm_reuse(cls, params: Params) -> bool:
        """Whether a trial with ``params`` may run in a warm worker: a process that already ran
        trials of this task, its imports loaded and :attr:`TaskContext.cache` kept. Say True
        only when such a trial trains exactly as in a fresh process (same seeds, same model,
        same data: the task contract checks it). Called torch-free, by the scheduler. Default
        False: every trial gets a fresh process."""
        return False

    def release(self, model: Any) -> None:
        """In a warm worker, after a trial that sent its ``end`` event: give back to the cache
        what ``setup`` took out of it (peft's ``unload()`` returns the untouched frozen base).
        Not called in a fresh process, nor after a trial that raised: take what a trial may
        change out of the cache in ``setup`` (``cache.pop``), so a failed trial drops it."""
