"""Plateau switching: ``reduce_on_plateau`` against torch's ReduceLROnPlateau at every step, a
sequence's ``switch``, a real digits trial whose record lists its switches, the adapter's
``scheduler.step(metric)``, the exports (torch's code run, HF's scheduler built, exit 3 where
there is none), the search hints, ``report``'s hook, the CLI's ``--against`` and the Qt views."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch

from lrbench_gui.core.reactive import SYNTHETIC, Trace, drive, replay, synthetic_curve
from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.spec import SpecError, build_schedule, parse_spec, ratio_form

RECORDED = json.loads((Path(__file__).parent / "data" / "plateau_loss_curve.json").read_text())["loss"]
RULES = [  # (mode, threshold_mode, threshold, patience, cooldown, factor, min_lr, eps)
    ("min", "rel", 1e-4, 3, 0, 0.5, 0.0, 1e-8),
    ("min", "abs", 0.02, 0, 2, 0.3, 1e-4, 1e-8),
    ("max", "rel", 0.01, 5, 3, 0.1, 0.0, 1e-3),
    ("max", "abs", 0.0, 2, 1, 0.7, 2e-3, 1e-8),
]


def _torch_lrs(values, lr=0.1, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = []
    for v in values:
        out.append(opt.param_groups[0]["lr"])
        sched.step(v)
    return out


def _params(rule, **extra):
    mode, tm, thr, pat, cd, fac, min_lr, eps = rule
    return {"lr": 0.1, "mode": mode, "threshold_mode": tm, "threshold": thr, "patience": pat, "cooldown": cd,
            "factor": fac, "min_lr": min_lr, "eps": eps, **extra}


def _torch_kw(rule):
    mode, tm, thr, pat, cd, fac, min_lr, eps = rule
    return dict(mode=mode, threshold_mode=tm, threshold=thr, patience=pat, cooldown=cd, factor=fac, min_lr=min_lr,
                eps=eps)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r[0]}-{r[1]}")
def test_reduce_on_plateau_is_torchs_rule_at_every_step(registry, rule):
    for values in (RECORDED, synthetic_curve("noisy", 300)):
        values = values if rule[0] == "min" else [-v for v in values]  # max mode: an accuracy-like curve
        schedule = build_schedule({"name": "reduce_on_plateau", "params": _params(rule)}, len(values), registry)
        ours = replay(schedule, values)
        ref = _torch_lrs(values, **_torch_kw(rule))
        assert max(abs(a - b) for a, b in zip(ours, ref)) <= 1e-9
        assert len(set(ref)) > 1  # the curve did reduce: the comparison means something
        # asked again, in any order, the LRs are the same: a function of (step, observations)
        assert [schedule.lr_at(k) for k in reversed(range(len(values)))] == ours[::-1]
        assert [s["step"] for s in schedule.switches()] == [k for k in range(1, len(ref)) if ref[k] != ref[k - 1]]


def test_a_sequence_switches_where_torch_would_reduce(registry):
    spec = {"sequence": [{"name": "fixed", "params": {"lr": 0.1}}, {"name": "cosine", "params": {"lr": 0.05}},
                         {"name": "fixed", "params": {"lr": 0.001}}],
            "boundaries": [0.7, 0.95], "switch": {"monitor": "loss", "every": 1, "smoothing": 0.0, "patience": 6,
                                                  "cooldown": 20}}
    parsed = parse_spec(spec, registry)
    assert parse_spec(parsed.to_json(), registry).to_json() == parsed.to_json()
    assert ratio_form(parsed.to_json(), 240, registry)["switch"] == parsed.to_json()["switch"]
    schedule = build_schedule(parsed, 240, registry)
    lrs = drive(schedule, Trace(RECORDED))
    ref = _torch_lrs(RECORDED, lr=1.0, patience=6, cooldown=20)
    fired = [k for k in range(1, 240) if ref[k] != ref[k - 1]][:2]
    assert [s["step"] for s in schedule.switches()] == fired
    first, second = fired
    assert lrs[first - 1] == 0.1 and lrs[first] == pytest.approx(0.05)  # the cosine starts its clock there
    assert lrs[second] == 0.001 and "segment 3" in schedule.switches()[1]["reason"]
    # without observations the boundaries hold
    plain = build_schedule(parsed, 240, registry).lrs()
    assert plain[167] == plain[0] == 0.1 and plain[168] == pytest.approx(0.05)
    for bad, where in [({**spec, "switch": {"patience": -1}}, "switch.patience"),
                       ({**spec, "switch": {"monitr": "loss"}}, "switch.monitr"),
                       ({"sequence": [spec["sequence"][0]], "boundaries": [], "switch": {}}, "switch")]:
        with pytest.raises(SpecError) as exc:
            parse_spec(bad, registry)
        assert exc.value.path == where
    from lrbench_gui.core.db.validate import check_spec

    assert check_spec(parsed.to_json(), "policy", registry, set())["switch"]["cooldown"] == 20


def _run(reg, policy, steps, **fields):
    """A real digits trial run in this process: its end status, events and record."""
    from lrbench_gui.core.runs.recorder import TrialRecorder
    from lrbench_gui.core.runs.trial import load_trial, validate_trial
    from lrbench_gui.trainer.run import Emitter, run_trial

    cfg = validate_trial(load_trial({"task": "digits-mlp", "policy": policy, "budget": {"steps": steps},
                                     "threads": 1, "seed": 3, **fields}), reg)
    buf = io.StringIO()
    status = run_trial(cfg, Emitter(cfg.trial_id, stream=buf), reg)
    events = [e for e in map(parse_line, buf.getvalue().splitlines()) if e is not None]
    rec = TrialRecorder(cfg)
    for e in events:
        rec.feed(e)
    return status, events, rec.record()


@pytest.fixture(scope="module")
def plateau_trial():
    """One real digits trial (60 steps) with reduce_on_plateau watching the train loss; and one
    (40 steps) with a sequence that switches on a plateau of val_loss."""
    from lrbench_gui.plugins import get_registry, reset_registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LRBENCH_LOAD_PLUGINS", "")
        reset_registry()
        reg = get_registry()
        params = {"lr": 0.1, "every": 2, "patience": 1, "smoothing": 0.5, "factor": 0.5, "threshold": 0.05}
        status, events, record = _run(reg, {"name": "reduce_on_plateau", "params": params}, 60,
                                      log_every=1, eval_every=20)
        switching = {"sequence": [{"name": "fixed", "params": {"lr": 0.1}}, {"name": "fixed", "params": {"lr": 0.01}}],
                     "boundaries": [0.9], "switch": {"monitor": "val_loss", "patience": 0, "threshold": 0.9}}
        seq = _run(reg, switching, 40, log_every=7, eval_every=10)
        reset_registry()
    return {"status": status, "events": events, "record": record, "params": params, "sequence": seq}


def test_a_real_trial_records_its_switches_and_matches_torch(plateau_trial, registry):
    from lrbench_gui.core.db.validate import normalize_record

    assert plateau_trial["status"] == "completed"
    record = plateau_trial["record"]
    switches = record["extra"]["switches"]
    steps = [e for e in plateau_trial["events"] if e.type == "step"]
    lrs = [e["lr"] for e in steps]
    changed = [k for k in range(1, len(lrs)) if lrs[k] != lrs[k - 1]]
    assert switches and [s["step"] for s in switches] == changed
    assert all(s["lr"] == lrs[s["step"]] and s["reason"].startswith("plateau: loss") for s in switches)
    # torch's ReduceLROnPlateau fed the same observations (the loss EMA every 2 steps) gives the same LRs
    p, ema, obs = plateau_trial["params"], None, []
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=p["lr"])
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=p["factor"], patience=p["patience"],
                                                     threshold=p["threshold"])
    for e in steps:
        assert abs(opt.param_groups[0]["lr"] - e["lr"]) <= 1e-9
        ema = e["loss"] if ema is None else p["smoothing"] * ema + (1 - p["smoothing"]) * e["loss"]
        if (e["step"] + 1) % p["every"] == 0:
            ref.step(ema)
            obs.append(ema)
    stored = normalize_record("trials", record, registry).record
    assert stored["extra"]["switches"] == switches  # the database keeps them
    # a sequence watching val_loss: the eval at step 9 sets the best, the one at step 19 cannot beat
    # it by 90 %, so segment 2 starts at step 20 (its boundary is step 36)
    status, events, record = plateau_trial["sequence"]
    assert status == "completed" and [e["step"] for e in events if e.type == "eval"][:2] == [9, 19]
    (switch,) = record["extra"]["switches"]
    assert switch["step"] == 20 and switch["lr"] == 0.01 and "val_loss" in switch["reason"]
    lr = dict(zip(record["curves"]["lr"]["steps"], record["curves"]["lr"]["values"]))
    assert lr[14] == 0.1 and lr[20] == 0.01 and lr[39] == 0.01  # step 20 logged though log_every is 7


def test_switch_markers_in_the_live_plot(qtbot, plateau_trial):
    from lrbench_gui.qt.live_plot import LivePlot

    plot = LivePlot()
    qtbot.addWidget(plot)
    tid = plateau_trial["record"]["id"]
    for e in plateau_trial["events"]:  # what the Live, Run and Watch panels do with each step event
        if e.type == "step":
            plot.append(tid, e["step"], e["lr"], e["loss"])
            if isinstance(e.get("switch"), str):
                plot.mark_switch(tid, e["step"], e["lr"], e["switch"])
    expected = [float(s["step"]) for s in plateau_trial["record"]["extra"]["switches"]]
    assert plot.switch_marks(tid) == expected and expected
    plot.set_trial_visible(tid, False)
    assert not any(m.isVisible() for m in plot._marks[tid])
    plot.remove_trial(tid)
    assert plot.switch_marks(tid) == []


def test_the_policies_panel_draws_a_reactive_policy_against_a_curve(qtbot, registry):
    from lrbench_gui.qt.policies.panel import PolicyPanel

    panel = PolicyPanel(registry)
    qtbot.addWidget(panel)
    panel.set_total_steps(1000)
    panel.select_policy("reduce_on_plateau")
    panel.redraw()
    view = panel.curve
    assert not view.against_row.isHidden() and len(view.switch_lines) == 2
    assert [round(float(l.value())) for l in view.switch_lines] == [s["step"] for s in view.switches]
    view.set_against_record({"id": "t", "curves": {"loss": {"steps": [0, 999], "values": [2.0, 0.1]}}})
    panel.redraw()
    assert view.switch_lines == [] and view.against.currentText() == "trial t"  # a steady decline: no plateau
    panel.select_policy("cosine")
    panel.redraw()
    assert view.against_row.isHidden() and view.switches == []


def test_as_lr_scheduler_takes_the_metric_like_reduce_lr_on_plateau(registry):
    from lrbench_gui.integrations import as_lr_scheduler

    values = synthetic_curve("noisy", 200)
    spec = {"name": "reduce_on_plateau", "params": {"lr": 0.1, "patience": 4, "factor": 0.5, "cooldown": 2}}
    o1, o2 = (torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1) for _ in range(2))
    ours = as_lr_scheduler(spec, o1, 200, registry)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(o2, patience=4, factor=0.5, cooldown=2)
    for v in values:
        assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"]
        o1.step()
        ours.step(v)
        ref.step(v)
    assert len(ours.switches) >= 3
    o3 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    resumed = as_lr_scheduler(spec, o3, 200, registry)
    resumed.load_state_dict(json.loads(json.dumps(ours.state_dict())))
    assert o3.param_groups[0]["lr"] == o1.param_groups[0]["lr"] and resumed.switches == ours.switches
    plain = as_lr_scheduler({"name": "cosine", "params": {"lr": 0.1}}, o3, 200, registry)
    with pytest.raises(TypeError, match="does not react to a metric"):
        plain.step(1.0)


def test_exports_torch_code_runs_hf_builds_and_none_exits_3(registry, capsys):
    from lrbench_gui.cli import main
    from lrbench_gui.core.export import export_policy

    rule = RULES[1]
    spec = parse_spec({"name": "reduce_on_plateau", "params": _params(rule)}, registry)
    result = export_policy(spec, "torch", 240, registry)
    assert result.exact and result.native and "ReduceLROnPlateau(" in result.text
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scope = {"optimizer": optimizer}
    exec(result.text, scope)  # the exported code, run
    got = []
    for v in RECORDED:
        got.append(optimizer.param_groups[0]["lr"])
        scope["scheduler"].step(v)
    assert got == replay(build_schedule(spec, 240, registry), RECORDED) and len(set(got)) > 1
    # HF: an eval monitor is its reduce_lr_on_plateau (stepped with the eval metric)
    from transformers import get_scheduler

    hf = json.loads(export_policy(parse_spec({"name": "reduce_on_plateau", "params": _params(rule, monitor="val_loss")},
                                             registry), "hf", 240, registry).text)
    assert hf["lr_scheduler_type"] == "reduce_lr_on_plateau" and hf["metric_for_best_model"] == "loss"
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=hf["learning_rate"])
    hf_sched = get_scheduler(hf["lr_scheduler_type"], opt, scheduler_specific_kwargs=hf["lr_scheduler_kwargs"])
    hf_lrs = []
    for v in RECORDED:
        hf_lrs.append(opt.param_groups[0]["lr"])
        hf_sched.step(v)
    assert hf_lrs == got
    # none: the train-loss monitor for HF, any reactive spec for DeepSpeed, a switching sequence for HF
    switching = json.dumps({"sequence": [{"name": "fixed"}, {"name": "cosine"}], "boundaries": [50], "switch": {}})
    for argv in (["reduce_on_plateau", "--to", "hf"], ["reduce_on_plateau", "--to", "deepspeed", "--steps", "100"],
                 [switching, "--to", "hf", "--steps", "100"]):
        assert main(["policy", "export", *argv]) == 3
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("No equivalent: this policy changes its LR")
    assert main(["policy", "export", switching, "--to", "torch", "--steps", "100"]) == 0
    assert "as_lr_scheduler(SPEC" in capsys.readouterr().out


def test_search_hints_and_a_study_space_include_it(registry):
    from lrbench_gui.core.tuning.hints import policy_hints
    from lrbench_gui.core.tuning.space import study_space

    hints = policy_hints(registry.policy("reduce_on_plateau"))
    assert hints.lr == "lr" and hints.searched == ("lr",) and hints.ordered == (("min_lr", "lr"),)
    space = study_space(["reduce_on_plateau", "cosine"], "compose", registry)
    import random

    rng = random.Random(0)
    for family in space.families:
        spec = space.build(family.name, family.sample(rng), 200)
        assert build_schedule(spec, 200, registry).checked_lr(199) > 0


def test_report_feeds_the_policy_and_says_where_it_switched(tmp_path, monkeypatch):
    from lrbench_gui import report

    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps({"trial_id": "t1", "task": "command", "budget": {"steps": 120}, "policy": {
        "name": "reduce_on_plateau", "params": {"lr": 0.1, "every": 1, "smoothing": 0.0, "patience": 5}}}))
    monkeypatch.setenv("LRBENCH_TRIAL", str(trial))
    monkeypatch.setenv("LRBENCH_REPORT", str(tmp_path / "report.jsonl"))
    values = synthetic_curve("plateaus", 120)
    for k in range(0, 120):
        lr = report.lr_at(k)
        if k % 4 == 0:  # a script that reports every 4th step still gets every switch, at the next line
            report.step(k, loss=values[k], lr=lr)
        else:
            report._feed(report._current(), k, loss=values[k])  # what report.step does with the loss
    report.switch("my own scheduler")
    report.step(120, loss=0.1, lr=0.0)
    lines = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
    marked = [x for x in lines if x.get("switch")]
    assert len(marked) >= 2 and marked[-1]["switch"] == "my own scheduler"
    assert all(x["switch"].startswith("plateau:") for x in marked[:-1])
    monkeypatch.delenv("LRBENCH_TRIAL")
    monkeypatch.delenv("LRBENCH_REPORT")
    report._current()  # back to outside lrbench


def test_cli_samples_and_plots_against_a_picked_curve(capsys, tmp_path):
    from lrbench_gui.cli import main

    out = {}
    for against in SYNTHETIC:
        assert main(["policy", "sample", "reduce_on_plateau", "--steps", "1000", "--against", against, "--json"]) == 0
        out[against] = json.loads(capsys.readouterr().out)
    assert out["plateaus"] != out["decay"] and min(out["plateaus"]) < 0.01 == out["plateaus"][0]
    curve = tmp_path / "loss.json"
    curve.write_text(json.dumps(RECORDED))
    assert main(["policy", "plot", "reduce_on_plateau", "--steps", "240", "--set", "every=1", "--set", "patience=3",
                 "--against", str(curve), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert main(["policy", "sample", "reduce_on_plateau", "--steps", "10", "--against", "nope"]) == 2
    assert "not a synthetic curve" in capsys.readouterr().err


def test_a_reactive_trial_resumed_from_its_checkpoint_keeps_its_lr_and_switches(registry, tmp_path):
    from safetensors import safe_open

    params = {"lr": 0.1, "every": 2, "patience": 1, "smoothing": 0.5, "factor": 0.5, "threshold": 0.05}
    policy = {"name": "reduce_on_plateau", "params": params}
    fields = {"log_every": 1, "checkpoint_every": 10}
    status, whole, record = _run(registry, policy, 30, output_dir=str(tmp_path / "whole"), **fields)
    switches = record["extra"]["switches"]
    ckpts = [e for e in whole if e.type == "checkpoint"]
    ckpt = next(e for e in ckpts if any(s["step"] <= e["step"] for s in switches))  # the LR was reduced before it
    assert status == "completed" and any(s["step"] > ckpt["step"] for s in switches)  # and is again after it
    with safe_open(str(Path(ckpt["path"]).with_suffix(".resume") / "tensors.safetensors"), framework="pt") as fh:
        assert fh.get_tensor("schedule/values").shape[0] == ckpt["step"]  # one train loss per step before it
    status, resumed, again = _run(registry, policy, 30, output_dir=str(tmp_path / "resumed"),
                                  resume_from=ckpt["path"], **fields)
    lrs = [(e["step"], e["lr"]) for e in whole if e.type == "step"]
    assert status == "completed" and [(e["step"], e["lr"]) for e in resumed if e.type == "step"] == lrs
    assert [e["step"] for e in resumed if e.type == "step" and not e.get("replayed")][0] == ckpt["step"]
    assert again["extra"]["switches"] == switches
    import shutil

    from lrbench_gui.core.runs.trial import TrialError

    old = tmp_path / "old"  # a checkpoint without the observations: refused in one line
    shutil.copytree(Path(ckpt["path"]).with_suffix(".resume"), old / "step.resume")
    shutil.copy(ckpt["path"], old / "step.safetensors")
    state = json.loads((old / "step.resume/state.json").read_text())
    del state["schedule"]
    (old / "step.resume/state.json").write_text(json.dumps(state))
    with pytest.raises(TrialError, match="keeps no observations") as info:
        _run(registry, policy, 30, output_dir=str(old), resume_from=str(old / "step.safetensors"), **fields)
    assert "\n" not in str(info.value)
    # the schedule's own round trip: a sequence switching on val_loss, restored half-way
    spec = {"sequence": [{"name": "fixed", "params": {"lr": 0.1}}, {"name": "reduce_on_plateau", "params": {
        "lr": 0.05, "monitor": "val_loss", "patience": 2, "threshold": 0.01}}], "boundaries": [0.8],
        "switch": {"monitor": "loss", "every": 3, "patience": 2, "smoothing": 0.5, "threshold": 0.01}}
    trace = Trace.synthetic("plateaus", 200)
    full = build_schedule(spec, 200, registry)
    ref = drive(full, trace)
    half = build_schedule(spec, 200, registry)
    drive(half, Trace(trace.loss[:70], {k: v for k, v in trace.evals.items() if k < 70}), 70)
    fresh = build_schedule(spec, 200, registry)
    fresh.restore(json.loads(json.dumps(half.observations())))
    for k in range(70, 200):  # it switched at 60 (segment 2), 64 and 67 (x 0.1) before, 73... after
        assert fresh.checked_lr(k) == ref[k]
        fresh.feed(k, loss=trace.loss[k])
        fresh.feed(k, metrics=trace.evals[k])
    assert fresh.switches() == full.switches() and [s["step"] for s in full.switches()][:5] == [60, 64, 67, 70, 73]
    with pytest.raises(ValueError, match="fresh schedule"):
        fresh.restore([])
    # the torch adapter keeps what its schedule was fed directly too (a DeepSpeed or HF loop's observe)
    from lrbench_gui.integrations import as_lr_scheduler

    o1, o2, o3 = (torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1) for _ in range(3))
    ours = as_lr_scheduler(spec, o1, 200, registry)
    for k in range(70):
        ours.schedule.feed(k, loss=trace.loss[k])
        ours.schedule.feed(k, metrics=trace.evals[k])
        o1.step()
        ours.step()
    back = as_lr_scheduler(spec, o2, 200, registry)
    back.load_state_dict(json.loads(json.dumps(ours.state_dict())))
    assert o2.param_groups[0]["lr"] == o1.param_groups[0]["lr"] == ref[70] and back.switches == ours.switches != []
    plateau = {"name": "reduce_on_plateau", "params": {"lr": 0.1, "patience": 0}}  # an older state dict's pairs
    older = as_lr_scheduler(plateau, o3, 10, registry)
    older.load_state_dict({"last_epoch": 3, "observations": [[0, 1.0], [1, 2.0], [2, 3.0]]})
    assert o3.param_groups[0]["lr"] == pytest.approx(0.001) and older.observations == [[0, 1.0], [1, 2.0], [2, 3.0]]
