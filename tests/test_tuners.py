"""The built-in tuners, driven by synthetic deterministic objectives (no processes): a bowl in
log10(LR) per family, seeded noise, a fake learning curve for short runs."""

from __future__ import annotations

import json
import math
import random
from typing import Any, Callable

import numpy as np
import pytest

from lrbench_gui.core.tuning.space import policy_space
from lrbench_gui.core.spec import parse_spec
from lrbench_gui.core.tuner import Objective, StudyBudget, TrialRequest, TrialResult
from lrbench_gui.testing import check_policy, check_tuner
from lrbench_builtins.policies.finder import RangeExp
from lrbench_builtins.tuners import range_test, search
from lrbench_builtins.tuners.range_test import RangeTestTuner, ValueRangeTuner
from lrbench_builtins.tuners.search import BayesTuner, GridTuner, HalvingTuner, RandomTuner

TUNERS = [*search.TUNERS, *range_test.TUNERS]

FAMILIES = ["cosine", "fixed", "step", "exp"]
OPTIMUM = {"cosine": 3e-3, "fixed": 1e-3, "step": 1e-2, "exp": 2e-2}
OFFSET = {"cosine": 0.10, "fixed": 0.30, "step": 0.20, "exp": 0.25}
FULL = 100


def peak_lr(point: dict[str, Any]) -> float:
    return max(v for k, v in point.items() if k.endswith("lr"))


def truth(family: str, point: dict[str, Any]) -> float:
    """The noiseless final loss of a full run: a bowl in log10(LR) around the family's optimum."""
    d = math.log10(peak_lr(point)) - math.log10(OPTIMUM[family])
    return OFFSET[family] + 0.5 * d * d


