"""What every contract shares: the error it raises, a registry holding the item under test, and
the registration and schema checks that apply to all three kinds."""

from __future__ import annotations

import json
import math
from typing import Any

from lrbench_gui.core.params import ParamError, ParamInfo, describe, validate_params
from lrbench_gui.core.registry import Registry

CONTRACT_PLUGIN = "lrbench-contract"


class ContractError(AssertionError):
    """A plugin item broke a rule of the contract; the message names the item and the rule."""


def fail(item: Any, message: str) -> ContractError:
    name = getattr(item, "name", None) or getattr(item, "__name__", repr(item))
    return ContractError(f"{name}: {message}")


def registry_with(kind: str, cls: type, registry: Registry | None) -> Registry:
    """``registry`` if given (it must hold ``cls``), else a fresh registry holding only ``cls``."""
    if registry is not None:
        held = registry.items[kind].get(getattr(cls, "name", None))
        if held is None or held.obj is not cls:
            raise fail(cls, f"is not the {kind} registered under its name in the given registry")
        return registry
    reg = Registry()
    try:
        reg.add(kind, cls, CONTRACT_PLUGIN, __name__)
    except Exception as exc:
        raise fail(cls, f"refused by a Registry: {exc}") from None
    return reg


def check_registers(kind: str, cls: type) -> None:
    reg = Registry()
    try:
        item = reg.add(kind, cls, CONTRACT_PLUGIN, __name__)
    except Exception as exc:
        raise fail(cls, f"refused by a Registry: {exc}") from None
    if reg.items[kind][cls.name].obj is not cls or item.version != cls.version:
        raise fail(cls, "a Registry does not give the class back under its name")
    summary = getattr(cls, "summary", "")
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary:
        raise fail(cls, f"summary must be one non-empty line for lists and tooltips, got {summary!r}")


def check_schema(cls: type) -> list[ParamInfo]:
    try:
        rows = describe(cls.Params)
        defaults = cls.Params()
    except Exception as exc:
        raise fail(cls, f"invalid parameter schema: {exc}") from None
    for row in rows:
        where = f"parameter {row.name!r}"
        if not row.description.strip():
            raise fail(cls, f"{where} has no description (the GUI shows it as the tooltip)")
        if row.kind in ("float", "int"):
            _check_bounds(cls, row)
        elif row.kind == "choice" and str(row.default) not in row.choices:
            raise fail(cls, f"{where}: default {row.default!r} is not one of {row.choices}")
        elif row.kind == "bool" and not isinstance(row.default, bool):
            raise fail(cls, f"{where}: default {row.default!r} is not a bool")
        if row.search is not None and row.kind not in ("float", "int"):
            raise fail(cls, f"{where}: a search range only makes sense for a number")
        try:
            json.dumps(row.to_json(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise fail(cls, f"{where}: its description is not JSON-serialisable: {exc}") from None
    dumped = defaults.model_dump(mode="json")
    if set(dumped) != {r.name for r in rows}:
        raise fail(cls, "the parameter model dumps fields that describe() does not show")
    try:
        again = validate_params(cls.Params, json.loads(json.dumps(dumped)))
    except ParamError as exc:
        raise fail(cls, f"the defaults do not survive a JSON round trip: {exc}") from None
    if again != defaults:
        raise fail(cls, "the defaults change through a JSON round trip")
    return rows


def inside(value: float, row: ParamInfo) -> bool:
    if row.minimum is not None and (value <= row.minimum if row.exclusive_minimum else value < row.minimum):
        return False
    if row.maximum is not None and (value >= row.maximum if row.exclusive_maximum else value > row.maximum):
        return False
    return True


def _check_bounds(cls: type, row: ParamInfo) -> None:
    where = f"parameter {row.name!r}"
    if isinstance(row.default, bool) or not isinstance(row.default, (int, float)):
        raise fail(cls, f"{where}: default {row.default!r} is not a number")
    if not math.isfinite(row.default):
        raise fail(cls, f"{where}: default {row.default!r} is not finite")
    if not inside(row.default, row):
        raise fail(cls, f"{where}: default {row.default!r} is outside its bounds ({row.bounds_text()})")
    if row.minimum is not None and row.maximum is not None and row.minimum > row.maximum:
        raise fail(cls, f"{where}: minimum {row.minimum} exceeds maximum {row.maximum}")
    if row.search is not None:
        lo, hi = row.search
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise fail(cls, f"{where}: search range {row.search} is not an increasing pair of numbers")
        if not (inside(lo, row) and inside(hi, row)):
            raise fail(cls, f"{where}: search range {row.search} leaves the bounds ({row.bounds_text()})")
        if row.log and lo <= 0:
            raise fail(cls, f"{where}: a log-scale search range must be > 0, got {row.search}")


def check_concrete(cls: type) -> None:
    missing = sorted(getattr(cls, "__abstractmethods__", ()) or ())
    if missing:
        raise fail(cls, f"does not implement {', '.join(m + '()' for m in missing)}")
