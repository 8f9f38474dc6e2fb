"""Typed parameter schemas for plugins.

A plugin's parameters are a pydantic model (``extra="forbid"``). The same model validates a
config file or a ``--set key=value``, builds the GUI form, fills its tooltips and gives a tuner
its search space. :func:`param` attaches the hints pydantic has no slot for (log scale, a search
range narrower than the valid range), and :func:`describe` flattens a model into
:class:`ParamInfo` rows that the CLI, the GUI and the tuners read.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "Params",
    "ParamInfo",
    "ParamError",
    "param",
    "describe",
    "validate_params",
    "ROLES",
    "run_fraction",
    "run_divisor",
    "run_fractions",
    "decay_over_run",
    "inverse_run",
    "derive_value",
    "clip",
]

#: what a parameter is to a tuner. ``lr``: the policy's (peak) LR, searched by default on a log
#: scale and scaled when a composition ties two segments' LRs; ``min_lr``: a floor or second LR
#: (searched and scaled like ``lr``, kept at or below it); ``warmup``: a warmup length, set to 0
#: when the policy follows a warmup segment of a composition.
ROLES = ("", "lr", "min_lr", "warmup")


def clip(value: Any, limit: int = 200) -> str:
    """``value`` as error-message text (strings as they are, anything else as its repr), cut to
    about ``limit`` characters: an error echoes what it refuses, never 100 KB of it."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def run_fraction(fraction: float, minimum: int = 0) -> dict[str, Any]:
    """Derive an int parameter as ``round(fraction * steps)``, at least ``minimum``."""
    return {"rule": "fraction", "value": float(fraction), "min": int(minimum)}


def run_divisor(divisor: int) -> dict[str, Any]:
    """Derive an int parameter as ``steps // divisor``, at least 1 (cycles per run)."""
    return {"rule": "divisor", "value": int(divisor)}


def run_fractions(*fractions: float) -> dict[str, Any]:
    """Derive an int list (milestones) as the increasing, distinct ``round(f * steps)`` >= 1."""
    return {"rule": "fractions", "value": [float(f) for f in fractions]}


def decay_over_run(final: float) -> dict[str, Any]:
    """Derive a per-step factor ``gamma`` with ``gamma ** steps == final`` (exponential decay that
    ends at ``final`` of its start whatever the run's length)."""
    return {"rule": "decay", "value": float(final)}


def inverse_run(numerator: float) -> dict[str, Any]:
    """Derive a rate as ``numerator / steps`` (``inv``'s and ``sigmoid``'s gamma)."""
    return {"rule": "inverse", "value": float(numerator)}


