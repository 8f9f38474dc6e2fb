"""The horizon, path-switch and merge study kinds, driven by synthetic results (no processes):
the fits recover known laws, the tuners ask what the papers' procedures need, in the right order,
and their summaries count cost and gains correctly. The real-process paths are in
test_methods_runs.py."""

from __future__ import annotations

import math
import random

import pytest

from lrbench_gui.core.tuning.horizon_fit import bootstrap_power_law, fit_power_law, lr_optimum, zero_overhead
from lrbench_gui.core.tuner import TrialResult

# The fits.


def test_quadratic_optimum_finds_the_vertex_between_grid_points():
    true = 5.3e-3
    lrs = [2e-3 * 2 ** (i / 2) for i in range(7)]
    losses = [1.0 + 0.2 * (math.log(lr) - math.log(true)) ** 2 for lr in lrs]
    opt = lr_optimum(lrs, losses)
    assert opt.method == "quadratic" and opt.bracketed and opt.edge is None
    assert opt.lr_star == pytest.approx(true, rel=1e-6)
    assert opt.best_lr in lrs and opt.best_lr != pytest.approx(true, rel=1e-3)


def test_optimum_at_the_grid_edge_is_flagged_and_diverged_lrs_count_as_worst():
    lrs = [1e-3, 2e-3, 4e-3, 8e-3]
    opt = lr_optimum(lrs, [4.0, 3.0, 2.0, 1.0])
    assert opt.edge == "high" and not opt.bracketed
    # the top LR diverged (None): the best finite one is not at the grid's edge, but the optimum
    # is not bracketed from above by a finite loss either
    opt = lr_optimum(lrs, [4.0, 3.0, 2.0, None])
    assert opt.best_lr == 4e-3 and opt.edge is None and not opt.bracketed
    assert lr_optimum(lrs, [None, None, None, None]).method == "none"


def test_concave_fit_falls_back_to_the_best_grid_lr():
    lrs = [1e-3, 2e-3, 4e-3]
    opt = lr_optimum(lrs, [1.0, 1.5, 1.1])  # a peak, not a valley
    assert opt.method == "grid" and opt.lr_star == 1e-3


def test_power_law_fit_recovers_b_and_beta():
    B, beta = 0.9, 0.32
    ds = [1e5, 2e5, 4e5, 8e5]
    law = fit_power_law(ds, [B * d ** -beta for d in ds])
    assert law.beta == pytest.approx(beta, abs=1e-9) and law.B == pytest.approx(B, rel=1e-9)
    assert law.predict(1.6e6) == pytest.approx(B * 1.6e6 ** -beta, rel=1e-9)
    assert fit_power_law([1e5], [1e-3]) is None  # one horizon says nothing about a slope


def _sweep(B: float, beta: float, ds: list[float], lrs: list[float], seeds: int, noise: float, rng: random.Random):
    out = []
    for d in ds:
        star = B * d ** -beta
        per_lr = [[2.0 + 0.05 * (math.log(lr / star)) ** 2 + rng.gauss(0, noise) for _ in range(seeds)] for lr in lrs]
        out.append((d, lrs, per_lr))
    return out


def test_seed_bootstrap_band_covers_the_true_beta_and_excludes_zero():
    rng = random.Random(3)
    lrs = [1e-3 * 2 ** (i / 2) for i in range(11)]
    data = _sweep(0.5, 0.32, [1e5, 4e5, 1.6e6, 6.4e6], lrs, seeds=4, noise=0.002, rng=rng)
    law = bootstrap_power_law(data, window=5, resamples=200, seed=0)
    assert law.band_method == "seed bootstrap"
    lo, hi = law.beta_band
    assert lo < 0.32 < hi and lo > 0
    band = law.predict_band(2.56e7)
    assert band[0] < 0.5 * 2.56e7 ** -0.32 < band[1]


def test_zero_overhead_rule_scales_with_the_fixed_exponent():
    assert zero_overhead(1e-2, 1e6, 8e6, beta=0.32) == pytest.approx(1e-2 * 8 ** -0.32)


# Horizon tuner.

TOKENS_PER_STEP = 512


