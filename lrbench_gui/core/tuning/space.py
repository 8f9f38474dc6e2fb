"""Search spaces: what a tuner may try, as families of policy specs.

A :class:`SearchSpace` is a list of :class:`Family` objects. A family has named dimensions
(:class:`Dim`) and a ``build(point, total_steps)`` that turns one point (a dict of dimension
values) into a policy spec for a run of ``total_steps`` steps. Tuners sample points; the study
runs the specs. A family's parameters that are not dimensions are fixed (at the schema's default
or an override) or *derived* from the run's length, so the same point means the same schedule
shape whatever the budget (halving's short rungs rely on it).

The families are made in :mod:`lrbench_gui.core.tuning.families` from the policies' schemas and
their search hints (:mod:`lrbench_gui.core.tuning.hints`): :func:`policy_space` (one family per
policy) and :func:`compose_space` (LRBench++'s multi-policy compositions). Both record how they
were built (``Family.recipe``), so :meth:`SearchSpace.from_json` rebuilds the same space from a
study record. :func:`study_space` is the one builder of a study's space. docs/tuning.md lists
every rule.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.hints import LR_NAME

__all__ = [
    "Dim",
    "Family",
    "SearchSpace",
    "SpaceError",
    "policy_space",
    "compose_space",
    "as_space",
    "study_space",
    "LR_NAME",
]


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
    #: the schedule's mean LR over a run as a share of its peak LR, at the family's centre (1 for
    #: ``fixed``, about 0.5 for ``cosine``); tuners that share an LR axis across families align
    #: them by it. None when unknown (a hand-made family)
    mean_lr_ratio: float | None = field(default=None, compare=False)

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
    def from_json(cls, obj: dict[str, Any] | str, registry: Registry) -> "SearchSpace":
        """Rebuild a space from :meth:`to_json`, by running each family's recipe again with the
        policies of ``registry``."""
        from lrbench_gui.core.tuning.families import _compose_family, _policy_family

        _need(registry)
        if isinstance(obj, str):
            obj = json.loads(obj)
        families: list[Family] = []
        for f in obj["families"]:
            recipe = f.get("recipe")
            if not recipe:
                raise SpaceError(f"family {f.get('name')!r} has no recipe: it cannot be rebuilt")
            if recipe["kind"] == "policy":
                families.append(
                    _policy_family(recipe["policy"], registry, recipe.get("overrides") or {},
                                   recipe.get("lr_range"))
                )
            elif recipe["kind"] == "compose":
                families.append(_compose_family(recipe, registry))
            else:
                raise SpaceError(f"family {f.get('name')!r}: unknown recipe kind {recipe['kind']!r}")
        return cls(tuple(families))


def _need(registry: Any) -> None:
    if not isinstance(registry, Registry):
        raise SpaceError("building a search space needs the registry of installed policies "
                         "(lrbench_gui.api.load_registry() gives it)")


def as_space(space: Any, registry: Registry | None = None) -> SearchSpace:
    """A :class:`SearchSpace` from a space, or (with ``registry``) its JSON form or a list of
    policy names."""
    if isinstance(space, SearchSpace):
        return space
    from lrbench_gui.core.tuning.families import policy_space

    _need(registry)
    if isinstance(space, (dict, str)) and (not isinstance(space, str) or space.lstrip().startswith("{")):
        return SearchSpace.from_json(space, registry)
    if isinstance(space, str):
        return policy_space([space], registry)
    if isinstance(space, (list, tuple)) and all(isinstance(s, str) for s in space):
        return policy_space(list(space), registry)
    raise SpaceError(f"not a search space: {space!r}")


def study_space(policies: Sequence[str], method: str, registry: Registry, overrides: dict[str, Any] | None = None,
                lr_range: Sequence[float] | None = None) -> SearchSpace:
    """The search space of a study: one family per policy, and for the ``compose`` method also
    "warmup then A" for each A and "A then B" for every ordered pair A != B, so the best
    composition is compared with the best single policy in one search.

    The one builder of a study's space: the study runs it, and the Study panel's preview and
    ``lrbench tune --dry-run`` show it."""
    from lrbench_gui.core.tuning.families import compose_space, policy_space

    overrides = overrides or {}
    space = policy_space(list(policies), registry=registry, overrides=overrides, lr_range=lr_range)
    if method == "compose":
        kw: dict[str, Any] = {"registry": registry, "overrides": overrides, "lr_range": lr_range}
        space = space + compose_space(list(policies), None, **kw)
        if len(policies) > 1:
            pairs = compose_space(list(policies), list(policies), **kw)
            space = space + SearchSpace(tuple(f for f in pairs.families if len(set(f.recipe["segments"])) == 2))
    return space


def __getattr__(name: str) -> Any:
    # policy_space and compose_space live in families.py, which imports this module
    if name in ("policy_space", "compose_space"):
        from lrbench_gui.core.tuning import families

        return getattr(families, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
