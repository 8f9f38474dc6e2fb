"""The analyses behind the Results views, without Qt: rows from real stored records, the metric
against the LR per family with the spread over seeds, any parameter, parallel coordinates,
Optuna's parameter importance, range tests, smoothing and x axes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrbench_gui.core import analysis as A
from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_range_test, synthetic_study, synthetic_trial


def _seeded(i: int, seed: int, study: str = "s1") -> dict:
    t = synthetic_trial(i, study=study, points=50, total_steps=500, seed=seed)
    t["extra"] = {"family": t["policy"]["name"], "point": {k: v for k, v in t["policy"]["params"].items() if "lr" in k}}
    return t


def _two_dims(n: int = 12) -> list[dict]:
    """A study of lr x gamma where the metric follows the LR only (gamma is noise)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        lr, gamma = float(10 ** rng.uniform(-4, -1)), float(rng.uniform(0.1, 0.9))
        out.append({
            "id": f"s2-r{i:04d}", "study": "s2", "kind": "train", "task": "digits", "status": "completed", "seed": 0,
            "policy": {"name": "step", "params": {"lr": lr, "gamma": gamma, "step_size": 100}},
            "metrics": {"val_loss": abs(math.log10(lr) + 2.5) + 0.01 * rng.normal()},
            "objective": {"metric": "val_loss", "mode": "min"},
            "cost": {"steps": 100, "tokens": 0, "seconds": 2.0},
            "extra": {"family": "step", "point": {"lr": lr, "gamma": gamma}},
        })
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Records as the database gives them back (packed curves), three seeds per configuration."""
    db = PolicyDB(tmp_path_factory.mktemp("analysis") / "db.json")
    with db.batch():
        db.add_study(synthetic_study("s1"))
        db.add_study(synthetic_study("rt"))
        db.add_many("trials", [_seeded(i, s) for i in range(6) for s in range(3)])
        db.add_trial(synthetic_range_test("rt1", study="rt"))
    return db.trials()


def test_rows_group_seeds_and_read_the_peak_lr(stored):
    rows = A.analysis_rows(stored)
    by_id = {r["id"]: r for r in rows}
    a, b = by_id["s1-t00004-s0"], by_id["s1-t00004-s2"]
    assert a["group"] == b["group"] and a["seed"] != b["seed"]
    assert a["group"] != by_id["s1-t00001-s0"]["group"]
    assert a["family"] == "cosine" and a["lr"] == pytest.approx(a["params"]["lr"], rel=1e-3)  # read off the curve
    assert by_id["rt1"]["kind"] == "range_test"
    assert A.metric_names(rows)[0] == "eval_loss"  # the objective first
    assert A.objective_of(rows) == ("eval_loss", "min")


def test_point_values_are_the_ones_the_policy_ran_with():
    t = _two_dims(1)[0]
    t["policy"] = {"name": "triangle2", "params": {"min_lr": 0.001, "max_lr": 0.02}}
    t["extra"]["point"] = {"min_lr": 0.02, "max_lr": 0.001}  # the tuner's pair, put in order by the policy
    row = A.analysis_rows([t])[0]
    assert row["params"] == {"min_lr": 0.001, "max_lr": 0.02}


def test_family_curves_carry_the_spread_over_seeds(stored):
    curves = A.family_curves(A.analysis_rows(stored), "eval_loss")
    assert set(curves) == {"fixed", "cosine", "warmup_decay"}
    for points in curves.values():
        assert [p["lr"] for p in points] == sorted(p["lr"] for p in points)
        for p in points:
            assert p["n"] == 3 and sorted(p["seeds"]) == [0, 1, 2]
            assert p["min"] <= p["mean"] <= p["max"] and p["min"] < p["max"]


def test_metric_against_any_parameter(stored):
    rows = A.analysis_rows(stored)
    assert A.param_names(rows)[:2] == [A.PEAK_LR, A.FAMILY]
    lr = A.metric_vs_param(rows, "eval_loss", A.PEAK_LR)
    assert lr["log_x"] and not lr["categorical"] and len(lr["x"]) == 18
    fam = A.metric_vs_param(rows, "eval_loss", A.FAMILY)
    assert fam["categorical"] and fam["categories"] == ["cosine", "fixed", "warmup_decay"]
    assert set(fam["x"]) == {0.0, 1.0, 2.0} and not fam["log_x"]
    # cosine's "lr" is absent from warmup_decay's trials: they are left out and counted
    part = A.metric_vs_param(rows, "eval_loss", "lr")
    assert part["left_out"] == 6 and len(part["x"]) == 12


def test_parallel_coordinates_scale_each_axis():
    rows = A.analysis_rows(_two_dims())
    assert A.dimensions(rows) == ["gamma", "lr"]
    pc = A.parallel_coordinates(rows, "val_loss")
    assert pc["axes"] == ["gamma", "lr", "val_loss"] and len(pc["ids"]) == 12
    for name in pc["axes"]:
        col = np.array(pc["columns"][name])
        assert col.min() == pytest.approx(0.0) and col.max() == pytest.approx(1.0)
    lrs = np.array([r["params"]["lr"] for r in rows])
    scaled = np.array(pc["columns"]["lr"])
    # the LR axis is logarithmic: the geometric middle of the range sits at 0.5
    mid = 10 ** ((np.log10(lrs.min()) + np.log10(lrs.max())) / 2)
    assert np.interp(np.log10(mid), np.log10(np.sort(lrs)), np.sort(scaled)) == pytest.approx(0.5, abs=1e-9)
    assert pc["ticks"]["lr"][0][0] == 0.0


def test_importance_ranks_the_parameter_that_matters():
    rows = A.analysis_rows(_two_dims(16))
    out = A.param_importance(rows, "val_loss", "min", evaluator="ped-anova")
    assert out["evaluator"] == "PED-ANOVA" and set(out["importances"]) == {"lr", "gamma"}
    assert out["importances"]["lr"] > out["importances"]["gamma"]
    assert "16 trials and 2 dimensions" in out["note"]
    few = A.param_importance(rows[:2], "val_loss", evaluator="ped-anova")
    assert few["importances"] == {} and "at least 3 completed trials" in few["note"]
    with pytest.raises(ValueError, match="unknown importance evaluator 'shap'; use one of: fanova, ped-anova"):
        A.param_importance(rows, "val_loss", evaluator="shap")


def test_importance_over_families_uses_the_peak_lr(stored):
    rows = A.analysis_rows(stored)
    dims = A.dimensions(rows)
    assert dims[:2] == [A.FAMILY, A.PEAK_LR]  # "lr" and "warmup_max_lr" are not in every trial
    out = A.param_importance(rows, "eval_loss", evaluator="ped-anova")
    assert out["params"] == [A.FAMILY, A.PEAK_LR]


def test_range_tests_and_their_suggested_range(stored):
    tests = A.range_tests(stored)
    assert [t["id"] for t in tests] == ["rt1"]
    lo, hi = tests[0]["suggested"]
    assert 1e-6 < lo < 1e-3 < hi < 1.0  # the synthetic test's loss bottoms near 1e-3
    assert len(tests[0]["lr"]) == len(tests[0]["loss"]) > 100


def test_smoothing_is_debiased_and_skips_gaps():
    y = np.array([2.0, 2.0, 2.0, math.nan, 2.0])
    s = A.smooth(y, 0.9)
    assert s[0] == pytest.approx(2.0) and s[-1] == pytest.approx(2.0) and math.isnan(s[3])
    ramp = np.arange(10, dtype=float)
    assert np.array_equal(A.smooth(ramp, 0.0), ramp)
    assert A.smooth(ramp, 0.6)[-1] < ramp[-1]


def test_x_axes_only_where_recorded():
    row = {"cost": {"steps": 100, "tokens": 0, "seconds": 10.0}}
    assert A.x_axes(row) == ["step", "seconds"]
    assert A.curve_x(np.array([0, 49, 99]), row, "tokens") is None
    assert A.curve_x(np.array([0, 49, 99]), row, "seconds").tolist() == pytest.approx([0.1, 5.0, 10.0])
    with_tokens = {"cost": {"steps": 10, "tokens": 2048 * 10}}
    assert A.curve_x(np.array([9]), with_tokens, "tokens").tolist() == [20480.0]


def test_compare_table(stored):
    rows = [r for r in A.analysis_rows(stored) if r["id"] in ("s1-t00000-s0", "s1-t00002-s0")]
    fields, columns = A.compare_table(rows)
    assert fields[:5] == ["policy", "family", "status", "seed", A.PEAK_LR]
    assert "eval_loss" in fields and "cost: seconds" in fields
    i = fields.index("warmup_max_lr")
    assert [c[i] != "" for c in columns] == [False, True]
