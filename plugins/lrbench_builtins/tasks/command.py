"""The placeholder task ``command``: the task of a trial that runs the user's own script.

The script owns its model, data and metric (``lrbench tune --cmd ...``, ``lrbench watch``); this
task only gives such trials a registered name, no parameters and the default metric, so they are
validated, stored and compared like any other. The trainer never runs it.
"""

from __future__ import annotations

from typing import Any, Iterator

from lrbench_gui.core.params import Params
from lrbench_gui.core.runs.command import COMMAND_TASK
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.hookspecs import hookimpl

ONLY_AS_COMMAND = (f"the task {COMMAND_TASK!r} only runs as a command: give the trial a command "
                   "(lrbench tune --cmd '...', lrbench watch -- CMD); see docs/own-script.md")


class CommandParams(Params):
    """No parameters: the script reads its own (``{task.NAME}`` needs a task that declares them)."""


class CommandTask(Task):
    name = COMMAND_TASK
    summary = "your own training script, run as a command (lrbench tune --cmd, lrbench watch)"
    Params = CommandParams
    metric = "val_loss"
    metric_mode = "min"

    def setup(self, ctx: TaskContext) -> Any:
        raise RuntimeError(ONLY_AS_COMMAND)

    def train_batches(self) -> Iterator[Any]:
        raise RuntimeError(ONLY_AS_COMMAND)

    def loss(self, model: Any, batch: Any) -> tuple[Any, dict[str, int]]:
        raise RuntimeError(ONLY_AS_COMMAND)

    def evaluate(self, model: Any) -> dict[str, float]:
        raise RuntimeError(ONLY_AS_COMMAND)


@hookimpl
def register_tasks(register):
    register(CommandTask)
