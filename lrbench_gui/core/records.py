"""The records that cross layers: statuses, trial and study records, curves, and spec labels.

One vocabulary for the core, the CLI, every panel and the database:

* :class:`TrialStatus` and :class:`StudyStatus`, with their final and resumable sets (as Optuna's
  ``TrialState`` has ``is_finished``). They are ``str`` enums, so they compare equal to, and
  serialize as, the plain strings stored in the database and in export files.
* :class:`TrialRecord` and :class:`StudyRecord`, the ``TypedDict`` shapes of
  [docs/format.md](../../docs/format.md) (the validator in :mod:`lrbench_gui.core.db.validate`
  is what enforces them; these types say what a reader may expect).
* :func:`curve_points`, the one reader of a stored curve (plain or packed).
* :func:`spec_label`, the one short label of a policy spec that every view prints.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any, Iterable, TypedDict

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = [
    "TrialStatus",
    "StudyStatus",
    "TrialRecord",
    "StudyRecord",
    "CurveJSON",
    "ModelJSON",
    "CostJSON",
    "curve_points",
    "spec_label",
    "spec_params",
    "lr_param",
    "LR_KEYS",
]


class _StrEnum(str, enum.Enum):
    """A ``str`` enum that prints as its value (``f"{TrialStatus.COMPLETED}"`` is ``completed``)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)


class TrialStatus(_StrEnum):
    """Where a trial is. ``PRUNED`` is what a tuner is told about a trial its study stopped early;
    the database stores such a trial as ``STOPPED`` (or ``COMPLETED``) with the tag ``pruned``."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    FAILED = "failed"
    PRUNED = "pruned"

    @property
    def is_final(self) -> bool:
        return self in TRIAL_FINAL

    @property
    def is_ok(self) -> bool:
        """Whether the trial's metrics count (only a completed trial's do)."""
        return self is TrialStatus.COMPLETED


#: statuses a trial ends in
TRIAL_FINAL = frozenset({TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.DIVERGED, TrialStatus.FAILED,
                         TrialStatus.PRUNED})
#: statuses a trial record may have in the database (and in an export file)
TRIAL_STORED = (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.DIVERGED, TrialStatus.FAILED,
                TrialStatus.RUNNING, TrialStatus.PENDING)
#: statuses of a stored trial that a resumed study replays instead of running it again
TRIAL_REPLAYED = frozenset({TrialStatus.COMPLETED, TrialStatus.DIVERGED, TrialStatus.FAILED, TrialStatus.STOPPED})


class StudyStatus(_StrEnum):
    """Where a study is."""

    CREATED = "created"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (StudyStatus.FINISHED, StudyStatus.FAILED)

    @property
    def is_resumable(self) -> bool:
        """A study that was interrupted (closed, Ctrl-C, a crash) and can go on from the database."""
        return self in STUDY_RESUMABLE


STUDY_RESUMABLE = frozenset({StudyStatus.RUNNING, StudyStatus.STOPPED, StudyStatus.CREATED})


class CurveJSON(TypedDict, total=False):
    """A stored curve: plain (``steps``, ``values``) or packed (``encoding``, ``n``, ``steps``,
    ``values`` as base64); see docs/format.md."""

    steps: Any
    values: Any
    encoding: str
    n: int


class ModelJSON(TypedDict, total=False):
    family: str | None
    size: str | None
    parameters: int | None


class CostJSON(TypedDict, total=False):
    steps: int | None
    tokens: int | None
    seconds: float | None


class TrialRecord(TypedDict, total=False):
    """A trial as the database stores it (docs/format.md, "Trials")."""

    id: str
    study: str | None
    kind: str  # "train" | "range_test"
    task: str
    task_params: dict[str, Any]
    model: ModelJSON
    policy: dict[str, Any]
    optimizer: dict[str, Any] | None
    budget: dict[str, Any]
    seed: int | None
    status: str  # a TrialStatus value of TRIAL_STORED
    objective: dict[str, Any] | None
    metrics: dict[str, float]
    cost: CostJSON
    curves: dict[str, CurveJSON]
    plugins: dict[str, str]
    #: where it ran: ``{"gpus": [...], "host": ..., "launcher_include": ...}`` (absent when unknown)
    resources: dict[str, Any]
    provenance: dict[str, Any]
    tags: list[str]
    notes: str
    extra: dict[str, Any]
    hash: str


class StudyRecord(TypedDict, total=False):
    """A study as the database stores it (docs/format.md, "Studies"). ``extra.config`` holds the
    study's whole configuration, ``extra.summary`` what its tuner concluded."""

    id: str
    name: str
    task: str | None
    task_params: dict[str, Any]
    model: ModelJSON
    tuner: dict[str, Any] | None
    objective: dict[str, Any] | None
    budget: dict[str, Any]
    status: str  # a StudyStatus value
    provenance: dict[str, Any]
    tags: list[str]
    notes: str
    extra: dict[str, Any]
    hash: str


