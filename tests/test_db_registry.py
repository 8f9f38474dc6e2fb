"""The database takes its registry as an argument: with one, installed policies' parameters are
checked by their schemas and their parameter roles name the LR and the warmup; with none, every
policy is stored as written and listed as not installed. A third-party policy whose parameters
have unusual names takes part through its roles, like a built-in."""

from __future__ import annotations

import json
import textwrap

import pytest

from lrbench_gui.core.db import ImportRefused, PolicyDB, RecordInvalid
from lrbench_gui.core.db.query import peak_lr
from lrbench_gui.core.spec import sample
from lrbench_gui.core.db.recipes import SEED_POLICIES, resolve_recipe_spec, warmup_param
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial
from lrbench_gui.core.spec import build_schedule, parse_spec
from lrbench_gui.plugins import load_plugins

RAMP_PLUGIN = '''
from lrbench_gui.core.params import Params, param
from lrbench_gui.core.policy import Policy
from lrbench_gui.hookspecs import hookimpl


class Ramp(Policy):
    name = "ramp"
    summary = "Ramp up linearly, then hold"

    class Params(Params):
        peak: float = param(1e-3, "The LR held after the ramp.", gt=0, log=True, role="lr")
        ramp: int = param(0, "Steps of the ramp.", ge=0, unit="steps", role="warmup")

    def lr_at(self, step):
        if step < self.params.ramp:
            return self.params.peak * (step + 1) / self.params.ramp
        return self.params.peak


@hookimpl
def register_policies(register):
    register(Ramp)
'''


@pytest.fixture
def with_ramp(lrbench_env):
    """A registry of the built-ins and a third-party ``ramp`` policy from the plugins folder."""
    (lrbench_env["plugins"] / "ramp_plugin.py").write_text(textwrap.dedent(RAMP_PLUGIN))
    reg = load_plugins(lrbench_env["plugins"])
    assert "ramp" in reg.policies and not reg.problems
    return reg


def _export_with_bad_cosine(tmp_path) -> tuple[object, dict]:
    bad = synthetic_trial(0, points=20, packed=False)
    bad["policy"] = {"name": "cosine", "params": {"lr": -1.0}}
    doc = {"format": "lrbench-db-export", "version": 1, "studies": [synthetic_study()], "trials": [bad]}
    path = tmp_path / "bad-cosine.json"
    path.write_text(json.dumps(doc))
    return path, bad


def test_a_bad_parameter_of_an_installed_policy_is_refused_only_with_a_registry(tmp_path, registry):
    path, bad = _export_with_bad_cosine(tmp_path)
    checked = PolicyDB(tmp_path / "checked.json", registry=registry)
    with pytest.raises(ImportRefused) as info:
        checked.import_file(path)
    assert "trials[0]" in str(info.value) and "field policy.params.lr" in str(info.value)
    assert not checked.path.exists()

    unchecked = PolicyDB(tmp_path / "unchecked.json")
    assert unchecked.registry is None
    report = unchecked.import_file(path)
    assert report.added["trials"] == 1
    assert report.unknown_policies == ["cosine"]
    assert "Policies not installed here" in report.summary() and "cosine" in report.summary()
    assert unchecked.get(bad["id"])["policy"] == {"name": "cosine", "params": {"lr": -1.0}}


def test_add_follows_the_registry_too(tmp_path, registry):
    bad = synthetic_trial(0, points=20)
    bad["policy"] = {"name": "fixed", "params": {"lr": 0.0}}
    checked = PolicyDB(tmp_path / "checked.json", registry=registry)
    checked.add_study(synthetic_study())
    with pytest.raises(RecordInvalid, match=r"field policy\.params\.lr"):
        checked.add_trial(bad)
    unchecked = PolicyDB(tmp_path / "unchecked.json", registry=None)
    unchecked.add_study(synthetic_study())
    assert unchecked.add_trial(bad)["policy"]["params"]["lr"] == 0.0


def test_a_free_form_check_still_applies_without_a_registry(tmp_path):
    db = PolicyDB(tmp_path / "p.json")
    db.add_study(synthetic_study())
    bad = synthetic_trial(0, points=20)
    bad["policy"] = {"name": "cosine", "params": {"lr": "x" * 5000}}
    with pytest.raises(RecordInvalid, match=r"policy\.params\.lr: is 5000 characters long"):
        db.add_trial(bad)


