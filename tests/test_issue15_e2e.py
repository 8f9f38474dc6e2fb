"""Issue 15's chain, end to end on the CPU: a tinylm model pre-trained and saved, fine-tuned with
LoRA on ``messages`` chats through its chat template with packing and a separate eval file, by a
``lrbench study halving`` over cosine and constant_warmup tuned for the multiple-choice
evaluator's ``mc_acc`` on the shipped ``builtin:tinylm-mc``; then the database, ``lrbench db
recommend --metric mc_acc``, the live mirrors the app follows (each trial's ``hello`` says what
was dropped and that the data came from the cache) and the trial records' objective."""

from __future__ import annotations

import json
import os
import shlex

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from lrbench_gui.cli import main  # noqa: E402
from lrbench_gui.core.params import validate_params  # noqa: E402
from lrbench_gui.core.runs.protocol import parse_line  # noqa: E402
from lrbench_gui.core.task import TaskContext  # noqa: E402

#: the pre-trained model: small, and a context the chats fit in
MODEL = {"n_layers": 1, "d_model": 64, "context": 64, "val_tokens": 1024}


def chats(seed: int, n: int) -> list[dict]:
    """``messages`` records from the corpus's instructions on a shifted version (2)."""
    from lrbench_builtins.tasks._corpus import instruction_records

    return [{"messages": [{"role": "user", "content": f"{r['instruction']}: {r['input']}"},
                          {"role": "assistant", "content": r["output"]}]}
            for r in instruction_records(seed, 2, n)]


@pytest.fixture
def pretrained(tmp_path):
    """A tinylm pre-trained 60 steps on one thread and saved with ``save_model``; chat data with
    two records that do not fit ``max_length`` 128, and a separate chat eval file."""
    from lrbench_builtins.tasks.tinylm import TinyLMPretrain

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, MODEL))
        model = task.setup(TaskContext(seed=0, device=torch.device("cpu"), batch_size=32, log=lambda *a: None))
        opt = torch.optim.AdamW(model.parameters(), lr=2e-2, betas=(0.9, 0.95), weight_decay=0.1)
        batches = task.train_batches()
        for _ in range(60):
            loss, _ = task.loss(model, next(batches))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        task.save_model(model, tmp_path / "model")
    finally:
        torch.set_num_threads(before)
    long = [{"messages": [{"role": "user", "content": "compute: " + "1+" * 70 + "1"},
                          {"role": "assistant", "content": "71"}]}] * 2
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in chats(1, 48) + long))
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in chats(2, 12)))
    return tmp_path