def curve_points(curve: CurveJSON | None) -> list[tuple[int, float]]:
    """The (step, value) points of a stored curve, plain or packed; ``[]`` for none."""
    if not curve:
        return []
    if "encoding" in curve:
        from lrbench_gui.core.db.curves import unpack

        steps, values = unpack(curve)  # type: ignore[arg-type]
    else:
        steps, values = curve.get("steps") or [], curve.get("values") or []
    return [(int(s), float(v)) for s, v in zip(steps, values)]


#: parameter names that carry a spec's peak LR, in the order a label prefers them, for a policy
#: whose schema is not known here (a colleague's plugin in an imported file)
LR_KEYS = ("lr", "max_lr", "warmup_max_lr", "base_lr", "peak_lr", "initial_lr", "end_lr")


def lr_param(policy: str, params: Iterable[str], registry: "Registry | None" = None) -> str | None:
    """The name of the parameter that is a policy's LR: the one with the role ``lr`` (declared,
    or by convention: :func:`lrbench_gui.core.tuning.hints.policy_hints`), else the first of
    :data:`LR_KEYS` it has."""
    names = list(params)
    if registry is not None and policy in registry.policies:
        from lrbench_gui.core.tuning.hints import policy_hints

        lr = policy_hints(registry.policy(policy)).lr  # declared, or by the naming conventions
        if lr is not None and lr in names:
            return lr
    return next((k for k in LR_KEYS if k in names), None)


def spec_label(spec: Any, registry: "Registry | None" = None, show: Iterable[str] = (), full: bool = False) -> str:
    """A short label of a policy spec (its JSON form or a parsed spec): ``cosine(lr=0.001)``,
    ``warmup_cosine(warmup_max_lr=0.002)`` or ``constant_warmup -> cosine @100``.

    The LR shown is the parameter with the role ``lr`` when ``registry`` knows the policy, the
    conventional LR names otherwise (then a lower LR such as ``min_lr`` when the spec has no
    other), so the same spec gets the same label everywhere. ``show`` adds parameters by their
    :func:`spec_params` names (``step(lr=0.1, gamma=0.5)``: what tells two trials apart);
    ``full`` lists every parameter (for tooltips and details)."""
    if hasattr(spec, "to_json"):
        spec = spec.to_json()
    if not isinstance(spec, dict):
        return "?"
    if "sequence" in spec:
        stages = [s for s in spec.get("sequence") or [] if isinstance(s, dict)]
        at = " @" + ",".join(str(b) for b in spec.get("boundaries") or [])
        at += " or on a plateau" if "switch" in spec else ""  # a switching sequence (core.reactive)
        if full:
            return " -> ".join(spec_label(s, registry, full=True) for s in stages) + at
        parts = [spec_label(s, registry) if "sequence" in s else str(s.get("name", "?")) for s in stages]
        extra = [n for n in show if n in spec_params(spec)]
        flat = spec_params(spec)
        tail = f" ({', '.join(f'{n}={_value(flat[n])}' for n in extra)})" if extra else ""
        return " -> ".join(parts) + at + tail
    name = str(spec.get("name", "?"))
    params = spec.get("params") or {}
    if full:
        return f"{name}({', '.join(f'{k}={_value(v)}' for k, v in params.items())})"
    numeric = [k for k, v in params.items() if _number(v)]
    key = lr_param(name, numeric, registry) or _lr_by_name(numeric)
    shown = ([key] if key else []) + [n for n in show if n in params and n != key]
    return f"{name}({', '.join(f'{k}={_value(params[k])}' for k in shown)})" if shown else name


def _lr_by_name(names: list[str]) -> str | None:
    """The LR of a spec whose policy is not known here, by the naming conventions the search
    hints use: a name ending in ``lr`` that is not a lower bound, else a lower bound."""
    lrs = [k for k in names if k == "lr" or k.endswith("_lr")]
    high = [k for k in lrs if not k.startswith(("min_", "start_", "warmup_min", "final_")) and "_min_" not in k]
    return next(iter(high or lrs), None)


def spec_params(spec: Any) -> dict[str, Any]:
    """Every parameter of a spec by a flat name: ``lr`` for a plain spec, ``1.lr`` (the stage's
    index) in a composition, whose boundaries are ``@``."""
    if hasattr(spec, "to_json"):
        spec = spec.to_json()
    if not isinstance(spec, dict):
        return {}
    if "sequence" not in spec:
        return dict(spec.get("params") or {})
    out: dict[str, Any] = {"@": tuple(spec.get("boundaries") or ())}
    for i, stage in enumerate(spec.get("sequence") or []):
        out.update({f"{i}.{k}": v for k, v in spec_params(stage).items()})
        out[f"{i}.name"] = (stage or {}).get("name") if isinstance(stage, dict) else None
    return out


def _value(value: Any) -> str:
    if _number(value):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