def test_labels_and_peak_lr_use_the_lr_role_of_a_third_party_policy(tmp_path, with_ramp):
    db = PolicyDB(tmp_path / "p.json", registry=with_ramp)
    db.add_study(synthetic_study())
    trials = []
    for i, peak in enumerate([2e-3, 5e-4]):
        t = synthetic_trial(i, points=20)
        t["policy"] = {"name": "ramp", "params": {"peak": peak, "ramp": 10}}
        t["curves"] = {}
        t["metrics"] = {"eval_loss": 0.1 + i}
        trials.append(t)
    db.add_many("trials", trials)
    assert {r["policy"] for r in db.trial_rows()} == {"ramp(peak=0.002)", "ramp(peak=0.0005)"}
    assert db.recommend("digits")["results"][0]["label"] == "ramp(peak=0.002)"
    assert peak_lr(trials[0], with_ramp) == pytest.approx(2e-3)
    # the same records through a database that does not know the policy: no LR to name
    blind = PolicyDB(db.path)
    assert {r["policy"] for r in blind.trial_rows()} == {"ramp"}
    assert peak_lr(trials[0], None) is None


def test_ratio_warmup_goes_into_the_warmup_role(with_ramp):
    recipe = {"spec": {"name": "ramp", "params": {"peak": 3e-4}}, "warmup_ratio": 0.05}
    spec = resolve_recipe_spec(recipe, 2000, with_ramp)
    assert spec == {"name": "ramp", "params": {"peak": 3e-4, "ramp": 100}}
    schedule = build_schedule(parse_spec(spec, with_ramp), 2000, with_ramp)
    assert schedule.lr_at(49) == pytest.approx(1.5e-4) and schedule.lr_at(150) == pytest.approx(3e-4)
    assert recipe["spec"]["params"] == {"peak": 3e-4}, "the recipe itself is not changed"


@pytest.mark.parametrize("rid, key", [("recipe:alpaca-7b", "warmup_num_steps"), ("recipe:vicuna-7b", "warmup_steps")])
def test_builtin_recipes_resolve_through_the_role_and_without_a_registry(registry, rid, key):
    recipe = next(r for r in SEED_POLICIES if r["id"] == rid)
    assert warmup_param(recipe["spec"], registry) == key
    with_registry = resolve_recipe_spec(recipe, 1000, registry)
    assert resolve_recipe_spec(recipe, 1000, None) == with_registry, "the conventional names agree with the roles"
    for total in (1000, 10_000):  # 3% of the run either way: 30 and 300 warmup steps
        lrs = sample(resolve_recipe_spec(recipe, total, registry), total, registry)
        assert abs(lrs.index(max(lrs)) - round(0.03 * total)) <= 1, rid  # DeepSpeed peaks one step later


def test_vicuna_is_stored_as_a_ratio_spec(registry):
    recipe = next(r for r in SEED_POLICIES if r["id"] == "recipe:vicuna-7b")
    assert recipe["spec"]["params"]["warmup_ratio"] == 0.03 == recipe["warmup_ratio"]
    assert resolve_recipe_spec(recipe, 1234, registry) == recipe["spec"], "a ratio spec needs no filling in"


def test_a_policy_without_a_warmup_role_keeps_its_spec(registry):
    recipe = {"spec": {"name": "fixed", "params": {"lr": 1e-3}}, "warmup_ratio": 0.1}
    assert warmup_param(recipe["spec"], registry) is None
    assert resolve_recipe_spec(recipe, 1000, registry) == {"name": "fixed", "params": {"lr": 1e-3}}


def test_a_policy_not_installed_falls_back_to_the_conventional_names():
    def resolved(params):
        return resolve_recipe_spec({"spec": {"name": "elsewhere", "params": params}, "warmup_ratio": 0.01}, 1000, None)["params"]

    assert resolved({"lr": 1e-4}) == {"lr": 1e-4, "warmup_steps": 10}
    assert resolved({"warmup_max_lr": 1e-4}) == {"warmup_max_lr": 1e-4, "warmup_num_steps": 10}
    assert resolved({"lr": 1e-4, "warmup_num_steps": 3}) == {"lr": 1e-4, "warmup_num_steps": 10}
    assert resolve_recipe_spec({"spec": None, "warmup_ratio": 0.1}, 1000, None) is None
