"""``lrbench policy ...`` and the CLI's error contract (exit 2, one line naming the problem)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lrbench_gui.cli import main
from lrbench_gui.core.spec import sample


def run(capsys, *argv):
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_list_and_show(capsys):
    status, out, _ = run(capsys, "policy", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert status == 0
    assert rows["wsd"]["params"] == ["lr", "warmup_steps", "decay_steps", "min_lr", "decay_type", "warmup_ratio",
                                     "decay_ratio", "warmup_type", "num_cycles", "stable_steps"]
    assert rows["triangle_exp"]["params"] == ["min_lr", "max_lr", "half_cycle", "gamma", "half_cycle_down"]
    status, out, _ = run(capsys, "policy", "list", "--family", "deepspeed")
    assert status == 0 and {line.split()[0] for line in out.splitlines()} == {
        "warmup", "warmup_decay", "warmup_cosine", "lr_range", "ds_onecycle"
    }
    status, out, _ = run(capsys, "policy", "show", "onecycle", "--json")
    info = json.loads(out)
    anneal = next(p for p in info["params"] if p["name"] == "anneal")
    assert anneal["choices"] == ["cos", "linear"] and anneal["default"] == "cos"
    max_lr = next(p for p in info["params"] if p["name"] == "max_lr")
    assert max_lr["log"] is True and max_lr["minimum"] == 0 and max_lr["exclusive_minimum"] is True
    status, out, _ = run(capsys, "policy", "show", "cosine")
    assert "warmup_steps (int) = 0" in out and "HF get_cosine_schedule_with_warmup" in out


def test_sample_text_and_json_agree_with_the_core(capsys, registry):
    status, out, _ = run(capsys, "policy", "sample", "step", "--steps", "7", "--set", "lr=0.5", "--set", "step_size=3")
    assert status == 0
    assert [float(x) for x in out.split()] == [0.5, 0.5, 0.5, 0.05, 0.05, 0.05, 0.005000000000000001]
    status, out, _ = run(
        capsys, "policy", "sample", "multistep", "--steps", "30", "--set", "milestones=[10,25]", "--json"
    )
    assert json.loads(out) == sample({"name": "multistep", "params": {"milestones": [10, 25]}}, 30, registry)


def test_sample_spec_file_with_a_composition(capsys, tmp_path):
    spec = {
        "sequence": [
            {"name": "constant_warmup", "params": {"lr": 0.1, "warmup_steps": 4}},
            {"name": "exp", "params": {"lr": 0.1, "gamma": 0.5}},
        ],
        "boundaries": [4],
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    status, out, _ = run(capsys, "policy", "sample", "--spec", str(path), "--steps", "7", "--json")
    assert status == 0
    assert json.loads(out) == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.05, 0.025], rel=1e-12)
    # a set on a composition is refused with a reason
    status, _, err = run(capsys, "policy", "sample", "--spec", str(path), "--steps", "7", "--set", "lr=1")
    assert status == 2 and "--set applies to a single policy" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["policy", "sample", "cosin", "--steps", "5"], "unknown policy 'cosin'; did you mean cosine"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "lr=-1"], "params.lr: must be > 0"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "warmup=3"], "params.warmup: unknown parameter"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "lr=fast"], "params.lr"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "lr"], "expected key=value"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "lr=NaN"], "finite"),
        (["policy", "sample", "cosine", "--steps", "0"], "--steps must be >= 1"),
        (["policy", "sample", "cosine"], "--steps"),
        (["policy", "sample", "poly", "--steps", "5", "--set", "min_lr=1"], "min_lr (1.0) must not exceed lr"),
        (["policy", "sample", "multistep", "--steps", "5", "--set", "milestones=[5,-2]"], "milestones must be >= 0"),
        (["policy", "sample", "wsd", "--steps", "5", "--set", "decay_type=cubic"], "must be one of"),
        (["policy", "sample", '{"name": "cosine", "params": {"lr": 0.1}', "--steps", "5"], "not valid JSON"),
        (["policy", "sample", '{"sequence": [{"name": "fixed"}], "boundaries": [3]}', "--steps", "5"],
         "boundaries: needs 0 step number(s)"),
        (["policy", "sample", "--spec", "/no/such/file.json", "--steps", "5"], "cannot be read"),
        (["policy", "show", "nope"], "unknown policy 'nope'"),
        (["policy", "export", "cosine", "--to", "hf"], "--steps N is required"),
        (["policy", "frobnicate"], "invalid choice"),
        (["policy", "sample", "exp", "--steps", "500", "--set", "gamma=10"], "policy exp: lr_at(309) raised OverflowError"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", 'lr="inf"'], "params.lr: must be a finite number"),
        (["policy", "export", "sigmoid", "--to", "torch", "--steps", "100", "--set", 'gamma="nan"'], "params.gamma: must be a finite"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "lr=" + "[" * 100 + "]" * 100], "--set lr: nests deeper"),
        (["policy", "sample", "cosine", "--steps", "5", "--set", "lr={oops"], "--set lr: is not valid JSON"),
        (["policy", "sample", '{"name": "fixed", "name": "cosine"}', "--steps", "5"], "names the key 'name' more than once"),
        (["policy", "sample", '{"sequence": [' * 300 + "]}" * 300, "--steps", "5"], "inline spec: nests deeper than 64"),
        (["policy", "show", "z" * 5000], "(5,000 characters)"),
    ],
)
def test_bad_input_exits_2_with_a_message(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert message in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) < 400  # an unknown name points to `lrbench policy list`, no 54-name list


def test_a_policy_is_sampled_only_when_every_lr_is_finite_and_not_negative(registry):
    from lrbench_gui.core.spec import ScheduleError, build_schedule

    schedule = build_schedule({"name": "exp", "params": {"lr": 0.1, "gamma": 10.0}}, 500, registry)
    assert schedule.checked_lr(3) == pytest.approx(100.0)
    with pytest.raises(ScheduleError, match=r"policy exp: lr_at\(309\) raised OverflowError"):
        schedule.lrs()
    linear = build_schedule({"name": "linear", "params": {"lr": 0.1}}, 10, registry)
    assert linear.checked_lrs() == linear.lrs()


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"sequence": [{"name": "fixed", "params": {"lr": 0.1}}, {"name": "step"}], "boundaries": [0]}')
    proc = subprocess.run(
        [sys.executable, "-m", "lrbench_gui.cli", "policy", "sample", "--spec", str(bad), "--steps", "4"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"lrbench: error: {bad}: boundaries[0]: must be greater than 0 (boundaries increase and start above 0)"
    )


def test_plot_writes_an_image_of_several_policies(capsys, tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"name": "triangle2", "params": {"half_cycle": 20}}))
    out = tmp_path / "curve.png"
    status, stdout, _ = run(
        capsys, "policy", "plot", "cosine", "--spec", str(spec), "--steps", "200", "--log", "-o", str(out)
    )
    assert status == 0 and str(out) in stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_export_targets(capsys):
    status, out, _ = run(capsys, "policy", "export", "cosine", "--steps", "100", "--set", "min_lr=1e-5",
                         "--set", "warmup_steps=5", "--to", "hf")
    assert status == 0
    assert json.loads(out) == {
        "learning_rate": 0.001, "lr_scheduler_type": "cosine_with_min_lr", "warmup_steps": 5, "max_steps": 100,
        "lr_scheduler_kwargs": {"min_lr": 1e-5},
    }
    status, out, _ = run(capsys, "policy", "export", "warmup_decay", "--steps", "500", "--to", "deepspeed")
    assert json.loads(out)["scheduler"] == {
        "type": "WarmupDecayLR",
        "params": {"warmup_min_lr": 0.0, "warmup_max_lr": 0.001, "warmup_num_steps": 1000, "warmup_type": "log",
                   "total_num_steps": 500},
    }
    # no equivalent: exit 3 and a plain statement of what to use instead
    status, out, err = run(capsys, "policy", "export", "sin", "--to", "deepspeed")
    assert status == 3 and out == ""
    assert "No DeepSpeed scheduler reproduces this policy exactly" in err and "as_lr_scheduler" in err
    status, out, _ = run(capsys, "policy", "export", "sin", "--to", "torch", "--json")
    info = json.loads(out)
    assert status == 0 and info["exact"] and not info["native"] and "LambdaLR" in info["text"]
