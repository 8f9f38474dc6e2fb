"""Search spaces: what a tuner may try, as families of policy specs.

A :class:`SearchSpace` is a list of :class:`Family` objects. A family has named dimensions
(:class:`Dim`) and a ``build(point, total_steps)`` that turns one point (a dict of dimension
values) into a policy spec for a run of ``total_steps`` steps. Tuners sample points; the study
runs the specs. A family's parameters that are not dimensions are fixed (at the schema's default
or an override) or *derived* from the run's length, so the same point means the same schedule
shape whatever the budget (halving's short rungs rely on it).

:func:`policy_space` makes one family per policy; :func:`compose_space` makes multi-policy
compositions (LRBench++'s "multi-policy LR composition"): warmup then A, A then B at a switch
point, with the segments' LRs tied. Both record how they were built (``Family.recipe``) so
:meth:`SearchSpace.from_json` rebuilds the same space from a study record.

Default dimensions of a policy (see :func:`searched_params`): every log-scale parameter whose name
is an LR (``lr``, ``max_lr``, the cyclic ``min_lr``...: :data:`LR_NAME`), plus the structural
parameters of :data:`STRUCTURAL`. Derived parameters: :data:`DERIVED_BY_NAME` and
:data:`DERIVED_BY_POLICY`. docs/tuning.md lists every rule.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from lrbench_gui.core.params import ParamInfo, describe, validate_params
from lrbench_gui.core.registry import Registry, UnknownName
from lrbench_gui.core.spec import SpecError, parse_spec

__all__ = [
    "Dim",
    "Family",
    "SearchSpace",
    "SpaceError",
    "policy_space",
    "compose_space",
    "searched_params",
    "as_space",
    "LR_NAME",
    "STRUCTURAL",
    "DERIVED_BY_NAME",
    "DERIVED_BY_POLICY",
    "ORDERED_PAIRS",
]

#: A parameter is an LR when its name matches this *and* its schema says ``log=True``.
LR_NAME = re.compile(r"(^|_)lr$")

#: Non-LR parameters searched by default (in their schema's ``search`` range).
STRUCTURAL: dict[str, tuple[str, ...]] = {
    "step": ("gamma",),
    "multistep": ("gamma",),
}


def _frac(f: float, minimum: int = 0) -> Callable[[int], int]:
    return lambda n: max(minimum, int(round(f * n)))


def _milestones(n: int) -> list[int]:
    out: list[int] = []
    for m in (n // 2, (3 * n) // 4):
        if m >= 1 and (not out or m > out[-1]):
            out.append(m)
    return out


#: Parameters set from the run's (or the segment's) length ``n``, by parameter name, whatever the
#: policy: the schedule then has the same shape at every budget.
DERIVED_BY_NAME: dict[str, Callable[[int], Any]] = {
    "warmup_steps": _frac(0.05),  # 5 % of the run
    "warmup_num_steps": _frac(0.05, 1),  # DeepSpeed's warmups: 5 %, at least 1
    "half_cycle": lambda n: max(1, n // 8),  # 4 full cycles per run
    "cycle_steps": lambda n: max(1, n // 4),  # 4 restarts per run
    "step_size": lambda n: max(1, n // 3),  # two decays (torch StepLR-style)
    "decay_steps": _frac(0.2),  # WSD: decay over the last 20 %
    "center": lambda n: n // 2,  # sigmoid: half-way
    "milestones": _milestones,  # 50 % and 75 % (the ResNet recipe)
}

_AMPLITUDE_DECAY = lambda n: 0.1 ** (1.0 / max(1, n))  # noqa: E731 - amplitude at 10 % by the end

#: Per-policy rules, for parameters whose meaning depends on the policy (a ``gamma`` per step).
DERIVED_BY_POLICY: dict[tuple[str, str], Callable[[int], Any]] = {
    ("exp", "gamma"): lambda n: 0.01 ** (1.0 / max(1, n)),  # LR at 1 % of lr by the end
    ("inv", "gamma"): lambda n: 10.0 / max(1, n),  # (1 + 10) ** -power by the end: 17 % at 0.75
    ("sigmoid", "gamma"): lambda n: -10.0 / max(1, n),  # 99.3 % of lr at 0, 0.7 % at the end
    **{
        (name, "gamma"): _AMPLITUDE_DECAY
        for name in (
            "triangle_exp", "sin_exp", "cos_cyclic_exp", "sawtooth_exp", "sin_sawtooth_exp", "cos_sawtooth_exp",
        )
    },
}

#: (lower, upper) parameter pairs a schema refuses out of order. When both are searched a point
#: is sorted (the pair is symmetric); when one is fixed it is clamped to the other.
ORDERED_PAIRS = (("min_lr", "lr"), ("min_lr", "max_lr"), ("warmup_min_lr", "warmup_max_lr"), ("start_lr", "end_lr"))

_WARMUP_PARAMS = ("warmup_steps",)


class SpaceError(ValueError):
    """A search space that cannot be built (an unknown policy or parameter, a bad override)."""


@dataclass(frozen=True)
class Dim:
    """One searched value: a float or int range (``log`` for a log scale), or a choice."""

    name: str
    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.choices:
                raise SpaceError(f"{self.name}: a choice needs at least one value")
            return
        if self.kind not in ("float", "int"):
            raise SpaceError(f"{self.name}: kind must be float, int or choice, got {self.kind!r}")
        lo, hi = self.low, self.high
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise SpaceError(f"{self.name}: needs a finite range low <= high, got [{lo}, {hi}]")
        if self.log and lo <= 0:
            raise SpaceError(f"{self.name}: a log-scale range must be > 0, got [{lo}, {hi}]")

    def cast(self, value: Any) -> Any:
        if self.kind == "int":
            return int(round(float(value)))
        if self.kind == "float":
            return float(value)
        return value

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return self.low <= v <= self.high  # type: ignore[operator]

    def from_unit(self, u: float) -> Any:
        """The value at ``u`` in [0, 1] along the dimension (log-uniform for a log scale); an int
        range gives each integer an equal share (of its log), as Optuna's int sampling does."""
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        a, b = (lo - 0.5, hi + 0.5) if self.kind == "int" else (lo, hi)
        if self.log:
            v = math.exp(math.log(a) + u * (math.log(b) - math.log(a)))
        else:
            v = a + u * (b - a)
        v = min(max(self.cast(v), lo), hi)
        return self.cast(v)

    def sample(self, rng: random.Random) -> Any:
        return self.from_unit(rng.random())

    def grid(self, points: int) -> list[Any]:
        """``points`` values from low to high (geometric for log), ints deduplicated; every choice."""
        if self.kind == "choice":
            return list(self.choices)
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        if points <= 1 or lo == hi:
            values = [self.center()]
        elif self.log:
            values = [math.exp(math.log(lo) + i * (math.log(hi) - math.log(lo)) / (points - 1)) for i in range(points)]
            values[0], values[-1] = lo, hi
        else:
            values = [lo + i * (hi - lo) / (points - 1) for i in range(points)]
            values[-1] = hi
        out: list[Any] = []
        for v in values:
            v = self.cast(v)
            if v not in out:
                out.append(v)
        return out

    def center(self) -> Any:
        if self.kind == "choice":
            return self.choices[0]
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        return self.cast(math.sqrt(lo * hi) if self.log else (lo + hi) / 2)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "choice":
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Dim":
        return cls(
            obj["name"], obj["kind"], obj.get("low"), obj.get("high"), bool(obj.get("log", False)),
            tuple(obj.get("choices", ())),
        )


