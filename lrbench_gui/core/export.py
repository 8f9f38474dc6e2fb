"""Export a policy spec to the frameworks users train with: a DeepSpeed ``scheduler`` block, Hugging
Face ``TrainingArguments`` fields, or Python that builds a torch scheduler.

Each policy knows its own native equivalents (``Policy.to_deepspeed/to_hf/to_torch``); this
module asks it, and when there is none it says so plainly and offers the exact alternative: for
torch a ``LambdaLR`` that follows the lrbench schedule; for DeepSpeed and Hugging Face the
:func:`lrbench_gui.integrations.as_lr_scheduler` adapter, which both accept in place of their own
schedulers.
"""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass

from lrbench_gui.core.policy import Export
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import PolicySpec, Spec, build_schedule

__all__ = ["ExportResult", "export_policy", "TARGETS"]

TARGETS = ("deepspeed", "hf", "torch")


@dataclass(frozen=True)
class ExportResult:
    target: str
    text: str  # what to paste: JSON for deepspeed and hf, Python for torch
    exact: bool  # True when the text reproduces the lrbench schedule at every step
    native: bool  # True when it uses the framework's own scheduler
    note: str


def _adapter_python(spec: Spec, total_steps: int) -> str:
    spec_json = pprint.pformat(spec.to_json(), indent=1, width=100, sort_dicts=False)
    return (
        "import torch\n"
        "from lrbench_gui.integrations import build_schedule\n\n"
        f"SPEC = {spec_json}\n"
        f"TOTAL_STEPS = {total_steps}\n"
        "_schedule = build_schedule(SPEC, TOTAL_STEPS)\n\n"
        "# Create the optimizer with lr=1.0: LambdaLR multiplies it by the lambda, which returns the LR itself.\n"
        "scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=_schedule.lr_at)\n"
        "# Call scheduler.step() once after every optimizer.step().\n"
    )


def _adapter_hint(target: str, spec: Spec, total_steps: int) -> str:
    call = f"as_lr_scheduler({json.dumps(spec.to_json())}, optimizer, total_steps={total_steps})"
    if target == "deepspeed":
        how = f"deepspeed.initialize(..., lr_scheduler=lambda optimizer: {call})"
    else:
        how = f"Trainer(..., optimizers=(optimizer, {call}))"
    return (
        f"No {'DeepSpeed' if target == 'deepspeed' else 'Hugging Face'} scheduler reproduces this policy exactly. "
        f"Follow it exactly with lrbench's adapter instead: "
        f"from lrbench_gui.integrations import as_lr_scheduler; {how}"
    )


def export_policy(spec: Spec, target: str, total_steps: int, registry: Registry) -> ExportResult:
    """Export ``spec`` for a run of ``total_steps`` steps to ``target`` (deepspeed, hf or torch)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    schedule = build_schedule(spec, total_steps, registry)
    native: Export | None = None
    policy = schedule.policy if isinstance(spec, PolicySpec) else None
    if policy is not None:
        native = {"deepspeed": policy.to_deepspeed, "hf": policy.to_hf, "torch": policy.to_torch}[target]()
    if native is not None:
        text = native.value if isinstance(native.value, str) else json.dumps(native.value, indent=2)
        return ExportResult(target, text, native.exact, True, native.note)
    if target == "torch":
        return ExportResult(
            target,
            _adapter_python(spec, total_steps),
            True,
            False,
            "no native torch scheduler is equivalent; this LambdaLR follows the lrbench schedule exactly",
        )
    return ExportResult(target, "", False, False, _adapter_hint(target, spec, total_steps))
