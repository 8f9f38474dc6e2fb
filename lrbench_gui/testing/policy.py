"""The policy contract: what every LR policy must satisfy (see :mod:`lrbench_gui.testing`).

A policy is pure: registered under a good name, a schema whose defaults and search ranges sit
inside its bounds, finite non-negative LRs for any run length and any step, the same value for a
step whatever was asked before, a spec that survives JSON, bad values refused naming the field,
``uses_total_steps`` true whenever the curve depends on the run's length, and exports that are
JSON-safe and, when they claim ``exact``, reproduce :meth:`~lrbench_gui.core.policy.Policy.lr_at`
when they are run (through torch, Hugging Face ``transformers`` and DeepSpeed, those installed).
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import re
import warnings
from typing import Any, Callable

from lrbench_gui.core.params import ParamError, ParamInfo, describe, validate_params
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import SpecError, build_schedule, parse_spec
from lrbench_gui.testing._common import check_registers, check_schema, fail, registry_with

__all__ = [
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
    "check_policy_total_steps",
    "check_policy_exports",
    "check_policy_exports_exact",
    "run_export",
    "sample_param_sets",
]

#: Run lengths every policy must handle with its default parameters.
RUN_LENGTHS = (1, 2, 7, 100, 1000)
#: Steps far past any run's end: a policy must still answer, finite and >= 0.
LARGE_STEPS = (10_000, 123_457, 1_000_000, 10_000_000)


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
        raise fail(cls, f"lr_at({step}) raised {exc!r} {where}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(cls, f"lr_at({step}) returned {value!r}, not a float {where}")
    if not math.isfinite(value) or value < 0:
        raise fail(cls, f"lr_at({step}) = {value!r} is not a finite LR >= 0 {where}")


def check_policy_registers(cls: type[Policy]) -> None:
    """A fresh :class:`Registry` accepts the class and gives it back under its name."""
    check_registers("policy", cls)


def check_policy_schema(cls: type[Policy]) -> None:
    """Every parameter has a default, a description, and bounds that agree with both."""
    check_schema(cls)


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
                raise fail(cls, f"cannot build for a run of {total} steps with {values}: {exc!r}") from None
            for step in [*range(total), total, total + 1, *LARGE_STEPS]:
                _check_lr(cls, policy, step, values)
            if len(policy.lrs()) != total:
                raise fail(cls, f"lrs() does not give one value per step of a run of {total} steps")
            peak = policy.peak_lr()
            if not (math.isfinite(peak) and peak >= 0):
                raise fail(cls, f"peak_lr() = {peak!r} for a run of {total} steps")


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
                    raise fail(
                        cls,
                        f"not pure: lr_at({step}) gave {expected[step]!r} in order and {got!r} when called "
                        f"out of order (run of {total} steps, params {values})",
                    )
            if dict(vars(policy)) != state:
                raise fail(cls, "lr_at changed the policy's attributes: a policy must keep no state")
            if policy.lrs() != [expected[s] for s in range(total)]:
                raise fail(cls, "lrs() disagrees with lr_at()")


def check_policy_spec_round_trip(cls: type[Policy], registry: Registry | None = None) -> None:
    """A spec survives ``to_json`` -> ``parse_spec`` exactly, also through ``json.dumps/loads``
    and as a JSON string, and the round-tripped spec draws the same curve."""
    reg = registry_with("policy", cls, registry)
    for values in [{}, *sample_param_sets(cls)]:
        try:
            spec = parse_spec({"name": cls.name, "params": values}, reg)
        except SpecError as exc:
            raise fail(cls, f"parse_spec refused valid parameters {values}: {exc}") from None
        first = spec.to_json()
        text = json.dumps(first, allow_nan=False)
        for label, again in [
            ("parse_spec(to_json())", parse_spec(first, reg)),
            ("json.dumps/loads", parse_spec(json.loads(text), reg)),
            ("a JSON string", parse_spec(text, reg)),
        ]:
            if again.to_json() != first or json.dumps(again.to_json(), allow_nan=False) != text:
                raise fail(cls, f"spec changes through {label}: {first} became {again.to_json()}")
            if build_schedule(again, 50, reg).lrs() != build_schedule(spec, 50, reg).lrs():
                raise fail(cls, f"the spec draws another curve after {label}")


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
    reg = registry_with("policy", cls, registry)
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
                raise fail(cls, f"refusing {name}={value!r}, the error does not name the field: {exc}") from None
            continue
        except Exception as exc:
            raise fail(cls, f"{name}={value!r} raised {exc!r} instead of a SpecError") from None
        raise fail(cls, f"accepted {name}={value!r}, which the schema should refuse")


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
                    raise fail(cls, f"{where} raised {exc!r}; return None when there is no equivalent") from None
                if export is None:
                    continue
                if not isinstance(export, Export):
                    raise fail(cls, f"{where} returned {type(export).__name__}, not an Export or None")
                if not isinstance(export.exact, bool) or not isinstance(export.note, str):
                    raise fail(cls, f"{where}: Export.exact must be a bool and Export.note a str")
                try:
                    json.dumps(export.value, allow_nan=False)
                except (TypeError, ValueError) as exc:
                    raise fail(cls, f"{where}: the value is not JSON-serialisable: {exc}") from None
                if method == "to_torch":
                    if not isinstance(export.value, str):
                        raise fail(cls, f"{where}: the value must be Python source (a str)")
                    try:
                        compile(export.value, f"<{cls.name}.to_torch>", "exec")
                    except SyntaxError as exc:
                        raise fail(cls, f"{where}: the source does not compile: {exc}") from None
                elif not isinstance(export.value, dict):
                    raise fail(cls, f"{where}: the value must be a dict of settings")


def check_policy_total_steps(cls: type[Policy]) -> None:
    """A policy whose curve changes with the run's length says so: ``uses_total_steps = True``.

    The exporters and the GUI read the flag: without it ``lrbench policy export --to torch``
    writes ``TOTAL_STEPS = 1`` and the policy editor hides the run length, so the exported
    schedule is another one. (A policy that sets the flag without needing it only costs its users
    a ``--steps``, so that direction is not checked.)
    """
    if cls.uses_total_steps:
        return
    shared = 100
    for values in sample_param_sets(cls)[:6]:
        reference = _build(cls, values, shared).lrs()
        for total in (shared + 1, 3 * shared, 10 * shared):
            other = _build(cls, values, total).lrs(shared)
            for step, (a, b) in enumerate(zip(reference, other)):
                if a != b and not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15):
                    raise fail(
                        cls,
                        f"its curve depends on the run's length (lr_at({step}) is {a!r} in a run of {shared} steps "
                        f"and {b!r} in a run of {total}, params {values}) but uses_total_steps is False: set "
                        f"uses_total_steps = True on the class, or `lrbench policy export` writes TOTAL_STEPS = 1",
                    )


def _close(got: list[float], want: list[float]) -> int | None:
    """The first step where ``got`` and ``want`` differ beyond rounding, or None."""
    peak = max([abs(w) for w in want] + [1e-300])
    if len(got) != len(want):
        return min(len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        if not math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-9 * peak):
            return i
    return None


def _optimizer(lr: float) -> Any:
    import torch

    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _step_torch(optimizer: Any, scheduler: Any, steps: int, values: list[float] | None = None) -> list[float]:
    """One ``scheduler.step()`` per step; ``scheduler.step(values[k])`` for a reactive policy."""
    out = []
    for k in range(steps):
        out.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        if values is None:
            scheduler.step()
        else:
            scheduler.step(values[k])
    return out


def plateau_values(steps: int) -> list[float]:
    """What a reactive policy observes in the contract: a loss that falls for a third of the run,
    then stays flat (a plateau every rule finds)."""
    return [2.0 - 0.05 * min(k, steps // 3) for k in range(steps)]


def _observed_lrs(policy: Policy, values: list[float]) -> list[float]:
    out = []
    for k, v in enumerate(values):
        out.append(policy.lr_at(k))
        policy.observe(k, v)
    return out


def _run_torch(export: Export, policy: Policy, steps: int, values: list[float] | None = None) -> list[list[float]]:
    """The LRs of the torch source, run on an optimizer made with each plausible base LR: the
    ``lr=`` the source names, the policy's peak and first LR, and 1.0 (a LambdaLR of the LR)."""
    named = re.search(r"lr\s*=\s*([0-9.eE+-]+)", export.value)
    bases = [float(named.group(1))] if named else []
    bases += [policy.peak_lr(), policy.lr_at(0), 1.0]
    runs = []
    for base in dict.fromkeys(b for b in bases if b > 0):
        import torch

        optimizer = _optimizer(base)
        namespace: dict[str, Any] = {"optimizer": optimizer, "torch": torch}  # pasted into a torch script
        exec(compile(export.value, f"<{policy.name}.to_torch>", "exec"), namespace)  # noqa: S102 - under test
        runs.append(_step_torch(optimizer, namespace["scheduler"], steps, values))
    return runs


