"""Trial checkpoints: the weights, and beside them what a trial needs to resume.

``checkpoints/step-0000100.safetensors`` holds the weights (metadata ``step``, ``lr``, ``trial``,
``task``, ``weights``): all of the model's, or with frozen parameters (LoRA) only the trainable
ones (``weights: trainable``), which a merge or a resume loads over the task's own base model.
With the torch backend, ``step-0000100.resume/`` beside it holds the resume state:
``tensors.safetensors`` (the optimizer's state tensors and torch's RNG states) and
``state.json`` (the step, the counters, the optimizer's hyperparameters and other values, the
Python and numpy RNG states, the grad scaler, the data position in micro-batches). A reactive
policy's observations (:meth:`~lrbench_gui.core.spec.Schedule.observations`) are three tensors
there, ``schedule/steps``, ``schedule/kinds`` (indices into ``state.json``'s
``schedule.names``) and ``schedule/values`` (float64, exact), replayed into the resumed trial's
fresh schedule so its LR continues as the uninterrupted run's would. Nothing is pickled. The
folder is written under a temporary name and renamed, then the weights file, each atomically; a
resume checks that both carry the same step.

The data position is the number of micro-batches drawn: a resumed trial draws as many from a
fresh ``train_batches()`` and drops them, which restores exactly any iterator that depends on
its own seeded generators (every built-in task's), then restores the RNG states.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrbench_gui.core.params import clip
from lrbench_gui.core.runs.trial import TrialConfig, TrialError
from lrbench_gui.core.spec import JsonFileError, read_json_file

__all__ = ["save_checkpoint", "load_weights", "load_resume", "Resumed", "resume_folder", "STATE_FORMAT"]

STATE_FORMAT = 1
_MAX_STATE_BYTES = 64 << 20  # the JSON half; an optimizer's tensors are in safetensors


def resume_folder(weights: Path) -> Path:
    """The resume state folder of a weights file (``step-N.safetensors`` -> ``step-N.resume``)."""
    return weights.with_suffix(".resume")


def _trainable_only(module: Any) -> bool:
    params = list(module.parameters())
    return any(not p.requires_grad for p in params) and any(p.requires_grad for p in params)


def _save_weights(module: Any, path: Path, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file, save_model

    tmp = path.with_suffix(".tmp")
    if _trainable_only(module):
        tensors = {n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad}
        save_file(tensors, str(tmp), metadata={**meta, "weights": "trainable"})
    else:
        save_model(module, str(tmp), metadata={**meta, "weights": "all"})
    os.replace(tmp, path)


def _wire(value: Any) -> Any:
    """``value`` with non-finite floats spelled as the protocol spells them ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire(v) for v in value]
    return value


