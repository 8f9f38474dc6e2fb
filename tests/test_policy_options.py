"""The scheduler options and policies upstream users rely on, each against the real library at
every step (``torch.optim.lr_scheduler``, ``transformers.optimization``,
``deepspeed.runtime.lr_schedules``) or, for LRBench's down-first and up-first cycles, against
LRBench's formulas copied unchanged from ``LRBench/lr/LRfunctions.py``.

Steps agree to a relative 1e-9. The absolute slack, 1e-12 of the run's peak, is only for the
recursive torch schedulers (LinearLR, CosineAnnealingLR, ConstantLR) whose LR reaches 0 as a
rounding residue of about 1e-17 where the closed form gives 0.0 exactly.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any, Callable

import pytest

from lrbench_gui.core.spec import SpecError, build_schedule, parse_spec
from lrbench_gui.plugins import load_plugins

REGISTRY = load_plugins(None)


def ours(name: str, params: dict[str, Any], total: int) -> list[float]:
    return build_schedule(parse_spec({"name": name, "params": params}, REGISTRY), total, REGISTRY).lrs()


def same(got: list[float], want: list[float], what: str) -> None:
    peak = max([abs(w) for w in want] + [1e-300])
    bad = [(k, a, b) for k, (a, b) in enumerate(zip(got, want))
           if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 * peak)]
    assert len(got) == len(want), what
    assert not bad, f"{what}: {len(bad)} steps differ, first {bad[0]}"


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _opt(torch, lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def torch_curve(torch, make: Callable, lr: float, total: int) -> list[float]:
    opt = _opt(torch, lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        out = []
        for _ in range(total):
            out.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
    return out


S = "torch.optim.lr_scheduler"
TORCH_CASES = [
    # CyclicLR with step_size_down (asymmetric cycles), the three modes
    ("triangle", {"min_lr": 1e-3, "max_lr": 1e-2, "half_cycle": 3, "half_cycle_down": 7}, 100,
     lambda L, o: L.CyclicLR(o, 1e-3, 1e-2, step_size_up=3, step_size_down=7, cycle_momentum=False), 1e-3),
    ("triangle", {"min_lr": 1e-4, "max_lr": 1e-1, "half_cycle": 10, "half_cycle_down": 1}, 57,
     lambda L, o: L.CyclicLR(o, 1e-4, 1e-1, step_size_up=10, step_size_down=1, cycle_momentum=False), 1e-4),
    ("triangle2", {"min_lr": 1e-3, "max_lr": 1e-2, "half_cycle": 4, "half_cycle_down": 9}, 200,
     lambda L, o: L.CyclicLR(o, 1e-3, 1e-2, step_size_up=4, step_size_down=9, mode="triangular2",
                             cycle_momentum=False), 1e-3),
    ("triangle_exp", {"min_lr": 1e-3, "max_lr": 1e-2, "half_cycle": 5, "half_cycle_down": 2, "gamma": 0.99}, 100,
     lambda L, o: L.CyclicLR(o, 1e-3, 1e-2, step_size_up=5, step_size_down=2, mode="exp_range", gamma=0.99,
                             cycle_momentum=False), 1e-3),
    # OneCycleLR: three phases; pct_start at torch's bounds 0 and 1
    *[("onecycle", {"max_lr": 0.1, "pct_start": pct, "anneal": an, "three_phase": three}, total,
       lambda L, o, pct=pct, an=an, three=three, total=total: L.OneCycleLR(
           o, 0.1, total_steps=total, pct_start=pct, anneal_strategy=an, three_phase=three, cycle_momentum=False), 0.1)
      for pct, an, three, total in [(0.3, "cos", True, 100), (0.25, "linear", True, 1000), (0.45, "cos", True, 7),
                                    (0.0, "cos", False, 50), (0.0, "linear", True, 50), (0.9, "cos", False, 30),
                                    (0.6, "linear", True, 40)]],
    # CosineAnnealingLR with T_max shorter and longer than the run
    *[("cosine_annealing", {"lr": 0.1, "min_lr": lo, "t_max": tm}, total,
       lambda L, o, lo=lo, tm=tm: L.CosineAnnealingLR(o, T_max=tm, eta_min=lo), 0.1)
      for lo, tm, total in [(0.0, 10, 100), (1e-3, 7, 100), (0.0, 300, 100), (1e-4, 1, 9), (0.0, 1000, 1000)]],
    # LinearLR with end_factor != 1 (a decay), total_iters past the run and 0
    *[("linear_factor", {"lr": 0.1, "start_factor": s, "end_factor": e, "total_iters": n}, total,
       lambda L, o, s=s, e=e, n=n: L.LinearLR(o, start_factor=s, end_factor=e, total_iters=n), 0.1)
      for s, e, n, total in [(1.0, 0.1, 50, 100), (1.0, 0.0, 10, 30), (0.25, 0.5, 20, 100), (0.5, 1.0, 500, 100),
                             (1 / 3, 1.0, 5, 20), (0.5, 0.2, 0, 10)]],
    *[("constant_factor", {"lr": 0.1, "factor": f, "total_iters": n}, total,
       lambda L, o, f=f, n=n: L.ConstantLR(o, factor=f, total_iters=n), 0.1)
      for f, n, total in [(1 / 3, 5, 20), (0.5, 40, 30), (0.1, 0, 10), (0.0, 50, 20), (1.0, 3, 7)]],
    # MultiStepLR: milestones in any order, a repeated one multiplies twice
    ("multistep", {"lr": 0.1, "milestones": [30, 10, 10, 60], "gamma": 0.5}, 100,
     lambda L, o: L.MultiStepLR(o, milestones=[30, 10, 10, 60], gamma=0.5), 0.1),
    # CosineAnnealingWarmRestarts with T_mult > 10
    ("cosine_restarts", {"lr": 0.01, "min_lr": 1e-4, "cycle_steps": 2, "cycle_mult": 11}, 500,
     lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=11, eta_min=1e-4), 0.01),
    ("cosine_restarts", {"lr": 0.01, "min_lr": 0.0, "cycle_steps": 1, "cycle_mult": 40}, 2000,
     lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=40), 0.01),
]


@pytest.mark.parametrize("name, params, total, make, lr", TORCH_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_torch_options(torch, name, params, total, make, lr):
    want = torch_curve(torch, lambda o: make(torch.optim.lr_scheduler, o), lr, total)
    same(ours(name, params, total), want, f"{name} {params} T={total}")


H_CASES = [
    *[("cosine", {"lr": 1e-3, "min_lr": lo, "warmup_steps": w, "num_cycles": c}, total, "cosine" if not lo else
       "cosine_with_min_lr", w, {"num_cycles": c, **({"min_lr": lo} if lo else {})})
      for lo, w, c, total in [(0.0, 10, 1.0, 100), (0.0, 0, 0.25, 100), (1e-5, 5, 1.5, 200), (1e-4, 0, 3.0, 97)]],
    *[("cosine_hard_restarts", {"lr": 1e-3, "warmup_steps": w, "num_cycles": c}, total, "cosine_with_restarts", w,
       {"num_cycles": c}) for w, c, total in [(10, 1, 100), (0, 3, 100), (7, 4, 61), (100, 2, 100)]],
    *[("poly_warmup", {"lr": 1e-3, "min_lr": lo, "power": pw, "warmup_steps": w}, total, "polynomial", w,
       {"lr_end": lo, "power": pw}) for lo, pw, w, total in [(1e-7, 1.0, 10, 100), (1e-5, 2.0, 0, 100),
                                                           (0.0, 0.5, 30, 77), (1e-4, 3.0, 200, 100)]],
    *[("cosine_warmup_with_min_lr", {"lr": 1e-3, "min_lr": lo, "warmup_steps": w, "warmup_lr_rate": r,
                                     "num_cycles": c}, total, "cosine_warmup_with_min_lr", w,
       {"min_lr": lo, "num_cycles": c, **({"warmup_lr_rate": r} if r >= 0 else {})})
      for lo, w, r, c, total in [(0.0, 10, -1.0, 0.5, 100), (1e-5, 10, 0.0, 0.5, 100), (1e-4, 20, 0.1, 1.0, 150),
                                 (0.0, 0, -1.0, 0.5, 50), (0.0, 1, 0.5, 0.5, 9)]],
    *[("wsd", {"lr": 1e-3, "min_lr": lo, "warmup_steps": w, "decay_steps": d, "decay_type": dt, "warmup_type": wt,
               "num_cycles": c, "stable_steps": st}, total, "warmup_stable_decay", w,
       {"num_decay_steps": d, "decay_type": dt, "warmup_type": wt, "min_lr_ratio": lo / 1e-3, "num_cycles": c,
        **({"num_stable_steps": st} if st >= 0 else {})})
      for lo, w, d, dt, wt, c, st, total in [
          (0.0, 10, 20, "cosine", "cosine", 0.5, -1, 100), (1e-5, 10, 20, "linear", "1-sqrt", 0.5, -1, 100),
          (1e-4, 5, 30, "cosine", "linear", 1.0, -1, 100), (0.0, 10, 20, "1-sqrt", "cosine", 0.5, 30, 100),
          (1e-4, 3, 4, "cosine", "1-sqrt", 0.25, 0, 20)]],
]


@pytest.mark.parametrize("name, params, total, kind, warmup, kwargs", H_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(H_CASES)])
def test_hugging_face_options(torch, name, params, total, kind, warmup, kwargs):
    transformers = pytest.importorskip("transformers")
    want = torch_curve(torch, lambda o: transformers.get_scheduler(
        kind, o, num_warmup_steps=warmup, num_training_steps=total, scheduler_specific_kwargs=kwargs), params["lr"], total)
    same(ours(name, params, total), want, f"{name} {params} T={total}")


def _ds_onecycle(lo, hi, first, second=-1, s1=0, s2=-1, rate=0.0, size=0):
    p = {"cycle_min_lr": lo, "cycle_max_lr": hi, "decay_lr_rate": rate, "cycle_first_step_size": first,
         "cycle_second_step_size": second, "cycle_first_stair_count": s1, "cycle_second_stair_count": s2,
         "decay_step_size": size}
    ds = {k: v for k, v in p.items() if not (k.startswith("cycle_second") and v < 0)}
    return p, ds


DS_CASES = [
    ("ds_onecycle", *_ds_onecycle(1e-4, 1e-2, 10), 50, "OneCycle"),
    ("ds_onecycle", *_ds_onecycle(1e-4, 1e-2, 10, 30, rate=0.5, size=5), 100, "OneCycle"),
    ("ds_onecycle", *_ds_onecycle(0.0, 1e-2, 7, 0), 30, "OneCycle"),
    ("ds_onecycle", *_ds_onecycle(1e-4, 1e-2, 12, 8, s1=4, rate=1.0, size=1), 60, "OneCycle"),
    ("ds_onecycle", *_ds_onecycle(1e-4, 1e-2, 9, 9, s1=3, s2=2), 40, "OneCycle"),
    ("ds_onecycle", *_ds_onecycle(1e-2, 1e-4, 5), 20, "OneCycle"),  # min above max: DeepSpeed allows it
    # warmup_min_lr above warmup_max_lr: DeepSpeed's decaying "warmup"
    ("warmup", {"warmup_min_lr": 1e-2, "warmup_max_lr": 1e-3, "warmup_num_steps": 10, "warmup_type": "linear"},
     None, 30, "WarmupLR"),
    ("warmup_decay", {"warmup_min_lr": 1e-2, "warmup_max_lr": 1e-3, "warmup_num_steps": 10, "warmup_type": "log"},
     None, 30, "WarmupDecayLR"),
]


@pytest.mark.parametrize("name, params, ds_params, total, cls", DS_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(DS_CASES)])
def test_deepspeed_options(torch, name, params, ds_params, total, cls):
    schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")
    kwargs = dict(ds_params if ds_params is not None else params)
    if cls == "WarmupDecayLR":
        kwargs["total_num_steps"] = total
    opt = _opt(torch, 0.5)
    sched = getattr(schedules, cls)(opt, **kwargs)
    want = [float(opt.param_groups[0]["lr"])]  # iteration -1, set at construction, as the engine uses it
    for _ in range(total - 1):
        sched.step()
        want.append(float(opt.param_groups[0]["lr"]))
    same(ours(name, params, total), want, f"{name} {params} T={total}")


# LRBench/lr/LRfunctions.py, unchanged (k0 the low LR, k1 the high one, l the half-cycle).
def __DTRI__(iter, k0, k1, l):
    period = 2.0 * l
    return (k1-k0)*(2/math.pi)*math.fabs(math.asin(math.sin(math.pi*((iter+l)/period)))) + k0

def __DTRI2__(iter, k0, k1, l):
    period = 2 * l
    return (k1-k0)*(2/math.pi)*math.fabs(math.asin(math.sin(math.pi*(iter+l)/(period))))/(2**math.floor((iter+l)/period)) + k0

def __DTRIEXP__(iter, k0, k1, gamma, l):
    period = 2 * l
    return (k1-k0)*(2/math.pi)*math.fabs(math.asin(math.sin(math.pi*(iter+l)/(period))))*(gamma**iter) + k0

def __DSIN__(iter, k0, k1, l):
    period = 2 * l
    return (k1-k0)*math.fabs(math.sin(math.pi*(iter+l)/period)) + k0

def __DSIN2__(iter, k0, k1, l):
    period = 2 * l
    return (k1-k0)*math.fabs(math.sin(math.pi*(iter+l)/period))/(2**math.floor((iter+l)/period)) + k0

def __DSINEXP__(iter, k0, k1, gamma, l):
    period = 2 * l
    return (k1-k0)*math.fabs(math.sin(math.pi*(iter+l)/period))*(gamma**iter) + k0

def __UPCOS__(iter, k0, k1, l):
    return (k1 - k0) * 0.5 * (1+math.cos(math.pi * (1.0*iter / l + 1.0))) + k0

def __UPCOS2__(iter, k0, k1, l):
    return (k1 - k0) * 0.5 * (1+math.cos(math.pi * (1.0*iter / l + 1.0)))/(2**math.floor((iter)/(2*l))) + k0

def __UPCOSEXP__(iter, k0, k1, gamma, l):
    return (k1 - k0) * 0.5 * (1+math.cos(math.pi * (1.0*iter / l + 1.0)))*(gamma**iter) + k0


LRBENCH = {
    "triangle_down": __DTRI__, "triangle_down2": __DTRI2__, "triangle_down_exp": __DTRIEXP__,
    "sin_down": __DSIN__, "sin_down2": __DSIN2__, "sin_down_exp": __DSINEXP__,
    "cos_cyclic_up": __UPCOS__, "cos_cyclic_up2": __UPCOS2__, "cos_cyclic_up_exp": __UPCOSEXP__,
}
CYCLES = [({"min_lr": 1e-3, "max_lr": 1e-2, "half_cycle": 10}, 100),
          ({"min_lr": 1e-4, "max_lr": 1e-1, "half_cycle": 7}, 100),
          ({"min_lr": 1e-3, "max_lr": 6e-3, "half_cycle": 1}, 7),
          ({"min_lr": 1e-5, "max_lr": 1e-1, "half_cycle": 3}, 1000)]


@pytest.mark.parametrize("name", sorted(LRBENCH))
@pytest.mark.parametrize("case", range(len(CYCLES)))
def test_lrbench_down_and_up_cycles(name, case):
    params, total = CYCLES[case]
    if name.endswith("_exp"):
        params = {**params, "gamma": [0.99, 0.999, 0.9, 0.995][case]}
    k0, k1, l = params["min_lr"], params["max_lr"], params["half_cycle"]
    fn = LRBENCH[name]
    want = [fn(t, k0, k1, params["gamma"], l) if "gamma" in params else fn(t, k0, k1, l) for t in range(total)]
    same(ours(name, params, total), want, f"{name} {params} T={total}")


def test_every_lrbench_formula_has_a_policy():
    """LRBench's 34 formulas: each is named by some policy's reference."""
    names = ("FIX STEP NSTEP EXP INV POLY SIG TRI DTRI TRI2 DTRI2 TRIEXP DTRIEXP SIN DSIN SIN2 DSIN2 SINEXP DSINEXP "
             "COS UPCOS COS2 UPCOS2 COSEXP UPCOSEXP RSW RSW2 RSWEXP SINRSW SINRSW2 SINRSWEXP COSRSW COSRSW2 "
             "COSRSWEXP").split()
    named = {m for item in REGISTRY.policies.values() for m in re.findall(r"LRBench (\w+)", item.obj.reference)}
    assert len(set(names)) == 34 and set(names) - named == set()


@pytest.mark.parametrize("params, message", [
    ({"name": "multistep", "params": {"milestones": [3, -1]}}, "a likely mistake"),
    ({"name": "cosine_warmup_with_min_lr", "params": {"warmup_lr_rate": -0.5}}, "-1 (unset) or in [0, 1]"),
    ({"name": "onecycle", "params": {"pct_start": 1.5}}, "pct_start"),
])
def test_refusals_say_why(params, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_spec(params, REGISTRY)


def test_reference_validation_is_followed():
    """What torch and DeepSpeed accept is accepted: repeated milestones, pct_start 0 and 1,
    warmup_min_lr above warmup_max_lr, T_mult above 10."""
    for spec in [{"name": "multistep", "params": {"milestones": [5, 5]}},
                 {"name": "onecycle", "params": {"pct_start": 0}}, {"name": "onecycle", "params": {"pct_start": 1}},
                 {"name": "warmup", "params": {"warmup_min_lr": 0.1, "warmup_max_lr": 0.01}},
                 {"name": "cosine_restarts", "params": {"cycle_mult": 100}}]:
        parse_spec(spec, REGISTRY)


def covered_names() -> set[str]:
    """The policies this file checks against a reference (test_policy_parity's completeness check)."""
    return {c[0] for c in [*TORCH_CASES, *H_CASES, *DS_CASES]} | set(LRBENCH)


def _left_out() -> str:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "policies.md").read_text(encoding="utf-8")
    return doc.split("## Left out", 1)[1]


