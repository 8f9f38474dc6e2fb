"""Property: whatever ``export --to torch|hf|deepspeed`` marks exact reproduces ``policy sample``
step by step when it is run in the real library: the torch code through ``exec`` and one
``scheduler.step()`` per step, the Hugging Face fields through ``transformers.get_scheduler``, the
DeepSpeed block through the ``deepspeed.runtime.lr_schedules`` class it names (no engine).

Specs are drawn from each built-in policy's schema with a fixed seed (a few per policy, short
runs), plus sequences that Hugging Face can express as one schedule. Tolerance: a relative 1e-9,
and 1e-12 of the run's peak for the values torch's recursive schedulers take to 0 by rounding.
"""

from __future__ import annotations

import json
import math
import random
import re
import warnings
from typing import Any

import pytest

from lrbench_gui.cli import main
from lrbench_gui.core.export import export_policy, single_equivalent
from lrbench_gui.core.params import ParamError, describe, validate_params
from lrbench_gui.core.spec import build_schedule, parse_spec
from lrbench_gui.plugins import load_plugins
from lrbench_gui.testing.policy import hf_warmup_steps

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REGISTRY = load_plugins(None)
SEED = 20261201
PER_POLICY = 3


def _value(row, rng: random.Random, total: int) -> Any:
    """A random value for one schema row; short runs get short step counts."""
    if rng.random() < 0.25:
        return row.default
    if row.kind == "choice":
        return rng.choice(row.choices)
    if row.kind == "bool":
        return rng.random() < 0.5
    if row.kind == "int_list":
        return sorted(rng.randint(0, 2 * total) for _ in range(rng.randint(0, 4)))
    lo = row.minimum if row.minimum is not None else None
    hi = row.maximum if row.maximum is not None else None
    if row.kind == "int":
        if row.unit == "steps" or row.role == "warmup":
            a = int(lo) if lo is not None else 0
            return rng.randint(a, max(a, 2 * total if row.role != "warmup" else total))
        a = int(lo) if lo is not None else 0
        b = int(hi) if hi is not None else a + 12
        if row.search:
            a, b = max(a, int(row.search[0])), min(b, int(row.search[1]))
        return rng.randint(a, max(a, b))
    a, b = row.search if row.search else (lo if lo is not None else 0.0, hi if hi is not None else 1.0)
    if row.log and a > 0:
        x = math.exp(rng.uniform(math.log(a), math.log(b)))
    else:
        x = rng.uniform(a, b)
    if lo is not None and (x < lo or (row.exclusive_minimum and x <= lo)):
        x = row.default
    if hi is not None and (x > hi or (row.exclusive_maximum and x >= hi)):
        x = row.default
    return x


def _random_specs() -> list[Any]:
    """``PER_POLICY`` (spec, run length) pairs per built-in policy, one pytest case per policy."""
    rng = random.Random(SEED)
    out = []
    for name, item in sorted(REGISTRY.policies.items()):
        cls = item.obj
        if not item.source.startswith("builtin") or getattr(cls, "reactive", False):
            continue
        rows = describe(cls.Params)
        drawn: list[tuple[dict, int]] = []
        tries = 0
        while len(drawn) < PER_POLICY and tries < 50:
            tries += 1
            total = rng.choice([1, 2, 7, rng.randint(3, 64)])
            values = {r.name: _value(r, rng, total) for r in rows}
            try:
                validate_params(cls.Params, values)
            except ParamError:
                continue
            drawn.append(({"name": name, "params": values}, total))
        out.append(pytest.param(drawn, id=name))
    return out


def _seq(first: dict, second: dict, boundary: int) -> dict:
    return {"sequence": [first, second], "boundaries": [boundary]}


