"""GPU slots: finding the GPUs without torch (a fake ``nvidia-smi`` on PATH, ``LRBENCH_GPUS``,
``CUDA_VISIBLE_DEVICES``), cutting them into disjoint groups, the command and environment of a
trial on them, the ``resources`` its record keeps, and the CLI flags that choose them. The two
end-to-end runs use ``LRBENCH_GPUS=0,1,2,3`` on this CPU machine: trials are placed on the
simulated GPUs and train on the CPU."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from lrbench_gui.core.runs import gpus as gpus_mod
from lrbench_gui.core.runs.gpus import (GpuError, GpuInventory, GPU, detect_gpus, gpu_slots, launcher_include,
                                        placement_problem, plan_slots, trial_resources)
from lrbench_gui.core.runs.process import trainer_command, trial_env
from lrbench_gui.core.runs.slots import SlotQueue
from lrbench_gui.core.runs.trial import load_trial

SMI = """#!/bin/sh
if [ "$1" != "--query-gpu=index,name,memory.total,uuid" ]; then echo "bad query $1" >&2; exit 3; fi
echo "0, NVIDIA H200, 143771, GPU-aaa"
echo "1, NVIDIA H200, 143771, GPU-bbb"
echo "2, NVIDIA H200, 143771, GPU-ccc"
echo "3, NVIDIA H200, 143771, GPU-ddd"
"""
TRIAL = {"task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.05}}, "budget": {"steps": 2}}


def _path_with(tmp_path: Path, script: str | None) -> str:
    """A PATH whose only nvidia-smi is ``script`` (None: none at all)."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    if script is not None:
        smi = folder / "nvidia-smi"
        smi.write_text(script)
        smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return str(folder)


