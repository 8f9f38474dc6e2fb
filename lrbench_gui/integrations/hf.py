"""Hugging Face ``Trainer`` callbacks: report to lrbench, and follow an lrbench policy.

    from lrbench_gui.integrations.hf import FollowPolicy, LrbenchCallback
    trainer = Trainer(..., callbacks=[LrbenchCallback(), FollowPolicy()])

:class:`LrbenchCallback` reports every logged step (the loss HF logs and the LR the optimizer
actually applied at that step) and every evaluation through :mod:`lrbench_gui.report`, and stops
training when lrbench asks (the trial was pruned or cancelled). Evaluation metrics keep HF's
names (``eval_loss``, ``eval_accuracy``...) and ``eval_loss`` is also reported as ``val_loss``,
the metric lrbench's ``command`` task ranks trials by.

:class:`FollowPolicy` sets every parameter group's LR from a policy right before each optimizer
step, from the optimizer the trainer holds at that moment. No scheduler is bound to an
optimizer, so it survives ``model_init`` (a new model and optimizer per trial) and
``Trainer.hyperparameter_search``; whatever scheduler HF builds is overridden at every step.

Both are silent no-ops outside lrbench (``FollowPolicy()`` without a spec then leaves the
script's own schedule alone), so the script runs unchanged anywhere.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from lrbench_gui import report

__all__ = ["LrbenchCallback", "FollowPolicy"]


def _applied_lr(optimizer: Any) -> float | None:
    groups = getattr(optimizer, "param_groups", None)
    return float(groups[0]["lr"]) if groups else None


class LrbenchCallback(TrainerCallback):
    """Report logged steps and evaluations to lrbench; stop training when lrbench asks."""

    def __init__(self) -> None:
        self._lrs: dict[int, float | None] = {}

    def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        # Right after optimizer.step() and before HF's scheduler moves the LR on: the LR just used.
        self._lrs[state.global_step] = _applied_lr(optimizer)
        if len(self._lrs) > 64:
            self._lrs.pop(min(self._lrs))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs or state.global_step < 1:
            return
        step = state.global_step - 1
        lr = self._lrs.get(step, logs.get("learning_rate"))
        report.step(step, loss=logs["loss"], lr=lr)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not metrics:
            return
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if "eval_loss" in numbers:
            numbers["val_loss"] = numbers["eval_loss"]
        report.eval(state.global_step, **numbers)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if report.should_stop():
            control.should_training_stop = True
        return control


class FollowPolicy(TrainerCallback):
    """Set the optimizer's LR from an lrbench policy before every optimizer step.

    ``spec`` is a policy spec (dict, JSON string or parsed); without one, the trial's policy when
    lrbench runs the script, else nothing is changed. ``total_steps`` defaults to the trial's
    steps under lrbench, else to the trainer's ``max_steps``. Each group's LR is the policy's
    times the group's optional ``"lr_scale"``.
    """

    def __init__(self, spec: Any = None, total_steps: int | None = None, registry: Any = None) -> None:
        self.spec = spec
        self.total_steps = total_steps
        self.registry = registry
        self.schedule: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        spec, steps = self.spec, self.total_steps
        info = report.trial() if spec is None or steps is None else None
        if spec is None:
            spec = (info or {}).get("policy")
        if spec is None:
            self.schedule = None
            return
        steps = steps or (info or {}).get("steps") or state.max_steps
        from lrbench_gui.integrations import build_schedule

        self.schedule = build_schedule(spec, int(steps), self.registry)

    def _apply(self, state: Any, optimizer: Any) -> None:
        if self.schedule is None or optimizer is None:
            return
        lr = self.schedule.lr_at(state.global_step)
        for group in optimizer.param_groups:
            group["lr"] = lr * float(group.get("lr_scale", 1.0))

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self._apply(state, optimizer)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        self._apply(state, optimizer)
