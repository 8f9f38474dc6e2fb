"""FollowPolicy feeds a reactive policy in a real Hugging Face Trainer (CPU, a tiny model):
``reduce_on_plateau`` watching ``val_loss`` reduces the LR right after an evaluation that did not
improve, as torch's ReduceLROnPlateau fed the same evaluations does, the step line of the first
step with the reduced LR carries the switch, and a run resumed from a checkpoint continues with the
same LRs (the observations travel in HF's trainer_state.json)."""

from __future__ import annotations

import json

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from lrbench_gui import report
from lrbench_gui.core.runs.protocol import parse_line
from lrbench_gui.core.runs.trial import Budget, TrialConfig, write_trial
from lrbench_gui.integrations.hf import FollowPolicy, LrbenchCallback, _lrbench_names

STEPS, EVERY = 12, 2
RULE = {"mode": "min", "threshold_mode": "rel", "threshold": 1e-4, "patience": 0, "cooldown": 0, "factor": 0.5,
        "min_lr": 0.0, "eps": 1e-8}
SPEC = {"name": "reduce_on_plateau", "params": {"lr": 1.0, "monitor": "val_loss", **RULE}}


class Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.linear(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


def data(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return [{"x": x[i], "labels": y[i]} for i in range(n)]


class Seen(TrainerCallback):
    """The LR each optimizer step applied, and each evaluation's (global_step, eval_loss)."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.evals: list[tuple[int, float]] = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evals.append((state.global_step, float(metrics["eval_loss"])))


def test_reduce_on_plateau_follows_torchs_rule_on_the_trainers_evaluations(tmp_path, monkeypatch, registry):
    folder = tmp_path / "trial-hfp"
    write_trial(TrialConfig(trial_id="hfp", task="command", policy=SPEC, budget=Budget(steps=STEPS)),
                folder / "trial.json")
    monkeypatch.setenv("LRBENCH_TRIAL", str(folder / "trial.json"))
    monkeypatch.setenv("LRBENCH_REPORT", str(folder / "report.jsonl"))
    monkeypatch.setenv("LRBENCH_STOP", str(folder / "stop"))
    monkeypatch.setenv("LRBENCH_TRIAL_ID", "hfp")
    seen, follow = Seen(), FollowPolicy()
    torch.manual_seed(0)  # the model's first weights: at LR 1 AdamW overshoots, val_loss rises, then falls
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=1.0,
        logging_steps=1, report_to=[], save_strategy="steps", save_steps=STEPS // 2, eval_strategy="steps",
        eval_steps=EVERY, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    try:
        Trainer(model=Regressor(), args=args, train_dataset=data(64), eval_dataset=data(16),
                callbacks=[LrbenchCallback(), follow, seen]).train()
    finally:
        report._close()

    # torch's ReduceLROnPlateau, stepped with each evaluation's eval_loss after the step it followed
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **RULE)
    evals = dict(seen.evals)
    expected = []
    for k in range(STEPS):
        expected.append(opt.param_groups[0]["lr"])
        if k + 1 in evals:
            ref.step(evals[k + 1])
    assert len(seen.lrs) == STEPS and max(abs(a - b) for a, b in zip(seen.lrs, expected)) <= 1e-12
    values = [v for _, v in sorted(evals.items())]
    worse = [i for i in range(1, len(values) - 1) if not values[i] < min(values[:i]) * (1 - RULE["threshold"])]
    better = [i for i in range(1, len(values) - 1) if i not in worse]
    assert worse and better, values  # both kinds of evaluation happened: the comparison means something
    for i in worse:  # reduced at the first step after the evaluation, not before
        step = EVERY * (i + 1)
        assert seen.lrs[step] < seen.lrs[step - 1]
    for i in better:
        step = EVERY * (i + 1)
        assert seen.lrs[step] == seen.lrs[step - 1]

    # the switches: where the LR changed, and on the step lines of those steps
    changed = [k for k in range(1, STEPS) if seen.lrs[k] != seen.lrs[k - 1]]
    assert [s["step"] for s in follow.switches] == changed
    lines = [parse_line(t) for t in (folder / "report.jsonl").read_text().splitlines()]
    steps = [ln for ln in lines if ln and ln.type == "step"]
    marked = [ln["step"] for ln in steps if ln.get("switch")]
    assert marked == changed and all("plateau" in ln["switch"] for ln in steps if ln.get("switch"))

    # resumed halfway (outside lrbench, the spec given): the second half's LRs and the switches are the same
    for name in ("LRBENCH_TRIAL", "LRBENCH_REPORT", "LRBENCH_STOP", "LRBENCH_TRIAL_ID"):
        monkeypatch.delenv(name)
    again, follow2 = Seen(), FollowPolicy(SPEC, total_steps=STEPS)
    Trainer(model=Regressor(), args=args, train_dataset=data(64), eval_dataset=data(16),
            callbacks=[follow2, again]).train(resume_from_checkpoint=str(tmp_path / "hf" / f"checkpoint-{STEPS // 2}"))
    assert again.lrs == seen.lrs[STEPS // 2:] and follow2.switches == follow.switches


class Logged(TrainerCallback):
    """The train loss HF logged after each global step."""

    def __init__(self) -> None:
        self.loss: dict[int, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            self.loss[state.global_step] = logs["loss"]


def test_the_logged_train_loss_is_what_a_loss_monitor_observes(tmp_path):
    spec = {"name": "reduce_on_plateau", "params": {"lr": 0.3, "monitor": "loss", "every": 2, "smoothing": 0.0,
                                                    **RULE}}
    seen, logged = Seen(), Logged()
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=8,
                             logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    torch.manual_seed(0)
    Trainer(model=Regressor(), args=args, train_dataset=data(64), callbacks=[FollowPolicy(spec), seen, logged]).train()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **RULE)
    expected = []
    for k in range(STEPS):
        expected.append(opt.param_groups[0]["lr"])
        if (k + 1) % 2 == 0:  # every 2 steps, the raw loss (smoothing 0)
            ref.step(logged.loss[k + 1])
    assert seen.lrs == expected and len(set(expected)) > 1


def test_eval_metrics_get_lrbenchs_names():
    names = _lrbench_names({"eval_loss": 0.5, "eval_accuracy": 0.9, "epoch": 1, "eval_flag": True, "eval_x": "s"})
    assert names == {"eval_loss": 0.5, "val_loss": 0.5, "eval_accuracy": 0.9, "accuracy": 0.9, "epoch": 1.0}