@pytest.fixture
def gpu_host(tmp_path, monkeypatch):
    """This process on a host with four H200s (the fake nvidia-smi first on PATH)."""
    monkeypatch.setenv("PATH", _path_with(tmp_path, SMI) + ":" + __import__("os").environ["PATH"])
    monkeypatch.delenv("LRBENCH_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus_mod.clear_cache()
    yield
    gpus_mod.clear_cache()


def test_nvidia_smi_lists_the_gpus_and_the_environment_narrows_them(tmp_path):
    path = _path_with(tmp_path, SMI)
    inv = detect_gpus({"PATH": path})
    assert (inv.ids, inv.source, inv.simulated) == (["0", "1", "2", "3"], "nvidia-smi", False)
    assert inv.gpus[0] == GPU("0", "NVIDIA H200", 143771, "GPU-aaa")
    assert inv.describe() == "4 GPUs (0,1,2,3): NVIDIA H200, 140 GiB each"
    # the app's own CUDA_VISIBLE_DEVICES: indices or UUIDs, in its order; CUDA stops at a bad id
    assert detect_gpus({"PATH": path, "CUDA_VISIBLE_DEVICES": "3,GPU-bbb"}).ids == ["3", "1"]
    assert detect_gpus({"PATH": path, "CUDA_VISIBLE_DEVICES": "2,-1,0"}).ids == ["2"]
    assert detect_gpus({"PATH": path, "CUDA_VISIBLE_DEVICES": ""}).ids == []
    # LRBENCH_GPUS wins, and must name GPUs that exist
    assert detect_gpus({"PATH": path, "LRBENCH_GPUS": "3,1", "CUDA_VISIBLE_DEVICES": "0"}).ids == ["3", "1"]
    with pytest.raises(GpuError, match="names GPU 7, but nvidia-smi lists only 0,1,2,3"):
        detect_gpus({"PATH": path, "LRBENCH_GPUS": "1,7"})


def test_no_or_broken_nvidia_smi_means_no_gpu_and_lrbench_gpus_simulates_them(tmp_path, monkeypatch):
    assert detect_gpus({"PATH": _path_with(tmp_path / "a", None)}) == GpuInventory()
    assert detect_gpus({"PATH": _path_with(tmp_path / "b", "#!/bin/sh\necho 'NVIDIA-SMI has failed' ; exit 9\n")}).ids == []
    monkeypatch.setattr(gpus_mod, "NVIDIA_SMI_TIMEOUT", 0.2)
    assert detect_gpus({"PATH": _path_with(tmp_path / "c", "#!/bin/sh\nsleep 30\n")}).ids == []  # a hung driver
    sim = detect_gpus({"PATH": _path_with(tmp_path / "a", None), "LRBENCH_GPUS": "0, 1,2,3,"})
    assert (sim.ids, sim.source, sim.simulated) == (["0", "1", "2", "3"], "LRBENCH_GPUS", True)
    assert "simulated" in sim.describe() and GpuInventory().describe(3) == "no GPU: 3 CPU workers"
    for bad, says in (("0,x", "not a GPU index: 'x'"), ("1,1", "lists GPU 1 twice"), (",", "expected GPU indices")):
        with pytest.raises(GpuError, match=says):
            detect_gpus({"PATH": "", "LRBENCH_GPUS": bad})


def test_slots_are_disjoint_groups_and_parallel_never_shares_a_gpu():
    assert gpu_slots(["0", "1", "2", "3"]) == ["0", "1", "2", "3"]
    assert gpu_slots(["0", "1", "2", "3", "4"], 2) == ["0,1", "2,3"]  # the fifth waits idle
    with pytest.raises(GpuError, match="3 GPUs per trial, but this machine has 2 GPUs"):
        gpu_slots(["0", "1"], 3)
    with pytest.raises(GpuError, match="whole number"):
        gpu_slots(["0", "1"], 0.5)
    four = GpuInventory(tuple(GPU(str(i)) for i in range(4)), "nvidia-smi")
    plan = plan_slots(four)
    assert (plan.slots, plan.parallel, plan.warning) == (["0", "1", "2", "3"], 4, None)
    assert plan.text == "4 GPUs (0,1,2,3), 1 per trial: 4 trials at a time"
    capped = plan_slots(four, per_trial=2, parallel=8)
    assert capped.slots == ["0,1", "2,3"] and capped.parallel == 2 and "never two on one GPU" in capped.warning
    assert plan_slots(four, parallel=2).slots == ["0", "1"]
    assert plan_slots(four, device="cpu", parallel=3).slots == 3  # CPU workers, GPUs unused
    assert plan_slots(GpuInventory(), parallel=2).slots == 2


def test_flags_a_choice_would_ignore_are_named():
    ok = placement_problem
    assert ok(trainer="deepspeed", per_trial=2, zero_stage=3, deepspeed_config={}) is None
    assert ok(scheduler="ray", per_trial=0.5) is None
    assert "add --trainer deepspeed" in ok(zero_stage=0)
    assert "add --trainer deepspeed" in ok(deepspeed_config={"zero_optimization": {}})
    assert "torch trainer" in ok(per_trial=2)
    assert "--device cpu" in ok(per_trial=1, device="cpu")
    assert "--scheduler ray" in ok(trainer="deepspeed", per_trial=1.5)


def test_a_trial_on_gpus_gets_them_and_records_them(tmp_path, gpu_host):
    torch_trial = load_trial(TRIAL)
    env = trial_env(torch_trial, "2")
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert trial_resources(torch_trial, "2")["gpus"] == [2]
    assert trial_resources(torch_trial, None) == {"gpus": [], "host": trial_resources(torch_trial, None)["host"],
                                                  "launcher_include": None}
    ds = load_trial({**TRIAL, "backend": "deepspeed", "deepspeed": {"num_gpus": 2}})
    cmd = trainer_command(ds, tmp_path / "trial.json", "2,3")
    assert cmd[1:3] == ["--include", "localhost:2,3"] and "--num_gpus" not in cmd
    assert "CUDA_VISIBLE_DEVICES" not in trial_env(ds, "2,3")  # the launcher sets it for each rank
    assert trial_resources(ds, "2,3")["launcher_include"] == "localhost:2,3"
    assert launcher_include(ds, "2") is None and launcher_include(torch_trial, "2,3") is None


def test_simulated_gpus_keep_the_rank_count_for_the_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_with(tmp_path, None) + ":" + str(Path(sys.executable).parent))
    gpus_mod.clear_cache()
    ds = load_trial({**TRIAL, "backend": "deepspeed", "deepspeed": {"num_gpus": 2}})
    cmd = trainer_command(ds, tmp_path / "trial.json", "2,3")
    assert cmd[1:3] == ["--num_gpus", "2"]  # the launcher would refuse GPUs it cannot see
    assert trial_env(ds, "2,3")["CUDA_VISIBLE_DEVICES"] == "2,3"
    gpus_mod.clear_cache()


def test_a_gpu_held_by_a_running_trial_is_never_placed_again_when_the_slots_change():
    q: SlotQueue[str] = SlotQueue(["0", "1", "2", "3"])
    a, b, c = (load_trial({**TRIAL, "seed": i}) for i in range(3))
    q.submit(a)
    q.submit(b)
    q.place()  # a generator: nothing placed until read
    first = list(q.place())
    assert [p.gpus for p in first] == ["0", "1"]
    q.finished(a.trial_id)  # GPU 0 is free again, GPU 1 still held by b
    q.set_slots(["0,1", "2,3"])  # a study with 2 GPUs per trial takes over the queue
    q.submit(c)
    (placed,) = q.place()
    assert placed.gpus == "2,3" and q.slot_of(b.trial_id) == (1, "1")


