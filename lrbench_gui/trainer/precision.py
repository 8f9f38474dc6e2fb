"""A trial's precision in the trainer: the weight dtype, the autocast around the forward, the
loss scaler.

- ``fp32``: everything in float32.
- ``bf16-mixed`` / ``fp16-mixed``: float32 master weights and optimizer state; the forward
  (``task.loss`` and ``task.evaluate``) runs under ``torch.autocast`` on the trial's device type.
  fp16 adds a ``GradScaler``: gradients are unscaled before clipping, and a step the scaler skips
  (inf/NaN gradients) is not a diverged step.
- ``bf16-true``: the model, and so the optimizer state, in bfloat16 (the forward under bf16
  autocast, so a task's float32 inputs meet the bf16 weights). Cheaper, and biased: small
  updates are lost to bf16 rounding, so an LR study in it may pick another LR.

Under the DeepSpeed backend the engine does the rest: its ``bf16``/``fp16`` sections (see
:mod:`lrbench_gui.core.runs.deepspeed_config`) keep the fp32 master weights and scale the loss;
this module then only wraps the forward in autocast and, for bf16-true at ZeRO stage 0, casts the
model.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable

from lrbench_gui.core.runs.trial import TrialError

__all__ = ["Precision", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed", "bf16-true")


class Precision:
    """One trial's precision. ``deepspeed``: the engine owns master weights and loss scaling;
    ``zero_stage`` tells whether bf16-true is DeepSpeed's (stage > 0) or a cast model (stage 0)."""

    def __init__(self, name: str, device: Any, *, deepspeed: bool = False, zero_stage: int = 0) -> None:
        import torch

        if name not in PRECISIONS:
            raise TrialError(f"precision must be one of {', '.join(PRECISIONS)} (got {name!r})")
        self.name = name
        self.device_type = getattr(device, "type", str(device))
        self.deepspeed = deepspeed
        self.zero_stage = zero_stage
        self.autocast_dtype = {"fp16-mixed": torch.float16, "bf16-mixed": torch.bfloat16,
                               "bf16-true": torch.bfloat16}.get(name)
        self.cast_model = name == "bf16-true" and not (deepspeed and zero_stage > 0)
        self.scaler = torch.amp.GradScaler(self.device_type) if name == "fp16-mixed" and not deepspeed else None
        self.skipped = 0  # optimizer steps the fp16 scaler skipped
        self.partitioned = False  # the task built the model partitioned by ZeRO-3 (set by prepare)

    def prepare(self, model: Any) -> Any:
        """Check that the weights that train are float32 (mixed precision keeps them as master
        weights; a frozen base may be bf16, as under LoRA) and, for bf16-true, cast every
        floating-point weight and saved buffer to bfloat16 in place, as loading in bfloat16 does
        (quantized weights are not floats, and stay). A model DeepSpeed partitioned at build time (ZeRO-3 init) holds DeepSpeed's
        dtype and is left alone."""
        import torch

        params = list(model.parameters())
        self.partitioned = any(hasattr(p, "ds_id") for p in params)
        if self.partitioned:
            return model
        if self.cast_model:
            saved = [b for m in model.modules() for n, b in m.named_buffers(recurse=False)
                     if n not in m._non_persistent_buffers_set]  # not e.g. RoPE's float32 frequencies
            for t in [*params, *saved]:
                if t.is_floating_point() and t.dtype != torch.bfloat16:
                    t.data = t.data.to(torch.bfloat16)
            return model
        found = sorted({str(p.dtype).removeprefix("torch.") for p in params
                        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32})
        if found:
            raise TrialError(f"precision {self.name} trains float32 weights, but the task built trainable "
                             f"{' and '.join(found)} ones: load them in float32 (a task parameter such as "
                             "dtype=float32), or use precision bf16-true to train them in bfloat16")
        return model

    def autocast(self) -> Any:
        """The context of a forward pass (``task.loss``, ``task.evaluate``)."""
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def backward(self, loss: Any, grad_accum: int) -> None:
        """The backward of one micro-batch's loss (scaled for fp16, divided over the accumulation)."""
        loss = loss / grad_accum
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def step(self, optimizer: Any, params: Iterable[Any], max_grad_norm: float | None) -> bool:
        """Clip (after unscaling) and step; False when the fp16 scaler skipped the step."""
        import torch

        scaler = self.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        stepped = True
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            stepped = scaler.get_scale() >= scale  # the scale backs off only when the step was skipped
            self.skipped += not stepped
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return stepped
