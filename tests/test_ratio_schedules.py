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
