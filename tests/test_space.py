"""Search spaces: default dimensions, derived parameters, overrides, compositions, JSON."""

from __future__ import annotations

import json
import math
import random

import pytest

from lrbench_gui.core.tuning.space import Dim, SearchSpace, SpaceError, as_space, compose_space, policy_space
from lrbench_gui.core.spec import SequenceSpec, build_schedule, parse_spec


def _dims(space, family):
    return {d.name: d for d in space.family(family).dims}


def test_default_dims_are_the_lrs_and_a_few_structural_ones(registry):
    space = policy_space(["cosine", "step", "triangle", "onecycle", "warmup", "fixed", "poly"], registry)
    assert list(_dims(space, "cosine")) == ["lr"]
    lr = _dims(space, "cosine")["lr"]
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-6, 1.0, True)
    assert list(_dims(space, "step")) == ["lr", "gamma"]
    assert not _dims(space, "step")["gamma"].log
    assert list(_dims(space, "triangle")) == ["min_lr", "max_lr"]  # the cyclic min_lr is an LR
    assert list(_dims(space, "onecycle")) == ["max_lr"]
    assert list(_dims(space, "warmup")) == ["warmup_max_lr"]
    assert list(_dims(space, "poly")) == ["lr"]  # poly's min_lr is linear with a default of 0: fixed


@pytest.mark.parametrize("total", [9, 100, 1000])
def test_step_counts_follow_the_run_length(registry, total):
    space = policy_space(["step", "cosine", "triangle", "cosine_restarts", "wsd", "multistep", "exp"], registry)

    def params(family):
        return space.build(family, space.family(family).center(), total)["params"]

    assert params("step")["step_size"] == max(1, total // 3)
    assert params("cosine")["warmup_steps"] == round(0.05 * total)
    assert params("triangle")["half_cycle"] == max(1, total // 8)
    assert params("cosine_restarts")["cycle_steps"] == max(1, total // 4)
    assert params("wsd")["decay_steps"] == round(0.2 * total)
    assert params("multistep")["milestones"] == [total // 2, 3 * total // 4]
    exp = params("exp")
    assert exp["lr"] * exp["gamma"] ** total == pytest.approx(0.01 * exp["lr"])


def test_every_builtin_policy_makes_a_family_of_valid_specs(registry):
    names = sorted(registry.policies)
    space = policy_space(names, registry)
    rng = random.Random(0)
    for family in space.families:
        points = [family.center(), *(family.sample(rng) for _ in range(5))]
        for point in points:
            for total in (1, 7, 500):
                spec = space.build(family.name, point, total)
                parse_spec(spec, registry)
                json.dumps(spec, allow_nan=False)


def test_overrides_narrow_fix_and_choose(registry):
    space = policy_space(
        ["cosine", "step", "wsd"],
        registry,
        overrides={"cosine.lr": [1e-4, 1e-1], "step.gamma": 0.5, "wsd.decay_type": ["linear", "1-sqrt"], "warmup_steps": 7},
    )
    assert (_dims(space, "cosine")["lr"].low, _dims(space, "cosine")["lr"].high) == (1e-4, 1e-1)
    assert list(_dims(space, "step")) == ["lr"]
    assert space.build("step", {"lr": 0.1}, 100)["params"]["gamma"] == 0.5
    assert _dims(space, "wsd")["decay_type"].choices == ("linear", "1-sqrt")
    # a bare name applies to every policy that has the parameter, and beats the derived value
    assert space.build("cosine", {"lr": 0.01}, 1000)["params"]["warmup_steps"] == 7
    assert space.build("wsd", {"lr": 0.01, "decay_type": "linear"}, 1000)["params"]["warmup_steps"] == 7
    # a range on a parameter that is not searched by default searches it
    power = _dims(policy_space(["poly"], registry, overrides={"poly.power": [0.5, 2.0]}), "poly")["power"]
    assert (power.low, power.high) == (0.5, 2.0)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"nosuch.lr": [1e-3, 1e-2]}, "not a policy"),
        ({"cosine.nosuch": 1}, "no parameter"),
        ({"nosuch": 1}, "no policy of this space"),
        ({"cosine.lr": [-1.0, 1.0]}, "outside"),
        ({"cosine.lr": [1e-1, 1e-3]}, "reversed"),
        ({"cosine.lr": [1e-3, "x"]}, "range"),  # three numbers are a choice (issue 16); a mixed list is not
    ],
)
def test_bad_overrides_are_refused(registry, overrides, match):
    with pytest.raises(SpaceError, match=match):
        policy_space(["cosine"], registry, overrides=overrides)