def derive_value(rule: dict[str, Any], steps: int) -> Any:
    """The value of a parameter derived by ``rule`` (one of the helpers above) for ``steps``."""
    n = max(1, int(steps))
    kind, value = rule["rule"], rule["value"]
    if kind == "fraction":
        return max(int(rule.get("min", 0)), int(round(value * n)))
    if kind == "divisor":
        return max(1, n // int(value))
    if kind == "fractions":
        out: list[int] = []
        for f in value:
            m = int(f * n) if f < 1 else n
            if m >= 1 and (not out or m > out[-1]):
                out.append(m)
        return out
    if kind == "decay":
        return float(value) ** (1.0 / n)
    if kind == "inverse":
        return float(value) / n
    raise ValueError(f"unknown derivation rule {kind!r}")


class Params(BaseModel):
    """Base class of every plugin's parameter model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def param(
    default: Any,
    description: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    log: bool = False,
    search: tuple[float, float] | None = None,
    unit: str = "",
    role: str = "",
    tune: bool | None = None,
    derive: dict[str, Any] | None = None,
) -> Any:
    """A schema field: ``default``, hard bounds (``ge``/``gt``/``le``/``lt``), and hints.

    ``log`` says the value is best searched and edited on a log scale (learning rates, decay
    factors near 1 are not). ``search`` is the default search range a tuner uses when the user
    narrows nothing; it must lie inside the hard bounds. ``unit`` is shown beside the field
    ("steps", "x lr").

    How a tuner treats the parameter (docs/tuning.md): ``role`` is one of :data:`ROLES`;
    ``tune=True`` searches a parameter that is not an LR by default (``step``'s ``gamma``),
    ``tune=False`` never searches an LR by default; ``derive`` sets the parameter from the run's
    length when it is not searched (:func:`run_fraction`, :func:`run_divisor`,
    :func:`run_fractions`, :func:`decay_over_run`, :func:`inverse_run`), so a schedule keeps its
    shape at every budget.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    extra: dict[str, Any] = {"log": log}
    if search is not None:
        extra["search"] = [float(search[0]), float(search[1])]
    if unit:
        extra["unit"] = unit
    if role:
        extra["role"] = role
    if tune is not None:
        extra["tune"] = bool(tune)
    if derive is not None:
        extra["derive"] = dict(derive)
    return Field(default, description=description, ge=ge, gt=gt, le=le, lt=lt, json_schema_extra=extra)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter, flattened for forms, tables and search spaces."""

    name: str
    kind: str  # "float" | "int" | "bool" | "choice" | "int_list" | "float_list" | "str"
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    log: bool = False
    search: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    #: how tuners treat it (see :func:`param`); "" when the schema declares nothing
    role: str = ""
    tune: bool | None = None
    derive: dict[str, Any] | None = None

    @property
    def is_lr(self) -> bool:
        return self.role in ("lr", "min_lr")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "description": self.description,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "exclusive_minimum": self.exclusive_minimum,
            "exclusive_maximum": self.exclusive_maximum,
            "log": self.log,
            "search": list(self.search) if self.search else None,
            "choices": list(self.choices),
            "unit": self.unit,
            "role": self.role,
            "tune": self.tune,
            "derive": self.derive,
        }

    def bounds_text(self) -> str:
        """The valid range in words, e.g. ``> 0`` or ``in [0, 1]``."""
        lo, hi = self.minimum, self.maximum
        if lo is None and hi is None:
            return ""
        if hi is None:
            return f"{'>' if self.exclusive_minimum else '>='} {lo:g}"
        if lo is None:
            return f"{'<' if self.exclusive_maximum else '<='} {hi:g}"
        left = "(" if self.exclusive_minimum else "["
        right = ")" if self.exclusive_maximum else "]"
        return f"in {left}{lo:g}, {hi:g}{right}"


@dataclass
class ParamError(ValueError):
    """A parameter set that failed validation; ``problems`` are (field path, message) pairs."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    where: str = ""

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return "; ".join(f"{prefix}{path}: {msg}" if path else f"{prefix}{msg}" for path, msg in self.problems)


def _kind_of(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", tuple(str(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if origin in (list, tuple) and typing.get_args(annotation)[:1] == (int,):
        return "int_list", ()
    if origin in (list, tuple) and typing.get_args(annotation)[:1] == (float,):
        return "float_list", ()
    if annotation is str:
        return "str", ()
    raise TypeError(f"unsupported parameter type {annotation!r}: use float, int, bool, Literal[...], list[int], list[float] or str")


def describe(model: type[BaseModel]) -> list[ParamInfo]:
    """Flatten a parameter model into :class:`ParamInfo` rows, in declaration order.

    Raises ``TypeError`` for a field the schema system cannot show or search (no default, an
    unsupported type): the plugin loader reports that as an invalid schema.
    """
    rows = []
    for name, info in model.model_fields.items():
        if info.is_required():
            raise TypeError(f"parameter {name!r} has no default")
        kind, choices = _kind_of(info.annotation)
        lo = hi = None
        lo_x = hi_x = False
        for m in info.metadata:
            if isinstance(m, annotated_types.Ge):
                lo, lo_x = float(m.ge), False
            elif isinstance(m, annotated_types.Gt):
                lo, lo_x = float(m.gt), True
            elif isinstance(m, annotated_types.Le):
                hi, hi_x = float(m.le), False
            elif isinstance(m, annotated_types.Lt):
                hi, hi_x = float(m.lt), True
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        search = extra.get("search")
        if search is not None:
            search = (float(search[0]), float(search[1]))
            if not (search[0] <= search[1]):
                raise TypeError(f"parameter {name!r}: search range {search} is reversed")
        log = bool(extra.get("log", False))
        if log and lo is not None and lo < 0:
            raise TypeError(f"parameter {name!r}: a log-scale parameter cannot allow negative values")
        default = info.default
        if isinstance(default, tuple):
            default = list(default)
        rows.append(
            ParamInfo(
                name=name,
                kind=kind,
                default=default,
                description=info.description or "",
                minimum=lo,
                maximum=hi,
                exclusive_minimum=lo_x,
                exclusive_maximum=hi_x,
                log=log,
                search=search,
                choices=choices,
                unit=str(extra.get("unit", "")),
                role=str(extra.get("role", "")),
                tune=extra.get("tune"),
                derive=extra.get("derive"),
            )
        )
    return rows


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = clip(err.get("input"))
    if kind == "extra_forbidden":
        return "unknown parameter"
    if kind == "missing":
        return "required"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values())) if ctx else "?"
        return f"must be {op} {bound} (got {got})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')} (got {got})"
    return f"{err.get('msg', 'invalid')} (got {got})"


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return False


def validate_params(model: type[Params], values: dict[str, Any], where: str = "") -> Params:
    """Validate ``values`` against ``model``; raise :class:`ParamError` naming every bad field.

    Floats must be finite: NaN and infinity are refused even where pydantic would allow them,
    whether given as numbers or as the strings pydantic reads as floats (``"nan"``, ``"inf"``,
    ``"Infinity"``).
    """
    if not isinstance(values, dict):
        raise ParamError([("", f"parameters must be a JSON object, got {type(values).__name__}")], where)
    problems = []
    for key, value in values.items():
        if _non_finite(value):
            problems.append((clip(str(key), 80), f"must be a finite number (got {clip(value)})"))
    if problems:
        raise ParamError(problems, where)
    try:
        model_obj = model.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            path = clip(".".join(str(p) for p in err.get("loc", ())), 80)
            problems.append((path, _message(err)))
        raise ParamError(problems, where) from None
    for key in values:
        if key in model.model_fields and _non_finite(getattr(model_obj, key)):
            problems.append((str(key), f"must be a finite number (got {clip(values[key])})"))
    if problems:
        raise ParamError(problems, where)
    return model_obj