SEQUENCES = [
    pytest.param(_seq({"name": "constant_warmup", "params": {"lr": 1e-3, "warmup_steps": 5}},
                      {"name": "cosine", "params": {"lr": 1e-3}}, 5), 40, id="warmup5-cosine"),
    pytest.param(_seq({"name": "linear", "params": {"lr": 2e-3, "warmup_steps": 8}},
                      {"name": "cosine", "params": {"lr": 2e-3, "min_lr": 1e-5, "num_cycles": 1.0}}, 8), 50,
                 id="linear-warmup-cosine-min"),
    pytest.param(_seq({"name": "constant_warmup", "params": {"lr": 1e-3, "warmup_steps": 6}},
                      {"name": "linear", "params": {"lr": 1e-3}}, 6), 30, id="warmup-linear"),
    pytest.param(_seq({"name": "constant_warmup", "params": {"lr": 1e-3, "warmup_steps": 4}},
                      {"name": "cosine_hard_restarts", "params": {"lr": 1e-3, "num_cycles": 3}}, 4), 40,
                 id="warmup-hard-restarts"),
    pytest.param(_seq({"name": "constant_warmup", "params": {"lr": 1e-3, "warmup_steps": 4}},
                      {"name": "poly_warmup", "params": {"lr": 1e-3, "power": 2.0}}, 4), 33, id="warmup-poly"),
    # look-alikes: a warmup that is not HF's (DeepSpeed's shifted one) and one to another peak
    pytest.param(_seq({"name": "warmup", "params": {"warmup_max_lr": 1e-3, "warmup_num_steps": 5,
                                                    "warmup_type": "linear"}},
                      {"name": "cosine", "params": {"lr": 1e-3}}, 5), 40, id="ds-warmup-cosine"),
    pytest.param(_seq({"name": "constant_warmup", "params": {"lr": 2e-3, "warmup_steps": 5}},
                      {"name": "cosine", "params": {"lr": 1e-3}}, 5), 40, id="other-peak-cosine"),
]


#: corners a random draw rarely hits: flat curves (min_lr = lr), a factor of 0 that torch divides
#: by, phases of no length, a warmup that is the whole run
EDGES = [pytest.param({"name": n, "params": p}, 7, id=f"edge-{n}-{i}") for i, (n, p) in enumerate([
    ("poly", {"lr": 0.1, "min_lr": 0.1}), ("poly_warmup", {"lr": 0.1, "min_lr": 0.1}),
    ("poly_warmup", {"warmup_steps": 7}), ("cosine_annealing", {"lr": 0.1, "min_lr": 0.1, "t_max": 3}),
    ("constant_factor", {"factor": 0.0, "total_iters": 7}), ("constant_factor", {"factor": 0.0, "total_iters": 8}),
    ("linear_factor", {"end_factor": 0.0, "total_iters": 7}), ("linear_factor", {"total_iters": 0}),
    ("onecycle", {"pct_start": 1.0}), ("onecycle", {"pct_start": 4 / 7, "three_phase": True}),
    ("ds_onecycle", {"cycle_first_step_size": 3, "cycle_second_step_size": 0}),
    ("triangle2", {"half_cycle": 3, "half_cycle_down": 1}), ("cosine_restarts", {"cycle_steps": 1}),
])]


def _close(got: list[float], want: list[float]) -> int | None:
    peak = max([abs(w) for w in want] + [1e-300])
    if len(got) != len(want):
        return min(len(got), len(want))
    return next((k for k, (g, w) in enumerate(zip(got, want))
                 if not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12 * peak)), None)


