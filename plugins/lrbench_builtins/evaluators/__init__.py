"""Built-in evaluators: ``heldout-loss``, ``multiple-choice``, ``generation`` and
``lm-eval-harness`` (one module each; ``_data`` reads their JSONL sets and resolves the shipped
ones, ``_lm`` holds the batched log-likelihood and greedy generation they share).

They register through the hook of the ``builtin-tasks-tinylm`` entry point (its module imports
:func:`register_evaluators`), so an editable install picks them up without a new entry point.
"""

from __future__ import annotations

from lrbench_gui.hookspecs import hookimpl

__all__ = ["register_evaluators", "EVALUATORS"]


def _classes() -> list[type]:
    from lrbench_builtins.evaluators.generation import Generation
    from lrbench_builtins.evaluators.harness import LMEvalHarness
    from lrbench_builtins.evaluators.heldout import HeldoutLoss
    from lrbench_builtins.evaluators.multiple_choice import MultipleChoice

    return [HeldoutLoss, MultipleChoice, Generation, LMEvalHarness]


EVALUATORS = ("heldout-loss", "multiple-choice", "generation", "lm-eval-harness")


@hookimpl
def register_evaluators(register):
    for cls in _classes():
        register(cls)