def _loss(lr: float, steps: int, seed: int, B: float = 0.2, beta: float = 0.32) -> float:
    star = B * (steps * TOKENS_PER_STEP) ** -beta
    return 2.0 + 0.05 * math.log(lr / star) ** 2 + 0.0005 * ((seed * 7919) % 5 - 2)


def _drive(tuner, value, limit: int = 500):
    """Run a tuner to its end: every request answered at once with ``value(request)``."""
    asked = []
    while not tuner.done():
        req = tuner.ask()
        assert req is not None, "the tuner waits for nothing but is not done"
        asked.append(req)
        v, extra = value(req)
        tuner.tell(TrialResult(key=req.key, status="completed" if v is not None else "diverged", value=v,
                               cost={"steps": req.steps, "tokens": req.steps * TOKENS_PER_STEP}, **extra))
        assert len(asked) < limit
    return asked


def _horizon(**params):
    from lrbench_builtins.tuners.horizon import HorizonTuner

    base = {"horizons": [100, 200, 400, 800], "lr_min": 1e-3, "lr_max": 1.6e-2, "points": 5, "seeds": 2}
    return HorizonTuner({**base, **params}, seed=0)


def test_horizon_recovers_the_law_and_predicts_the_held_out_horizon():
    tuner = _horizon(check=True, target_steps=3200, points=9, lr_min=5e-4)
    asked = _drive(tuner, lambda r: (_loss(r.point["lr"], r.steps, r.trial["seed"]), {}))
    checks = [r for r in asked if r.tags["kind"] == "horizon_check"]
    assert len(checks) == 2 and {r.trial["seed"] for r in checks} == {0, 1}
    assert all(r.steps == 800 for r in checks)
    # the check is asked only after every shorter horizon finished
    first_check = asked.index(checks[0])
    assert all(asked.index(r) < first_check for r in asked if r.tags.get("horizon") in (100, 200, 400)
               and r.tags["kind"] == "horizon_sweep")
    s = tuner.summary_json()
    assert s["power_law"]["beta"] == pytest.approx(0.32, abs=0.02)
    assert s["power_law"]["horizons"] == [100, 200, 400]  # the longest is held out
    h = s["holdout"]
    assert h["ratio"] < 1.1 and abs(h["loss_gap"]) < 1e-3
    assert s["target"]["lr"] == pytest.approx(0.2 * (3200 * TOKENS_PER_STEP) ** -0.32, rel=0.1)
    assert s["target"]["zero_overhead_lr"] > 0 and s["zero_overhead"]["beta"] == 0.32


def test_horizon_widens_a_grid_whose_best_lr_is_at_the_top():
    tuner = _horizon(lr_min=1e-4, lr_max=4e-4, points=3, widen=2, horizons=[100, 200])
    asked = _drive(tuner, lambda r: (_loss(r.point["lr"], r.steps, r.trial["seed"]), {}))
    for h in (100, 200):
        lrs = sorted({r.point["lr"] for r in asked if r.tags["horizon"] == h})
        assert len(lrs) == 5 and lrs[-1] == pytest.approx(4e-4 * 2 * 2)  # two steps of the grid's ratio
    s = tuner.summary_json()
    assert all(r["widened"]["high"] == 2 for r in s["horizons"])
    assert any("not bracketed" in w for w in s["warnings"])


def test_horizon_does_not_widen_past_a_diverged_lr():
    def value(r):
        lr = r.point["lr"]
        return (None if lr > 5e-3 else 3.0 - 100 * lr, {})  # better and better until it diverges

    tuner = _horizon(lr_min=1e-3, lr_max=8e-3, points=4, widen=3, horizons=[100, 200], seeds=1)
    asked = _drive(tuner, value)
    assert len(asked) == 8  # no LR was added: the best sits under the cliff
    row = tuner.summary_json()["horizons"][0]
    assert row["diverged"][-1] == 1 and row["loss_mean"][-1] is None


def test_horizon_asks_the_same_keys_again_for_a_resume():
    a = [r.key for r in _drive(_horizon(check=True), lambda r: (_loss(r.point["lr"], r.steps, 0), {}))]
    b = [r.key for r in _drive(_horizon(check=True), lambda r: (_loss(r.point["lr"], r.steps, 0), {}))]
    assert a == b and len(set(a)) == len(a)


