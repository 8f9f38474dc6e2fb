"""Families of policy specs, made from the policies' schemas and their search hints.

:func:`policy_space` makes one family per policy; :func:`compose_space` makes multi-policy
compositions (LRBench++'s "multi-policy LR composition"): warmup then A, A then B at a switch
point, with the segments' LRs tied. How each parameter is treated (searched, fixed at its
default or an override, derived from the run's length) comes from
:func:`lrbench_gui.core.tuning.hints.policy_hints`; nothing here names a policy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from lrbench_gui.core.params import ParamInfo, describe, validate_params
from lrbench_gui.core.registry import Registry, UnknownName
from lrbench_gui.core.spec import SpecError, build_schedule, parse_spec
from lrbench_gui.core.tuning.hints import PolicyHints, order_values, policy_hints
from lrbench_gui.core.tuning.space import Dim, Family, SearchSpace, SpaceError, _need

__all__ = ["policy_space", "compose_space"]


def _default_range(row: ParamInfo) -> tuple[float, float] | None:
    if row.search is not None:
        return row.search
    if row.minimum is not None and row.maximum is not None:
        return row.minimum, row.maximum
    return None


def _check_bound(row: ParamInfo, v: float, where: str) -> None:
    if row.minimum is not None and (v < row.minimum or (row.exclusive_minimum and v == row.minimum)):
        raise SpaceError(f"{where}: {v:g} is outside the parameter's bounds ({row.bounds_text()})")
    if row.maximum is not None and (v > row.maximum or (row.exclusive_maximum and v == row.maximum)):
        raise SpaceError(f"{where}: {v:g} is outside the parameter's bounds ({row.bounds_text()})")


def _dim_for(row: ParamInfo, value: Any, where: str) -> Dim | Any:
    """A Dim from an override value (a [lo, hi] range; a list of choices, which for a number
    is one value or three or more) or the fixed value."""
    if isinstance(value, (list, tuple)):
        if row.kind in ("float", "int") and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            lo, hi = float(value[0]), float(value[1])
            for v in (lo, hi):
                _check_bound(row, v, where)
            if lo > hi:
                raise SpaceError(f"{where}: range [{lo:g}, {hi:g}] is reversed")
            try:
                return Dim(row.name, row.kind, lo, hi, row.log and lo > 0)
            except SpaceError as exc:
                raise SpaceError(f"{where}: {exc}") from None
        if row.kind in ("float", "int") and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):  # one or three or more numbers: a choice among them (two are a range, above)
            for v in value:
                _check_bound(row, v, where)
            cast = int if row.kind == "int" else float
            if row.kind == "int" and any(float(v) != int(v) for v in value):
                raise SpaceError(f"{where}: {row.name} takes whole numbers, got {list(value)}")
            return Dim(row.name, "choice", choices=tuple(dict.fromkeys(cast(v) for v in value)))
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
    derived: tuple[str, ...]
    hints: PolicyHints
    notes: tuple[str, ...]

    @property
    def lr_names(self) -> tuple[str, ...]:
        return self.hints.lr_names

    def values(self, point: dict[str, Any], steps: int, prefix: str = "", zero_warmup: bool = False) -> dict[str, Any]:
        values = dict(self.fixed)
        for name in self.derived:
            values[name] = self.hints.derive(name, max(1, steps))
        if zero_warmup:
            for name in self.hints.warmups:
                if name in self.derived:
                    values[name] = self.hints.zero(name)
        searched = set()
        for d in self.dims:
            key = prefix + d.name
            if key not in point:
                raise KeyError(f"point has no value for {key!r}")
            values[d.name] = d.cast(point[key])
            searched.add(d.name)
        order_values(values, searched, self.hints.ordered)
        return values


def _plan(policy: str, registry: Registry, overrides: dict[str, Any], lr_range: Sequence[float] | None,
          where: str = "") -> _PolicyPlan:
    try:
        cls = registry.policy(policy)
    except UnknownName as exc:
        raise SpaceError(str(exc)) from None
    hints = policy_hints(cls)
    dims: list[Dim] = []
    fixed: dict[str, Any] = {}
    derived: list[str] = []
    notes: list[str] = []
    for row in hints.rows:
        label = f"{where or policy}.{row.name}"
        if row.name in overrides:
            made = _dim_for(row, overrides[row.name], f"override {label}")
            if isinstance(made, Dim):
                dims.append(made)
            else:
                fixed[row.name] = made
                notes.append(f"{row.name} = {made!r} (override)")
            continue
        if row.name in hints.searched:
            rng = _default_range(row)
            if row.name in hints.lr_names and lr_range is not None:
                rng = (float(lr_range[0]), float(lr_range[1]))
            if rng is not None and rng[0] < rng[1]:
                try:
                    dims.append(Dim(row.name, row.kind, float(rng[0]), float(rng[1]), row.log))
                except SpaceError as exc:
                    raise SpaceError(f"{label}: {exc}") from None
                continue
        if row.name in hints.derived:
            derived.append(row.name)
            notes.append(f"{row.name}: derived from the run length")
            continue
        fixed[row.name] = row.default
    return _PolicyPlan(policy, tuple(dims), fixed, tuple(derived), hints, tuple(notes))


def _check_spec(spec: dict[str, Any], registry: Registry, where: str) -> None:
    try:
        parse_spec(spec, registry)
    except SpecError as exc:
        raise SpaceError(f"{where}: the family builds an invalid spec: {exc}") from None


def _mean_lr_ratio(family: Family, registry: Registry, steps: int = 400) -> float | None:
    """The mean LR of ``family``'s centre over a run of ``steps`` steps, over its peak LR."""
    try:
        lrs = build_schedule(family.build(family.center(), steps), steps, registry).lrs()
    except Exception:  # noqa: BLE001  (a hint only: a schedule that cannot be sampled has none)
        return None
    peak = max(lrs, default=0.0)
    if not lrs or not math.isfinite(peak) or peak <= 0:
        return None
    return sum(lrs) / len(lrs) / peak


def _with_ratio(family: Family, registry: Registry) -> Family:
    return dataclasses.replace(family, mean_lr_ratio=_mean_lr_ratio(family, registry))


def _policy_family(policy: str, registry: Registry, overrides: dict[str, Any], lr_range: Sequence[float] | None) -> Family:
    plan = _plan(policy, registry, overrides, lr_range)

    def build(point: dict[str, Any], total_steps: int) -> dict[str, Any]:
        return {"name": policy, "params": plan.values(point, total_steps)}

    recipe = {"kind": "policy", "policy": policy, "overrides": dict(overrides) or None,
              "lr_range": list(lr_range) if lr_range is not None else None}
    family = Family(policy, plan.dims, build, recipe, plan.notes)
    for steps in (1, 100):
        _check_spec(build(family.center(), steps), registry, f"policy {policy}")
    return _with_ratio(family, registry)


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
    _need(registry)
    reg = registry
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
            plan = _PolicyPlan(plan.policy, kept, fixed, plan.derived, plan.hints, plan.notes)
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
    return _with_ratio(family, registry)


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
    _need(registry)
    reg = registry
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
