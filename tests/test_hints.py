"""How a policy is searched comes from its schema, so a third-party policy takes part exactly like
a built-in one; policies that declare nothing are read by the torch/HF naming conventions."""

from __future__ import annotations

import math

from lrbench_gui.core.params import Params, param, run_fraction
from lrbench_gui.core.policy import Policy
from lrbench_gui.core.records import spec_label
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.families import compose_space, policy_space
from lrbench_gui.core.tuning.hints import policy_hints
from lrbench_gui.plugins import get_registry


class Ramp(Policy):
    """A linear ramp to ``peak`` over ``ramp`` steps, then a hold at ``peak`` above ``floor``:
    names no convention knows, declared through roles."""

    name = "ramp-hold"

    class Params(Params):
        floor: float = param(1e-4, "Where the ramp starts.", gt=0, log=True, search=(1e-6, 1e-2), role="min_lr")
        peak: float = param(1e-2, "The LR held after the ramp.", gt=0, log=True, search=(1e-4, 1.0), role="lr")
        ramp: int = param(10, "Steps of the ramp.", ge=0, role="warmup", derive=run_fraction(0.25))
        shape: float = param(1.0, "Exponent of the ramp.", gt=0, search=(0.5, 2.0), tune=True)

    def lr_at(self, step: int) -> float:
        p = self.params
        if step >= p.ramp:
            return p.peak
        return p.floor + (p.peak - p.floor) * (step / max(1, p.ramp)) ** p.shape


class OldStyle(Policy):
    """A policy written before hints existed: conventional names only."""

    name = "old-style"

    class Params(Params):
        max_lr: float = param(1e-2, "Peak LR.", gt=0, log=True, search=(1e-5, 1.0))
        min_lr: float = param(1e-3, "Floor LR.", gt=0, log=True, search=(1e-6, 1e-1))
        warmup_steps: int = param(0, "Warmup.", ge=0)
        decay: float = param(0.5, "Not an LR.", gt=0, lt=1)

    def lr_at(self, step: int) -> float:
        p = self.params
        return p.max_lr if step < p.warmup_steps else max(p.min_lr, p.max_lr * p.decay)


def registry() -> Registry:
    reg = Registry()
    for kind, items in get_registry().items.items():
        reg.items[kind].update(items)
    reg.add("policy", Ramp, "test", "test")
    reg.add("policy", OldStyle, "test", "test")
    return reg


def test_declared_roles_drive_the_search_of_a_third_party_policy():
    reg = registry()
    hints = policy_hints(Ramp)
    assert hints.lr == "peak" and hints.lr_names == ("floor", "peak")
    assert hints.searched == ("floor", "peak", "shape")  # the LRs, and shape because tune=True
    assert hints.ordered == (("floor", "peak"),) and hints.warmups == ("ramp",)
    family = policy_space(["ramp-hold"], reg).families[0]
    assert [d.name for d in family.dims] == ["floor", "peak", "shape"]
    # the ramp follows the run's length, and a point out of order is sorted
    spec = family.build({"floor": 0.5, "peak": 1e-3, "shape": 1.0}, 400)
    assert spec["params"]["ramp"] == 100
    assert spec["params"]["floor"] == 1e-3 and spec["params"]["peak"] == 0.5
    assert family.build(family.center(), 40)["params"]["ramp"] == 10


def test_a_composition_zeroes_a_declared_warmup_and_ties_the_declared_lrs():
    reg = registry()
    (fam,) = compose_space(["ramp-hold"], None, reg, warmup=0.1).families
    spec = fam.build(fam.center(), 100)
    assert spec["sequence"][1]["name"] == "ramp-hold" and spec["sequence"][1]["params"]["ramp"] == 0
    (pair,) = compose_space(["cosine"], ["ramp-hold"], reg, switch=0.5).families
    assert not any(d.name.startswith("b.") and d.name != "b.shape" for d in pair.dims)  # B's LRs are tied
    spec = pair.build(pair.center(), 100)
    a, b = spec["sequence"]
    assert math.isclose(b["params"]["floor"] / b["params"]["peak"], 1e-4 / 1e-2)  # scaled together


def test_a_policy_that_declares_nothing_is_read_by_convention():
    hints = policy_hints(OldStyle)
    assert hints.roles == {"max_lr": "lr", "min_lr": "min_lr", "warmup_steps": "warmup"}
    assert hints.searched == ("max_lr", "min_lr") and hints.ordered == (("min_lr", "max_lr"),)
    assert hints.derived == {"warmup_steps": {"rule": "fraction", "value": 0.05, "min": 0}}
    assert "decay" not in hints.searched


def test_built_in_policies_keep_their_search_rules():
    reg = get_registry()
    space = policy_space(["step", "exp", "triangle", "warmup_decay", "range_exp"], reg)
    dims = {f.name: [d.name for d in f.dims] for f in space.families}
    assert dims == {"step": ["lr", "gamma"], "exp": ["lr"], "triangle": ["min_lr", "max_lr"],
                    "warmup_decay": ["warmup_max_lr"], "range_exp": ["start_lr", "end_lr"]}
    exp = space.family("exp").build({"lr": 0.1}, 200)["params"]
    assert math.isclose(exp["gamma"] ** 200, 0.01)  # decays to 1 % of its start by the end
    ds = space.family("warmup_decay").build({"warmup_max_lr": 1e-3}, 200)["params"]
    assert ds["warmup_num_steps"] == 10
    tri = space.family("triangle").build({"min_lr": 1e-3, "max_lr": 1e-2}, 800)["params"]
    assert tri["half_cycle"] == 100


def test_one_label_for_one_spec_everywhere():
    reg = registry()
    spec = {"name": "triangle", "params": {"min_lr": 0.001, "max_lr": 0.01, "half_cycle": 10}}
    assert spec_label(spec, reg) == "triangle(max_lr=0.01)"
    assert spec_label(spec) == "triangle(max_lr=0.01)"  # no registry: the conventional names agree
    assert spec_label({"name": "ramp-hold", "params": {"floor": 1e-4, "peak": 0.02}}, reg) == "ramp-hold(peak=0.02)"
    seq = {"sequence": [{"name": "constant_warmup", "params": {"lr": 0.1, "warmup_steps": 5}}, spec],
           "boundaries": [5]}
    assert spec_label(seq, reg) == "constant_warmup -> triangle @5"
