"""The trial subprocess: ``python -m lrbench_gui.trainer TRIAL.json``.

The only package that imports torch, transformers, peft and deepspeed at module level. It writes
the event protocol (:mod:`lrbench_gui.core.runs.protocol`) on stdout, one JSON object per line, and
its human log on stderr. The policy is the only source of the learning rate: the trainer sets
every parameter group's LR from ``lr_at(step)`` before every optimizer step.
"""

from lrbench_gui.trainer.run import main, run_trial

__all__ = ["main", "run_trial"]
