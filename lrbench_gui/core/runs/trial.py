"""The trial file: everything one training run needs, as JSON (``TRIAL.json``).

The app validates a trial here (torch-free) before it starts a process; the trainer validates
it again and resolves the task, the policy and the budget.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lrbench_gui.core.params import ParamError, validate_params
from lrbench_gui.core.registry import require_registry, Registry, UnknownName
from lrbench_gui.core.spec import SpecError, parse_spec

__all__ = ["TrialConfig", "Optimizer", "Budget", "DeepSpeedOptions", "MergeSpec", "TrialError", "load_trial", "write_trial"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Optimizer(_Strict):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    nesterov: bool = False


class Budget(_Strict):
    """Exactly one of steps, epochs or tokens. ``steps: 0`` trains nothing: the trial only
    evaluates the task's model (with ``merge``: the merged model) and may save it."""

    steps: int | None = Field(None, ge=0)
    epochs: float | None = Field(None, gt=0)
    tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        given = [k for k in ("steps", "epochs", "tokens") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of steps, epochs or tokens (got {', '.join(given) or 'none'})")
        return self


class DeepSpeedOptions(_Strict):
    zero_stage: int = Field(0, ge=0, le=3)
    num_gpus: int = Field(1, ge=1, description="ranks to launch (GPUs; on a CPU host, gloo processes)")
    native_scheduler: bool = Field(
        False, description="use DeepSpeed's own scheduler when the policy has an exact one"
    )


class MergeSpec(_Strict):
    """Start from a weighted average of two checkpoints of the same model (arXiv 2403.19390):
    ``theta = weight * later + (1 - weight) * earlier``, each a trainer ``.safetensors`` checkpoint."""

    later: str
    earlier: str
    weight: float = Field(ge=0, le=1, description="lambda: the later checkpoint's share")


class TrialConfig(_Strict):
    trial_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    study_id: str | None = None
    task: str
    task_params: dict[str, Any] = Field(default_factory=dict)
    policy: dict[str, Any]
    optimizer: Optimizer = Field(default_factory=Optimizer)
    budget: Budget = Field(default_factory=lambda: Budget(steps=100))
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: int = Field(0, ge=0, description="steps between evaluations (0: only at the end)")
    checkpoint_steps: list[int] = Field(default_factory=list)
    checkpoint_every: int = Field(0, ge=0)
    output_dir: str | None = None
    save_model: bool = False
    seed: int = 0
    device: str = "auto"
    backend: Literal["torch", "deepspeed"] = "torch"
    deepspeed: DeepSpeedOptions = Field(default_factory=DeepSpeedOptions)
    threads: int = Field(1, ge=0, description="torch CPU threads (0: torch's default; 1 is fastest for small models, and trials run side by side)")
    diverge_factor: float = Field(4.0, gt=1, description="stop as diverged when the loss exceeds this x its best")
    log_every: int = Field(1, ge=1)
    merge: MergeSpec | None = None


class TrialError(ValueError):
    """A trial file that is not valid; the message names the field."""


def validate_trial(config: TrialConfig, registry: Registry) -> TrialConfig:
    """Check the task name and parameters and the policy spec against the plugins of ``registry``."""
    reg = require_registry(registry, "validate_trial")
    try:
        task_cls = reg.task(config.task)
    except UnknownName as exc:
        raise TrialError(f"task: {exc}") from None
    try:
        validate_params(task_cls.Params, config.task_params)
    except ParamError as exc:
        raise TrialError("; ".join(f"task_params.{p}: {m}" if p else f"task_params: {m}" for p, m in exc.problems))
    try:
        parse_spec(config.policy, reg)
    except SpecError as exc:
        raise TrialError(f"policy.{exc}" if exc.path else f"policy: {exc}") from None
    return config


def load_trial(source: str | Path | dict[str, Any]) -> TrialConfig:
    """A :class:`TrialConfig` from a file, a JSON string or a dict; :class:`TrialError` if invalid."""
    if isinstance(source, dict):
        obj = source
    else:
        text = source if isinstance(source, str) and source.lstrip().startswith("{") else None
        if text is None:
            try:
                text = Path(source).read_text(encoding="utf-8")
            except OSError as exc:
                raise TrialError(f"cannot read trial file {source}: {exc.strerror or exc}") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrialError(f"trial file is not valid JSON: {exc}") from None
    try:
        return TrialConfig.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first.get("loc", ()))
        raise TrialError(f"{path}: {first.get('msg')} (got {first.get('input')!r})") from None


def write_trial(config: TrialConfig, path: Path) -> Path:
    """Write the trial file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trial-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path
