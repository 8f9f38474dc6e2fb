"""Exports are checked by running them: the DeepSpeed block through DeepSpeed's scheduler, the HF
fields through ``transformers.get_scheduler``, the torch code through ``exec``; and the
``as_lr_scheduler`` adapter inside real torch training loops."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lrbench_gui.core.export import export_policy
from lrbench_gui.integrations import as_lr_scheduler, build_schedule, parse_spec, policy_scheduler
from lrbench_gui.plugins import get_registry
from lrbench_gui.testing.policy import hf_warmup_steps

TOTAL = 240

VARIANTS = [
    {"name": "fixed", "params": {"lr": 0.03}},
    {"name": "step", "params": {"lr": 0.1, "step_size": 50, "gamma": 0.5}},
    {"name": "multistep", "params": {"lr": 0.1, "milestones": [30, 100, 101], "gamma": 0.3}},
    {"name": "exp", "params": {"lr": 0.1, "gamma": 0.98}},
    {"name": "poly", "params": {"lr": 0.1, "power": 2.0}},
    {"name": "poly", "params": {"lr": 0.1, "min_lr": 0.001, "power": 0.5}},
    {"name": "triangle", "params": {"min_lr": 0.001, "max_lr": 0.01, "half_cycle": 25}},
    {"name": "triangle2", "params": {"min_lr": 0.001, "max_lr": 0.01, "half_cycle": 25}},
    {"name": "triangle_exp", "params": {"min_lr": 0.001, "max_lr": 0.01, "half_cycle": 25, "gamma": 0.99}},
    {"name": "cosine_restarts", "params": {"lr": 0.01, "cycle_steps": 40}},
    {"name": "cosine_restarts", "params": {"lr": 0.01, "min_lr": 1e-4, "cycle_steps": 30, "cycle_mult": 2}},
    {"name": "cosine", "params": {"lr": 0.001, "warmup_steps": 10}},
    {"name": "cosine", "params": {"lr": 0.001, "min_lr": 1e-4, "warmup_steps": 10}},
    {"name": "cosine", "params": {"lr": 0.001}},
    {"name": "linear", "params": {"lr": 0.001, "warmup_steps": 24}},
    {"name": "linear", "params": {"lr": 0.001, "warmup_ratio": 0.03}},
    {"name": "cosine", "params": {"lr": 2e-5, "warmup_ratio": 0.03}},
    {"name": "cosine", "params": {"lr": 2e-5, "min_lr": 1e-6, "warmup_ratio": 0.1}},
    {"name": "constant_warmup", "params": {"lr": 0.001, "warmup_steps": 24}},
    {"name": "inverse_sqrt", "params": {"lr": 0.001, "warmup_steps": 20}},
    {"name": "inverse_sqrt", "params": {"lr": 0.001, "warmup_steps": 20, "timescale": 50}},
    {"name": "wsd", "params": {"lr": 0.001, "warmup_steps": 20, "decay_steps": 60, "min_lr": 1e-5}},
    {"name": "wsd", "params": {"lr": 0.001, "warmup_steps": 20, "decay_steps": 60, "decay_type": "1-sqrt"}},
    {"name": "onecycle", "params": {"max_lr": 0.01}},
    {"name": "onecycle", "params": {"max_lr": 0.01, "anneal": "linear", "pct_start": 0.25}},
    {"name": "warmup", "params": {"warmup_max_lr": 0.01, "warmup_num_steps": 50}},
    {"name": "warmup", "params": {"warmup_min_lr": 1e-4, "warmup_max_lr": 0.01, "warmup_num_steps": 50,
                                  "warmup_type": "linear"}},
    {"name": "warmup_decay", "params": {"warmup_max_lr": 0.01, "warmup_num_steps": 50}},
    {"name": "warmup_cosine", "params": {"lr": 0.01, "warmup_num_steps": 50, "warmup_min_ratio": 0.1}},
    {"name": "lr_range", "params": {"min_lr": 1e-4, "step_size": 10, "step_rate": 0.5}},
    {"name": "lr_range", "params": {"min_lr": 1e-4, "step_size": 10, "staircase": True}},
]


def _close(got, want):
    peak = max(abs(w) for w in want)
    bad = [
        (i, g, w) for i, (g, w) in enumerate(zip(got, want))
        if not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12 * peak)
    ]
    assert len(got) == len(want) and not bad, bad[:5]


def _optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)


def _torch_run(scheduler_factory, optimizer, steps):
    sched = scheduler_factory(optimizer)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    return out


def _ids(v):
    return v["name"] + "-" + "-".join(f"{k}={x}" for k, x in v["params"].items())


@pytest.fixture(scope="module")
def ds_schedules():
    from deepspeed.runtime import lr_schedules

    return lr_schedules


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_every_native_export_reproduces_the_policy(variant, ds_schedules):
    import transformers

    spec = parse_spec(variant)
    want = build_schedule(spec, TOTAL).lrs()
    natives = 0

    ds = export_policy(spec, "deepspeed", TOTAL, get_registry())
    if ds.native:
        natives += 1
        block = json.loads(ds.text)
        lr = block.get("optimizer", {}).get("params", {}).get("lr", 0.5)
        opt = _optimizer(lr)
        if "scheduler" in block:
            cls = getattr(ds_schedules, block["scheduler"]["type"])
            sched = cls(opt, **block["scheduler"]["params"])
            got = []
            for _ in range(TOTAL):
                got.append(opt.param_groups[0]["lr"])
                sched.step()
        else:  # no scheduler: DeepSpeed keeps the optimizer's LR
            got = [lr] * TOTAL
        _close(got, want)

    hf = export_policy(spec, "hf", TOTAL, get_registry())
    if hf.native:
        natives += 1
        args = json.loads(hf.text)
        opt = _optimizer(args["learning_rate"])
        got = _torch_run(
            lambda o: transformers.get_scheduler(
                args["lr_scheduler_type"], o, num_warmup_steps=hf_warmup_steps(args, args.get("max_steps", TOTAL)),
                num_training_steps=args.get("max_steps", TOTAL),
                scheduler_specific_kwargs=args.get("lr_scheduler_kwargs"),
            ),
            opt, TOTAL,
        )
        _close(got, want)

    code = export_policy(spec, "torch", TOTAL, get_registry())
    assert code.exact
    namespace = {}
    # the generated code tells which LR to create the optimizer with
    lr = 1.0 if not code.native else float(code.text.split("lr=")[1].split(":")[0])
    opt = _optimizer(lr)
    namespace["optimizer"] = opt
    got = []
    exec(code.text, namespace)  # noqa: S102 - our own generated code, under test
    for _ in range(TOTAL):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        namespace["scheduler"].step()
    _close(got, want)
    natives += code.native
    assert natives >= 1, "every variant in this list has at least one native equivalent"


def test_as_lr_scheduler_follows_compositions_in_a_real_loop():
    spec = {
        "sequence": [
            {"name": "warmup", "params": {"warmup_max_lr": 0.05, "warmup_num_steps": 20, "warmup_type": "linear"}},
            {"sequence": [{"name": "fixed", "params": {"lr": 0.05}}, {"name": "cosine", "params": {"lr": 0.05}}],
             "boundaries": [30]},
        ],
        "boundaries": [20],
    }
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=123.0)  # the policy, not this value, sets the LR
    sched = as_lr_scheduler(spec, opt, total_steps=100)
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    assert seen == build_schedule(spec, 100).lrs()

    # state round trip: a new scheduler resumes where the first one stopped
    state = sched.state_dict()
    json.dumps(state)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched2 = as_lr_scheduler(spec, opt2, total_steps=100)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == build_schedule(spec, 100).lr_at(100)
    with pytest.raises(ValueError, match="different policy spec"):
        as_lr_scheduler({"name": "fixed"}, opt2, 100).load_state_dict(state)


def test_adapter_scales_param_groups_and_feeds_hf_and_deepspeed_style_factories():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 0.1}], lr=1.0)
    sched = policy_scheduler({"name": "step", "params": {"lr": 0.2, "step_size": 1, "gamma": 0.5}}, 10)(opt)
    assert [g["lr"] for g in opt.param_groups] == [0.2, pytest.approx(0.02)]
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.1, pytest.approx(0.01)]