def test_unknown_policy_is_refused(registry):
    with pytest.raises(SpaceError, match="unknown policy"):
        policy_space(["cosin"], registry)


def test_lr_range_narrows_every_lr_dim(registry):
    space = policy_space(["cosine", "triangle", "step"], registry, lr_range=(1e-4, 1e-2),
                         overrides={"step.lr": [1e-3, 1e-1]})
    for family, name in [("cosine", "lr"), ("triangle", "min_lr"), ("triangle", "max_lr")]:
        d = _dims(space, family)[name]
        assert (d.low, d.high) == (1e-4, 1e-2)
    assert (_dims(space, "step")["lr"].low, _dims(space, "step")["lr"].high) == (1e-3, 1e-1)  # the override wins
    assert _dims(space, "step")["gamma"].high == 0.9  # not an LR
    with pytest.raises(SpaceError):
        policy_space(["cosine"], registry, lr_range=(1e-2, 1e-4))


def test_ordered_pairs_are_sorted_or_clamped(registry):
    space = policy_space(["triangle"], registry)
    params = space.build("triangle", {"min_lr": 0.1, "max_lr": 0.001}, 100)["params"]
    assert (params["min_lr"], params["max_lr"]) == (0.001, 0.1)
    fixed_min = policy_space(["cosine"], registry, overrides={"cosine.min_lr": 1e-3})
    params = fixed_min.build("cosine", {"lr": 1e-5}, 100)["params"]
    assert params["min_lr"] <= params["lr"]
    parse_spec(fixed_min.build("cosine", {"lr": 1e-5}, 100), registry)


def test_dim_grid_sample_and_json():
    d = Dim("lr", "float", 1e-5, 1e-1, log=True)
    grid = d.grid(5)
    assert grid[0] == 1e-5 and grid[-1] == 1e-1
    assert all(math.isclose(b / a, 10.0) for a, b in zip(grid, grid[1:]))
    i = Dim("n", "int", 1, 3)
    assert i.grid(5) == [1, 2, 3]
    rng = random.Random(1)
    draws = [i.sample(rng) for _ in range(3000)]
    assert set(draws) == {1, 2, 3} and all(abs(draws.count(v) / 3000 - 1 / 3) < 0.05 for v in (1, 2, 3))
    logs = [math.log10(d.sample(rng)) for _ in range(2000)]
    assert all(-5 <= x <= -1 for x in logs) and abs(sum(logs) / len(logs) + 3) < 0.1  # log-uniform
    c = Dim("k", "choice", choices=("a", "b"))
    assert c.grid(5) == ["a", "b"] and c.contains("a") and not c.contains("z")
    for dim in (d, i, c):
        assert Dim.from_json(json.loads(json.dumps(dim.to_json()))) == dim
    with pytest.raises(SpaceError):
        Dim("lr", "float", 0.0, 1.0, log=True)


def test_space_json_round_trip(registry):
    space = policy_space(["cosine", "step"], registry, overrides={"step.gamma": 0.5}, lr_range=(1e-5, 1e-1))
    space = space + compose_space(["fixed"], ["cosine"], registry, warmup=0.05)
    text = json.dumps(space.to_json(), allow_nan=False)
    again = SearchSpace.from_json(text, registry)
    assert again.to_json() == space.to_json()
    rng = random.Random(3)
    for family in space.families:
        point = family.sample(rng)
        assert again.build(family.name, point, 321) == space.build(family.name, point, 321)
    assert as_space(json.loads(text), registry).names == space.names
    assert as_space(["cosine", "fixed"], registry).names == ["cosine", "fixed"]


def test_duplicate_family_names_are_refused(registry):
    with pytest.raises(SpaceError, match="duplicate"):
        policy_space(["cosine"], registry) + policy_space(["cosine"], registry)


