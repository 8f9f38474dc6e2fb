"""Parity of the built-in policies with the implementations they reproduce, at every step.

References are the real libraries (``torch.optim.lr_scheduler``, ``transformers.optimization``,
``deepspeed.runtime.lr_schedules``) driven the way a training loop drives them, and, for the
families only LRBench defines, LRBench's formulas (``lr/LRfunctions.py``) copied below.

Conventions: our ``lr_at(k)`` is the LR of the k-th optimizer step. For torch and Hugging Face
that is ``param_groups[0]["lr"]`` after ``k`` calls of ``scheduler.step()`` (read before
stepping); for DeepSpeed it is the LR the scheduler sets at construction (iteration -1) and
then after each ``step()``, as DeepSpeed's engine applies it. The run's length ``T`` goes to
``total_iters`` / ``T_max`` / ``total_steps`` / ``num_training_steps`` / ``total_num_steps``.

Every step must agree to a relative error of 1e-9. ``abs_tol=1e-300`` only lets a value that
underflows to 0.0 on one side match a value below 1e-300 on the other (the sigmoid's tail).
Recursive torch schedulers (StepLR, ExponentialLR, PolynomialLR, CosineAnnealingLR) accumulate
rounding step by step; measured, the drift stays below 1e-12 relative for these run lengths,
so they are compared as they are, without loosening the tolerance.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any, Callable

import pytest

from lrbench_gui.core.spec import build_schedule, parse_spec
from lrbench_gui.plugins import load_plugins

REL_TOL = 1e-9
ABS_TOL = 1e-300

# The parity cases use only the built-ins: a module-wide registry saves reloading plugins for
# each of the few hundred cases (conftest's per-test registry is for tests that change plugins).
REGISTRY = load_plugins(None)


def ours(name: str, params: dict[str, Any], total: int) -> list[float]:
    spec = parse_spec({"name": name, "params": params}, REGISTRY)
    return build_schedule(spec, total, REGISTRY).lrs()


def assert_same_curve(got: list[float], expected: list[float], what: str = "") -> None:
    assert len(got) == len(expected), f"{what}: {len(got)} steps, reference has {len(expected)}"
    bad = [
        (k, a, b)
        for k, (a, b) in enumerate(zip(got, expected))
        if not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    ]
    if bad:
        k, a, b = bad[0]
        pytest.fail(f"{what}: {len(bad)} of {len(got)} steps differ; first at step {k}: ours {a!r}, reference {b!r}")


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def hf(torch):
    return pytest.importorskip("transformers.optimization")


@pytest.fixture(scope="module")
def ds(torch):
    # DeepSpeed takes seconds to import: once for the module.
    return pytest.importorskip("deepspeed.runtime.lr_schedules")


def _optimizer(torch, lr: float):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def torch_curve(torch, make: Callable[[Any], Any], lr: float, total: int) -> list[float]:
    """param_groups[0]["lr"] before each of ``total`` optimizer steps, stepping as a loop does."""
    opt = _optimizer(torch, lr)
    scheduler = make(opt)
    out = []
    for k in range(total):
        out.append(float(opt.param_groups[0]["lr"]))
        if k < total - 1:
            opt.step()
            scheduler.step()
    return out


def deepspeed_curve(torch, make: Callable[[Any], Any], lr: float, total: int) -> list[float]:
    """The LR set at construction (iteration -1), then after each ``step()``, as the engine does."""
    opt = _optimizer(torch, lr)
    scheduler = make(opt)
    out = [float(opt.param_groups[0]["lr"])]
    for _ in range(total - 1):
        scheduler.step()
        out.append(float(opt.param_groups[0]["lr"]))
    return out


def cases(name: str, variants: list[tuple[dict[str, Any], int]]) -> list[Any]:
    return [pytest.param(name, p, t, id=f"{name}-{i}-T{t}") for i, (p, t) in enumerate(variants)]


# torch.optim.lr_scheduler: (policy, params, T) -> the scheduler on an optimizer, and its base LR.
TORCH: dict[str, tuple[Callable[..., Any], Callable[[dict], float]]] = {
    "fixed": (lambda S, o, p, T: S.LambdaLR(o, lambda step: 1.0), lambda p: p["lr"]),
    "step": (lambda S, o, p, T: S.StepLR(o, step_size=p["step_size"], gamma=p["gamma"]), lambda p: p["lr"]),
    "multistep": (lambda S, o, p, T: S.MultiStepLR(o, milestones=p["milestones"], gamma=p["gamma"]), lambda p: p["lr"]),
    "exp": (lambda S, o, p, T: S.ExponentialLR(o, gamma=p["gamma"]), lambda p: p["lr"]),
    "poly": (lambda S, o, p, T: S.PolynomialLR(o, total_iters=T, power=p["power"]), lambda p: p["lr"]),
    "cosine": (lambda S, o, p, T: S.CosineAnnealingLR(o, T_max=T, eta_min=p["min_lr"]), lambda p: p["lr"]),
    "cosine_restarts": (
        lambda S, o, p, T: S.CosineAnnealingWarmRestarts(
            o, T_0=p["cycle_steps"], T_mult=p["cycle_mult"], eta_min=p["min_lr"]
        ),
        lambda p: p["lr"],
    ),
    "onecycle": (
        lambda S, o, p, T: S.OneCycleLR(
            o,
            max_lr=p["max_lr"],
            total_steps=T,
            pct_start=p["pct_start"],
            anneal_strategy=p["anneal"],
            div_factor=p["div_factor"],
            final_div_factor=p["final_div_factor"],
            cycle_momentum=False,
            three_phase=False,
        ),
        lambda p: p["max_lr"],
    ),
}
for _name, _mode in [("triangle", "triangular"), ("triangle2", "triangular2"), ("triangle_exp", "exp_range")]:
    TORCH[_name] = (
        lambda S, o, p, T, mode=_mode: S.CyclicLR(
            o,
            base_lr=p["min_lr"],
            max_lr=p["max_lr"],
            step_size_up=p["half_cycle"],
            mode=mode,
            gamma=p.get("gamma", 1.0),
            cycle_momentum=False,
        ),
        lambda p: p["min_lr"],
    )

CYCLES = [
    ({"min_lr": 1e-3, "max_lr": 1e-2, "half_cycle": 10}, 100),
    ({"min_lr": 1e-4, "max_lr": 1e-1, "half_cycle": 7}, 100),  # T not a whole number of cycles
    ({"min_lr": 1e-3, "max_lr": 6e-3, "half_cycle": 1}, 7),
    ({"min_lr": 1e-5, "max_lr": 1e-1, "half_cycle": 3}, 1000),  # 166 halvings for the 2 variants
    ({"min_lr": 2e-3, "max_lr": 2e-3, "half_cycle": 5}, 7),  # flat
    ({"min_lr": 1e-3, "max_lr": 1e-2, "half_cycle": 100}, 1),
]
CYCLES_EXP = [({**p, "gamma": g}, t) for (p, t), g in zip(CYCLES, [0.99, 0.999, 1.0, 0.995, 0.9, 0.99])]

TORCH_CASES = [
    *cases("fixed", [({"lr": 0.01}, 1), ({"lr": 0.3}, 7), ({"lr": 1e-4}, 100)]),
    *cases(
        "step",
        [
            ({"lr": 0.1, "step_size": 10, "gamma": 0.5}, 100),
            ({"lr": 0.1, "step_size": 7, "gamma": 0.1}, 1000),
            ({"lr": 0.5, "step_size": 1, "gamma": 0.9}, 7),
            ({"lr": 0.1, "step_size": 100, "gamma": 0.1}, 1),
            ({"lr": 3e-4, "step_size": 30, "gamma": 0.95}, 1000),
        ],
    ),
    *cases(
        "multistep",
        [
            ({"lr": 0.1, "milestones": [30, 80], "gamma": 0.1}, 100),
            ({"lr": 0.1, "milestones": [0, 3, 4], "gamma": 0.5}, 7),  # a milestone at step 0
            ({"lr": 0.1, "milestones": [], "gamma": 0.1}, 7),
            ({"lr": 0.01, "milestones": [100, 200, 999], "gamma": 0.3}, 1000),
            ({"lr": 0.1, "milestones": [5000], "gamma": 0.1}, 100),  # after the run
        ],
    ),
    *cases(
        "exp",
        [
            ({"lr": 0.1, "gamma": 0.99}, 1000),
            ({"lr": 0.01, "gamma": 0.5}, 100),
            ({"lr": 0.1, "gamma": 1.0}, 7),
            ({"lr": 1e-3, "gamma": 1.01}, 100),  # growing
            ({"lr": 0.1, "gamma": 0.9}, 1),
        ],
    ),
    *cases(
        "poly",
        [
            ({"lr": 0.1, "power": 1.0}, 100),
            ({"lr": 0.1, "power": 2.0}, 1000),
            ({"lr": 0.05, "power": 0.5}, 7),
            ({"lr": 0.1, "power": 3.0}, 1),
            ({"lr": 0.01, "power": 0.9}, 1000),
        ],
    ),
    *cases(
        "cosine",  # warmup_steps = 0: torch CosineAnnealingLR(T_max = T)
        [
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 0}, 100),
            ({"lr": 0.1, "min_lr": 1e-5, "warmup_steps": 0}, 1000),
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 0}, 7),
            ({"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 0}, 1),
            ({"lr": 3e-4, "min_lr": 3e-4, "warmup_steps": 0}, 100),  # min_lr = lr: flat
        ],
    ),
    *cases("triangle", CYCLES),
    *cases("triangle2", CYCLES),
    *cases("triangle_exp", CYCLES_EXP),
    *cases(
        "cosine_restarts",
        [
            ({"lr": 0.01, "min_lr": 0.0, "cycle_steps": 10, "cycle_mult": 1}, 100),
            ({"lr": 0.01, "min_lr": 1e-3, "cycle_steps": 30, "cycle_mult": 1}, 100),  # T not whole cycles
            ({"lr": 0.1, "min_lr": 1e-4, "cycle_steps": 7, "cycle_mult": 2}, 1000),
            ({"lr": 0.05, "min_lr": 0.0, "cycle_steps": 3, "cycle_mult": 3}, 1000),
            ({"lr": 0.01, "min_lr": 0.0, "cycle_steps": 1, "cycle_mult": 1}, 7),
            ({"lr": 0.01, "min_lr": 0.0, "cycle_steps": 100, "cycle_mult": 1}, 1),
        ],
    ),
    *cases(
        "onecycle",
        [
            ({"max_lr": 0.01, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"}, 100),
            ({"max_lr": 0.01, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "linear"}, 100),
            ({"max_lr": 0.1, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0, "anneal": "cos"}, 1000),
            ({"max_lr": 0.1, "pct_start": 0.45, "div_factor": 5.0, "final_div_factor": 1e3, "anneal": "linear"}, 1000),
            ({"max_lr": 0.01, "pct_start": 0.5, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "linear"}, 7),
            ({"max_lr": 0.01, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"}, 2),
            ({"max_lr": 0.01, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"}, 1),
        ],
    ),
]


@pytest.mark.parametrize("name, params, total", TORCH_CASES)
def test_matches_torch(torch, name, params, total):
    make, base_lr = TORCH[name]
    S = torch.optim.lr_scheduler
    expected = torch_curve(torch, lambda opt: make(S, opt, params, total), base_lr(params), total)
    assert_same_curve(ours(name, params, total), expected, f"{name} {params} T={total}")


# transformers.optimization: the optimizer's LR is the policy's lr.
HF: dict[str, Callable[..., Any]] = {
    "cosine": lambda H, o, p, T: (
        H.get_cosine_schedule_with_warmup(o, num_warmup_steps=p["warmup_steps"], num_training_steps=T)
        if p["min_lr"] == 0
        else H.get_cosine_with_min_lr_schedule_with_warmup(
            o, num_warmup_steps=p["warmup_steps"], num_training_steps=T, min_lr=p["min_lr"]
        )
    ),
    "linear": lambda H, o, p, T: (
        H.get_linear_schedule_with_warmup(o, num_warmup_steps=p["warmup_steps"], num_training_steps=T)
        if p["min_lr"] == 0
        # HF's linear schedule has no floor; its polynomial one of power 1 is the same line to lr_end
        else H.get_polynomial_decay_schedule_with_warmup(
            o, num_warmup_steps=p["warmup_steps"], num_training_steps=T, lr_end=p["min_lr"], power=1.0
        )
    ),
    "constant_warmup": lambda H, o, p, T: H.get_constant_schedule_with_warmup(o, num_warmup_steps=p["warmup_steps"]),
    "inverse_sqrt": lambda H, o, p, T: H.get_inverse_sqrt_schedule(
        o, num_warmup_steps=p["warmup_steps"], timescale=p["timescale"] or None
    ),
    "wsd": lambda H, o, p, T: H.get_wsd_schedule(
        o,
        num_warmup_steps=p["warmup_steps"],
        num_decay_steps=p["decay_steps"],
        num_training_steps=T,
        warmup_type="linear",
        decay_type=p["decay_type"],
        min_lr_ratio=p["min_lr"] / p["lr"],
    ),
    "poly": lambda H, o, p, T: H.get_polynomial_decay_schedule_with_warmup(
        o, num_warmup_steps=0, num_training_steps=T, lr_end=p["min_lr"], power=p["power"]
    ),
}

HF_CASES = [
    *cases(
        "cosine",
        [
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 10}, 100),
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 0}, 1000),
            ({"lr": 0.1, "min_lr": 0.0, "warmup_steps": 100}, 1000),
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 7}, 7),  # warmup is the whole run
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 10}, 7),  # warmup longer than the run
            ({"lr": 1e-3, "min_lr": 0.0, "warmup_steps": 0}, 1),
            ({"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 10}, 100),  # cosine_with_min_lr
            ({"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 0}, 1000),
            ({"lr": 0.1, "min_lr": 0.01, "warmup_steps": 100}, 1000),
            ({"lr": 2e-4, "min_lr": 2e-4, "warmup_steps": 3}, 7),
        ],
    ),
    *cases(
        "linear",
        [
            ({"lr": 1e-3, "warmup_steps": 0, "min_lr": 0.0}, 100),
            ({"lr": 1e-3, "warmup_steps": 10, "min_lr": 0.0}, 100),
            ({"lr": 0.1, "warmup_steps": 100, "min_lr": 0.0}, 1000),
            ({"lr": 1e-3, "warmup_steps": 7, "min_lr": 0.0}, 7),
            ({"lr": 1e-3, "warmup_steps": 10, "min_lr": 0.0}, 7),
            ({"lr": 1e-3, "warmup_steps": 0, "min_lr": 0.0}, 1),
            ({"lr": 1e-3, "warmup_steps": 10, "min_lr": 1e-5}, 100),
            ({"lr": 1e-3, "warmup_steps": 0, "min_lr": 1e-4}, 1000),
            ({"lr": 0.01, "warmup_steps": 3, "min_lr": 1e-3}, 7),
        ],
    ),
    *cases(
        "constant_warmup",
        [
            ({"lr": 1e-3, "warmup_steps": 0}, 7),
            ({"lr": 1e-3, "warmup_steps": 10}, 100),
            ({"lr": 0.1, "warmup_steps": 100}, 1000),
            ({"lr": 1e-3, "warmup_steps": 10}, 7),
            ({"lr": 1e-3, "warmup_steps": 1}, 1),
        ],
    ),
    *cases(
        "inverse_sqrt",
        [
            ({"lr": 1e-3, "warmup_steps": 100, "timescale": 0}, 1000),  # timescale = warmup, as HF
            ({"lr": 1e-3, "warmup_steps": 0, "timescale": 0}, 100),  # timescale = 10000, as HF
            ({"lr": 1e-3, "warmup_steps": 10, "timescale": 50}, 100),
            ({"lr": 0.01, "warmup_steps": 0, "timescale": 7}, 7),
            ({"lr": 1e-3, "warmup_steps": 1000, "timescale": 0}, 1000),
        ],
    ),
    *cases(
        "wsd",
        [
            ({"lr": 1e-3, "warmup_steps": 100, "decay_steps": 200, "min_lr": 0.0, "decay_type": "cosine"}, 1000),
            ({"lr": 1e-3, "warmup_steps": 100, "decay_steps": 200, "min_lr": 1e-5, "decay_type": "linear"}, 1000),
            ({"lr": 1e-3, "warmup_steps": 0, "decay_steps": 50, "min_lr": 1e-4, "decay_type": "1-sqrt"}, 100),
            ({"lr": 1e-3, "warmup_steps": 10, "decay_steps": 90, "min_lr": 0.0, "decay_type": "1-sqrt"}, 100),
            ({"lr": 1e-3, "warmup_steps": 2, "decay_steps": 3, "min_lr": 1e-4, "decay_type": "cosine"}, 7),
            ({"lr": 1e-3, "warmup_steps": 10, "decay_steps": 200, "min_lr": 0.0, "decay_type": "linear"}, 100),
            ({"lr": 1e-3, "warmup_steps": 0, "decay_steps": 0, "min_lr": 1e-4, "decay_type": "cosine"}, 100),
            ({"lr": 1e-3, "warmup_steps": 100, "decay_steps": 200, "min_lr": 0.0, "decay_type": "cosine"}, 1),
        ],
    ),
    *cases(
        "poly",
        [
            ({"lr": 0.1, "min_lr": 1e-4, "power": 2.0}, 1000),
            ({"lr": 0.1, "min_lr": 0.0, "power": 1.0}, 100),
            ({"lr": 0.01, "min_lr": 1e-3, "power": 0.5}, 7),
            ({"lr": 0.01, "min_lr": 1e-3, "power": 1.0}, 1),
        ],
    ),
]


@pytest.mark.parametrize("name, params, total", HF_CASES)
def test_matches_hugging_face(hf, torch, name, params, total):
    expected = torch_curve(torch, lambda opt: HF[name](hf, opt, params, total), params["lr"], total)
    assert_same_curve(ours(name, params, total), expected, f"{name} {params} T={total}")


# deepspeed.runtime.lr_schedules, with total_num_steps = T where the scheduler takes it.
DEEPSPEED: dict[str, tuple[Callable[..., Any], Callable[[dict], float]]] = {
    "warmup": (lambda D, o, p, T: D.WarmupLR(o, **p), lambda p: p["warmup_max_lr"]),
    "warmup_decay": (lambda D, o, p, T: D.WarmupDecayLR(o, total_num_steps=T, **p), lambda p: p["warmup_max_lr"]),
    "warmup_cosine": (
        lambda D, o, p, T: D.WarmupCosineLR(o, total_num_steps=T, **{k: v for k, v in p.items() if k != "lr"}),
        lambda p: p["lr"],
    ),
    "lr_range": (
        lambda D, o, p, T: D.LRRangeTest(
            o,
            lr_range_test_min_lr=p["min_lr"],
            lr_range_test_step_size=p["step_size"],
            lr_range_test_step_rate=p["step_rate"],
            lr_range_test_staircase=p["staircase"],
        ),
        lambda p: p["min_lr"],
    ),
}


def _warm(lo, hi, n, kind):
    return {"warmup_min_lr": lo, "warmup_max_lr": hi, "warmup_num_steps": n, "warmup_type": kind}


def _wcos(lr, lo, n, floor, kind):
    return {"lr": lr, "warmup_min_ratio": lo, "warmup_num_steps": n, "cos_min_ratio": floor, "warmup_type": kind}


WARMUPS = [
    (_warm(0.0, 1e-3, 10, "log"), 100),
    (_warm(1e-5, 1e-3, 10, "linear"), 100),
    (_warm(0.0, 1e-2, 1000, "log"), 1000),  # the warmup is the whole run
    (_warm(1e-4, 1e-3, 100, "linear"), 1000),
    (_warm(0.0, 1e-3, 1, "linear"), 7),  # DeepSpeed warms up over at least 2 steps
    (_warm(0.0, 1e-3, 10, "linear"), 7),  # a run shorter than the warmup
    (_warm(0.0, 1e-3, 10, "log"), 1),
]

DEEPSPEED_CASES = [
    *cases("warmup", WARMUPS),
    *cases("warmup_decay", WARMUPS),
    *cases(
        "warmup_cosine",
        [
            (_wcos(1e-3, 0.0, 10, 1e-4, "log"), 100),
            (_wcos(1e-3, 0.1, 100, 0.0, "linear"), 1000),
            (_wcos(3e-4, 0.0, 10, 0.5, "linear"), 7),
            (_wcos(1e-3, 0.0, 1, 1e-4, "log"), 7),
            (_wcos(0.1, 0.5, 1000, 1e-3, "log"), 1000),
            (_wcos(1e-3, 0.0, 10, 1e-4, "log"), 1),
        ],
    ),
    *cases(
        "lr_range",
        [
            ({"min_lr": 1e-5, "step_size": 10, "step_rate": 1.0, "staircase": False}, 100),
            ({"min_lr": 1e-5, "step_size": 10, "step_rate": 1.0, "staircase": True}, 100),
            ({"min_lr": 1e-4, "step_size": 7, "step_rate": 0.5, "staircase": True}, 1000),
            ({"min_lr": 1e-3, "step_size": 1, "step_rate": 2.0, "staircase": False}, 7),
            ({"min_lr": 1e-3, "step_size": 100, "step_rate": 1.0, "staircase": False}, 1),
        ],
    ),
]


@pytest.mark.parametrize("name, params, total", DEEPSPEED_CASES)
def test_matches_deepspeed(ds, torch, name, params, total):
    make, base_lr = DEEPSPEED[name]
    expected = deepspeed_curve(torch, lambda opt: make(ds, opt, params, total), base_lr(params), total)
    assert_same_curve(ours(name, params, total), expected, f"{name} {params} T={total}")


# LRBench's formulas (git-disl/LRBench, lr/LRfunctions.py), written as LRBench writes them.
# k0 is the low (or end) LR, k1 the high (or start) one, l the half-cycle, cycle or centre.
def _sig(t, k0, gamma, l):
    try:
        return k0 * 1.0 / (1 + math.exp(-1.0 * gamma * (t - l)))
    except OverflowError:  # LRBench itself would raise; the true value is below 1e-300
        return 0.0


def _rsw_phase(t, l):
    return -1.0 * t / l - math.floor(-1.0 * t / l)


LRBENCH: dict[str, Callable[..., float]] = {
    "fixed": lambda t, p, T: p["lr"],
    "step": lambda t, p, T: p["lr"] * (p["gamma"] ** (math.floor(t / p["step_size"]))),
    "exp": lambda t, p, T: p["lr"] * (p["gamma"] ** t),
    "inv": lambda t, p, T: p["lr"] * ((1 + p["gamma"] * t) ** (-p["power"])),
    "poly": lambda t, p, T: (p["lr"] - p["min_lr"]) * ((1.0 - 1.0 * t / T) ** p["power"]) + p["min_lr"],
    "sigmoid": lambda t, p, T: _sig(t, p["lr"], p["gamma"], p["center"]),
    "triangle": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * (2 / math.pi)
    * math.fabs(math.asin(math.sin(math.pi * t / (2 * p["half_cycle"]))))
    + p["min_lr"],
    "triangle2": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * (2 / math.pi)
    * math.fabs(math.asin(math.sin(math.pi * t / (2 * p["half_cycle"]))))
    / (2 ** math.floor(t / (2 * p["half_cycle"])))
    + p["min_lr"],
    "triangle_exp": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * (2 / math.pi)
    * math.fabs(math.asin(math.sin(math.pi * t / (2 * p["half_cycle"]))))
    * (p["gamma"] ** t)
    + p["min_lr"],
    "sin": lambda t, p, T: (p["max_lr"] - p["min_lr"]) * math.fabs(math.sin(math.pi * t / (2 * p["half_cycle"])))
    + p["min_lr"],
    "sin2": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * math.fabs(math.sin(math.pi * t / (2 * p["half_cycle"])))
    / (2 ** math.floor(t / (2 * p["half_cycle"])))
    + p["min_lr"],
    "sin_exp": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * math.fabs(math.sin(math.pi * t / (2 * p["half_cycle"])))
    * (p["gamma"] ** t)
    + p["min_lr"],
    "cos_cyclic": lambda t, p, T: (p["max_lr"] - p["min_lr"]) * 0.5 * (1 + math.cos(math.pi * t / p["half_cycle"]))
    + p["min_lr"],
    "cos_cyclic2": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * 0.5
    * (1 + math.cos(math.pi * t / p["half_cycle"]))
    / (2 ** math.floor((t + p["half_cycle"]) / (2 * p["half_cycle"])))
    + p["min_lr"],
    "cos_cyclic_exp": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * 0.5
    * (1 + math.cos(math.pi * t / p["half_cycle"]))
    * (p["gamma"] ** t)
    + p["min_lr"],
    "sawtooth": lambda t, p, T: (p["max_lr"] - p["min_lr"]) * _rsw_phase(t, p["cycle_steps"]) + p["min_lr"],
    "sawtooth2": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * _rsw_phase(t, p["cycle_steps"])
    / (2 ** math.floor(1.0 * t / p["cycle_steps"]))
    + p["min_lr"],
    "sawtooth_exp": lambda t, p, T: (p["max_lr"] - p["min_lr"]) * _rsw_phase(t, p["cycle_steps"]) * (p["gamma"] ** t)
    + p["min_lr"],
    "sin_sawtooth": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * math.sin(math.pi / 2.0 * _rsw_phase(t, p["cycle_steps"]))
    + p["min_lr"],
    "sin_sawtooth2": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * math.sin(math.pi / 2.0 * _rsw_phase(t, p["cycle_steps"]))
    / (2 ** math.floor(1.0 * t / p["cycle_steps"]))
    + p["min_lr"],
    "sin_sawtooth_exp": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * math.sin(math.pi / 2.0 * _rsw_phase(t, p["cycle_steps"]))
    * (p["gamma"] ** t)
    + p["min_lr"],
    "cos_sawtooth": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * 0.5
    * (1 - math.cos(math.pi * _rsw_phase(t, p["cycle_steps"])))
    + p["min_lr"],
    "cos_sawtooth2": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * 0.5
    * (1 - math.cos(math.pi * _rsw_phase(t, p["cycle_steps"])))
    / (2 ** math.floor(1.0 * t / p["cycle_steps"]))
    + p["min_lr"],
    "cos_sawtooth_exp": lambda t, p, T: (p["max_lr"] - p["min_lr"])
    * 0.5
    * (1 - math.cos(math.pi * _rsw_phase(t, p["cycle_steps"])))
    * (p["gamma"] ** t)
    + p["min_lr"],
}

SAWTEETH = [
    ({"min_lr": 1e-3, "max_lr": 1e-2, "cycle_steps": 10}, 100),
    ({"min_lr": 1e-4, "max_lr": 1e-1, "cycle_steps": 7}, 100),  # T not a whole number of cycles
    ({"min_lr": 1e-3, "max_lr": 6e-3, "cycle_steps": 1}, 7),
    ({"min_lr": 1e-5, "max_lr": 1e-1, "cycle_steps": 3}, 1000),
    ({"min_lr": 1e-3, "max_lr": 1e-2, "cycle_steps": 100}, 1),
]
SAWTEETH_EXP = [({**p, "gamma": g}, t) for (p, t), g in zip(SAWTEETH, [0.99, 0.999, 0.9, 0.995, 0.99])]

LRBENCH_CASES = [
    *cases("fixed", [({"lr": 0.01}, 7)]),
    *cases("step", [({"lr": 0.1, "step_size": 7, "gamma": 0.1}, 1000)]),
    *cases("exp", [({"lr": 0.1, "gamma": 0.99}, 1000)]),
    *cases(
        "poly",
        [
            ({"lr": 0.1, "min_lr": 1e-4, "power": 2.0}, 1000),
            ({"lr": 0.1, "min_lr": 0.0, "power": 0.5}, 100),
            ({"lr": 0.01, "min_lr": 1e-3, "power": 1.0}, 7),
            ({"lr": 0.01, "min_lr": 0.01, "power": 1.0}, 7),
            ({"lr": 0.01, "min_lr": 1e-3, "power": 3.0}, 1),
        ],
    ),
    *cases(
        "inv",
        [
            ({"lr": 0.01, "gamma": 1e-3, "power": 0.75}, 1000),
            ({"lr": 0.1, "gamma": 0.1, "power": 2.0}, 100),
            ({"lr": 0.5, "gamma": 0.0, "power": 1.0}, 7),
            ({"lr": 0.5, "gamma": 1.0, "power": 0.0}, 7),
            ({"lr": 0.01, "gamma": 1e-4, "power": 0.5}, 1),
        ],
    ),
    *cases(
        "sigmoid",
        [
            ({"lr": 0.01, "gamma": -0.05, "center": 500}, 1000),
            ({"lr": 0.01, "gamma": 0.1, "center": 50}, 100),
            ({"lr": 0.1, "gamma": -1.0, "center": 0}, 1000),  # underflows to 0 after ~700 steps
            ({"lr": 0.1, "gamma": 0.0, "center": 3}, 7),
            ({"lr": 0.1, "gamma": -0.05, "center": 500}, 1),
        ],
    ),
    *[c for name in ("triangle", "triangle2", "sin", "sin2", "cos_cyclic", "cos_cyclic2") for c in cases(name, CYCLES)],
    *[c for name in ("triangle_exp", "sin_exp", "cos_cyclic_exp") for c in cases(name, CYCLES_EXP)],
    *[
        c
        for shape in ("", "sin_", "cos_")
        for c in [*cases(f"{shape}sawtooth", SAWTEETH), *cases(f"{shape}sawtooth2", SAWTEETH)]
    ],
    *[c for shape in ("", "sin_", "cos_") for c in cases(f"{shape}sawtooth_exp", SAWTEETH_EXP)],
]


@pytest.mark.parametrize("name, params, total", LRBENCH_CASES)
def test_matches_lrbench(name, params, total):
    expected = [float(LRBENCH[name](t, params, total)) for t in range(total)]
    assert_same_curve(ours(name, params, total), expected, f"{name} {params} T={total}")


def test_every_policy_with_a_reference_has_parity_cases():
    from test_policy_options import covered_names  # the scheduler options' and the newer policies' cases

    covered = {c.values[0] for c in [*TORCH_CASES, *HF_CASES, *DEEPSPEED_CASES, *LRBENCH_CASES]} | covered_names()
    with_reference = {
        n for n, item in REGISTRY.policies.items()
        if item.source.startswith("builtin") and item.obj.reference and not item.obj.reactive  # test_plateau.py
    }
    assert len(with_reference) >= 36
    assert with_reference - covered == set()


def _by_hand(segments: list[tuple[str, dict[str, Any]]], boundaries: list[int], total: int) -> list[float]:
    """Each segment's own curve, its clock restarted at its start, over its own run length."""
    starts = [0, *boundaries]
    ends = [*boundaries, total]
    out: list[float] = []
    for (name, params), start, end in zip(segments, starts, ends):
        out += ours(name, params, end - start)
    return out