def objective(request: TrialRequest, seed: int = 0) -> TrialResult:
    """A trial's result: the bowl, a fake learning curve (shorter runs end higher), seeded noise;
    LRs above 0.3 diverge."""
    if peak_lr(request.point) > 0.3:
        return TrialResult(request.key, "diverged", None, cost={"steps": max(1, request.steps // 3)})
    rng = random.Random(f"{seed}/{request.key}/{json.dumps(request.policy, sort_keys=True)}")
    value = truth(request.family, request.point) + 1.0 / math.sqrt(request.steps) + rng.gauss(0, 0.005)
    evals = [(s, value + 2.0 * (1 - s / request.steps)) for s in range(10, request.steps + 1, 10)]
    return TrialResult(request.key, "completed", value, cost={"steps": request.steps}, evals=evals)


def drive(tuner, seed: int = 0, workers: int = 1, result: Callable = objective) -> list[TrialRequest]:
    """Run a study loop: keep ``workers`` trials going, finish the oldest first."""
    asked: list[TrialRequest] = []
    running: list[TrialRequest] = []
    while True:
        while len(running) < workers and not tuner.done():
            req = tuner.ask()
            if req is None:
                break
            asked.append(req)
            running.append(req)
        if not running:
            break
        tuner.tell(result(running.pop(0), seed))
    return asked


def space(names=("cosine",), **kw):
    return policy_space(list(names), **kw)


def test_builtin_tuners_pass_the_contract(registry):
    assert {"grid", "random", "bayes", "halving", "range-test", "value-range"} <= set(registry.tuners)
    for cls in TUNERS:
        check_tuner(cls)
        assert registry.tuner(cls.name) is cls
    check_policy(RangeExp)
    assert registry.policy("range_exp") is RangeExp


def test_grid_covers_every_family_and_point(registry):
    sp = space(["cosine", "step", "fixed"], registry=registry)
    tuner = GridTuner({"points": 3}, sp, budget=StudyBudget(FULL), seed=0)
    asked = drive(tuner)
    assert len(asked) == 3 + 3 * 3 + 3 == tuner.summary_json()["grid_size"]
    assert all(r.steps == FULL for r in asked)
    assert len({json.dumps(r.policy, sort_keys=True) for r in asked}) == len(asked)
    cosine_lrs = sorted(r.point["lr"] for r in asked if r.family == "cosine")
    assert cosine_lrs == pytest.approx([1e-6, 1e-3, 1.0])
    step_points = {(r.point["lr"], r.point["gamma"]) for r in asked if r.family == "step"}
    assert len(step_points) == 9
    assert tuner.done() and tuner.ask() is None
    best = tuner.summary_json()["best"]
    assert best["family"] == "cosine" and best["point"]["lr"] == pytest.approx(1e-3)
    for r in asked:
        parse_spec(r.policy, registry)


def test_grid_runs_a_sorted_pair_once(registry):
    tuner = GridTuner({"points": 5}, space(["triangle"], registry=registry), budget=StudyBudget(FULL))
    assert tuner.summary_json()["grid_size"] == 15  # 5 x 5 pairs, 10 unordered + 5 equal


def test_random_is_reproducible_and_in_bounds(registry):
    sp = space(FAMILIES, registry=registry)

    def keys_and_specs(seed):
        t = RandomTuner({"trials": 60}, sp, budget=StudyBudget(FULL), seed=seed)
        return [(r.key, r.family, r.point, r.policy) for r in drive(t, seed)]

    first = keys_and_specs(1)
    assert first == keys_and_specs(1)
    assert first != keys_and_specs(2)
    assert len(first) == 60 and {f for _, f, _, _ in first} == set(FAMILIES)
    for _, family, point, _ in first:
        for dim in sp.family(family).dims:
            assert dim.contains(point[dim.name])
    logs = [math.log10(p["lr"]) for _, _, p, _ in first]
    assert -6 <= min(logs) and max(logs) <= 0 and -4.5 < float(np.median(logs)) < -1.5


def test_random_defaults_to_the_study_trial_budget(registry):
    tuner = RandomTuner(None, space(registry=registry), budget=StudyBudget(FULL, trials=7))
    assert len(drive(tuner)) == 7


def _regret(tuner) -> float:
    best = tuner.summary_json()["best"]
    return truth(best["family"], best["point"]) - min(OFFSET.values())


def test_bayes_finds_the_bottom_of_the_bowl(registry):
    sp = space(["cosine"], registry=registry)
    for seed in range(3):
        tuner = BayesTuner({"trials": 24}, sp, budget=StudyBudget(FULL), seed=seed)
        drive(tuner, seed)
        best = tuner.summary_json()["best"]
        assert abs(math.log10(best["point"]["lr"]) - math.log10(OPTIMUM["cosine"])) < 0.3


def test_bayes_beats_random_on_average(registry):
    sp = space(FAMILIES, registry=registry)
    seeds = range(6)
    bayes, rand = [], []
    for s in seeds:
        t = BayesTuner({"trials": 16}, sp, budget=StudyBudget(FULL), seed=s)
        drive(t, s)
        bayes.append(_regret(t))
        r = RandomTuner({"trials": 16}, sp, budget=StudyBudget(FULL), seed=s)
        drive(r, s)
        rand.append(_regret(r))
    assert sum(bayes) / len(bayes) < 0.6 * sum(rand) / len(rand)


def test_bayes_is_deterministic_with_the_seed(registry):
    sp = space(FAMILIES, registry=registry)

    def run(seed):
        t = BayesTuner({"trials": 14}, sp, budget=StudyBudget(FULL), seed=seed)
        return [(r.key, r.family, r.point) for r in drive(t, seed, workers=3)]

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_bayes_gp_sampler_runs(registry):
    tuner = BayesTuner({"trials": 7, "sampler": "gp", "startup_trials": 3}, space(["cosine", "fixed"], registry=registry),
                       budget=StudyBudget(FULL), seed=0)
    asked = drive(tuner)
    assert len(asked) == 7 and tuner.summary_json()["sampler"] == "gp"
    assert tuner._names[("cosine", "lr")] == "lr"  # one shared LR parameter for the GP


def test_bayes_tells_divergence_as_a_penalty_and_failures_as_failures(registry):
    import optuna

    tuner = BayesTuner({"trials": 5}, space(["fixed"], registry=registry), budget=StudyBudget(FULL), seed=0)
    reqs = [tuner.ask() for _ in range(5)]
    tuner.tell(TrialResult(reqs[0].key, "diverged", None))  # nothing finite yet: a failure
    tuner.tell(TrialResult(reqs[1].key, "completed", 0.5))
    tuner.tell(TrialResult(reqs[2].key, "completed", 0.3))
    tuner.tell(TrialResult(reqs[3].key, "diverged", None))
    tuner.tell(TrialResult(reqs[4].key, "failed", None))
    trials = tuner.study.get_trials()
    State = optuna.trial.TrialState
    assert [t.state for t in trials] == [State.FAIL, State.COMPLETE, State.COMPLETE, State.COMPLETE, State.FAIL]
    assert trials[3].value == pytest.approx(0.5 + 0.2)  # the worst plus the spread
    assert tuner.summary_json()["best"]["value"] == 0.3  # a penalty never wins


def test_bayes_maximizes_when_asked(registry):
    tuner = BayesTuner({"trials": 3}, space(["fixed"], registry=registry), objective=Objective("val_acc", "max"),
                       budget=StudyBudget(FULL))
    reqs = [tuner.ask() for _ in range(3)]
    for r, v in zip(reqs, [0.7, 0.9, 0.8]):
        tuner.tell(TrialResult(r.key, "completed", v))
    assert tuner.summary_json()["best"]["value"] == 0.9
    assert tuner.study.best_value == 0.9


def test_median_pruning_stops_bad_trials(registry):
    sp = space(["cosine"], registry=registry)
    tuner = BayesTuner({"trials": 20, "pruner": "median", "prune_after": 0.2}, sp, budget=StudyBudget(FULL), seed=0)
    stopped = []
    while not tuner.done():
        req = tuner.ask()
        result = objective(req)
        status = "completed"
        for step, value in result.evals:
            if not tuner.report(req.key, step, value):
                status = "stopped"
                stopped.append(req.key)
                assert step >= 20  # never in the first 20 % of the run
                break
        if result.status == "diverged":
            status = "diverged"
        tuner.tell(TrialResult(req.key, status, result.value if status == "completed" else None, evals=result.evals))
    assert stopped and tuner.summary_json()["pruned"] == len(stopped)
    pruned = [t for t in tuner.study.get_trials() if t.state.name == "PRUNED"]
    assert len(pruned) == len(stopped)
    assert tuner.summary_json()["best"]["key"] not in stopped
    plain = BayesTuner({"trials": 2}, sp, budget=StudyBudget(FULL))
    req = plain.ask()
    assert all(plain.report(req.key, s, 1e9) for s in range(10, 100, 10))  # pruner none: never stops


def test_target_stops_a_search_early(registry):
    sp = space(["cosine"], registry=registry)
    tuner = GridTuner({"points": 9}, sp, objective=Objective("val_loss", "min", target=0.5), budget=StudyBudget(FULL))
    asked = drive(tuner)
    assert len(asked) < 9 and tuner.summary_json()["target_reached"]


def _halving_run(registry, seed, workers=1, **params):
    sp = space(FAMILIES, registry=registry)
    tuner = HalvingTuner({"n": 27, **params}, sp, budget=StudyBudget(FULL, trials=9), seed=seed)
    asked = drive(tuner, seed, workers=workers)
    return tuner, asked


@pytest.mark.parametrize("mode, workers", [("async", 1), ("async", 4), ("sync", 3)])
def test_halving_spends_a_fraction_of_a_grid_and_keeps_the_best(registry, mode, workers):
    for seed in range(3):
        tuner, asked = _halving_run(registry, seed, workers, mode=mode)
        s = tuner.summary_json()
        assert tuner.rung_steps == [11, 33, 100]
        assert s["grid_equivalent_steps"] == 27 * FULL
        assert s["steps_asked"] == sum(r.steps for r in asked)
        assert s["fraction_of_grid"] < 0.5
        truths = [truth(f, p) for f, p in tuner.configs]
        true_best = min(range(len(truths)), key=truths.__getitem__)
        assert f"h{true_best:03d}.r2" in tuner.results  # the true best ran at the full budget
        assert s["best"]["steps"] == FULL  # and the answer is a full-budget run, within noise of it
        assert truth(s["best"]["family"], s["best"]["point"]) - truths[true_best] < 0.02
        # every promotion comes from a told result of the rung below, once per rung
        seen: set[str] = set()
        for r in asked:
            rung, config = r.tags["rung"], r.tags["config"]
            assert r.key not in seen and r.steps == tuner.rung_steps[rung]
            seen.add(r.key)
            if rung:
                below = f"h{config:03d}.r{rung - 1}"
                assert below in tuner.results and r.tags["asked_after_tells"] > 0
        assert tuner.done() and tuner.ask() is None


def test_halving_sync_promotes_the_top_third_of_each_rung(registry):
    tuner, asked = _halving_run(registry, 0, workers=27, mode="sync")
    rungs = tuner.summary_json()["rungs"]
    assert [r["trials"] for r in rungs] == [27, 9, 3]
    by_rung0 = {r.tags["config"]: tuner.results[r.key].value for r in asked if r.tags["rung"] == 0}
    finite = {c: v for c, v in by_rung0.items() if v is not None}
    top9 = sorted(finite, key=finite.get)[:9]
    assert sorted(r.tags["config"] for r in asked if r.tags["rung"] == 1) == sorted(top9)


def test_halving_default_n_costs_about_the_trial_budget(registry):
    tuner = HalvingTuner(None, space(["cosine"], registry=registry), budget=StudyBudget(FULL, trials=10), seed=0)
    assert len(tuner.configs) == 30  # each configuration costs 1/3 of a full trial on average
    grid = HalvingTuner({"sampler": "grid", "points": 4}, space(["cosine", "fixed"], registry=registry),
                        budget=StudyBudget(FULL))
    assert len(grid.configs) == 8


OPS = {
    "grid": (GridTuner, {"points": 3}),
    "random": (RandomTuner, {"trials": 10}),
    "bayes": (BayesTuner, {"trials": 12}),
    "halving": (HalvingTuner, {"n": 12}),
    "value-range": (ValueRangeTuner, {}),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_replay_gives_the_same_requests(registry, name):
    """A fresh tuner fed the same tells, interleaved with the asks as the first run had them
    (``asked_after_tells``), asks the same requests under the same keys."""
    cls, params = OPS[name]
    sp = space(["cosine", "step"], registry=registry)
    first = cls(params, sp, budget=StudyBudget(FULL, trials=6), seed=3)
    asked = drive(first, seed=3, workers=3)
    told_order = list(first.results)
    again = cls(params, sp, budget=StudyBudget(FULL, trials=6), seed=3)
    replayed: list[TrialRequest] = []
    told = 0
    while len(replayed) < len(asked):
        while told < asked[len(replayed)].tags["asked_after_tells"]:
            again.tell(first.results[told_order[told]])
            told += 1
        req = again.ask()
        assert req is not None
        replayed.append(req)
    for key in told_order[told:]:
        again.tell(first.results[key])
    assert again.done() and again.ask() is None
    assert json.dumps(again.summary_json(), allow_nan=False, sort_keys=True) == json.dumps(
        first.summary_json(), allow_nan=False, sort_keys=True
    )
    assert [(r.key, r.policy, r.steps, r.tags) for r in replayed] == [(r.key, r.policy, r.steps, r.tags) for r in asked]


def _range_result(request: TrialRequest, with_lrs: bool = True) -> TrialResult:
    policy = RangeExp(RangeExp.Params(**request.point), request.steps)
    losses, lrs = [], []
    for step in range(request.steps):
        lr = policy.lr_at(step)
        x = math.log10(lr)
        loss = 2.0 - 1.5 / (1 + math.exp(-(x + 3) / 0.3)) + (math.expm1(4 * (x + 1)) * 3 if x > -1 else 0.0)
        if loss > 30:
            break  # the trainer stops a diverged trial
        losses.append((step, loss))
        lrs.append((step, lr))
    return TrialResult(request.key, "diverged", None, losses=losses, lrs=lrs if with_lrs else [])


@pytest.mark.parametrize("with_lrs", [True, False])
def test_range_test_asks_once_and_suggests(registry, with_lrs):
    tuner = RangeTestTuner({}, None, budget=StudyBudget(500), seed=0)
    req = tuner.ask()
    assert tuner.done() and tuner.ask() is None
    assert req.steps == 500 and req.tags["kind"] == "range_test" and req.tags["diverge_factor"] == 10.0
    assert req.tags["log_every"] == 1
    parse_spec(req.policy, registry)
    assert tuner.summary_json()["chosen"] is None
    tuner.tell(_range_result(req, with_lrs))
    s = tuner.summary_json()
    assert s["chosen"] == "balanced" and s["lr"] == s["suggestions"]["balanced"]["lr"]
    assert set(s["suggestions"]) == set(s["rules"]) == {"balanced", "halfway", "valley", "steepest", "minimum"}
    assert all(s["rules"][r] == s["suggestions"][r]["lr"] for r in s["rules"])
    assert 0 <= math.log10(s["suggestions"]["steepest"]["lr"]) + 3 < 0.5
    assert s["lr_min"] == s["lr_range"][0] and s["lr_max"] == s["lr_range"][1]
    assert "balanced" in s["why"] and f"valley {s['rules']['valley']:.3g}" in s["why"]
    json.dumps(s, allow_nan=False)


def test_range_test_choose_and_steps(registry):
    tuner = RangeTestTuner({"choose": "steepest", "steps": 300, "mode": "linear", "start_lr": 1e-5},
                           None, budget=StudyBudget(50))
    req = tuner.ask()
    assert req.steps == 300 and req.policy["params"] == {"start_lr": 1e-5, "end_lr": 1.0, "mode": "linear"}
    tuner.tell(_range_result(req))
    assert tuner.summary_json()["chosen"] == "steepest"


def _value_result(request: TrialRequest, seed: int = 0) -> TrialResult:
    lr = request.point["lr"]
    if lr > 0.5:
        return TrialResult(request.key, "diverged", None)
    d = math.log10(lr) - math.log10(0.01)
    value = 0.30 + 0.05 * d * d
    start, end = 2.0, (1.9 if lr < 1e-4 else value + 0.1)
    losses = [(s, start + (end - start) * s / (request.steps - 1)) for s in range(request.steps)]
    return TrialResult(request.key, "completed", value, losses=losses)


def test_value_range_finds_the_range_that_trains(registry):
    tuner = ValueRangeTuner({}, None, budget=StudyBudget(FULL))
    asked = drive(tuner, workers=7, result=_value_result)
    assert len(asked) == 7 and all(r.steps == 20 and r.policy["name"] == "fixed" for r in asked)
    lrs = [r.point["lr"] for r in asked]
    assert lrs[0] == 1e-5 and lrs[-1] == 1.0
    s = tuner.summary_json()
    # the grid is 1e-5 ... 1 in steps of 10**(5/6); 3.2e-3 and 2.2e-2 are within 10 % of the best
    assert s["best_lr"] == pytest.approx(10 ** (-5 + 4 * 5 / 6))
    assert s["lr_range"] == pytest.approx([10 ** (-5 + 3 * 5 / 6), 10 ** (-5 + 4 * 5 / 6)])
    assert [row["good"] for row in s["per_lr"]] == [False, False, False, True, True, False, False]
    assert s["per_lr"][-1]["status"] == "diverged"
    wide = ValueRangeTuner({"tolerance": 0.5}, None, budget=StudyBudget(FULL))
    drive(wide, result=_value_result)
    assert wide.summary_json()["lr_range"] == pytest.approx([10 ** (-5 + 2 * 5 / 6), 10 ** (-5 + 5 * 5 / 6)])


def test_value_range_needs_the_loss_to_fall(registry):
    def flat_at_best(request, seed=0):
        result = _value_result(request, seed)
        if abs(request.point["lr"] - 10 ** (-5 + 3 * 5 / 6)) < 1e-12:
            result.losses = [(s, 2.0 + 0.01 * s) for s in range(request.steps)]
        return result

    tuner = ValueRangeTuner({}, None, budget=StudyBudget(FULL))
    drive(tuner, result=flat_at_best)
    s = tuner.summary_json()
    assert s["lr_range"] == pytest.approx([10 ** (-5 + 4 * 5 / 6)] * 2)


def test_search_tuners_refuse_unknown_and_repeated_tells(registry):
    tuner = RandomTuner({"trials": 2}, space(registry=registry), budget=StudyBudget(FULL))
    req = tuner.ask()
    with pytest.raises(KeyError):
        tuner.tell(TrialResult("nope", "completed", 1.0))
    tuner.tell(TrialResult(req.key, "completed", 1.0))
    with pytest.raises(ValueError):
        tuner.tell(TrialResult(req.key, "completed", 1.0))
