"""Warmups as a share of the run: cosine and linear take Hugging Face's warmup_ratio, exactly as
its Trainer computes it, and a tuned spec is saved in that form so it keeps its warmup share in a
10x longer run."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import transformers

from lrbench_gui.core.spec import build_schedule, ratio_form, sample
from lrbench_gui.plugins import get_registry


def hf_lrs(kind: str, lr: float, warmup: float, total: int) -> list[float]:
    import torch

    args = transformers.TrainingArguments(output_dir="unused", warmup_steps=warmup, report_to=[])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = transformers.get_scheduler(kind, opt, num_warmup_steps=args.get_warmup_steps(total),
                                       num_training_steps=total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("total", [97, 1000, 10_000])
def test_warmup_ratio_is_hf_trainers_warmup(kind, total):
    spec = {"name": kind, "params": {"lr": 2e-5, "warmup_ratio": 0.03}}
    got = sample(spec, total, get_registry())
    want = hf_lrs(kind, 2e-5, 0.03, total)
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(got, want))
    assert got.index(max(got)) == math.ceil(0.03 * total)  # the peak right after ceil(3 %) steps


def test_a_spec_tuned_in_steps_is_saved_as_a_share_and_keeps_it_10x_longer():
    reg = get_registry()
    tuned = {"name": "cosine", "params": {"lr": 0.01, "min_lr": 0.0, "warmup_steps": 6}}  # 5 % of 120 steps
    saved = ratio_form(tuned, 120, reg)
    assert saved["params"]["warmup_steps"] == 0 and saved["params"]["warmup_ratio"] == 0.05
    assert sample(saved, 120, reg) == sample(tuned, 120, reg)  # the tuned run is unchanged
    long = build_schedule(saved, 1200, reg).lrs()
    assert long.index(max(long)) == 60  # 5 % of the 10x longer run, not 6 steps
    assert ratio_form({"name": "step", "params": {"lr": 0.1}}, 120, reg) == {"name": "step", "params": {"lr": 0.1}}


def test_export_for_a_longer_run_keeps_the_share(tmp_path):
    spec = tmp_path / "best.json"
    spec.write_text(json.dumps({"name": "cosine", "params": {"lr": 0.01, "warmup_ratio": 0.05}}))
    out = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "policy", "export", "--spec", str(spec),
                          "--to", "hf", "--steps", "1200"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fields = json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1])
    assert fields["warmup_steps"] == 0.05 and fields["max_steps"] == 1200


@pytest.mark.parametrize("total", [97, 1000])
def test_wsd_takes_its_warmup_and_decay_as_shares_like_hf_wsd(total):
    import torch

    spec = {"name": "wsd", "params": {"lr": 1e-3, "warmup_steps": 0, "decay_steps": 0, "warmup_ratio": 0.05,
                                      "decay_ratio": 0.2, "decay_type": "linear"}}
    got = sample(spec, total, get_registry())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    warm, decay = math.ceil(0.05 * total), math.ceil(0.2 * total)
    sched = transformers.get_wsd_schedule(opt, num_warmup_steps=warm, num_decay_steps=decay,
                                          num_training_steps=total, decay_type="linear")
    want = []
    for _ in range(total):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(got, want))
    with pytest.raises(Exception, match="warmup_ratio \\+ decay_ratio"):
        sample({"name": "wsd", "params": {"lr": 1e-3, "warmup_steps": 0, "decay_steps": 0, "warmup_ratio": 0.5,
                                          "decay_ratio": 0.5}}, 10, get_registry())


def test_compositions_take_boundaries_as_shares_and_save_best_writes_them():
    from lrbench_gui.core.db.validate import normalize_record
    from lrbench_gui.core.spec import SpecError, parse_spec, shares_of

    reg = get_registry()
    tuned = {"sequence": [{"name": "linear", "params": {"lr": 1e-3, "warmup_steps": 4}},
                          {"name": "wsd", "params": {"lr": 1e-3, "warmup_steps": 0, "decay_steps": 6}}],
             "boundaries": [10]}
    saved = ratio_form(tuned, 40, reg)
    assert saved["boundaries"] == [0.25] and saved["sequence"][0]["params"]["warmup_ratio"] == 0.4
    assert saved["sequence"][1]["params"]["decay_ratio"] == 0.2  # 6 of the segment's 30 steps
    assert sample(saved, 40, reg) == sample(tuned, 40, reg)  # the tuned run is unchanged
    assert build_schedule(saved, 400, reg)._starts == [0, 100]  # the boundary keeps its share 10x longer
    assert shares_of(saved) == ["boundaries 0.25", "warmup_ratio 0.4", "decay_ratio 0.2"]
    # the database stores and validates share boundaries; a mix of kinds is one clear line
    rec = {"id": "t1", "task": "digits-mlp", "policy": saved, "status": "completed"}
    assert normalize_record("trials", rec, reg).record["policy"]["boundaries"] == [0.25]
    for bad, words in (([0.5, 30], "give all boundaries as shares"), ([10, 0.5], "must be greater than 10"),
                       ([0.7, 0.3], "must be greater than 0.7")):
        spec = {"sequence": [tuned["sequence"][0]] * 3, "boundaries": bad}
        with pytest.raises(SpecError, match=words):
            parse_spec(spec, reg)
