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
import math
import pprint
from dataclasses import dataclass, replace

from lrbench_gui.core.policy import Export
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import PolicySpec, SequenceSpec, Spec, SpecError, build_schedule, parse_spec, spec_label

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


#: the longest run whose sequence is compared step by step with a single policy (about a second)
MAX_COMPARED_STEPS = 1_000_000


def single_equivalent(spec: Spec, total_steps: int, registry: Registry) -> PolicySpec | None:
    """The one policy a two-segment sequence ``warmup | policy`` is, when there is one.

    Hugging Face's schedules put their linear warmup inside the schedule: ``constant_warmup(5) |
    cosine`` is ``cosine`` with ``warmup_steps=5``. The candidate is the second segment with the
    first one's length as its ``warmup_steps``; it is returned only if it gives the same LR as the
    sequence at every step of the run (to rounding), so a look-alike is never exported as exact.
    """
    if not isinstance(spec, SequenceSpec) or len(spec.segments) != 2 or total_steps > MAX_COMPARED_STEPS:
        return None
    main = spec.segments[1]
    if not isinstance(main, PolicySpec) or not isinstance(spec.segments[0], PolicySpec):
        return None
    if any(getattr(registry.policy(s.name), "reactive", False) for s in spec.segments):
        return None  # a curve that follows a metric is not known from the step alone
    values = main.params.model_dump(mode="json")
    if values.get("warmup_steps") != 0 or values.get("warmup_ratio", 0) != 0:
        return None
    try:
        candidate = parse_spec({"name": main.name, "params": {**values, "warmup_steps": spec.steps(total_steps)[0]}},
                               registry)
        want = build_schedule(spec, total_steps, registry).lrs()
        got = build_schedule(candidate, total_steps, registry).lrs()
    except (SpecError, ValueError, ArithmeticError):
        return None
    peak = max(want, default=0.0)
    if all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15 * peak) for a, b in zip(got, want)):
        return candidate
    return None


def export_policy(spec: Spec, target: str, total_steps: int, registry: Registry) -> ExportResult:
    """Export ``spec`` for a run of ``total_steps`` steps to ``target`` (deepspeed, hf or torch).

    A sequence that is one policy in disguise (:func:`single_equivalent`) is exported as that
    policy when the target has a native equivalent of it."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    single = single_equivalent(spec, total_steps, registry)
    if single is not None:
        result = export_policy(single, target, total_steps, registry)
        if result.native:
            said = f"the sequence is {spec_label(single, registry)} with warmup_steps={single.params.warmup_steps}"
            return replace(result, note=f"{said}; {result.note}" if result.note else said)
    schedule = build_schedule(spec, total_steps, registry)
    native: Export | None = None
    policy = schedule.policy if isinstance(spec, PolicySpec) else None
    if policy is not None:
        native = {"deepspeed": policy.to_deepspeed, "hf": policy.to_hf, "torch": policy.to_torch}[target]()
    if native is not None:
        text = native.value if isinstance(native.value, str) else json.dumps(native.value, indent=2)
        return ExportResult(target, text, native.exact, True, native.note)
    if schedule.reactive:  # its LR follows a metric: only a scheduler that is given the metric can follow it
        return _reactive_export(spec, target, total_steps)
    # a policy may say why its framework's own scheduler does not do here (``why_not(target)``)
    why = getattr(policy, "why_not", None)
    why_text = why(target) if callable(why) else ""
    if target == "torch":
        return ExportResult(
            target,
            _adapter_python(spec, total_steps),
            True,
            False,
            f"{why_text or 'no native torch scheduler is equivalent'}; this LambdaLR follows the lrbench schedule "
            "exactly",
        )
    return ExportResult(target, "", False, False, _adapter_hint(target, spec, total_steps))


def _reactive_export(spec: Spec, target: str, total_steps: int) -> ExportResult:
    """A policy that follows a monitored metric (a plateau) and has no native scheduler: for torch,
    lrbench's adapter fed with ``scheduler.step(value)``; Hugging Face and DeepSpeed have none."""
    if target == "torch":
        spec_json = pprint.pformat(spec.to_json(), indent=1, width=100, sort_dicts=False)
        text = (
            "from lrbench_gui.integrations import as_lr_scheduler\n\n"
            f"SPEC = {spec_json}\n"
            f"scheduler = as_lr_scheduler(SPEC, optimizer, total_steps={total_steps})\n"
            "# After every optimizer.step(), call scheduler.step(value) with the monitored value when you observe\n"
            "# it (the smoothed train loss every few steps, or the eval metric), scheduler.step() otherwise.\n"
        )
        return ExportResult(target, text, True, False, "no native torch scheduler switches between policies on a "
                                                       "plateau; lrbench's adapter follows it given the metric")
    why = ("DeepSpeed has no scheduler that follows a metric and steps its scheduler without one"
           if target == "deepspeed" else "Hugging Face's reduce_lr_on_plateau watches an eval metric after each evaluation (a reduce_on_plateau "
                "with monitor val_loss or another eval metric exports to it), never the train loss or a switch "
                "between policies")
    return ExportResult(target, "", False, False,
                        f"No equivalent: this policy changes its LR on a plateau of a monitored metric, and {why}; "
                        "train with torch instead (lrbench policy export --to torch).")