def test_horizon_refuses_bad_grids():
    with pytest.raises(ValueError, match="lr_min"):
        _horizon(lr_min=1e-2, lr_max=1e-3)
    with pytest.raises(ValueError, match="two different horizons"):
        _horizon(horizons=[100, 100])
    with pytest.raises(ValueError, match="at least three"):
        _horizon(horizons=[100, 200], check=True)


# Path switching.


def _ps(**params):
    from lrbench_builtins.tuners.path_switch import PathSwitchTuner

    base = {"versions": 4, "chunk_steps": 100, "fractions": [0.25, 0.5], "branch_data": "both"}
    return PathSwitchTuner({**base, **params}, seed=5)


def _ps_value(req):
    """Releases: later versions lower; branches with replay and longer decay better."""
    t = req.tags
    ckpts = [f"/ckpt/{req.key}/step-{s:07d}.safetensors" for s in req.trial.get("checkpoint_steps", [])]
    v = t["version"] if t["version"] is not None else 3
    base = 1.0 - 0.05 * v
    bonus = {"scratch": 0.0, "continued": 0.03, "main": 0.06}.get(t["method"], 0.0)
    if t["method"] == "path_switch":
        bonus = 0.005 + (0.0 if t["data"] == "replay" else 0.02) + (0.01 if t["f"] < 0.5 else 0.0)
    return base + bonus, {"checkpoints": ckpts}


def test_path_switch_plans_the_main_path_branches_and_baselines():
    tuner = _ps()
    asked = _drive(tuner, _ps_value)
    keys = [r.key for r in asked]
    main = asked[0]
    assert main.key == "main" and main.steps == 400
    assert main.policy["name"] == "constant_warmup"
    assert main.task_params["version_schedule"] == [0, 1, 2, 3] and main.task_params["version_steps"] == 100
    assert main.trial["checkpoint_steps"] == [100, 200, 300, 400]
    assert [r.steps for r in asked if r.key.startswith("scratch")] == [100, 400, 300, 200]
    branches = [r for r in asked if r.key.startswith("branch")]
    assert len(branches) == 2 * 2 * 4
    b = next(r for r in branches if r.key == "branch-v2-f0.25-replay")
    assert b.steps == 25 and b.task_params["init_from"].endswith("main/step-0000300.safetensors")
    assert b.task_params["version"] == 2 and b.task_params["replay_versions"] == [0, 1]
    assert b.task_params["val_versions"] == [0, 1, 2] and b.policy["params"]["min_lr"] == pytest.approx(7e-4)
    n = next(r for r in branches if r.key == "branch-v2-f0.25-newest")
    assert n.task_params["replay_versions"] == []
    # continued pre-training: a chain from the first release, each from the one before
    cont = [r for r in asked if r.key.startswith("cont")]
    assert [r.key for r in cont] == ["cont-v1", "cont-v2", "cont-v3"]
    assert cont[0].task_params["init_from"].endswith("scratch-v0/step-0000100.safetensors")
    assert cont[2].task_params["init_from"].endswith("cont-v2/step-0000100.safetensors")
    assert all(keys.index(r.key) > keys.index("main") for r in branches)


def test_path_switch_counts_the_cost_of_every_method():
    tuner = _ps()
    _drive(tuner, _ps_value)
    m = tuner.summary_json()["methods"]
    assert m["scratch"]["total_steps"] == 1000  # 1 + 2 + 3 + 4 chunks
    assert m["continued"]["total_steps"] == 400
    assert m["main"]["total_steps"] == 400
    assert m["branch_f0.5_replay"]["total_steps"] == 400 + 4 * 50
    assert m["branch_f0.25_newest"]["total_steps"] == 400 + 4 * 25
    assert m["branch_f0.5_replay"]["cost_vs_scratch"] == pytest.approx(0.6)
    assert m["branch_f0.5_replay"]["vs_scratch"] == pytest.approx(0.855 / 0.85 - 1)
    assert [r["version"] for r in m["scratch"]["releases"]] == [0, 1, 2, 3]
    s = tuner.summary_json()
    tree = {p["trial"]: p for p in s["paths"]}
    assert tree["branch-v1-f0.5-replay"]["parent"] == "main" and tree["branch-v1-f0.5-replay"]["start"] == 200