def test_resources_are_validated_stored_exported_and_imported(tmp_path):
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.db.validate import FieldError, normalize_record
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    base = {"id": "t-gpu", "task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.1}},
            "status": "completed"}
    plain = normalize_record("trials", base, reg).record
    assert "resources" not in plain  # a record without it keeps the hash it always had
    res = {"gpus": [2, 3], "host": "node7", "launcher_include": "localhost:2,3"}
    rec = normalize_record("trials", {**base, "resources": res}, reg).record
    assert rec["resources"] == res and rec["hash"] != plain["hash"]
    for bad, where in (({"gpus": [-1]}, "resources.gpus[0]"), ({"gpus": "0,1"}, "resources.gpus"),
                       ({"gpus": list(range(1025))}, "resources.gpus"), ({"cores": 4}, "resources"),
                       ({"launcher_include": 3}, "resources.launcher_include")):
        with pytest.raises(FieldError) as err:
            normalize_record("trials", {**base, "resources": bad}, reg)
        assert err.value.args and where in str(err.value)
    db = PolicyDB(tmp_path / "a.json", registry=reg)
    assert db.add_trial_or_recover({**base, "resources": res}).ok
    export = tmp_path / "out.json"
    db.export(export)
    other = PolicyDB(tmp_path / "b.json", registry=reg)
    other.import_file(export)
    assert other.get("t-gpu", "trials")["resources"] == res


def _cli(argv, capsys):
    from lrbench_gui.cli import main

    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


def test_the_cli_refuses_flags_its_choices_ignore_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LRBENCH_GPUS", "0,1")
    (tmp_path / "list.json").write_text("[1, 2]")
    cases = [
        (["run", "--task", "digits-mlp", "--policy", "fixed", "--steps", "2", "--zero-stage", "2"], "add --trainer deepspeed"),
        (["run", "--task", "digits-mlp", "--policy", "fixed", "--steps", "2", "--gpus", "2"], "torch trainer"),
        (["tune", "--task", "digits-mlp", "--gpus-per-trial", "1", "--device", "cpu"], "--device cpu"),
        (["tune", "--task", "digits-mlp", "--trainer", "deepspeed", "--gpus-per-trial", "0.5"], "--scheduler ray"),
        (["tune", "--task", "digits-mlp", "--trainer", "deepspeed", "--gpus-per-trial", "3"], "this machine has 2 GPUs"),
        (["tune", "--task", "digits-mlp", "--trainer", "deepspeed", "--deepspeed-config", str(tmp_path / "list.json")],
         "must be a JSON object"),
        (["study", "random", "--task", "digits-mlp", "--deepspeed-config", str(tmp_path / "list.json")],
         "add --trainer deepspeed"),
    ]
    for argv, says in cases:
        status, out, err = _cli(argv, capsys)
        assert status == 2 and not out, argv
        assert err.count("\n") == 1 and err.startswith("lrbench: error: ") and says in err, (argv, err)