def _opt(lr: float):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _loop(opt, sched, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return out


def run_torch(text: str, steps: int) -> list[float]:
    # both the native code and the adapter say which LR to create the optimizer with
    opt = _opt(float(re.search(r"with lr=([0-9.eE+-]+?):", text).group(1)))
    namespace: dict[str, Any] = {"optimizer": opt}
    exec(compile(text, "<export>", "exec"), namespace)  # noqa: S102 - the export under test
    return _loop(opt, namespace["scheduler"], steps)


def run_hf(text: str, steps: int) -> list[float]:
    args = json.loads(text)
    opt = _opt(float(args["learning_rate"]))
    total = args.get("max_steps", steps)
    sched = transformers.get_scheduler(args["lr_scheduler_type"], opt,
                                       num_warmup_steps=hf_warmup_steps(args, total), num_training_steps=total,
                                       scheduler_specific_kwargs=args.get("lr_scheduler_kwargs"))
    return _loop(opt, sched, steps)


def run_deepspeed(text: str, steps: int) -> list[float]:
    from deepspeed.runtime import lr_schedules

    block = json.loads(text)
    lr = float(block.get("optimizer", {}).get("params", {}).get("lr", 0.5))
    if "scheduler" not in block:
        return [lr] * steps  # without a scheduler DeepSpeed keeps the optimizer's LR
    opt = _opt(lr)
    sched = getattr(lr_schedules, block["scheduler"]["type"])(opt, **block["scheduler"]["params"])
    out = []  # the engine's k-th step runs with the LR set after k scheduler steps (iteration k - 1)
    for _ in range(steps):
        out.append(float(opt.param_groups[0]["lr"]))
        sched.step()
    return out


RUNNERS = {"torch": run_torch, "hf": run_hf, "deepspeed": run_deepspeed}


@pytest.fixture(scope="module", autouse=True)
def _deepspeed_once():
    pytest.importorskip("deepspeed.runtime.lr_schedules")  # seconds to import: once, before the clock


@pytest.mark.parametrize("cases", [*_random_specs(), pytest.param([p.values for p in SEQUENCES], id="sequences"),
                                   pytest.param([p.values for p in EDGES], id="edges")])
def test_exact_exports_reproduce_the_sample(cases):
    for spec, total in cases:
        check_exports(spec, total)


def check_exports(spec: Any, total: int) -> None:
    parsed = parse_spec(spec, REGISTRY)
    want = build_schedule(parsed, total, REGISTRY).checked_lrs()
    for target, run in RUNNERS.items():
        result = export_policy(parsed, target, total, REGISTRY)
        if not result.exact:
            assert not result.text or not result.native or result.note, f"{target}: inexact without a note"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                got = run(result.text, total)
            except Exception as exc:  # an exact export must run
                pytest.fail(f"{spec} T={total}: --to {target} marked exact raised {exc!r}:\n{result.text}")
        k = _close(got, want)
        assert k is None, (f"{spec} T={total}: --to {target} marked exact differs at step {k}: "
                           f"{got[k] if k < len(got) else None!r} vs {want[k]!r}\n{result.text}")


def test_every_builtin_policy_is_drawn():
    drawn = {spec["name"] for p in _random_specs() for spec, _ in p.values[0]}
    builtins = {n for n, i in REGISTRY.policies.items()
                if i.source.startswith("builtin") and not getattr(i.obj, "reactive", False)}
    assert drawn == builtins


def test_hf_expresses_a_warmup_then_cosine_sequence_as_its_cosine():
    seq = parse_spec(SEQUENCES[0].values[0], REGISTRY)
    result = export_policy(seq, "hf", 40, REGISTRY)
    assert result.native and result.exact
    assert json.loads(result.text) == {"learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_steps": 5,
                                       "max_steps": 40}
    for look_alike in SEQUENCES[-2:]:
        assert single_equivalent(parse_spec(look_alike.values[0], REGISTRY), 40, REGISTRY) is None


@pytest.mark.parametrize("pct, steps", [(0.05, 20), (0.25, 4)])
def test_onecycle_export_never_divides_by_zero(capsys, pct, steps):
    """The issue's two cases: torch's OneCycleLR would raise ZeroDivisionError; the export is the
    LambdaLR adapter instead, and it follows the curve."""
    status = main(["policy", "export", "onecycle", "--set", "max_lr=0.1", "--set", f"pct_start={pct}",
                   "--steps", str(steps), "--to", "torch", "--json"])
    assert status == 0
    info = json.loads(capsys.readouterr().out)
    assert info["exact"] and not info["native"] and "OneCycleLR" not in info["text"]
    assert "OneCycleLR raises ZeroDivisionError" in info["note"]
    spec = {"name": "onecycle", "params": {"max_lr": 0.1, "pct_start": pct}}
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(_opt(0.1), 0.1, total_steps=steps, pct_start=pct)
    assert _close(run_torch(info["text"], steps), build_schedule(spec, steps, REGISTRY).lrs()) is None
