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

A reactive policy (``reduce_on_plateau``, a sequence's ``switch``) is fed as lrbench's trainer
feeds it: the train loss HF logs (``logs["loss"]``, at the step it was logged after) and each
evaluation's metrics, named as lrbench names them (``eval_loss`` is ``val_loss``, ``eval_<name>``
is also ``<name>``); an observation after step ``k`` first moves the LR of step ``k + 1``, and a
switch is reported on the step line of the first step with the new LR (:func:`report.switch`).

Both are silent no-ops outside lrbench (``FollowPolicy()`` without a spec then leaves the
script's own schedule alone), so the script runs unchanged anywhere.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from lrbench_gui import report

__all__ = ["LrbenchCallback", "FollowPolicy"]


def _numbers(metrics: dict) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _lrbench_names(metrics: dict) -> dict[str, float]:
    """HF's eval metrics under HF's names and lrbench's: ``eval_loss`` -> ``val_loss`` and
    ``eval_<name>`` -> ``<name>`` (never ``loss``: that is the train loss)."""
    numbers = _numbers(metrics)
    out = dict(numbers)
    for k, v in numbers.items():
        if k.startswith("eval_") and k != "eval_loss":
            out.setdefault(k[5:], v)
    if "eval_loss" in numbers:
        out["val_loss"] = numbers["eval_loss"]
    return out


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
        numbers = _numbers(metrics)
        if "eval_loss" in numbers:
            numbers["val_loss"] = numbers["eval_loss"]
        # at the 0-based index of the last step done, as the trainer and the step lines above count
        report.eval(max(0, state.global_step - 1), **numbers)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if report.should_stop():
            control.should_training_stop = True
        return control


class FollowPolicy(TrainerCallback, ExportableState):
    """Set the optimizer's LR from an lrbench policy before every optimizer step.

    ``spec`` is a policy spec (dict, JSON string or parsed); without one, the trial's policy when
    lrbench runs the script, else nothing is changed. ``total_steps`` defaults to the trial's
    steps under lrbench, else to the trainer's ``max_steps``. Each group's LR is the policy's
    times the group's optional ``"lr_scale"``. A reactive policy observes the logged train loss
    and the evaluations (see the module's docstring); :attr:`switches` says where the LR changed.
    Its observations go into HF's checkpoints (``trainer_state.json``), so a run resumed with
    ``resume_from_checkpoint`` continues with the same LRs and switches.
    """

    def __init__(self, spec: Any = None, total_steps: int | None = None, registry: Any = None) -> None:
        self.spec = spec
        self.total_steps = total_steps
        self.registry = registry
        self.schedule: Any = None
        self._pending: dict[int, str] = {}  # switches not yet reported: first step with the new LR -> why
        self._seen = 0
        self._restore: dict[str, Any] | None = None  # set by HF's restore_callback_states_from_checkpoint

    def state(self) -> dict[str, Any]:
        """What HF's checkpoints keep (JSON): the schedule's spec, length and observations."""
        spec = self.spec.to_json() if hasattr(self.spec, "to_json") else self.spec
        kept: dict[str, Any] = {}
        if self.schedule is not None and self.schedule.reactive:
            kept = {"spec": self.schedule.spec.to_json(), "total_steps": self.schedule.total_steps,
                    "observations": [list(o) for o in self.schedule.observations()]}
        return {"args": {"spec": spec, "total_steps": self.total_steps}, "attributes": {"_restore": kept or None}}

    @property
    def switches(self) -> list[dict[str, Any]]:
        """Where the observations changed the LR: ``{"step", "lr", "reason"}`` ([] for a policy
        that reacts to nothing)."""
        return self.schedule.switches() if self.schedule is not None else []

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
        self._pending, self._seen = {}, 0
        if self.schedule.reactive and state.global_step > 0:  # resumed: the checkpoint's observations
            self._resume(state)

    def _resume(self, state: Any) -> None:
        kept = self._restore
        if kept is None:
            stored = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
            kept = (stored.get("attributes") or {}).get("_restore") if isinstance(stored, dict) else None
        self._restore = None
        if not isinstance(kept, dict):
            return
        spec = json.loads(json.dumps(self.schedule.spec.to_json()))  # as the checkpoint's JSON holds it
        if kept.get("spec") != spec or kept.get("total_steps") != self.schedule.total_steps:
            print("lrbench FollowPolicy: the checkpoint followed another policy or run length; its plateau "
                  "observations are not replayed", file=sys.stderr)
            return
        try:
            self.schedule.restore(kept.get("observations") or [])
        except ValueError as exc:
            print(f"lrbench FollowPolicy: the checkpoint's observations cannot be replayed ({exc}); "
                  "the policy starts observing afresh", file=sys.stderr)
            from lrbench_gui.integrations import build_schedule

            self.schedule = build_schedule(self.schedule.spec, self.schedule.total_steps, self.registry)
            return
        found = self.schedule.switches()
        self._pending = {int(sw["step"]): str(sw["reason"]) for sw in found if int(sw["step"]) >= state.global_step}
        self._seen = len(found)

    def _feed(self, step: int, **values: Any) -> None:
        """Observations after optimizer step ``step`` (every rank: each sets its own LR)."""
        if self.schedule is None or not self.schedule.reactive or step < 0:
            return
        try:
            self.schedule.feed(step, **values)
        except (TypeError, ValueError) as exc:  # an observation going backwards, a plugin's refusal
            print(f"lrbench FollowPolicy: the policy could not observe step {step}: {exc}", file=sys.stderr)
            return
        found = self.schedule.switches()
        for sw in found[self._seen:]:
            at = int(sw["step"])
            self._pending[at] = "; ".join(filter(None, (self._pending.get(at), str(sw["reason"]))))
        self._seen = len(found)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            self._feed(state.global_step - 1, loss=float(loss))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        if metrics:  # after step global_step - 1: it first moves the LR of step global_step
            self._feed(state.global_step - 1, metrics=_lrbench_names(metrics))

    def _apply(self, state: Any, optimizer: Any) -> None:
        if self.schedule is None or optimizer is None:
            return
        lr = self.schedule.lr_at(state.global_step)
        for group in optimizer.param_groups:
            group["lr"] = lr * float(group.get("lr_scale", 1.0))

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        # every log and evaluation of the steps before is in: a switch due now goes on this step's line
        due = sorted(k for k in self._pending if k <= state.global_step)
        if due and state.is_world_process_zero:
            report.switch("; ".join(self._pending[k] for k in due))
        for k in due:
            del self._pending[k]
        self._apply(state, optimizer)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        self._apply(state, optimizer)