def hf_warmup_steps(args: dict[str, Any], total: int) -> int:
    """The warmup steps Hugging Face's Trainer derives from TrainingArguments fields (transformers
    5: a ``warmup_steps`` below 1 is a ratio; 4.x: ``warmup_ratio``), ``ceil(total * ratio)``."""
    import math

    steps = args.get("warmup_steps", 0) or 0
    if 0 < steps < 1:
        return int(math.ceil(total * steps))
    if not steps and args.get("warmup_ratio"):
        return int(math.ceil(total * float(args["warmup_ratio"])))
    return int(steps)


def _run_hf(export: Export, policy: Policy, steps: int, values: list[float] | None = None) -> list[list[float]]:
    import transformers

    args = export.value
    optimizer = _optimizer(float(args["learning_rate"]))
    total = args.get("max_steps", steps)
    scheduler = transformers.get_scheduler(
        args.get("lr_scheduler_type", "linear"), optimizer, num_warmup_steps=hf_warmup_steps(args, total),
        num_training_steps=total, scheduler_specific_kwargs=args.get("lr_scheduler_kwargs"),
    )
    return [_step_torch(optimizer, scheduler, steps, values)]


def _run_deepspeed(export: Export, policy: Policy, steps: int, values: list[float] | None = None) -> list[list[float]]:
    block = export.value
    lr = float(block.get("optimizer", {}).get("params", {}).get("lr", policy.peak_lr()))
    if "scheduler" not in block:  # no scheduler: DeepSpeed keeps the optimizer's LR
        return [[lr] * steps]
    from deepspeed.runtime import lr_schedules

    optimizer = _optimizer(lr)
    scheduler = getattr(lr_schedules, block["scheduler"]["type"])(optimizer, **block["scheduler"].get("params", {}))
    out = []
    for _ in range(steps):
        out.append(float(optimizer.param_groups[0]["lr"]))
        scheduler.step()
    return [out]


