"""The trial file: everything one training run needs, as JSON (``TRIAL.json``).

The app validates a trial here (torch-free) before it starts a process; the trainer validates
it again and resolves the task, the policy and the budget. A trial file may come from anywhere,
so it is read bounded (:func:`~lrbench_gui.core.spec.read_json_file`) and every field is bounded:
numbers are finite and in a range torch accepts, ids are safe file names, counts are ones a
machine can run.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrbench_gui.core.params import ParamError, clip, validate_params
from lrbench_gui.core.registry import require_registry, Registry, UnknownName
from lrbench_gui.core.spec import JsonFileError, SpecError, loads_bounded, parse_spec, read_json_file

__all__ = ["TrialConfig", "Optimizer", "Budget", "DeepSpeedOptions", "MergeSpec", "EvaluatorSpec", "TrialError", "load_trial",
           "write_trial", "SAFE_ID", "MAX_THREADS"]

#: a trial or study id: docs/format.md's id rule (1 to 128 of letters, digits and ``_ . : @ + -``,
#: starting with a letter or digit) and never ``..``, so an id is always a safe file name
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+\-]{0,127}$")
MAX_THREADS = 1024
_MANY = 10**9  # steps, evaluations or checkpoints no run reaches
_PATH = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Optimizer(_Strict):
    name: Literal["adamw", "adam", "sgd", "adamw_8bit", "paged_adamw_8bit"] = Field(
        "adamw", description="adamw_8bit and paged_adamw_8bit: bitsandbytes' 8-bit AdamW (paged: its state in "
                             "memory that spills to the CPU under pressure); they need bitsandbytes and a CUDA GPU")
    weight_decay: float = Field(0.0, ge=0, le=100)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    nesterov: bool = False

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        for i, b in enumerate(value):
            if not 0 <= b < 1:
                raise ValueError(f"betas[{i}] must be in [0, 1) (got {b!r})")
        return value


class Budget(_Strict):
    """Exactly one of steps, epochs or tokens. ``steps: 0`` trains nothing: the trial only
    evaluates the task's model (with ``merge``: the merged model) and may save it."""

    steps: int | None = Field(None, ge=0, le=_MANY)
    epochs: float | None = Field(None, gt=0, le=1e6)
    tokens: int | None = Field(None, ge=1, le=10**15)

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        given = [k for k in ("steps", "epochs", "tokens") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of steps, epochs or tokens (got {', '.join(given) or 'none'})")
        return self


class DeepSpeedOptions(_Strict):
    zero_stage: int = Field(0, ge=0, le=3)
    num_gpus: int = Field(1, ge=1, le=MAX_THREADS, description="ranks to launch (GPUs; on a CPU host, gloo processes)")
    native_scheduler: bool = Field(
        False, description="use DeepSpeed's own scheduler when the policy has an exact one"
    )
    config: dict[str, Any] | None = Field(
        None, description="the user's DeepSpeed config (the JSON of --deepspeed-config), merged with what the trial "
                          "needs: ZeRO, offload and communication are the user's; batch sizes, the scheduler and "
                          "the precision section come from the trial (contradictions are refused)")


class MergeSpec(_Strict):
    """Start from a weighted average of two checkpoints of the same model (arXiv 2403.19390):
    ``theta = weight * later + (1 - weight) * earlier``, each a trainer ``.safetensors`` checkpoint."""

    later: str = Field(max_length=_PATH)
    earlier: str = Field(max_length=_PATH)
    weight: float = Field(ge=0, le=1, description="lambda: the later checkpoint's share")


class EvaluatorSpec(_Strict):
    """One evaluator the trainer runs at every evaluation, after the task's own: its registered
    name and its parameters (validated against its ``Params`` by :func:`validate_trial`)."""

    name: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class TrialConfig(_Strict):
    trial_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    study_id: str | None = None
    task: str = Field(max_length=256)
    task_params: dict[str, Any] = Field(default_factory=dict)
    policy: dict[str, Any]
    optimizer: Optimizer = Field(default_factory=Optimizer)
    budget: Budget = Field(default_factory=lambda: Budget(steps=100))
    batch_size: int = Field(32, ge=1, le=10**7)
    grad_accum: int = Field(1, ge=1, le=10**6)
    max_grad_norm: float | None = Field(1.0, gt=0, le=1e9)
    eval_every: int = Field(0, ge=0, le=_MANY, description="steps between evaluations (0: only at the end)")
    evaluators: list[EvaluatorSpec] = Field(
        default_factory=list, max_length=64,
        description="evaluators run at every evaluation after the task's (docs/plugins.md); their metrics join the eval event")
    checkpoint_steps: list[int] = Field(default_factory=list, max_length=10_000)
    checkpoint_every: int = Field(0, ge=0, le=_MANY)
    output_dir: str | None = Field(None, max_length=_PATH)
    save_model: bool = False
    seed: int = Field(0, ge=-(2**63), lt=2**63)
    device: str = Field("auto", pattern=r"^[a-z]{1,16}(:[0-9]{1,4})?$")
    precision: Literal["fp32", "bf16-mixed", "fp16-mixed", "bf16-true"] = Field(
        "fp32", description="fp32; bf16-/fp16-mixed: fp32 master weights with autocast (a GradScaler for fp16); "
                            "bf16-true: weights and optimizer in bfloat16")
    backend: Literal["torch", "deepspeed"] = "torch"
    deepspeed: DeepSpeedOptions = Field(default_factory=DeepSpeedOptions)
    threads: int = Field(1, ge=0, le=MAX_THREADS, description="torch CPU threads (0: torch's default; 1 is fastest for small models, and trials run side by side)")
    diverge_factor: float = Field(4.0, gt=1, le=1e9, description="stop as diverged when the loss exceeds this x its best")
    log_every: int = Field(1, ge=1, le=_MANY)
    merge: MergeSpec | None = None
    resume_from: str | None = Field(
        None, max_length=_PATH, description="continue from this checkpoint (a step-N.safetensors written by a trial "
                                            "with checkpoints): weights, optimizer, step, RNG and data position")
    command: list[str] | None = Field(None, description="run this command instead of the trainer (a command "
                                                         "trial: docs/protocol.md); one string is split like a shell")
    cwd: str | None = Field(None, max_length=_PATH, description="the command's working folder (default: the trial's)")

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        if value is None:
            return None
        from lrbench_gui.core.runs.command import check_template, split_command

        if not isinstance(value, (str, list, tuple)):
            raise ValueError("must be a list of strings or one string")
        argv = split_command(value)
        check_template(argv)
        return argv

    @field_validator("trial_id", "study_id")
    @classmethod
    def _safe_id(cls, value: str | None) -> str | None:
        if value is not None and (not SAFE_ID.match(value) or ".." in value):
            raise ValueError("must be 1 to 128 letters, digits and _ . : @ + - starting with a letter or digit, "
                             f"without '..' (got {clip(value)})")
        return value

    @field_validator("checkpoint_steps")
    @classmethod
    def _checkpoint_steps(cls, value: list[int]) -> list[int]:
        bad = next((s for s in value if not 1 <= s <= _MANY), None)
        if bad is not None:
            raise ValueError(f"every checkpoint step must be in [1, {_MANY}] (got {bad})")
        return value


class TrialError(ValueError):
    """A trial file that is not valid; the message names the field."""


def validate_trial(config: TrialConfig, registry: Registry) -> TrialConfig:
    """Check the task name and parameters and the policy spec against the plugins of ``registry``
    (and, for a command trial, that every ``{policy.NAME}`` and ``{task.NAME}`` has a value)."""
    reg = require_registry(registry, "validate_trial")
    try:
        task_cls = reg.task(config.task)
    except UnknownName as exc:
        raise TrialError(f"task: {exc}" if len(config.task) <= 200 else f"task: unknown task {clip(config.task)}") from None
    try:
        validate_params(task_cls.Params, config.task_params)
    except ParamError as exc:
        raise TrialError(clip("; ".join(f"task_params.{p}: {m}" if p else f"task_params: {m}" for p, m in exc.problems), 600))
    for i, ev in enumerate(config.evaluators):
        try:
            ev_cls = reg.evaluator(ev.name)
        except UnknownName as exc:
            raise TrialError(f"evaluators[{i}]: {exc}") from None
        try:
            validate_params(ev_cls.Params, ev.params)
        except ParamError as exc:
            raise TrialError(clip("; ".join(f"evaluators[{i}].params.{p}: {m}" if p else f"evaluators[{i}].params: {m}"
                                            for p, m in exc.problems), 600)) from None
    try:
        parse_spec(config.policy, reg)
    except SpecError as exc:
        raise TrialError(f"policy.{exc}" if exc.path else f"policy: {exc}") from None
    if config.command is not None:
        from lrbench_gui.core.runs.command import CommandError, fill_command

        try:
            fill_command(config, Path(config.output_dir or "."), reg)
        except CommandError as exc:
            raise TrialError(f"command: {exc}") from None
    return config


def load_trial(source: str | Path | dict[str, Any]) -> TrialConfig:
    """A :class:`TrialConfig` from a file, a JSON string or a dict; :class:`TrialError` if invalid.

    A file or string is read bounded: size, UTF-8, nesting depth and duplicate keys are checked
    before any object is built, so a 10,000-deep policy is one line, not a RecursionError."""
    try:
        if isinstance(source, dict):
            obj = source
        elif isinstance(source, str) and source.lstrip().startswith("{"):
            obj = loads_bounded(source, "the trial")
        else:
            obj = read_json_file(source, "trial file")
    except JsonFileError as exc:
        raise TrialError(str(exc)) from None
    try:
        return TrialConfig.model_validate(obj)
    except ValidationError as exc:
        raise TrialError(_first_problem(exc)) from None
    except RecursionError:  # a dict built in Python, nested past what pydantic can walk
        raise TrialError("the trial nests too deep") from None


def _first_problem(exc: ValidationError) -> str:
    """The first validation problem in one line: the field, what is wrong, the value cut short."""
    first = exc.errors()[0]
    path = clip(".".join(str(p) for p in first.get("loc", ())), 120) or "trial"
    kind, ctx = first.get("type", ""), first.get("ctx") or {}
    if kind == "missing":
        return f"{path}: required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind == "finite_number":
        return f"{path}: must be a finite number (got {clip(first.get('input'))})"
    msg = str(first.get("msg", "invalid"))
    if kind == "value_error":
        return f"{path}: {clip(msg.removeprefix('Value error, '), 400)}"
    if "input" in first and not isinstance(first.get("input"), (dict, list)):
        msg += f" (got {clip(first.get('input'))})"
    return f"{path}: {msg}"


def write_trial(config: TrialConfig, path: Path) -> Path:
    """Write the trial file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trial-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(config.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path