def test_a_halving_study_tunes_a_chat_finetune_for_mc_acc_end_to_end(pretrained, lrbench_env, capsys):
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.runs.live import scan

    argv = ["study", "halving", "--task", "causal-lm-finetune",
            "--set", f"task.model_path={pretrained / 'model'}", "--set", f"task.data_path={pretrained / 'chat.jsonl'}",
            "--set", f"task.eval_path={pretrained / 'eval.jsonl'}", "--set", "task.packing=true",
            "--set", "task.max_length=128", "--set", "task.truncation=drop", "--set", "task.lora_r=4",
            "--policies", "cosine,constant_warmup", "--n", "3", "--eta", "3", "--min-fraction", "0.333",
            "--budget-steps", "12", "--trials", "2", "--batch-size", "4", "--parallel", "1", "--seed", "3",
            "--evaluator", "multiple-choice:path=builtin:tinylm-mc,limit=40", "--metric", "mc_acc", "--json"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    # the records the data lost are said once, in one line, and kept in every trial's record
    warning = ("lrbench: warning: data: 2 of 62 records dropped and 0 truncated at the task's max_length "
               "(the trial's log says why): raise max_length to keep them")
    assert err.count("lrbench: warning: data:") == 1 and warning in err.splitlines()
    study_id = summary["study"]

    db = PolicyDB(lrbench_env["db"])
    (study,) = db.studies()
    assert study["objective"] == {"metric": "mc_acc", "mode": "max"}
    assert study["extra"]["config"]["evaluators"] == [
        {"name": "multiple-choice", "params": {"path": "builtin:tinylm-mc", "limit": 40}}]
    trials = db.trials(study=study_id)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"completed"}, [t["notes"] for t in trials]
    assert {t["policy"]["name"] for t in trials} <= {"cosine", "constant_warmup"}
    assert sorted(t["cost"]["steps"] for t in trials) == [4, 4, 4, 12]  # three on the bottom rung, one promoted
    for t in trials:
        # the study's objective on every trial, not the task's val_loss; the metric and its curve stored
        assert t["objective"] == {"metric": "mc_acc", "mode": "max"}
        assert 0 <= t["metrics"]["mc_acc"] <= 1 and "val_loss" in t["metrics"]
        assert "eval/mc_acc" in t["curves"] and t["cost"]["eval_seconds"] > 0
        assert t["task_params"]["packing"] is True
        assert t["extra"]["data"]["dropped"] == 2 and warning.removeprefix("lrbench: warning: ") in t["notes"]
    # the study says how much of its trials' time went to evaluating
    s = summary  # lrbench study --json: the summary's fields at the top level
    assert s["eval_seconds"] == pytest.approx(sum(t["cost"]["eval_seconds"] for t in trials), abs=0.01)
    assert 0 < s["eval_share"] < 1 and s["train_seconds"] > 0

    # each trial's hello, as mirrored into the live folder the app follows: the chat template, the
    # packed rows, the two dropped records; every trial after the first read the tokenized cache
    hellos = {}
    for entry in scan():
        if entry.meta.get("study") == study_id or entry.trial_id.startswith(study_id):
            events = [e for e in map(parse_line, entry.lines.read_text().splitlines()) if e is not None]
            hellos[entry.trial_id] = next(e for e in events if e.type == "hello")
            assert any(e.type == "eval" and "mc_acc" in e["metrics"] for e in events)
    assert set(hellos) == {t["id"] for t in trials}
    order = sorted(trials, key=lambda t: t["extra"]["ask_index"])
    data = [hellos[t["id"]]["data"] for t in order]
    assert all(d["kind"] == "messages" and d["eval_kind"] == "messages" and d["chat_template"] == "plain"
               for d in data)
    assert all((d["records"], d["dropped"], d["truncated"]) == (62, 2, 0) and d["packed_rows"] < d["train_samples"]
               for d in data)
    assert [d["from_cache"] for d in data] == [False, True, True, True]

    # db recommend ranks the study's trials by mc_acc, higher first
    assert main(["db", "recommend", "--task", "causal-lm-finetune", "--metric", "mc_acc", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommend"]
    assert (rec["metric"], rec["mode"]) == ("mc_acc", "max") and rec["results"]
    values = [r["mean"] for r in rec["results"]]
    group = [t for t in trials if t["cost"]["steps"] == rec["group"]["steps"]]
    assert values == sorted(values, reverse=True) and len(group) == rec["considered"]
    assert values[0] == max(t["metrics"]["mc_acc"] for t in group)
    # without --metric it ranks by what the trials were tuned for: their records' objective
    assert main(["db", "recommend", "--task", "causal-lm-finetune", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recommend"]["metric"] == "mc_acc"


def test_the_study_panel_runs_evaluators_and_its_trials_carry_the_study_objective(qtbot, registry, tmp_path):
    """The Study panel's Evaluators line: read as ``--evaluator`` reads it, a bad one in one line,
    the preview says what runs, the command line parses back to the same study; a GUI study's
    trial records carry the study's objective (val_acc, max), not the task's val_loss."""
    pytest.importorskip("pytestqt")
    from lrbench_gui.cli.study import config_from_argv
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.tuning import kinds
    from lrbench_gui.qt.db_jobs import DatabaseJobs
    from lrbench_gui.qt.study.panel import StudyPanel
    from lrbench_gui.qt.study_controller import StudyController
    from lrbench_gui.qt.trial_runner import TrialRunner

    jobs = DatabaseJobs(tmp_path / "db.json", registry=registry)
    ctl = StudyController(TrialRunner(1, workdir=tmp_path / "trials"), jobs, registry)
    panel = StudyPanel(registry, ctl, jobs)
    qtbot.addWidget(panel)
    panel.task_combo.setCurrentText("digits-mlp")
    panel.tuner_combo.setCurrentText("random")
    panel.set_policies(["cosine"])
    panel.budget_steps.setValue(8)
    panel.trials.setValue(1)
    panel.parallel.setValue(1)
    panel.budget_box.eval_every.setValue(4)
    panel.metric_combo.setCurrentText("val_acc")
    assert panel.mode_combo.currentText() == "max"

    panel.evaluators_edit.setText("heldout-lost")
    with pytest.raises(ValueError, match=r"^evaluators\[0\]: unknown evaluator 'heldout-lost'; did you "
                                         r"mean heldout-loss"):
        panel.config()
    qtbot.waitUntil(lambda: "unknown evaluator" in panel.summary.text(), timeout=3000)
    assert not panel.start_btn.isEnabled()
    panel.evaluators_edit.setText("multiple-choice:path=builtin:tinylm-mc,limit=oops")
    with pytest.raises(ValueError, match="^evaluator multiple-choice: .*limit"):
        panel.config()
    panel.evaluators_edit.setText(":limit=4")
    with pytest.raises(ValueError, match="^evaluators: ':limit=4': expected NAME"):
        panel.config()
    panel.evaluators_edit.setText("heldout-loss; multiple-choice:path=builtin:tinylm-mc,limit=40")
    config = panel.config()
    assert config.evaluators == [{"name": "heldout-loss", "params": {}},
                                 {"name": "multiple-choice", "params": {"path": "builtin:tinylm-mc", "limit": 40}}]
    qtbot.waitUntil(lambda: "Evaluators at every 4 steps" in panel.summary.text(), timeout=3000)
    assert "mc_acc (max)" in panel.summary.text() and panel.metric_combo.findText("mc_acc") >= 0
    # the same study on the command line: lrbench study random ... --metric val_acc --evaluator ...
    line = kinds.command_line(registry.tuner("random"), config.tuner_params, config.model_dump())
    assert "--metric val_acc --evaluator heldout-loss --evaluator multiple-choice:path=builtin:tinylm-mc,limit=40" \
        in line
    again = config_from_argv(registry, "random", shlex.split(line)[3:])
    assert (again.evaluators, again.metric) == (config.evaluators, "val_acc")
    panel.load_config(config.model_copy(update={"evaluators": [{"name": "heldout-loss", "params": {}}]}))
    assert panel.evaluators_edit.text() == "heldout-loss"

    finished = {}
    ctl.trialFinished.connect(finished.__setitem__)
    with qtbot.waitSignal(ctl.studyFinished, timeout=60_000) as done:
        assert panel.start()
    assert done.args[1] == "finished"
    (record,) = finished.values()
    assert record["status"] == "completed", record["notes"]
    assert record["objective"] == {"metric": "val_acc", "mode": "max"} and "val_acc" in record["metrics"]
    jobs.close()
    (stored,) = PolicyDB(tmp_path / "db.json", registry=registry).trials()
    assert stored["objective"] == {"metric": "val_acc", "mode": "max"}