def _check_sequence(spec, registry, total):
    parsed = parse_spec(spec, registry)
    assert isinstance(parsed, SequenceSpec)
    bounds = spec["boundaries"]
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds) and bounds[0] > 0
    return build_schedule(parsed, total, registry).lrs()


def test_warmup_then_a_ramps_into_a_without_a_jump(registry):
    space = compose_space(["cosine", "onecycle"], registry=registry)
    assert space.names == ["warmup>cosine", "warmup>onecycle"]
    family = space.family("warmup>cosine")
    assert [d.name for d in family.dims] == ["a.lr"]
    total = 1000
    spec = family.build({"a.lr": 3e-3}, total)
    lrs = _check_sequence(spec, registry, total)
    w = spec["boundaries"][0]
    assert w == 50  # 5 % of the run
    assert lrs[0] == 0.0 and lrs[w] == pytest.approx(3e-3)
    assert lrs[w] - lrs[w - 1] == pytest.approx(3e-3 / w)  # one ramp step: no jump
    assert spec["sequence"][1]["params"]["warmup_steps"] == 0  # A's own warmup is off
    # onecycle starts at max_lr / div_factor: the ramp ends there
    lrs = _check_sequence(space.family("warmup>onecycle").build({"a.max_lr": 1e-2}, total), registry, total)
    assert lrs[50] == pytest.approx(1e-2 / 25)


@pytest.mark.parametrize("a, b", [("fixed", "cosine"), ("fixed", "exp"), ("triangle", "cosine"), ("cos_cyclic", "linear")])
def test_a_then_b_is_tied_at_the_switch(registry, a, b):
    space = compose_space([a], [b], registry)
    family = space.families[0]
    assert family.name == f"{a}>{b}"
    switch = family.dim("switch")
    assert (switch.low, switch.high) == (0.2, 0.8)
    assert not any(d.name.startswith("b.") and d.name.endswith("lr") for d in family.dims)
    rng = random.Random(5)
    for _ in range(5):
        point = family.sample(rng)
        total = 400
        spec = family.build(point, total)
        lrs = _check_sequence(spec, registry, total)
        s = spec["boundaries"][0]
        assert s == max(1, round(point["switch"] * total))
        assert lrs[s] == pytest.approx(lrs[s - 1], rel=1e-9)  # B starts where A ended


def test_tie_peak_and_free(registry):
    peak = compose_space(["cosine"], ["cosine"], registry, tie="peak", switch=0.5).families[0]
    assert [d.name for d in peak.dims] == ["a.lr"]
    lrs = _check_sequence(peak.build({"a.lr": 0.01}, 200), registry, 200)
    # A keeps its own warmup (no warmup segment comes first); B restarts at the same peak
    assert max(lrs[:100]) == pytest.approx(0.01) and lrs[0] == 0.0
    assert lrs[100] == pytest.approx(0.01) and lrs[99] < 1e-4
    free = compose_space(["fixed"], ["cosine"], registry, tie="free").families[0]
    assert {d.name for d in free.dims} == {"a.lr", "b.lr", "switch"}
    spec = free.build({"a.lr": 0.01, "b.lr": 0.001, "switch": 0.5}, 100)
    assert spec["sequence"][1]["params"]["lr"] == 0.001


def test_warmup_then_a_then_b(registry):
    space = compose_space(["fixed", "triangle"], ["cosine", "exp"], registry, warmup=[0.02, 0.1], switch=[0.3, 0.7])
    assert len(space.families) == 4 and space.names[0] == "warmup>fixed>cosine"
    rng = random.Random(11)
    for family in space.families:
        assert {"warmup", "switch"} <= {d.name for d in family.dims}
        for total in (10, 100, 1000):
            point = family.sample(rng)
            spec = family.build(point, total)
            _check_sequence(spec, registry, total)
            assert len(spec["sequence"]) == 3 and spec["sequence"][0]["name"] == "constant_warmup"


def test_composition_errors(registry):
    with pytest.raises(SpaceError, match="starts at LR 0"):
        compose_space(["warmup_cosine"], registry=registry)
    with pytest.raises(SpaceError, match="fraction"):
        compose_space(["fixed"], ["cosine"], registry, switch=1.5)
    with pytest.raises(SpaceError, match="tie"):
        compose_space(["fixed"], ["cosine"], registry, tie="glue")