def _json_value(value: Any, where: str) -> Any:
    value = _wire(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise TrialError(f"checkpoint: {where} is {type(value).__name__}, which a resume file cannot hold") from None
    return value


def _optimizer_state(optimizer: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's ``state_dict()``: tensors into ``tensors``, the rest returned as JSON."""
    import torch

    sd = optimizer.state_dict()
    values: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                values.setdefault(str(index), {})[key] = _json_value(value, f"optimizer state {key}")
    groups = [{k: _json_value(v, f"optimizer group {k}") for k, v in g.items()} for g in sd["param_groups"]]
    return {"param_groups": groups, "values": values}


def _rng_state(tensors: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]}


def _schedule_state(schedule: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    """A reactive schedule's observations: three tensors into ``tensors``, the names returned."""
    import torch

    rows = schedule.observations()
    names = sorted({what for _, what, _ in rows})
    index = {name: i for i, name in enumerate(names)}
    tensors["schedule/steps"] = torch.tensor([s for s, _, _ in rows], dtype=torch.int64)
    tensors["schedule/kinds"] = torch.tensor([index[w] for _, w, _ in rows], dtype=torch.int64)
    tensors["schedule/values"] = torch.tensor([v for _, _, v in rows], dtype=torch.float64)
    return {"names": names, "observations": len(rows)}


def _restore_schedule(schedule: Any, state: dict[str, Any], tensors: dict[str, Any], what: str) -> None:
    saved = state.get("schedule")
    if not isinstance(saved, dict):
        raise TrialError(f"{what}: this trial's policy reacts to a metric (a plateau), and the checkpoint keeps no "
                         "observations of one (an older trainer or a trial with another policy wrote it): run the "
                         "trial again from the start")
    try:
        names = saved["names"]
        steps, kinds, values = (tensors[f"schedule/{k}"].tolist() for k in ("steps", "kinds", "values"))
        if not (len(steps) == len(kinds) == len(values) == saved["observations"]):
            raise ValueError("their counts differ")
        schedule.restore([(s, names[k], v) for s, k, v in zip(steps, kinds, values)])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise TrialError(f"{what}: the policy's observations in the checkpoint cannot be replayed "
                         f"({clip(str(exc) or type(exc).__name__)}): run the trial again from the start") from None


def save_checkpoint(module: Any, folder: Path, step: int, lr: float, cfg: TrialConfig, *,
                    optimizer: Any = None, progress: dict[str, Any] | None = None,
                    scaler: Any = None, schedule: Any = None) -> Path:
    """Write the weights of ``module`` at ``step`` and, given the ``optimizer``, the resume state
    (``progress``: the trainer's counters, JSON values; a reactive ``schedule``'s observations).
    Returns the weights file."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.safetensors"
    meta = {"step": str(step), "lr": repr(lr), "trial": cfg.trial_id, "task": cfg.task}
    if optimizer is not None:
        tensors: dict[str, Any] = {}
        state = {
            "format": STATE_FORMAT, "step": step, "lr": lr, "trial": cfg.trial_id, "task": cfg.task,
            "optimizer_name": cfg.optimizer.name, "micro_batches": step * cfg.grad_accum,
            "progress": {k: _json_value(v, k) for k, v in (progress or {}).items()},
            "optimizer": _optimizer_state(optimizer, tensors), "rng": _rng_state(tensors),
            "scaler": _json_value(scaler.state_dict(), "grad scaler") if scaler is not None else None,
        }
        if schedule is not None and schedule.reactive:
            state["schedule"] = _schedule_state(schedule, tensors)
        final = resume_folder(path)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{final.name}-"))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; a checkpoint folder is not
        try:
            save_file(tensors, str(tmp / "tensors.safetensors"), metadata={"step": str(step)})
            (tmp / "state.json").write_text(json.dumps(state, allow_nan=False), encoding="utf-8")
            if final.exists():  # the same trial run again: the new state replaces the old
                old = final.with_name(f".{final.name}-old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _save_weights(module, path, meta)
    return path


def load_weights(module: Any, path: str | Path, what: str) -> dict[str, str]:
    """Load a trainer checkpoint into ``module`` (a trainable-only one over its other weights);
    :class:`TrialError` in one line when it is missing or does not fit. Returns its metadata."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file, load_model

    path = Path(path)
    if not path.is_file():
        raise TrialError(f"{what}: checkpoint {clip(str(path), 300)} does not exist (it is written by a trial "
                         "with checkpoints)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
        if meta.get("weights") == "trainable":
            result = module.load_state_dict(load_file(str(path)), strict=False)
            trainable = {n for n, p in module.named_parameters() if p.requires_grad}
            lacking = sorted(trainable & set(result.missing_keys))
            if result.unexpected_keys or lacking:
                odd = (result.unexpected_keys or lacking)[0]
                raise RuntimeError(f"{'unexpected' if result.unexpected_keys else 'missing'} tensor {odd}")
        else:
            load_model(module, str(path))
    except (RuntimeError, SafetensorError, OSError) as exc:
        raise TrialError(f"{what}: {clip(str(path), 300)} does not fit this task's model (set the same sizes "
                         f"and LoRA settings as the run that wrote it): {str(exc).splitlines()[0]}") from None
    return meta


@dataclass
class Resumed:
    """What :func:`load_resume` read: the step to continue from and what to restore at the loop's start."""

    step: int
    micro_batches: int
    progress: dict[str, Any]
    #: the step and eval events before ``step``, re-emitted (``replayed``) so the record is whole
    history: list[list[Any]]
    rng: dict[str, Any]
    tensors: dict[str, Any] = field(repr=False, default_factory=dict)

    def continue_at(self, batches: Any) -> None:
        """Move ``batches`` (a fresh ``train_batches()``) to the data position, then restore the
        RNG states, so the next step draws what the interrupted run's next step drew."""
        import numpy as np
        import torch

        for _ in range(self.micro_batches):
            next(batches)
        version, internal, gauss = self.rng["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = self.rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(self.tensors["rng/torch"])
        cuda = [self.tensors[k] for k in sorted(self.tensors) if k.startswith("rng/cuda/")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _load_optimizer(optimizer: Any, state: dict[str, Any], tensors: dict[str, Any]) -> None:
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            per_param.setdefault(int(index), {})[name] = value
    for index, values in state["optimizer"]["values"].items():
        per_param.setdefault(int(index), {}).update(values)
    groups = []
    for saved, current in zip(state["optimizer"]["param_groups"], optimizer.param_groups):
        groups.append({k: tuple(v) if isinstance(current.get(k), tuple) and isinstance(v, list) else v
                       for k, v in saved.items()})
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def load_resume(path: str, module: Any, optimizer: Any, cfg: TrialConfig, steps: int,
                log: Any = print, scaler: Any = None, schedule: Any = None) -> Resumed:
    """Load the checkpoint ``path`` into ``module``, ``optimizer`` (and the grad ``scaler``; a
    reactive ``schedule``, fresh, gets its observations) and return where to continue;
    :class:`TrialError` in one line when it cannot be resumed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = Path(path).expanduser()
    what = "resume_from"
    folder = resume_folder(weights)
    if weights.is_file() and not (folder / "state.json").is_file():
        raise TrialError(f"{what}: {clip(str(weights), 300)} has no resume state beside it ({folder.name}/): it was "
                         "written by an older trainer or the DeepSpeed backend; start a trial from its weights "
                         "with merge (weight 1) instead")
    meta = load_weights(module, weights, what)
    try:
        state = read_json_file(folder / "state.json", "resume state", max_bytes=_MAX_STATE_BYTES)
        tensors = load_file(str(folder / "tensors.safetensors"))
    except (JsonFileError, OSError, SafetensorError) as exc:
        raise TrialError(f"{what}: the resume state in {clip(str(folder), 300)} cannot be read ({exc})") from None
    step = state.get("step") if isinstance(state, dict) else None
    if state.get("format") != STATE_FORMAT or not isinstance(step, int) or str(step) != meta.get("step"):
        raise TrialError(f"{what}: {folder.name}/ does not belong to {weights.name} (steps {step} and "
                         f"{meta.get('step')}): the checkpoint was cut short while being written; use an earlier one")
    if state.get("task") != cfg.task:
        raise TrialError(f"{what}: the checkpoint is of task {state.get('task')}, this trial runs {cfg.task}")
    if state.get("optimizer_name") != cfg.optimizer.name:
        raise TrialError(f"{what}: the checkpoint was trained with optimizer {state.get('optimizer_name')}, this "
                         f"trial uses {cfg.optimizer.name}: give the same optimizer to resume")
    try:
        _load_optimizer(optimizer, state, tensors)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise TrialError(f"{what}: the optimizer state does not fit this trial's trainable parameters "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if schedule is not None and schedule.reactive:
        _restore_schedule(schedule, state, tensors, what)
    if step > steps:
        log(f"resume: the checkpoint is at step {step}, past this trial's {steps} steps: nothing is left to train")
    log(f"resumed from {weights.name} at step {step}")
    progress = dict(state.get("progress") or {})
    return Resumed(step=min(step, steps), micro_batches=int(state["micro_batches"]), progress=progress,
                   history=list(progress.pop("history", None) or []), rng=state["rng"], tensors=tensors)
