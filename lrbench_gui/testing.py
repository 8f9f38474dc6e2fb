"""Contract tests for plugin authors: what every policy, tuner and task must satisfy.

The built-in plugins pass these checks, and a third-party plugin should too, the way a sampler
author runs Optuna's ``optuna/testing/pytest_samplers.py``. Two ways to use them:

* call :func:`check_policy` (or :func:`check_tuner`, :func:`check_task`) from any test; it raises
  :class:`ContractError` (an ``AssertionError``) naming the item and the broken rule;
* or subclass :class:`PolicyContract` in a pytest module and provide a ``policy_class`` fixture,
  which gives one test per rule::

      import pytest
      from lrbench_gui.testing import PolicyContract
      from my_plugin import MyPolicy

      class TestMyPolicy(PolicyContract):
          @pytest.fixture
          def policy_class(self):
              return MyPolicy

The checks build their own :class:`~lrbench_gui.core.registry.Registry` holding only the item
under test, so they need no installed plugin and see no other. This module imports neither
pytest nor torch.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from lrbench_gui.core.params import ParamInfo, ParamError, describe, validate_params
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import SpecError, build_schedule, parse_spec
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuner import Tuner

__all__ = [
    "ContractError",
    "PolicyContract",
    "RUN_LENGTHS",
    "LARGE_STEPS",
    "check_policy",
    "check_policy_registers",
    "check_policy_schema",
    "check_policy_defaults",
    "check_policy_pure",
    "check_policy_spec_round_trip",
    "check_policy_refuses_bad_params",
    "check_policy_exports",
    "check_tuner",
    "check_task",
    "sample_param_sets",
]

#: Run lengths every policy must handle with its default parameters.
RUN_LENGTHS = (1, 2, 7, 100, 1000)
#: Steps far past any run's end: a policy must still answer, finite and >= 0.
LARGE_STEPS = (10_000, 123_457, 1_000_000, 10_000_000)

_CONTRACT_PLUGIN = "lrbench-contract"


class ContractError(AssertionError):
    """A plugin item broke a rule of the contract; the message names the item and the rule."""


def _fail(item: Any, message: str) -> ContractError:
    name = getattr(item, "name", None) or getattr(item, "__name__", repr(item))
    return ContractError(f"{name}: {message}")


def _registry_with(kind: str, cls: type, registry: Registry | None) -> Registry:
    """``registry`` if given (it must hold ``cls``), else a fresh registry holding only ``cls``."""
    if registry is not None:
        held = registry.items[kind].get(getattr(cls, "name", None))
        if held is None or held.obj is not cls:
            raise _fail(cls, f"is not the {kind} registered under its name in the given registry")
        return registry
    reg = Registry()
    try:
        reg.add(kind, cls, _CONTRACT_PLUGIN, __name__)
    except Exception as exc:
        raise _fail(cls, f"refused by a Registry: {exc}") from None
    return reg


def _check_registers(kind: str, cls: type) -> None:
    reg = Registry()
    try:
        item = reg.add(kind, cls, _CONTRACT_PLUGIN, __name__)
    except Exception as exc:
        raise _fail(cls, f"refused by a Registry: {exc}") from None
    if reg.items[kind][cls.name].obj is not cls or item.version != cls.version:
        raise _fail(cls, "a Registry does not give the class back under its name")
    summary = getattr(cls, "summary", "")
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary:
        raise _fail(cls, f"summary must be one non-empty line for lists and tooltips, got {summary!r}")


def _check_schema(cls: type) -> list[ParamInfo]:
    try:
        rows = describe(cls.Params)
        defaults = cls.Params()
    except Exception as exc:
        raise _fail(cls, f"invalid parameter schema: {exc}") from None
    for row in rows:
        where = f"parameter {row.name!r}"
        if not row.description.strip():
            raise _fail(cls, f"{where} has no description (the GUI shows it as the tooltip)")
        if row.kind in ("float", "int"):
            _check_bounds(cls, row)
        elif row.kind == "choice" and str(row.default) not in row.choices:
            raise _fail(cls, f"{where}: default {row.default!r} is not one of {row.choices}")
        elif row.kind == "bool" and not isinstance(row.default, bool):
            raise _fail(cls, f"{where}: default {row.default!r} is not a bool")
        if row.search is not None and row.kind not in ("float", "int"):
            raise _fail(cls, f"{where}: a search range only makes sense for a number")
        try:
            json.dumps(row.to_json(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise _fail(cls, f"{where}: its description is not JSON-serialisable: {exc}") from None
    dumped = defaults.model_dump(mode="json")
    if set(dumped) != {r.name for r in rows}:
        raise _fail(cls, "the parameter model dumps fields that describe() does not show")
    try:
        again = validate_params(cls.Params, json.loads(json.dumps(dumped)))
    except ParamError as exc:
        raise _fail(cls, f"the defaults do not survive a JSON round trip: {exc}") from None
    if again != defaults:
        raise _fail(cls, "the defaults change through a JSON round trip")
    return rows


def _inside(value: float, row: ParamInfo) -> bool:
    if row.minimum is not None and (value <= row.minimum if row.exclusive_minimum else value < row.minimum):
        return False
    if row.maximum is not None and (value >= row.maximum if row.exclusive_maximum else value > row.maximum):
        return False
    return True


def _check_bounds(cls: type, row: ParamInfo) -> None:
    where = f"parameter {row.name!r}"
    if isinstance(row.default, bool) or not isinstance(row.default, (int, float)):
        raise _fail(cls, f"{where}: default {row.default!r} is not a number")
    if not math.isfinite(row.default):
        raise _fail(cls, f"{where}: default {row.default!r} is not finite")
    if not _inside(row.default, row):
        raise _fail(cls, f"{where}: default {row.default!r} is outside its bounds ({row.bounds_text()})")
    if row.minimum is not None and row.maximum is not None and row.minimum > row.maximum:
        raise _fail(cls, f"{where}: minimum {row.minimum} exceeds maximum {row.maximum}")
    if row.search is not None:
        lo, hi = row.search
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise _fail(cls, f"{where}: search range {row.search} is not an increasing pair of numbers")
        if not (_inside(lo, row) and _inside(hi, row)):
            raise _fail(cls, f"{where}: search range {row.search} leaves the bounds ({row.bounds_text()})")
        if row.log and lo <= 0:
            raise _fail(cls, f"{where}: a log-scale search range must be > 0, got {row.search}")


def sample_param_sets(cls: type[Policy]) -> list[dict[str, Any]]:
    """The defaults, then variations that move one parameter to a search-range end or midpoint.

    Variations the model refuses as a whole (``min_lr`` above ``lr``...) are left out. The values
    are JSON-ready dicts, as a spec holds them.
    """
    rows = describe(cls.Params)
    base = cls.Params().model_dump(mode="json")
    out = [base]
    seen = {json.dumps(base, sort_keys=True)}
    for row in rows:
        candidates: list[Any] = []
        if row.kind in ("float", "int") and row.search is not None:
            lo, hi = row.search
            mid = math.sqrt(lo * hi) if row.log and lo > 0 else (lo + hi) / 2
            candidates = [lo, hi, mid]
            if row.kind == "int":
                candidates = [int(round(c)) for c in candidates]
        elif row.kind == "choice":
            candidates = list(row.choices)
        elif row.kind == "bool":
            candidates = [not row.default]
        for value in candidates:
            values = {**base, row.name: value}
            try:
                values = validate_params(cls.Params, values).model_dump(mode="json")
            except ParamError:
                continue
            key = json.dumps(values, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(values)
    return out


def _build(cls: type[Policy], values: dict[str, Any], total_steps: int) -> Policy:
    return cls(validate_params(cls.Params, values), total_steps)


def _check_lr(cls: type, policy: Policy, step: int, values: dict[str, Any]) -> None:
    where = f"(run of {policy.total_steps} steps, params {values})"
    try:
        value = policy.lr_at(step)
    except Exception as exc:
        raise _fail(cls, f"lr_at({step}) raised {exc!r} {where}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(cls, f"lr_at({step}) returned {value!r}, not a float {where}")
    if not math.isfinite(value) or value < 0:
        raise _fail(cls, f"lr_at({step}) = {value!r} is not a finite LR >= 0 {where}")


def check_policy_registers(cls: type[Policy]) -> None:
    """A fresh :class:`Registry` accepts the class and gives it back under its name."""
    _check_registers("policy", cls)


def check_policy_schema(cls: type[Policy]) -> None:
    """Every parameter has a default, a description, and bounds that agree with both."""
    _check_schema(cls)


def check_policy_defaults(cls: type[Policy]) -> None:
    """Default parameters build for every run length of :data:`RUN_LENGTHS` and give a finite,
    non-negative LR at every step of the run, just past it and at :data:`LARGE_STEPS`; so do the
    variations of :func:`sample_param_sets` on shorter runs."""
    sets = sample_param_sets(cls)
    for values, lengths in [(sets[0], RUN_LENGTHS), *[(v, (7, 100)) for v in sets[1:]]]:
        for total in lengths:
            try:
                policy = _build(cls, values, total)
            except Exception as exc:
                raise _fail(cls, f"cannot build for a run of {total} steps with {values}: {exc!r}") from None
            for step in [*range(total), total, total + 1, *LARGE_STEPS]:
                _check_lr(cls, policy, step, values)
            if len(policy.lrs()) != total:
                raise _fail(cls, f"lrs() does not give one value per step of a run of {total} steps")
            peak = policy.peak_lr()
            if not (math.isfinite(peak) and peak >= 0):
                raise _fail(cls, f"peak_lr() = {peak!r} for a run of {total} steps")


def check_policy_pure(cls: type[Policy]) -> None:
    """``lr_at`` is a pure function of the step: any order, any repetition, any other instance
    (of this run length or another) in between gives the same values, and no attribute changes."""
    rng = random.Random(20240601)
    for values in sample_param_sets(cls)[:4]:
        for total in (7, 100):
            steps = [*range(total + 3), *LARGE_STEPS]
            reference = _build(cls, values, total)
            expected = {s: reference.lr_at(s) for s in steps}
            policy = _build(cls, values, total)
            other = _build(cls, values, total * 3 + 1)
            state = dict(vars(policy))
            order = steps * 2
            rng.shuffle(order)
            for step in order:
                other.lr_at(rng.randrange(0, 4 * total))
                got = policy.lr_at(step)
                if got != expected[step]:
                    raise _fail(
                        cls,
                        f"not pure: lr_at({step}) gave {expected[step]!r} in order and {got!r} when called "
                        f"out of order (run of {total} steps, params {values})",
                    )
            if dict(vars(policy)) != state:
                raise _fail(cls, "lr_at changed the policy's attributes: a policy must keep no state")
            if policy.lrs() != [expected[s] for s in range(total)]:
                raise _fail(cls, "lrs() disagrees with lr_at()")


def check_policy_spec_round_trip(cls: type[Policy], registry: Registry | None = None) -> None:
    """A spec survives ``to_json`` -> ``parse_spec`` exactly, also through ``json.dumps/loads``
    and as a JSON string, and the round-tripped spec draws the same curve."""
    reg = _registry_with("policy", cls, registry)
    for values in [{}, *sample_param_sets(cls)]:
        try:
            spec = parse_spec({"name": cls.name, "params": values}, reg)
        except SpecError as exc:
            raise _fail(cls, f"parse_spec refused valid parameters {values}: {exc}") from None
        first = spec.to_json()
        text = json.dumps(first, allow_nan=False)
        for label, again in [
            ("parse_spec(to_json())", parse_spec(first, reg)),
            ("json.dumps/loads", parse_spec(json.loads(text), reg)),
            ("a JSON string", parse_spec(text, reg)),
        ]:
            if again.to_json() != first or json.dumps(again.to_json(), allow_nan=False) != text:
                raise _fail(cls, f"spec changes through {label}: {first} became {again.to_json()}")
            if build_schedule(again, 50, reg).lrs() != build_schedule(spec, 50, reg).lrs():
                raise _fail(cls, f"the spec draws another curve after {label}")


def _bad_values(row: ParamInfo) -> list[Any]:
    """Values the schema must refuse for ``row``."""
    if row.kind in ("float", "int"):
        bad: list[Any] = ["not a number"]
        step = 1 if row.kind == "int" else 1.0
        cast = int if row.kind == "int" else float
        if row.minimum is not None:
            bad.append(cast(row.minimum) if row.exclusive_minimum else cast(row.minimum) - step)
        if row.maximum is not None:
            bad.append(cast(row.maximum) if row.exclusive_maximum else cast(row.maximum) + step)
        if row.kind == "float":
            bad += [math.nan, math.inf]
        return bad
    if row.kind == "bool":
        return ["maybe", [True]]
    if row.kind == "choice":
        return ["no-such-choice", 3]
    if row.kind == "int_list":
        return ["1,2", ["x"]]
    if row.kind == "float_list":
        return ["0.5", ["x"]]
    return [{"not": "a string"}]


def check_policy_refuses_bad_params(cls: type[Policy], registry: Registry | None = None) -> None:
    """Unknown parameters and values outside a field's type or bounds are refused with a
    :class:`SpecError` whose path names the field."""
    reg = _registry_with("policy", cls, registry)
    field_names = [r.name for r in describe(cls.Params)]
    unknown = "no_such_parameter"
    while unknown in field_names:
        unknown += "_"
    cases: list[tuple[str, Any]] = [(unknown, 1)]
    for row in describe(cls.Params):
        cases += [(row.name, value) for value in _bad_values(row)]
    for name, value in cases:
        try:
            parse_spec({"name": cls.name, "params": {name: value}}, reg)
        except SpecError as exc:
            parts = exc.path.replace("[", ".").split(".")
            if "params" not in parts or name not in parts or name not in str(exc):
                raise _fail(cls, f"refusing {name}={value!r}, the error does not name the field: {exc}") from None
            continue
        except Exception as exc:
            raise _fail(cls, f"{name}={value!r} raised {exc!r} instead of a SpecError") from None
        raise _fail(cls, f"accepted {name}={value!r}, which the schema should refuse")


def check_policy_exports(cls: type[Policy]) -> None:
    """``to_deepspeed``, ``to_hf`` and ``to_torch`` return None or an :class:`Export` whose
    value is JSON-serialisable (Python source that compiles, for torch)."""
    for values in sample_param_sets(cls):
        for total in (1, 7, 100, 1000):
            policy = _build(cls, values, total)
            for method in ("to_deepspeed", "to_hf", "to_torch"):
                where = f"{method}() (run of {total} steps, params {values})"
                try:
                    export = getattr(policy, method)()
                except Exception as exc:
                    raise _fail(cls, f"{where} raised {exc!r}; return None when there is no equivalent") from None
                if export is None:
                    continue
                if not isinstance(export, Export):
                    raise _fail(cls, f"{where} returned {type(export).__name__}, not an Export or None")
                if not isinstance(export.exact, bool) or not isinstance(export.note, str):
                    raise _fail(cls, f"{where}: Export.exact must be a bool and Export.note a str")
                try:
                    json.dumps(export.value, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    raise _fail(cls, f"{where}: the value is not JSON-serialisable: {exc}") from None
                if method == "to_torch":
                    if not isinstance(export.value, str):
                        raise _fail(cls, f"{where}: the value must be Python source (a str)")
                    try:
                        compile(export.value, f"<{cls.name}.to_torch>", "exec")
                    except SyntaxError as exc:
                        raise _fail(cls, f"{where}: the source does not compile: {exc}") from None
                elif not isinstance(export.value, dict):
                    raise _fail(cls, f"{where}: the value must be a dict of settings")


def check_policy(cls: type[Policy], registry: Registry | None = None) -> None:
    """Run the whole policy contract on ``cls``; raise :class:`ContractError` at the first break.

    ``registry``, if given, must hold ``cls`` under its name and is used to parse specs;
    otherwise a fresh registry holding only ``cls`` is.
    """
    check_policy_registers(cls)
    check_policy_schema(cls)
    check_policy_defaults(cls)
    check_policy_pure(cls)
    check_policy_spec_round_trip(cls, registry)
    check_policy_refuses_bad_params(cls, registry)
    check_policy_exports(cls)


class PolicyContract:
    """The policy contract as pytest tests, one per rule.

    Subclass it in a test module (named ``Test...``) and provide a ``policy_class`` fixture that
    returns the policy class; parametrize the fixture to run the contract over many policies.
    """

    def test_registers(self, policy_class: type[Policy]) -> None:
        check_policy_registers(policy_class)

    def test_schema_describes(self, policy_class: type[Policy]) -> None:
        check_policy_schema(policy_class)

    def test_defaults_build_finite_lrs(self, policy_class: type[Policy]) -> None:
        check_policy_defaults(policy_class)

    def test_pure(self, policy_class: type[Policy]) -> None:
        check_policy_pure(policy_class)

    def test_spec_round_trip(self, policy_class: type[Policy]) -> None:
        check_policy_spec_round_trip(policy_class)

    def test_refuses_bad_params(self, policy_class: type[Policy]) -> None:
        check_policy_refuses_bad_params(policy_class)

    def test_exports(self, policy_class: type[Policy]) -> None:
        check_policy_exports(policy_class)


def _check_concrete(cls: type) -> None:
    missing = sorted(getattr(cls, "__abstractmethods__", ()) or ())
    if missing:
        raise _fail(cls, f"does not implement {', '.join(m + '()' for m in missing)}")


def check_tuner(cls: type[Tuner]) -> None:
    """A tuner registers cleanly, describes its parameters and implements every abstract method."""
    _check_registers("tuner", cls)
    _check_schema(cls)
    _check_concrete(cls)


def check_task(cls: type[Task]) -> None:
    """A task registers cleanly, describes its parameters, names the metric it reports and
    implements every abstract method."""
    _check_registers("task", cls)
    _check_schema(cls)
    if not isinstance(cls.metric, str) or not cls.metric:
        raise _fail(cls, f"metric must be a non-empty string, got {cls.metric!r}")
    if cls.metric_mode not in ("min", "max"):
        raise _fail(cls, f"metric_mode must be 'min' or 'max', got {cls.metric_mode!r}")
    _check_concrete(cls)