def test_policy_list_covers_every_library_scheduler(torch):
    """Every scheduler of torch.optim.lr_scheduler, transformers' SchedulerType and DeepSpeed's
    lr_schedules is named by a built-in policy's reference, or docs/policies.md says why not."""
    transformers = pytest.importorskip("transformers")
    schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

    refs = " ".join(item.obj.reference for item in REGISTRY.policies.values() if item.source.startswith("builtin"))
    left_out = set(re.findall(r"^\| `(\w+)`", _left_out(), re.M)) | set(re.findall(r"`(\w+)` \(", _left_out()))
    named = set(re.findall(r"\w+", refs))
    missing = [n for n in torch.optim.lr_scheduler.__all__ if n not in named and n not in left_out]
    for kind, fn in TYPE_TO_SCHEDULER_FUNCTION.items():
        if fn.__name__ in named or kind.value in named or kind.value in left_out:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = type(transformers.get_scheduler(kind, _opt(torch, 0.1), num_warmup_steps=1,
                                                    num_training_steps=10)).__name__
        if built == "LambdaLR" or built not in named:  # HF's plateau type builds torch's ReduceLROnPlateau
            missing.append(f"HF {kind.value}")
    missing += [f"DeepSpeed {n}" for n in schedules.VALID_LR_SCHEDULES if n not in named and n not in left_out]
    assert missing == []
