"""The seed recipes: every published recipe is there with its source, and its spec is valid
for the installed built-in policies."""

from __future__ import annotations

import pytest

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.validate import normalize_record
from lrbench_gui.core.db.recipes import SEED_POLICIES, resolve_recipe_spec
from lrbench_gui.core.spec import build_schedule, parse_spec

EXPECTED = {
    "recipe:alpaca-7b": (2e-5, "WarmupDecayLR", 3, 0.03, None),
    "recipe:vicuna-7b": (2e-5, "cosine", 3, 0.03, None),
    "recipe:wizardlm-7b": (2e-5, "cosine", 3, None, 2),
    "recipe:gpt4all-j-6b": (2e-5, "WarmupLR", 2, None, 500),
    "recipe:dolly-7b": (5e-6, "WarmupLR", 2, None, 50),
}


@pytest.mark.parametrize("rid", sorted(EXPECTED))
def test_published_recipes(rid, registry):
    rec = next(r for r in SEED_POLICIES if r["id"] == rid)
    lr, scheduler, epochs, ratio, warmup = EXPECTED[rid]
    assert (rec["lr"], rec["scheduler"], rec["epochs"], rec["warmup_ratio"], rec["warmup_steps"]) == (lr, scheduler, epochs, ratio, warmup)
    assert rec["source"]["url"] and rec["source"]["title"]
    spec = resolve_recipe_spec(rec, 1000, registry)
    schedule = build_schedule(parse_spec(spec, registry), 1000, registry)
    assert max(schedule.lrs()) == pytest.approx(lr)
    if ratio is not None:  # 3% of 1000 steps: in the spec as a ratio (cosine), else filled in as steps
        if spec["name"] == "cosine":
            assert spec["params"]["warmup_ratio"] == ratio and schedule.lrs().index(lr) == 30
        else:
            assert spec["params"]["warmup_num_steps"] == 30
    if warmup is not None:
        assert schedule.lr_at(0) < lr


def test_sweep_and_rules_of_thumb():
    by_id = {r["id"]: r for r in SEED_POLICIES}
    for rid, name in [("recipe:lrbenchpp-llama-7b-fixed", "fixed"), ("recipe:lrbenchpp-llama-7b-warmupdecay", "warmup_decay")]:
        assert by_id[rid]["lr_range"] == [1e-5, 6e-5] and by_id[rid]["spec"]["name"] == name
        assert "2309.08859" in by_id[rid]["source"]["url"]
    assert by_id["rule:sgd"]["lr"] == 0.1 and by_id["rule:sgd"]["optimizer"] == "sgd"
    assert by_id["rule:adam"]["lr"] == 1e-3 and by_id["rule:adam"]["optimizer"] == "adam"
    assert by_id["rule:transformer-finetuning"]["lr_range"] == [1e-5, 1e-4]


def test_every_seed_validates_against_the_builtins(registry):
    for rec in SEED_POLICIES:
        n = normalize_record("policies", rec, registry)
        assert not n.unknown_policies, rec["id"]


def test_seeds_hash_the_same_in_every_database(tmp_path, registry):
    a = {p["id"]: p["hash"] for p in PolicyDB(tmp_path / "a.json", registry=registry).policies()}
    b = {p["id"]: p["hash"] for p in PolicyDB(tmp_path / "b.json", registry=registry).policies()}
    assert a == b and len(a) == len(SEED_POLICIES)
