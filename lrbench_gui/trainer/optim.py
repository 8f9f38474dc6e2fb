"""The trial's optimizer, from the trial file's ``optimizer`` section.

torch's ``adamw``, ``adam`` and ``sgd`` run anywhere; ``adamw_8bit`` and ``paged_adamw_8bit`` are
bitsandbytes' 8-bit AdamW (paged: its state lives in memory the GPU driver can page out to the
CPU when the GPU runs short, the usual companion of QLoRA) and need bitsandbytes and a CUDA GPU.
:func:`check_optimizer` says in one line why one cannot run here, before the model is built.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from lrbench_gui.core.runs.trial import Optimizer, TrialError

__all__ = ["build_optimizer", "check_optimizer", "BNB_OPTIMIZERS"]

#: trial-file name -> the bitsandbytes class
BNB_OPTIMIZERS = {"adamw_8bit": "AdamW8bit", "paged_adamw_8bit": "PagedAdamW8bit"}


def check_optimizer(opt: Optimizer, device: Any) -> None:
    """:class:`TrialError` when ``opt`` cannot run on ``device`` (a ``torch.device``)."""
    if opt.name not in BNB_OPTIMIZERS:
        return
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes (pip install bitsandbytes)")
    if getattr(device, "type", str(device)) != "cuda":
        missing.append(f"a CUDA GPU (this trial runs on {device})")
    if missing:
        raise TrialError(f"optimizer {opt.name} needs {' and '.join(missing)}: install it on a GPU machine, "
                         "or use optimizer adamw")


def build_optimizer(opt: Optimizer, params: list, lr: float) -> Any:
    """The optimizer over ``params`` (the trainable parameters) starting at ``lr``."""
    import torch

    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum, nesterov=opt.nesterov,
                               weight_decay=opt.weight_decay)
    kwargs = {"lr": lr, "betas": tuple(opt.betas), "eps": opt.eps, "weight_decay": opt.weight_decay}
    if opt.name in BNB_OPTIMIZERS:
        import bitsandbytes as bnb

        return getattr(bnb.optim, BNB_OPTIMIZERS[opt.name])(params, **kwargs)
    return (torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam)(params, **kwargs)
