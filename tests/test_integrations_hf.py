"""lrbench_gui.integrations.hf in a real Hugging Face Trainer on CPU (a tiny model, no downloads):
FollowPolicy makes the policy the LR the optimizer applies at every step, also when the
trainer builds a new model and optimizer per run (``model_init``, ``hyperparameter_search``);
LrbenchCallback writes the protocol lines to the report file and stops training on the stop file."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from lrbench_gui import report
from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.trial import Budget, TrialConfig, write_trial
from lrbench_gui.integrations import build_schedule
from lrbench_gui.integrations.hf import FollowPolicy, LrbenchCallback

STEPS = 12
SPEC = {
    "sequence": [
        {"name": "warmup", "params": {"warmup_max_lr": 0.05, "warmup_num_steps": 3, "warmup_type": "linear"}},
        {"name": "cosine", "params": {"lr": 0.05}},
    ],
    "boundaries": [3],
}


class Regressor(torch.nn.Module):
    """A stand-in for the user's model: the Trainer only needs a forward that returns a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.linear(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


def data(n: int = 64) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return [{"x": x[i], "labels": y[i]} for i in range(n)]


class AppliedLR(TrainerCallback):
    """The LR each optimizer step used: read right after ``optimizer.step()``, keyed by run."""

    def __init__(self) -> None:
        self.runs: list[list[float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.runs.append([])

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.runs[-1].append(optimizer.param_groups[0]["lr"])


class StopAfter(TrainerCallback):
    """Plays the runner: creates the stop file once ``step`` optimizer steps are done."""

    def __init__(self, stop_file, step: int) -> None:
        self.stop_file, self.step = stop_file, step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.stop_file.write_text("")


def arguments(tmp_path, eval_steps: int = 6) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=1.0,
        logging_steps=1, report_to=[], save_strategy="no", eval_strategy="steps", eval_steps=eval_steps,
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)


@pytest.fixture
def trial_env(tmp_path, monkeypatch):
    folder = tmp_path / "trial-hf1"
    write_trial(TrialConfig(trial_id="hf1", task="command", policy=SPEC, budget=Budget(steps=STEPS)),
                folder / "trial.json")
    paths = {"report": folder / "report.jsonl", "stop": folder / "stop"}
    monkeypatch.setenv("LRBENCH_TRIAL", str(folder / "trial.json"))
    monkeypatch.setenv("LRBENCH_REPORT", str(paths["report"]))
    monkeypatch.setenv("LRBENCH_STOP", str(paths["stop"]))
    monkeypatch.setenv("LRBENCH_TRIAL_ID", "hf1")
    yield paths
    report._close()


def test_follow_policy_sets_the_applied_lr_at_every_step_without_lrbench(tmp_path, monkeypatch, registry):
    monkeypatch.delenv("LRBENCH_TRIAL", raising=False)
    applied = AppliedLR()
    trainer = Trainer(model=Regressor(), args=arguments(tmp_path), train_dataset=data(), eval_dataset=data(16),
                      callbacks=[FollowPolicy(SPEC), applied])
    trainer.train()
    assert applied.runs[0] == pytest.approx(build_schedule(SPEC, STEPS, registry).lrs(), rel=1e-12, abs=0)


def test_the_trial_policy_is_followed_and_reported_with_model_init(trial_env, tmp_path, registry):
    applied = AppliedLR()
    trainer = Trainer(model_init=Regressor, args=arguments(tmp_path), train_dataset=data(), eval_dataset=data(16),
                      callbacks=[LrbenchCallback(), FollowPolicy(), applied])
    trainer.train()
    trainer.train()  # model_init again: a new model and optimizer, still the policy's LR
    expected = build_schedule(SPEC, STEPS, registry).lrs()
    assert len(applied.runs) == 2 and all(run == pytest.approx(expected, rel=1e-12, abs=0) for run in applied.runs)

    events = [parse_line(line) for line in trial_env["report"].read_text().splitlines()]
    assert None not in events and {e.trial for e in events} == {"hf1"}
    steps = [e for e in events if e.type == "step"]
    assert [e["step"] for e in steps] == list(range(STEPS)) * 2
    assert [e["lr"] for e in steps[:STEPS]] == pytest.approx(expected, rel=1e-12, abs=0)
    assert all(e["loss"] > 0 for e in steps)
    evals = [e for e in events if e.type == "eval"]
    assert [e["step"] for e in evals] == [5, 11, 5, 11]  # the 0-based index of the last step done, as the trainer counts
    assert evals[0]["metrics"]["val_loss"] == evals[0]["metrics"]["eval_loss"] > 0


def test_a_stop_file_stops_training_early(trial_env, tmp_path):
    trainer = Trainer(model=Regressor(), args=arguments(tmp_path), train_dataset=data(), eval_dataset=data(16),
                      callbacks=[StopAfter(trial_env["stop"], 4), LrbenchCallback(), FollowPolicy()])
    trainer.train()
    assert trainer.state.global_step == 4
    steps = [json.loads(line) for line in trial_env["report"].read_text().splitlines()]
    assert [s["step"] for s in steps if s["type"] == "step"] == [0, 1, 2, 3]


def test_hyperparameter_search_follows_the_policy_in_every_trial(tmp_path, monkeypatch, registry):
    monkeypatch.delenv("LRBENCH_TRIAL", raising=False)
    applied = AppliedLR()
    trainer = Trainer(model_init=lambda trial=None: Regressor(), args=arguments(tmp_path, eval_steps=STEPS),
                      train_dataset=data(), eval_dataset=data(16), callbacks=[FollowPolicy(SPEC), applied])
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: {"weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1)},
        backend="optuna", n_trials=2, direction="minimize", compute_objective=lambda metrics: metrics["eval_loss"])
    assert best.objective > 0
    expected = build_schedule(SPEC, STEPS, registry).lrs()
    assert len(applied.runs) == 2 and all(run == pytest.approx(expected, rel=1e-12, abs=0) for run in applied.runs)