def test_path_switch_stops_branching_where_the_main_path_diverged():
    from lrbench_builtins.tuners.path_switch import PathSwitchTuner

    tuner = PathSwitchTuner({"versions": 3, "chunk_steps": 50, "scratch": False, "continued": False}, seed=0)

    def value(req):
        if req.key == "main":  # diverged during the third chunk: two checkpoints exist
            return None, {"checkpoints": ["/c/main/step-0000050.safetensors", "/c/main/step-0000100.safetensors"]}
        return 1.0, {}

    asked = _drive(tuner, value)
    assert [r.key for r in asked] == ["main", "branch-v0-f0.5-replay", "branch-v1-f0.5-replay"]
    assert any("main path ended diverged" in w for w in tuner.summary_json()["warnings"])


# Merging.


def _merge(**params):
    from lrbench_builtins.tuners.merge import MergeTuner

    return MergeTuner({"later": "/c/step-0000768.safetensors", "earlier": "/c/step-0000704.safetensors", **params},
                      seed=0)


def _u(lam: float) -> float:
    return 2.0 + 0.1 * (lam - 0.47) ** 2 + 0.02 * lam  # U-shaped; the later checkpoint is better


def test_merge_seeds_the_endpoints_then_runs_the_gp_one_point_at_a_time():
    tuner = _merge(evaluations=6, grid=21)
    first = [tuner.ask() for _ in range(3)]
    assert [r.point["lambda"] for r in first] == [1.0, 0.0, 0.5]
    assert all(r.steps == 0 and r.trial["merge"]["weight"] == r.point["lambda"] for r in first)
    assert first[0].trial["merge"]["later"].endswith("0768.safetensors")
    # while the first points run, the free slots go to the grid, not to the GP
    nxt = tuner.ask()
    assert nxt.key.startswith("grid")
    for r in first:
        tuner.tell(TrialResult(key=r.key, status="completed", value=_u(r.point["lambda"])))
    tuner.tell(TrialResult(key=nxt.key, status="completed", value=_u(nxt.point["lambda"])))
    asked = _drive(tuner, lambda r: (_u(r.point["lambda"]), {"checkpoints": ["/out/model"]} if r.key == "write" else {}))
    bo = [r for r in first + asked if r.key.startswith("bo")]
    assert len(bo) == 6
    assert asked[-1].key == "write" and asked[-1].trial["save_model"] is True
    s = tuner.summary_json()
    best = min(_u(i / 1000) for i in range(1001))
    assert s["best"]["value"] - best < 1e-4 * best
    assert s["evaluations_to_reach_grid"] is not None and s["evaluations_to_reach_grid"] <= 6
    better = min(_u(0.0), _u(1.0))
    assert s["gain_vs_better_endpoint"] == pytest.approx((better - s["best"]["value"]) / better)
    assert s["gain_vs_better_endpoint"] > 0
    assert len(s["grid"]) == 21 and s["model_dir"] == "/out/model"


def test_merge_respects_alpha_and_a_failed_evaluation():
    tuner = _merge(alpha=0.3, evaluations=4, write=False)
    asked = _drive(tuner, lambda r: (None if r.key == "bo-02" else _u(r.point["lambda"]), {}))
    lams = [r.point["lambda"] for r in asked]
    assert min(lams) >= 0.3 and lams[:3] == [1.0, 0.3, 0.5]
    s = tuner.summary_json()
    assert "earlier" not in s["endpoints"] and s["endpoints"]["later"] == _u(1.0)
    assert any("did not complete" in w for w in s["warnings"])


def test_merge_refuses_missing_or_identical_checkpoints():
    from lrbench_builtins.tuners.merge import MergeTuner

    with pytest.raises(ValueError, match="give the two checkpoints"):
        MergeTuner({"later": "a.safetensors"})
    with pytest.raises(ValueError, match="same file"):
        MergeTuner({"later": "a.safetensors", "earlier": "a.safetensors"})