def test_sequence_is_the_concatenation_of_its_segments():
    segments = [
        ("linear", {"lr": 1e-3, "warmup_steps": 100, "min_lr": 0.0}),
        ("cosine", {"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 0}),
        ("constant_warmup", {"lr": 1e-5, "warmup_steps": 0}),
    ]
    spec = {"sequence": [{"name": n, "params": p} for n, p in segments], "boundaries": [100, 900]}
    got = build_schedule(parse_spec(spec, REGISTRY), 1000, REGISTRY).lrs()
    assert got == _by_hand(segments, [100, 900], 1000)


def test_nested_sequence_is_the_concatenation_of_its_segments():
    inner = [("triangle", {"min_lr": 1e-4, "max_lr": 1e-3, "half_cycle": 7}), ("exp", {"lr": 1e-3, "gamma": 0.99})]
    inner_spec = {"sequence": [{"name": n, "params": p} for n, p in inner], "boundaries": [30]}
    warm = ("warmup", _warm(0.0, 1e-3, 20, "linear"))
    tail = ("poly", {"lr": 5e-4, "min_lr": 0.0, "power": 2.0})
    spec = {
        "sequence": [{"name": warm[0], "params": warm[1]}, inner_spec, {"name": tail[0], "params": tail[1]}],
        "boundaries": [20, 80],
    }
    got = build_schedule(parse_spec(spec, REGISTRY), 107, REGISTRY).lrs()
    # the inner sequence runs 60 steps (20..80) with its own clock: its boundary is at its step 30
    expected = ours(*warm, 20) + _by_hand(inner, [30], 60) + ours(*tail, 27)
    assert got == expected


def test_warmup_then_cosine_sequence_matches_hugging_face(hf, torch):
    # A `linear` segment made only of its warmup, then a cosine over the rest, is HF's
    # cosine-with-warmup: the composition keeps parity with the library too.
    warmup, total, lr = 100, 1000, 1e-3
    spec = {
        "sequence": [
            {"name": "linear", "params": {"lr": lr, "warmup_steps": warmup}},
            {"name": "cosine", "params": {"lr": lr}},
        ],
        "boundaries": [warmup],
    }
    got = build_schedule(parse_spec(spec, REGISTRY), total, REGISTRY).lrs()
    expected = torch_curve(
        torch,
        lambda opt: hf.get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total),
        lr,
        total,
    )
    assert_same_curve(got, expected, "linear warmup -> cosine")


def test_cli_sample_matches_hf(hf, torch):
    """The issue's acceptance check: the CLI prints Hugging Face's 100 numbers, bit for bit."""
    cmd = [
        sys.executable,
        "-m",
        "lrbench_gui.cli",
        "policy",
        "sample",
        "cosine",
        "--steps",
        "100",
        "--set",
        "lr=0.001",
        "--set",
        "warmup_steps=10",
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    expected = torch_curve(
        torch,
        lambda opt: hf.get_cosine_schedule_with_warmup(opt, num_warmup_steps=10, num_training_steps=100),
        0.001,
        100,
    )
    assert len(printed) == 100
    assert printed == expected