@dataclass(frozen=True)
class Family:
    """Points of ``dims`` and how to turn one into a spec. ``recipe`` (JSON) says how the family
    was made, so :meth:`SearchSpace.from_json` can make it again; None for a hand-made family."""

    name: str
    dims: tuple[Dim, ...]
    build: Callable[[dict[str, Any], int], dict[str, Any]] = field(compare=False, repr=False)
    recipe: dict[str, Any] | None = None
    #: what is not searched, in words, for tables ("step_size = steps / 3")
    notes: tuple[str, ...] = ()

    def dim(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(f"family {self.name!r} has no dimension {name!r}")

    def center(self) -> dict[str, Any]:
        return {d.name: d.center() for d in self.dims}

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {d.name: d.sample(rng) for d in self.dims}

    def grid(self, points: int) -> list[dict[str, Any]]:
        """The cartesian product of every dimension's grid, the last dimension varying fastest."""
        out: list[dict[str, Any]] = [{}]
        for d in self.dims:
            out = [{**p, d.name: v} for p in out for v in d.grid(points)]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dims": [d.to_json() for d in self.dims],
            "recipe": self.recipe,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class SearchSpace:
    """Families of specs a tuner chooses from. Family names are unique."""

    families: tuple[Family, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", tuple(self.families))
        names = [f.name for f in self.families]
        if not names:
            raise SpaceError("a search space needs at least one family")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpaceError(f"duplicate family names {dup}")

    def __add__(self, other: "SearchSpace") -> "SearchSpace":
        return SearchSpace(self.families + other.families)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.families]

    def family(self, name: str) -> Family:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(f"no family {name!r} in the space (families: {', '.join(self.names)})")

    def build(self, family: str, point: dict[str, Any], total_steps: int) -> dict[str, Any]:
        """The spec of ``point`` of ``family`` for a run of ``total_steps`` steps."""
        return self.family(family).build(point, int(total_steps))

    def to_json(self) -> dict[str, Any]:
        return {"families": [f.to_json() for f in self.families]}

    @classmethod
    def from_json(cls, obj: dict[str, Any] | str, registry: Registry | None = None) -> "SearchSpace":
        """Rebuild a space from :meth:`to_json`, by running each family's recipe again."""
        if isinstance(obj, str):
            obj = json.loads(obj)
        families: list[Family] = []
        for f in obj["families"]:
            recipe = f.get("recipe")
            if not recipe:
                raise SpaceError(f"family {f.get('name')!r} has no recipe: it cannot be rebuilt")
            if recipe["kind"] == "policy":
                families.append(
                    _policy_family(recipe["policy"], _registry(registry), recipe.get("overrides") or {},
                                   recipe.get("lr_range"))
                )
            elif recipe["kind"] == "compose":
                families.append(_compose_family(recipe, _registry(registry)))
            else:
                raise SpaceError(f"family {f.get('name')!r}: unknown recipe kind {recipe['kind']!r}")
        return cls(tuple(families))


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from lrbench_gui.plugins import get_registry

    return get_registry()


def as_space(space: Any, registry: Registry | None = None) -> SearchSpace:
    """A :class:`SearchSpace` from a space, its JSON form, or a list of policy names."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, (dict, str)) and (not isinstance(space, str) or space.lstrip().startswith("{")):
        return SearchSpace.from_json(space, registry)
    if isinstance(space, str):
        return policy_space([space], registry)
    if isinstance(space, (list, tuple)) and all(isinstance(s, str) for s in space):
        return policy_space(list(space), registry)
    raise SpaceError(f"not a search space: {space!r}")


def _is_lr(row: ParamInfo) -> bool:
    return row.log and bool(LR_NAME.search(row.name)) and row.kind == "float"


def searched_params(policy: str, rows: Iterable[ParamInfo]) -> list[str]:
    """The parameters of ``policy`` searched by default: its LRs and its :data:`STRUCTURAL` ones."""
    structural = STRUCTURAL.get(policy, ())
    return [r.name for r in rows if _is_lr(r) or (r.name in structural and r.kind in ("float", "int"))]


def _default_range(row: ParamInfo) -> tuple[float, float] | None:
    if row.search is not None:
        return row.search
    if row.minimum is not None and row.maximum is not None:
        return row.minimum, row.maximum
    return None


def _dim_for(row: ParamInfo, value: Any, where: str) -> Dim | Any:
    """A Dim from an override value (a [lo, hi] range, a list of choices) or the fixed value."""
    if isinstance(value, (list, tuple)):
        if row.kind in ("float", "int") and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            lo, hi = float(value[0]), float(value[1])
            for v in (lo, hi):
                if row.minimum is not None and (v < row.minimum or (row.exclusive_minimum and v == row.minimum)):
                    raise SpaceError(f"{where}: {v:g} is outside the parameter's bounds ({row.bounds_text()})")
                if row.maximum is not None and (v > row.maximum or (row.exclusive_maximum and v == row.maximum)):
                    raise SpaceError(f"{where}: {v:g} is outside the parameter's bounds ({row.bounds_text()})")
            if lo > hi:
                raise SpaceError(f"{where}: range [{lo:g}, {hi:g}] is reversed")
            try:
                return Dim(row.name, row.kind, lo, hi, row.log and lo > 0)
            except SpaceError as exc:
                raise SpaceError(f"{where}: {exc}") from None
        if row.kind in ("choice", "bool") and value:
            allowed = list(row.choices) if row.kind == "choice" else [True, False]
            bad = [v for v in value if v not in allowed]
            if bad:
                raise SpaceError(f"{where}: {bad} not among {allowed}")
            return Dim(row.name, "choice", choices=tuple(value))
        if row.kind == "int_list":
            return list(value)
        raise SpaceError(f"{where}: give a [low, high] range, a list of choices or one value, got {value!r}")
    return value


def _split_overrides(overrides: dict[str, Any] | None, names: Sequence[str], registry: Registry) -> dict[str, dict[str, Any]]:
    """``{"cosine.lr": ..., "lr": ...}`` -> per policy ``{param: value}``; unknown keys are errors."""
    per: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in (overrides or {}).items():
        if "." in key:
            policy, _, pname = key.rpartition(".")
            targets = [policy] if policy in per else []
            if not targets:
                raise SpaceError(f"override {key!r}: {policy!r} is not a policy of this space ({', '.join(names)})")
        else:
            pname, targets = key, [n for n in names if any(r.name == key for r in describe(registry.policy(n).Params))]
            if not targets:
                raise SpaceError(f"override {key!r}: no policy of this space has that parameter")
        for policy in targets:
            known = [r.name for r in describe(registry.policy(policy).Params)]
            if pname not in known:
                raise SpaceError(f"override {key!r}: {policy} has no parameter {pname!r} (it has {', '.join(known)})")
            per[policy][pname] = value
    return per


@dataclass(frozen=True)
class _PolicyPlan:
    """How a policy's parameters are set: searched (dims), fixed, derived from the run length."""

    policy: str
    dims: tuple[Dim, ...]
    fixed: dict[str, Any]
    derived: dict[str, Callable[[int], Any]]
    lr_names: tuple[str, ...]  # the LR parameters (log-scale LR names), searched or not
    notes: tuple[str, ...]

    def values(self, point: dict[str, Any], steps: int, prefix: str = "", zero_warmup: bool = False) -> dict[str, Any]:
        values = dict(self.fixed)
        for name, rule in self.derived.items():
            values[name] = rule(max(1, steps))
        if zero_warmup:
            for name in _WARMUP_PARAMS:
                if name in self.derived:
                    values[name] = 0
        searched = set()
        for d in self.dims:
            key = prefix + d.name
            if key not in point:
                raise KeyError(f"point has no value for {key!r}")
            values[d.name] = d.cast(point[key])
            searched.add(d.name)
        _order(values, searched)
        return values


def _order(values: dict[str, Any], searched: set[str]) -> None:
    for lo, hi in ORDERED_PAIRS:
        if lo in values and hi in values and values[lo] > values[hi]:
            if lo in searched and hi in searched:
                values[lo], values[hi] = values[hi], values[lo]
            elif lo in searched:
                values[lo] = values[hi]
            else:
                values[hi] = values[lo]


def _plan(policy: str, registry: Registry, overrides: dict[str, Any], lr_range: Sequence[float] | None,
          where: str = "") -> _PolicyPlan:
    try:
        cls = registry.policy(policy)
    except UnknownName as exc:
        raise SpaceError(str(exc)) from None
    rows = describe(cls.Params)
    default_searched = set(searched_params(policy, rows))
    dims: list[Dim] = []
    fixed: dict[str, Any] = {}
    derived: dict[str, Callable[[int], Any]] = {}
    lr_names: list[str] = []
    notes: list[str] = []
    for row in rows:
        if _is_lr(row):
            lr_names.append(row.name)
        label = f"{where or policy}.{row.name}"
        if row.name in overrides:
            made = _dim_for(row, overrides[row.name], f"override {label}")
            if isinstance(made, Dim):
                dims.append(made)
            else:
                fixed[row.name] = made
                notes.append(f"{row.name} = {made!r} (override)")
            continue
        if row.name in default_searched:
            rng = _default_range(row)
            if _is_lr(row) and lr_range is not None:
                rng = (float(lr_range[0]), float(lr_range[1]))
            if rng is not None and rng[0] < rng[1]:
                try:
                    dims.append(Dim(row.name, row.kind, float(rng[0]), float(rng[1]), row.log))
                except SpaceError as exc:
                    raise SpaceError(f"{label}: {exc}") from None
                continue
        rule = DERIVED_BY_POLICY.get((policy, row.name)) or (
            DERIVED_BY_NAME.get(row.name) if row.kind in ("int", "int_list") else None
        )
        if rule is not None:
            derived[row.name] = _bounded(rule, row)
            notes.append(f"{row.name}: derived from the run length")
            continue
        fixed[row.name] = row.default
    return _PolicyPlan(policy, tuple(dims), fixed, derived, tuple(lr_names), tuple(notes))


def _bounded(rule: Callable[[int], Any], row: ParamInfo) -> Callable[[int], Any]:
    """``rule`` with its result kept inside the parameter's hard bounds."""
    if row.kind != "int" or row.minimum is None:
        return rule
    lo = int(math.ceil(row.minimum + (1 if row.exclusive_minimum else 0)))
    return lambda n: max(lo, rule(n))


def _check_spec(spec: dict[str, Any], registry: Registry, where: str) -> None:
    try:
        parse_spec(spec, registry)
    except SpecError as exc:
        raise SpaceError(f"{where}: the family builds an invalid spec: {exc}") from None


def _policy_family(policy: str, registry: Registry, overrides: dict[str, Any], lr_range: Sequence[float] | None) -> Family:
    plan = _plan(policy, registry, overrides, lr_range)

    def build(point: dict[str, Any], total_steps: int) -> dict[str, Any]:
        return {"name": policy, "params": plan.values(point, total_steps)}

    recipe = {"kind": "policy", "policy": policy, "overrides": dict(overrides) or None,
              "lr_range": list(lr_range) if lr_range is not None else None}
    family = Family(policy, plan.dims, build, recipe, plan.notes)
    for steps in (1, 100):
        _check_spec(build(family.center(), steps), registry, f"policy {policy}")
    return family


def policy_space(
    names: Sequence[str],
    registry: Registry | None = None,
    overrides: dict[str, Any] | None = None,
    lr_range: Sequence[float] | None = None,
) -> SearchSpace:
    """One family per policy of ``names``.

    ``overrides``: ``{"cosine.lr": [1e-4, 1e-1], "step.gamma": 0.5, "lr": [1e-5, 1e-2]}``: a
    ``[low, high]`` range searches the parameter (log-scale if its schema says so), a list of
    values makes a choice, a single value fixes it; a bare name applies to every policy that has
    the parameter. ``lr_range=(lo, hi)`` replaces the range of every LR dimension (an override of
    that parameter wins). Raises :class:`SpaceError` naming the bad policy or override.
    """
    reg = _registry(registry)
    if isinstance(names, str):
        names = [names]
    if not names:
        raise SpaceError("policy_space needs at least one policy name")
    _check_lr_range(lr_range)
    per = _split_overrides(overrides, names, reg)
    return SearchSpace(tuple(_policy_family(n, reg, per[n], lr_range) for n in names))


def _check_lr_range(lr_range: Sequence[float] | None) -> None:
    if lr_range is None:
        return
    if len(lr_range) != 2 or not (0 < float(lr_range[0]) <= float(lr_range[1])) or not math.isfinite(float(lr_range[1])):
        raise SpaceError(f"lr_range must be (low, high) with 0 < low <= high, got {lr_range!r}")


def _policy_obj(registry: Registry, name: str, values: dict[str, Any], steps: int):
    cls = registry.policy(name)
    return cls(validate_params(cls.Params, values), max(1, steps))


def _compose_family(recipe: dict[str, Any], registry: Registry) -> Family:
    """A composition family from its recipe (see :func:`compose_space`)."""
    segments: list[str] = list(recipe["segments"])
    tie = recipe.get("tie", "end")
    warmup = recipe.get("warmup")
    switch = recipe.get("switch")
    overrides: dict[str, dict[str, Any]] = recipe.get("overrides") or {}
    lr_range = recipe.get("lr_range")
    if tie not in ("end", "peak", "free"):
        raise SpaceError(f"tie must be end, peak or free, got {tie!r}")
    if not 1 <= len(segments) <= 2 or (len(segments) == 1 and warmup is None):
        raise SpaceError("a composition is warmup then A, A then B, or warmup then A then B")
    prefixes = ["a.", "b."][: len(segments)]
    plans: list[_PolicyPlan] = []
    for i, (name, prefix) in enumerate(zip(segments, prefixes)):
        ov = dict(overrides.get(name, {}))
        plan = _plan(name, registry, ov, lr_range, where=f"{prefix}{name}")
        if i == 1 and tie != "free":
            # B's LRs follow A's: they are not searched, and its own LR overrides are refused
            kept = tuple(d for d in plan.dims if d.name not in plan.lr_names)
            fixed = dict(plan.fixed)
            for d in plan.dims:
                if d.name in plan.lr_names:
                    fixed[d.name] = registry.policy(name).Params.model_fields[d.name].default
            plan = _PolicyPlan(plan.policy, kept, fixed, plan.derived, plan.lr_names, plan.notes)
        plans.append(plan)
    dims: list[Dim] = []
    for plan, prefix in zip(plans, prefixes):
        dims += [Dim(prefix + d.name, d.kind, d.low, d.high, d.log, d.choices) for d in plan.dims]
    fixed_warmup = fixed_switch = None
    if warmup is not None:
        if isinstance(warmup, (list, tuple)):
            dims.append(Dim("warmup", "float", float(warmup[0]), float(warmup[1])))
        else:
            fixed_warmup = float(warmup)
    if len(segments) == 2:
        if isinstance(switch, (list, tuple)):
            dims.append(Dim("switch", "float", float(switch[0]), float(switch[1])))
        else:
            fixed_switch = float(switch)
    for name, value in (("warmup", warmup), ("switch", switch)):
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and not 0 < float(v) < 1:
                raise SpaceError(f"{name} is a fraction of the run, in (0, 1): got {v!r}")

    def build(point: dict[str, Any], total_steps: int) -> dict[str, Any]:
        n = max(1, int(total_steps))
        bounds: list[int] = []
        if warmup is not None:
            w = fixed_warmup if fixed_warmup is not None else float(point["warmup"])
            bounds.append(max(1, int(round(w * n))))
        if len(segments) == 2:
            s = fixed_switch if fixed_switch is not None else float(point["switch"])
            bounds.append(max(bounds[-1] + 1 if bounds else 1, int(round(s * n))))
        starts = [0] + bounds
        ends = bounds + [max(n, bounds[-1] + 1 if bounds else n)]
        seg_len = [e - s for s, e in zip(starts, ends)]
        policy_lens = seg_len[1:] if warmup is not None else seg_len
        a_values = plans[0].values(point, policy_lens[0], "a.", zero_warmup=warmup is not None)
        specs = [{"name": segments[0], "params": a_values}]
        if len(segments) == 2:
            b_values = plans[1].values(point, policy_lens[1], "b.", zero_warmup=True)
            if tie != "free":
                a_pol = _policy_obj(registry, segments[0], a_values, policy_lens[0])
                b_pol = _policy_obj(registry, segments[1], b_values, policy_lens[1])
                target = a_pol.lr_at(policy_lens[0] - 1) if tie == "end" else a_pol.peak_lr()
                have = b_pol.lr_at(0) if tie == "end" else b_pol.peak_lr()
                if tie == "end" and (target <= 0 or have <= 0):  # A ends (or B starts) at 0: match peaks
                    target, have = a_pol.peak_lr(), b_pol.peak_lr()
                if target > 0 and have > 0:
                    factor = target / have
                    for name in plans[1].lr_names:
                        b_values[name] = b_values[name] * factor
            specs.append({"name": segments[1], "params": b_values})
        if warmup is not None:
            first = _policy_obj(registry, segments[0], a_values, policy_lens[0]).lr_at(0)
            ramp = {"name": "constant_warmup", "params": {"lr": first, "warmup_steps": seg_len[0]}}
            specs.insert(0, ramp)
        return {"sequence": specs, "boundaries": bounds}

    name = ">".join((["warmup"] if warmup is not None else []) + segments)
    notes = [f"{p}{n}: {note}" for p, plan in zip(prefixes, plans) for n in [plan.policy] for note in plan.notes]
    if warmup is not None:
        notes.append("warmup: a linear ramp from 0 to A's first LR")
    if len(segments) == 2:
        notes.append({"end": "b: starts at the LR A ended with", "peak": "b: same peak LR as A",
                      "free": "b: its own LRs"}[tie])
    family = Family(name, tuple(dims), build, dict(recipe), tuple(notes))
    for steps in (10, 100):
        spec = build(family.center(), steps)
        if warmup is not None and spec["sequence"][0]["params"]["lr"] <= 0:
            raise SpaceError(f"composition {name}: {segments[0]} starts at LR 0, so a warmup cannot ramp up to it")
        _check_spec(spec, registry, f"composition {name}")
    return family


def compose_space(
    first: str | Sequence[str],
    second: str | Sequence[str] | None = None,
    registry: Registry | None = None,
    *,
    warmup: float | Sequence[float] | None = None,
    switch: float | Sequence[float] = (0.2, 0.8),
    tie: str = "end",
    overrides: dict[str, Any] | None = None,
    lr_range: Sequence[float] | None = None,
) -> SearchSpace:
    """Multi-policy compositions as ``{"sequence": [...], "boundaries": [...]}`` families.

    * ``second`` None: "warmup then A" for each A of ``first``: a linear ramp (``constant_warmup``
      over its own segment) from 0 to A's first LR, for ``warmup`` of the run (default 5 %), then
      A over the rest. A's own warmup parameters are set to 0.
    * ``second`` given: "A then B" for each pair, B starting at ``switch`` of the run (a
      dimension in [0.2, 0.8] by default, or a fixed fraction); with ``warmup`` also set, a
      warmup segment comes first. B's warmup is 0 and B's LRs are tied to A's by ``tie``:
      ``"end"`` scales B's LRs so B starts at the LR A ended with (no jump; where A ends at 0 or
      B starts at 0 the peaks are matched instead), ``"peak"`` gives B the same peak LR as A (a
      restart), ``"free"`` searches B's LRs on their own (jumps allowed).

    ``warmup`` and ``switch`` are fractions of the run, a number (fixed) or a [low, high] range (a
    dimension). Each segment's derived parameters follow the segment's length. Dimension names
    are ``a.<param>``, ``b.<param>``, ``warmup``, ``switch``; ``overrides`` are keyed by
    ``policy.param`` (or a bare parameter name) as in :func:`policy_space`.
    """
    reg = _registry(registry)
    firsts = [first] if isinstance(first, str) else list(first)
    seconds = None if second is None else ([second] if isinstance(second, str) else list(second))
    if not firsts:
        raise SpaceError("compose_space needs at least one first policy")
    if seconds is None and warmup is None:
        warmup = 0.05
    if seconds is not None and not seconds:
        raise SpaceError("compose_space: second is empty")
    _check_lr_range(lr_range)
    names = list(dict.fromkeys(firsts + (seconds or [])))
    per = _split_overrides(overrides, names, reg)
    families = []
    pairs = [(a,) for a in firsts] if seconds is None else [(a, b) for a in firsts for b in seconds]
    for segs in pairs:
        recipe = {
            "kind": "compose",
            "segments": list(segs),
            "warmup": list(warmup) if isinstance(warmup, (list, tuple)) else warmup,
            "switch": (list(switch) if isinstance(switch, (list, tuple)) else switch) if len(segs) == 2 else None,
            "tie": tie,
            "overrides": {n: per[n] for n in dict.fromkeys(segs) if per[n]} or None,
            "lr_range": list(lr_range) if lr_range is not None else None,
        }
        families.append(_compose_family(recipe, reg))
    return SearchSpace(tuple(families))


def study_space(policies: Sequence[str], method: str, registry: Registry, overrides: dict[str, Any] | None = None,
                lr_range: Sequence[float] | None = None) -> SearchSpace:
    """The search space of a study: one family per policy, and for the ``compose`` method also
    "warmup then A" for each A and "A then B" for every ordered pair A != B, so the best
    composition is compared with the best single policy in one search.

    The one builder of a study's space: the study runs it, and the Study panel's preview and
    ``lrbench tune --dry-run`` show it."""
    overrides = overrides or {}
    space = policy_space(list(policies), registry=registry, overrides=overrides, lr_range=lr_range)
    if method == "compose":
        kw: dict[str, Any] = {"registry": registry, "overrides": overrides, "lr_range": lr_range}
        space = space + compose_space(list(policies), None, **kw)
        if len(policies) > 1:
            pairs = compose_space(list(policies), list(policies), **kw)
            space = space + SearchSpace(tuple(f for f in pairs.families if len(set(f.recipe["segments"])) == 2))
    return space
