"""Warm workers: trials of a study reuse one trainer process per slot, and train exactly as in a
fresh process. Real workers and real trainers: a digits run that is cancelled, killed and
replaced on one slot, and a LoRA fine-tune of a tiny Llama whose base model stays loaded."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from lrbench_gui.core.runs.runner import LocalScheduler
from lrbench_gui.core.runs.trial import load_trial
from lrbench_gui.core.runs.warm import warm_key
from lrbench_gui.core.tuning.study import EXECUTION_FIELDS, StudyConfig, resume_config


def trial(trial_id, task="digits-mlp", steps=12, lr=0.01, seed=0, **extra):
    return load_trial({"trial_id": trial_id, "task": task, "policy": {"name": "cosine", "params": {"lr": lr}},
                       "budget": {"steps": steps}, "batch_size": 16, "eval_every": 6, "seed": seed, "threads": 1,
                       **extra})


def same_training(a, b):
    """Two records of one trial config: the same curves and metrics, to the last bit."""
    assert a["status"] == b["status"] == "completed", (a["notes"], b["notes"])
    assert a["curves"] == b["curves"]
    assert a["metrics"] == b["metrics"]


def run(scheduler, *configs):
    for cfg in configs:
        scheduler.submit(cfg)
    return scheduler.run()


def side_by_side(warm, warm_trials, fresh, fresh_trials):
    """Run the warm and the fresh scheduler at once (their start-ups overlap on two cores)."""
    with ThreadPoolExecutor(1) as pool:
        fresh_records = pool.submit(run, fresh, *fresh_trials)
        return run(warm, *warm_trials), fresh_records.result()


def test_a_warm_slot_survives_a_cancel_and_a_killed_worker_and_trains_as_a_fresh_process(tmp_path, registry):
    hellos: dict[str, dict] = {}

    def on_event(trial_id, event):
        if event.type == "hello":
            hellos[trial_id] = event.data
        if event.type == "step" and trial_id == "cancelled":
            return False  # the study prunes it at its first step
        if event.type == "step" and trial_id == "killed" and event["step"] == 1:
            os.kill(hellos[trial_id]["pid"], signal.SIGKILL)  # the worker crashes under its trial
        return True

    warm = LocalScheduler(1, workdir=tmp_path / "warm", on_event=on_event, registry=registry, warm=True)
    records, fresh = side_by_side(
        warm, [trial("other", lr=0.03, seed=7), trial("cancelled", steps=10**6), trial("same"),
               trial("killed", steps=10**6), trial("after")],
        LocalScheduler(1, workdir=tmp_path / "fresh", registry=registry), [trial("same")])

    same_training(records["same"], fresh["same"])
    assert records["cancelled"]["status"] == "stopped" and records["cancelled"]["cost"]["steps"] < 10**6
    assert records["killed"]["status"] == "failed"
    assert "killed by signal 9" in records["killed"]["notes"]
    assert records["after"]["status"] == "completed"
    # one worker ran the first three trials; the crash cost one worker, and the slot got a new one
    pids = {t: h["pid"] for t, h in hellos.items()}
    assert pids["other"] == pids["cancelled"] == pids["same"] == pids["killed"] != pids["after"]
    assert warm.pool.started == 2 and warm.pool.workers == {}  # closed when run() returned


def test_ctrl_c_stops_the_warm_trials_and_closes_their_workers(tmp_path, registry):
    pids = []

    def on_event(trial_id, event):
        if event.type == "hello":
            pids.append(event["pid"])
        if event.type == "step" and event["step"] == 3:
            raise KeyboardInterrupt  # as the driver's loop sees a Ctrl-C

    sched = LocalScheduler(1, workdir=tmp_path, on_event=on_event, registry=registry, warm=True)
    sched.submit(trial("long", steps=10**6))
    sched.submit(trial("queued"))
    with pytest.raises(KeyboardInterrupt):
        sched.run()
    sched.cancel_all()  # what run_study does next
    records = sched.run()
    assert records["long"]["status"] == records["queued"]["status"] == "stopped"
    assert 3 <= records["long"]["cost"]["steps"] < 10**6
    with pytest.raises(ProcessLookupError):  # the worker is gone, not left training
        os.kill(pids[0], 0)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """An untrained tinylm saved as a Hugging Face folder, and instruction records to tune it on."""
    import torch

    from lrbench_builtins.tasks import _corpus
    from lrbench_builtins.tasks.tinylm import TinyLMPretrain
    from lrbench_gui.core.params import validate_params
    from lrbench_gui.core.task import TaskContext

    folder = tmp_path_factory.mktemp("warm-lora")
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {"context": 64, "val_tokens": 1024}))
    task.save_model(task.setup(TaskContext(0, torch.device("cpu"), 4, log=lambda *a: None)), folder / "model")
    data = folder / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 120)))
    return {"model_path": str(folder / "model"), "data_path": str(data), "max_length": 96,
            "template": "alpaca-short", "lora_dropout": 0.1}


def test_lora_trials_on_a_warm_worker_match_a_fresh_process(tiny_base, tmp_path, registry):
    def lora(trial_id, seed, lr, **params):
        return trial(trial_id, task="causal-lm-finetune", steps=6, lr=lr, seed=seed, batch_size=4,
                     task_params={**tiny_base, **params})

    pids: dict[str, int] = {}
    on_event = lambda tid, e: pids.setdefault(tid, e["pid"]) if e.type == "hello" else None  # noqa: E731
    warm = LocalScheduler(1, workdir=tmp_path / "warm", on_event=on_event, registry=registry, warm=True)
    records, fresh = side_by_side(warm, [lora("first", 3, 1e-2, lora_r=4), lora("second", 0, 3e-3)],
                                  LocalScheduler(1, workdir=tmp_path / "fresh", registry=registry),
                                  [lora("second", 0, 3e-3)])
    same_training(records["second"], fresh["second"])
    assert records["first"]["curves"]["loss"] != records["second"]["curves"]["loss"]
    assert pids["first"] == pids["second"] and warm.pool.started == 1


def trial_with(registry, task, **params):
    return warm_key(trial("k", task=task, task_params=params), registry)


def test_only_tasks_that_opt_in_run_warm(registry, tiny_base):
    from lrbench_gui.core.params import Params as NoParams
    from lrbench_gui.core.registry import Registry
    from lrbench_gui.core.task import Task

    assert trial_with(registry, "digits-mlp") == ("digits-mlp", 1)
    assert trial_with(registry, "tinylm-pretrain") is not None
    assert trial_with(registry, "causal-lm-finetune", **tiny_base) is not None
    # a full fine-tune changes the base: a fresh process; so do DeepSpeed, merges and commands
    assert trial_with(registry, "causal-lm-finetune", **{**tiny_base, "lora": False}) is None
    assert warm_key(trial("k", backend="deepspeed"), registry) is None
    merge = {"later": "a.safetensors", "earlier": "b.safetensors", "weight": 0.5}
    assert warm_key(trial("k", merge=merge), registry) is None
    assert warm_key(trial("k", command=["python", "train.py"]), registry) is None
    assert warm_key(trial("k"), None) is None

    class ThirdParty(Task):  # a plugin written before warm workers existed: fresh processes
        name = "third-party"
        Params = NoParams

        def setup(self, ctx): ...
        def train_batches(self): ...
        def loss(self, model, batch): ...
        def evaluate(self, model): ...

    reg = Registry()
    reg.add("task", ThirdParty, "test", __name__)
    assert warm_key(trial("k", task="third-party"), reg) is None


def test_warm_is_an_execution_setting_with_a_cli_switch():
    from lrbench_gui.cli import build_parser

    assert StudyConfig(task="digits-mlp").warm is True and "warm" in EXECUTION_FIELDS
    stored = {"id": "s", "extra": {"config": StudyConfig(task="digits-mlp", warm=False).model_dump()}}
    assert resume_config(stored).warm is True  # this machine's setting, never the record's
    assert build_parser().parse_args(["tune", "--task", "digits-mlp", "--no-warm"]).warm is False
    assert build_parser().parse_args(["tune", "--task", "digits-mlp"]).warm is True


def test_the_task_contract_catches_a_task_that_keeps_its_trained_model_warm():
    from lrbench_gui.core.params import Params as NoParams
    from lrbench_gui.core.task import Task
    from lrbench_gui.testing import ContractError, check_task_warm

    class KeepsItsModel(Task):
        name = "keeps-its-model"
        Params = NoParams

        @classmethod
        def warm_reuse(cls, params):
            return True

        def setup(self, ctx):
            import torch

            self.x = torch.randn(64, 4, generator=torch.Generator().manual_seed(ctx.seed))
            if "model" not in ctx.cache:  # wrong: the trained weights are handed to the next trial
                ctx.cache["model"] = torch.nn.Linear(4, 1)
            return ctx.cache["model"]

        def train_batches(self):
            while True:
                yield self.x

        def loss(self, model, batch):
            return (model(batch) - batch.sum(1, keepdim=True)).pow(2).mean(), {"samples": len(batch)}

        def evaluate(self, model):
            return {"val_loss": float(self.loss(model, self.x)[0])}

    with pytest.raises(ContractError, match="warm run .* gave the losses"):
        check_task_warm(KeepsItsModel, steps=3, lr=0.1)


def test_a_trial_that_fails_mid_run_drops_the_workers_cache(tmp_path, registry):
    """A trial that raises never hands back what it took from the cache (a LoRA base still wearing
    its adapters): the worker forgets the cache, so the next trial loads afresh."""
    from lrbench_gui.core.runs.trial import write_trial
    from lrbench_gui.trainer.run import Emitter, run_file

    # exp with a huge gamma: a finite LR at step 0, an overflow a few steps in (a ScheduleError)
    bad = load_trial({"task": "digits-mlp", "policy": {"name": "exp", "params": {"lr": 0.01, "gamma": 1e200}},
                      "budget": {"steps": 5}, "output_dir": str(tmp_path)})
    cache = {"digits-mlp": "what the task kept"}
    with open(os.devnull, "w") as sink:
        out = Emitter(bad.trial_id, stream=sink)
        assert run_file(str(write_trial(bad, tmp_path / "trial.json")), registry, out, cache) == 1
    assert cache == {} and any("cached model and data are dropped" in line for line in out.tail)
