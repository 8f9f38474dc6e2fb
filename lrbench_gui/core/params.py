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
]


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
) -> Any:
    """A schema field: ``default``, hard bounds (``ge``/``gt``/``le``/``lt``), and hints.

    ``log`` says the value is best searched and edited on a log scale (learning rates, decay
    factors near 1 are not). ``search`` is the default search range a tuner uses when the user
    narrows nothing; it must lie inside the hard bounds. ``unit`` is shown beside the field
    ("steps", "x lr").
    """
    extra: dict[str, Any] = {"log": log}
    if search is not None:
        extra["search"] = [float(search[0]), float(search[1])]
    if unit:
        extra["unit"] = unit
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
            )
        )
    return rows


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown parameter"
    if kind == "missing":
        return "required"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values())) if ctx else "?"
        return f"must be {op} {bound} (got {err.get('input')!r})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')} (got {err.get('input')!r})"
    return f"{err.get('msg', 'invalid')} (got {err.get('input')!r})"


def validate_params(model: type[Params], values: dict[str, Any], where: str = "") -> Params:
    """Validate ``values`` against ``model``; raise :class:`ParamError` naming every bad field.

    Floats must be finite: NaN and infinity are refused even where pydantic would allow them.
    """
    if not isinstance(values, dict):
        raise ParamError([("", f"parameters must be a JSON object, got {type(values).__name__}")], where)
    problems = []
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((str(key), f"must be a finite number (got {value!r})"))
    if problems:
        raise ParamError(problems, where)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            path = ".".join(str(p) for p in err.get("loc", ()))
            problems.append((path, _message(err)))
        raise ParamError(problems, where) from None