#: method -> (the library it needs, how to run its export)
_RUNNERS: dict[str, tuple[str, Callable[..., list[list[float]]]]] = {
    "to_torch": ("torch", _run_torch),
    "to_hf": ("transformers", _run_hf),
    "to_deepspeed": ("deepspeed", _run_deepspeed),
}


def run_export(method: str, export: Export, policy: Policy, steps: int,
               values: list[float] | None = None) -> list[list[float]]:
    """The LR of every step that ``export`` (the result of ``policy.<method>()``) gives when it is
    run in its framework, once per plausible set-up; [] when the framework is not installed.
    ``values``: a reactive policy's observations, one ``scheduler.step(value)`` per step."""
    library, runner = _RUNNERS[method]
    if importlib.util.find_spec(library) is None:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return runner(export, policy, steps, values) if values is not None else runner(export, policy, steps)


def check_policy_exports_exact(cls: type[Policy]) -> None:
    """An export that claims ``exact=True`` reproduces :meth:`Policy.lr_at` when it is run: the
    torch source through ``exec`` (one ``scheduler.step()`` per step), the Hugging Face
    fields through ``transformers.get_scheduler``, the DeepSpeed block through DeepSpeed's
    scheduler (each framework that is installed; DeepSpeed's engine shift is what its policies
    reproduce). A schedule that is merely close must say ``exact=False`` and why in ``note``. A
    reactive policy and its export observe the same values (:func:`plateau_values`), one
    ``scheduler.step(value)`` a step."""
    for values in sample_param_sets(cls)[:4]:
        for total in (7, 120):
            policy = _build(cls, values, total)
            observed = plateau_values(total) if cls.reactive else None
            want = _observed_lrs(_build(cls, values, total), observed) if observed is not None else policy.lrs()
            for method in _RUNNERS:
                export = getattr(policy, method)()
                if export is None or not export.exact:
                    continue
                where = f"{method}() (run of {total} steps, params {values})"
                try:
                    runs = run_export(method, export, policy, total, observed)
                except Exception as exc:
                    raise fail(cls, f"{where} claims exact=True but running it raised {exc!r}") from None
                misses = [_close(got, want) for got in runs]
                if runs and all(m is not None for m in misses):
                    step = max(m for m in misses if m is not None)  # the set-up that matched longest
                    best = runs[misses.index(step)]
                    got = best[step] if step < len(best) else "nothing"
                    raise fail(
                        cls,
                        f"{where} claims exact=True but is another schedule: at step {step} it gives {got!r}, "
                        f"lr_at({step}) = {want[step]!r}; return Export(..., exact=False, note=...) when it "
                        f"only approximates the policy",
                    )


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
    check_policy_total_steps(cls)
    check_policy_exports(cls)
    check_policy_exports_exact(cls)


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

    def test_uses_total_steps_when_the_curve_does(self, policy_class: type[Policy]) -> None:
        check_policy_total_steps(policy_class)

    def test_exports(self, policy_class: type[Policy]) -> None:
        check_policy_exports(policy_class)

    def test_exact_exports_reproduce_the_curve(self, policy_class: type[Policy]) -> None:
        check_policy_exports_exact(policy_class)


