"""The ``lrsearch`` tuner (plugins/lrbench_builtins/tuners/lr_model.py), driven by a synthetic
objective (no trials), and the fixes of issue 16 in its neighbours: halving's compute cap,
bayes' start-up rule at small budgets, a list of numbers as a choice override."""

from __future__ import annotations

import math

import pytest

from lrbench_gui.core.tuner import StudyBudget, TrialRequest, TrialResult
from lrbench_gui.core.tuning.space import SpaceError, policy_space
from lrbench_gui.testing import TunerContract
from lrbench_builtins.tuners.lr_model import LRModelTuner, lr_dim
from lrbench_builtins.tuners.search import BayesTuner, HalvingTuner, RandomTuner, auto_startup

FULL = 100
#: each family's best LR and its loss there; LRs above 4x the best diverge
BEST = {"fixed": (0.01, 0.30), "cosine": (0.03, 0.22), "step": (0.05, 0.26), "triangle2": (0.1, 0.20)}


def lr_of(req: TrialRequest) -> float:
    return float(req.point["max_lr" if "max_lr" in req.point else "lr"])


def result(req: TrialRequest) -> TrialResult:
    best_lr, loss = BEST[req.family]
    d = math.log(lr_of(req) / best_lr)
    if d > math.log(4):
        return TrialResult(req.key, "diverged", None, cost={"steps": req.steps // 4})
    value = loss * math.exp(0.15 * d * d)
    return TrialResult(req.key, "completed", value, cost={"steps": req.steps}, evals=[(req.steps - 1, value)])


def drive(tuner, workers: int = 2) -> list[TrialRequest]:
    asked, running = [], []
    while True:
        while len(running) < workers and not tuner.done():
            req = tuner.ask()
            if req is None:
                break
            asked.append(req)
            running.append(req)
        if not running:
            return asked
        tuner.tell(result(running.pop(0)))


def true_best() -> float:
    return min(loss for _, loss in BEST.values())


@pytest.fixture(scope="module")
def space4():
    from lrbench_gui.plugins import get_registry

    return policy_space(list(BEST), get_registry(), overrides={"step.gamma": 0.1, "triangle2.min_lr": 1e-4},
                        lr_range=(1e-3, 0.3))


@pytest.fixture(scope="module")
def run(space4):
    """One lrsearch study of 8 trials (the last a repeat), two at a time, reused by the asserts."""
    tuner = LRModelTuner({"repeats": 1}, space4, budget=StudyBudget(FULL, trials=8), seed=3)
    return tuner, drive(tuner), tuner.summary_json()


def test_it_spends_its_budget_and_says_why_each_point_was_asked(run):
    tuner, asked, s = run
    assert len(asked) == 8 and [a["key"] for a in s["asks"]] == [f"m{i:04d}" for i in range(8)]
    phases = [a["phase"] for a in s["asks"]]
    assert phases[: s["design"]] == ["design"] * s["design"] and phases[-1] == "repeat"
    assert set(phases[s["design"]:-1]) == {"model"}
    assert all(a["why"] and a["lr"] > 0 for a in s["asks"])
    assert all(r.tags["why"] for r in asked)  # the reason goes to the trial's record too
    design = [a for a in s["asks"] if a["phase"] == "design"]
    assert len({a["family"] for a in design}) == len(design)  # the design spreads over the families
    lrs = sorted(math.log(a["lr"]) for a in design)
    assert lrs[-1] - lrs[0] > 1.0  # and over the LR range
    model = [a for a in s["asks"] if a["phase"] == "model"]
    assert all("expected improvement" in a["why"] and a["predicted"] > 0 for a in model)


def test_it_gets_close_to_the_best_point_in_few_trials(run, space4):
    tuner, asked, s = run
    assert s["best"]["value"] <= 1.05 * true_best()
    # random search with the same budget does worse on average over seeds
    rand = []
    for seed in range(4):
        r = RandomTuner({"trials": 8}, space4, budget=StudyBudget(FULL), seed=seed)
        drive(r)
        rand.append(r.summary_json()["best"]["value"])
    assert s["best"]["value"] < sum(rand) / len(rand)


def test_confidence_gives_the_chance_that_another_point_is_better_and_the_seed_spread(run):
    tuner, asked, s = run
    c = s["confidence"]
    assert c["best"] == s["best"]["key"]
    assert 0.0 <= c["p_better_elsewhere"] <= 1.0 and 0.0 <= c["p_better_asked"] <= c["p_better_elsewhere"]
    assert c["predicted"]["mean"] > 0 and c["predicted"]["sd"] >= 0
    repeat = asked[-1]
    assert repeat.tags["phase"] == "repeat" and repeat.trial == {"seed": 3 + 1}  # the study's trial seed + 1
    assert c["seed_spread"] is None or c["seed_spread"]["runs"] == 2  # the repeat is of the best so far
    spread = tuner._seed_spread(repeat.tags["of"])
    assert spread["runs"] == 2 and spread["sd"] == pytest.approx(0.0)  # the synthetic objective has no noise


def test_a_diverged_lr_closes_the_lrs_above_it_in_its_family(space4):
    tuner = LRModelTuner({"trials": 6, "init": 2}, space4, budget=StudyBudget(FULL), seed=0)
    first, second = tuner.ask(), tuner.ask()
    tuner.tell(TrialResult(first.key, "diverged", None, cost={"steps": 10}))
    tuner.tell(TrialResult(second.key, "completed", 0.5, cost={"steps": FULL}))
    bad = lr_of(first)
    for family, point in tuner._open():
        if family == first.family:
            assert float(point[lr_dim(space4.family(family)).name]) < bad
    nxt = tuner.ask()
    assert nxt.tags["phase"] == "model" and not (nxt.family == first.family and lr_of(nxt) >= bad)


def test_replay_with_the_same_tells_asks_the_same(space4):
    def keys(seed):
        t = LRModelTuner({"trials": 4}, space4, budget=StudyBudget(FULL), seed=seed)
        return [(r.key, r.family, r.point) for r in drive(t, workers=3)]

    assert keys(1) == keys(1)
    assert keys(1) != keys(2)


class TestLRSearchContract(TunerContract):
    """The contract with parallel asks (running trials count at the model's mean) and a repeat."""

    tuner_params = {"repeats": 1, "resolution": 9}
    policies = ("cosine", "fixed", "step")
    trials = 4
    parallel = 3

    @pytest.fixture
    def tuner_class(self):
        return LRModelTuner


# The fixes in the neighbouring tuners and the space.


def test_async_halving_never_spends_more_than_the_trial_budget(space4):
    for seed in range(2):
        for trials in (3, 6):
            tuner = HalvingTuner(None, space4, budget=StudyBudget(FULL, trials=trials), seed=seed)
            asked = drive(tuner, workers=2)
            assert sum(r.steps for r in asked) <= trials * FULL
            assert any(r.steps == FULL for r in asked)  # and a configuration still reaches the top rung
            assert tuner.done() and tuner.summary_json()["cap_steps"] == trials * FULL


def test_bayes_keeps_trials_for_its_model_at_small_budgets(space4):
    assert auto_startup(6, 4) == 3 and auto_startup(5, 4) == 2 and auto_startup(40, 4) == 10
    assert auto_startup(2, 4) == 1 and auto_startup(1, 4) == 1
    tuner = BayesTuner(None, space4, budget=StudyBudget(FULL, trials=6), seed=0)
    assert tuner.summary_json()["startup_trials"] == 3 < 6


def test_a_list_of_numbers_for_a_float_parameter_makes_a_choice(registry):
    sp = policy_space(["cosine", "step"], registry, overrides={"lr": [0.1, 0.03, 0.01], "step.gamma": [0.5]})
    (lr,) = sp.family("cosine").dims
    assert lr.kind == "choice" and lr.choices == (0.1, 0.03, 0.01)
    assert sp.family("step").dim("gamma").choices == (0.5,)
    assert sp.family("cosine").dim("lr").to_json()["choices"] == [0.1, 0.03, 0.01]
    assert policy_space(["cosine"], registry, overrides={"lr": [0.001, 0.1]}).family("cosine").dims[0].kind == "float"
    with pytest.raises(SpaceError, match="outside the parameter's bounds"):
        policy_space(["cosine"], registry, overrides={"lr": [0.1, 0.01, -1.0]})
    tuner = LRModelTuner({"trials": 3}, sp, budget=StudyBudget(FULL), seed=0)  # a choice of LRs is its LR axis
    assert {lr_of(r) for r in drive(tuner)} <= {0.1, 0.03, 0.01}


def test_the_study_summary_lifts_the_confidence(registry, tmp_path):
    from lrbench_gui.core.tuning.study import Study, StudyConfig
    from lrbench_gui.testing.tuner import contract_registry, _finish

    reg = contract_registry(LRModelTuner)
    cfg = StudyConfig(study_id="s-conf", task="lrbench-contract-task", tuner="lrsearch", tuner_params={},
                      policies=["cosine", "fixed"], budget_steps=40, trials=3, parallel=1, seed=0, device="cpu")
    study = Study(cfg, registry=reg)
    while not study.finished:
        trials = study.next_trials(1)
        if not trials:
            break
        _finish(study, trials[0], str(tmp_path))
    summary = study.summary()
    assert set(summary["confidence"]) >= {"best", "p_better_elsewhere", "p_better_asked", "seed_spread", "predicted"}
    assert summary["confidence"]["best"] == summary["tuner"]["best"]["key"]