def test_trainer_flags_reach_the_study_and_the_command_line_round_trips(tmp_path, monkeypatch):
    from lrbench_gui.cli.study import config_from_argv
    from lrbench_gui.cli.tune import PRECISIONS
    from lrbench_gui.core.runs.trial import TrialConfig
    from lrbench_gui.core.tuning import kinds
    from lrbench_gui.plugins import get_registry

    assert PRECISIONS == tuple(TrialConfig.model_fields["precision"].annotation.__args__)
    monkeypatch.setenv("LRBENCH_GPUS", "0,1,2,3")
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}))
    reg = get_registry()
    cfg = config_from_argv(reg, "random", ["--task", "digits-mlp", "--trainer", "deepspeed", "--gpus-per-trial", "2",
                                           "--precision", "bf16-mixed", "--grad-accum", "4", "--zero-stage", "2",
                                           "--deepspeed-config", str(ds)])
    assert (cfg.trial_backend, cfg.gpus_per_trial, cfg.precision, cfg.grad_accum, cfg.zero_stage) == (
        "deepspeed", 2, "bf16-mixed", 4, 2)
    assert cfg.parallel == 2  # four GPUs, two per trial
    assert cfg.deepspeed_config["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}
    line = kinds.command_line(reg.tuner("random"), cfg.tuner_params, cfg.model_dump())
    assert "--trainer deepspeed --gpus-per-trial 2" in line and "--precision bf16-mixed" in line
    again = config_from_argv(reg, "random", __import__("shlex").split(line)[3:])
    assert (again.trial_backend, again.gpus_per_trial, again.precision, again.grad_accum, again.parallel) == (
        "deepspeed", 2, "bf16-mixed", 4, 2)


def _max_overlap(records):
    """The most trials alive at once, from each record's start and wall time."""
    marks = sorted([(r["extra"]["started"], 1) for r in records] +
                   [(r["extra"]["started"] + r["extra"]["wall_seconds"], -1) for r in records], key=lambda m: (m[0], m[1]))
    alive = best = 0
    for _, d in marks:
        alive += d
        best = max(best, alive)
    return best


def _overlapping_pairs(records):
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            a0, b0 = a["extra"]["started"], b["extra"]["started"]
            if a0 < b0 + b["extra"]["wall_seconds"] and b0 < a0 + a["extra"]["wall_seconds"]:
                yield a, b


def _trials(db_path):
    return list(json.loads(Path(db_path).read_text())["trials"].values())


def test_tune_runs_one_trial_per_simulated_gpu_four_at_a_time(lrbench_env, capsys, monkeypatch):
    monkeypatch.setenv("LRBENCH_GPUS", "0,1,2,3")
    status, _, err = _cli(["tune", "--task", "digits-mlp", "--tuner", "random", "--trials", "8",
                           "--policies", "cosine,fixed", "--budget-steps", "2", "--parallel", "6"], capsys)
    assert status == 0, err
    assert "4 GPUs (0,1,2,3), 1 per trial: 4 trials at a time" in err
    assert "6 trials at a time asked" in err and "never two on one GPU" in err  # --parallel 6 was capped
    trials = _trials(lrbench_env["db"])
    assert len(trials) == 8 and all(t["status"] in ("completed", "diverged") for t in trials)
    assert all(len(t["resources"]["gpus"]) == 1 and t["resources"]["launcher_include"] is None for t in trials)
    assert _max_overlap(trials) == 4
    first = sorted(trials, key=lambda t: t["extra"]["started"])[:4]
    assert sorted(t["resources"]["gpus"][0] for t in first) == [0, 1, 2, 3]
    assert all(a["resources"]["gpus"] != b["resources"]["gpus"] for a, b in _overlapping_pairs(trials))
    assert {t["extra"]["device"] for t in trials} == {"cpu"}  # simulated GPUs: they trained on the CPU


def test_deepspeed_trials_get_two_disjoint_pairs_with_the_launcher_include(lrbench_env, capsys, monkeypatch):
    monkeypatch.setenv("LRBENCH_GPUS", "0,1,2,3")
    status, _, err = _cli(["tune", "--task", "digits-mlp", "--tuner", "random", "--trials", "2",
                           "--policies", "fixed", "--budget-steps", "2", "--trainer", "deepspeed",
                           "--gpus-per-trial", "2"], capsys)
    assert status == 0, err
    assert "2 per trial: 2 trials at a time" in err
    trials = _trials(lrbench_env["db"])
    assert len(trials) == 2 and {t["status"] for t in trials} <= {"completed", "diverged"}, [t["notes"] for t in trials]
    pairs = sorted(tuple(t["resources"]["gpus"]) for t in trials)
    assert pairs == [(0, 1), (2, 3)]
    assert sorted(t["resources"]["launcher_include"] for t in trials) == ["localhost:0,1", "localhost:2,3"]
    assert {t["extra"]["world_size"] for t in trials} == {2}  # two ranks each
    assert {t["extra"]["samples"] for t in trials} == {2 * 32 * 2} and {t["cost"]["steps"] for t in trials} == {2}
    from lrbench_gui.core.records import curve_points

    for t in trials:  # rank 0 alone writes: no duplicated or interleaved step lines, one end event
        assert [s for s, _ in curve_points(t["curves"]["loss"])] == [0, 1], t["curves"]["loss"]
        assert "second end event" not in (t["notes"] or "")
    assert _max_overlap(trials) == 2


def test_a_ray_trial_reports_the_gpus_ray_gave_it_into_its_record():
    import queue

    from lrbench_gui.core.runs.ray_backend import RayScheduler, assigned_gpus
    from lrbench_gui.core.runs.recorder import TrialRecorder
    from lrbench_gui.core.tuning.study import StudyConfig

    assert assigned_gpus() is None  # not on a Ray worker: no GPU given
    cfg = load_trial(TRIAL)
    sched = RayScheduler(StudyConfig(task="digits-mlp", backend="ray", gpus_per_trial=0.5))
    sched.recorders[cfg.trial_id] = TrialRecorder(cfg)
    events: queue.Queue = queue.Queue()
    events.put((cfg.trial_id, "resources", trial_resources(cfg, "1")))  # as ray_trial sends it from the worker
    sched._drain(events)
    assert sched.recorders[cfg.trial_id].record()["resources"]["gpus"] == [1]
