"""Evaluators: the fourth plugin kind, the built-ins on a real tinylm model, the shipped tinylm
sets, and their path through a trial (eval events, cost.eval_seconds, the database) and a study."""

from __future__ import annotations

import io
import json

import pytest

torch = pytest.importorskip("torch")

from lrbench_gui.core.evaluator import EvalContext, Evaluator  # noqa: E402
from lrbench_gui.core.params import Params, validate_params  # noqa: E402
from lrbench_gui.core.registry import Registry  # noqa: E402
from lrbench_gui.core.runs.protocol import parse_line  # noqa: E402
from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial  # noqa: E402
from lrbench_gui.core.task import TaskContext  # noqa: E402
from lrbench_gui.core.tuning.study import Study, StudyConfig, metric_direction  # noqa: E402
from lrbench_gui.plugins import load_plugins  # noqa: E402
from lrbench_gui.testing import ContractError, EvaluatorContract, check_evaluator, check_evaluator_metrics  # noqa: E402
from lrbench_builtins.evaluators import _data  # noqa: E402
from lrbench_builtins.evaluators.generation import Generation, score  # noqa: E402
from lrbench_builtins.evaluators.harness import MISSING, LMEvalHarness, harness_available  # noqa: E402
from lrbench_builtins.evaluators.multiple_choice import MultipleChoice, load_items  # noqa: E402
from lrbench_builtins.tasks.tinylm import TinyLMPretrain  # noqa: E402

SMALL = {"n_layers": 1, "d_model": 64, "context": 32, "val_tokens": 1024}


@pytest.fixture(scope="module")
def reg() -> Registry:
    return load_plugins(None)


@pytest.fixture(scope="module")
def tiny():
    """An untrained small tinylm, and the same after a 60-step pre-train: (task, untrained, trained)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: two would fight the other tests' processes for 2 cores
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, SMALL))
    ctx = TaskContext(seed=0, device=torch.device("cpu"), batch_size=32, log=lambda *a: None)
    untrained = task.setup(ctx)
    trained = task.setup(ctx)
    opt = torch.optim.AdamW(trained.parameters(), lr=2e-2, betas=(0.9, 0.95), weight_decay=0.1)
    batches = task.train_batches()
    for _ in range(60):
        loss, _ = task.loss(trained, next(batches))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    untrained.eval(), trained.eval()
    yield task, untrained, trained
    torch.set_num_threads(before)


def test_builtins_register_through_the_hook_and_show_in_the_plugin_report(reg):
    assert set(reg.evaluators) == {"heldout-loss", "multiple-choice", "generation", "lm-eval-harness"}
    assert reg.evaluators["multiple-choice"].plugin == "builtin-tasks-tinylm"
    assert not [p for p in reg.problems if "evaluator" in p.message]
    assert reg.evaluator("multiple-choice").metrics == {"mc_acc": "max", "mc_acc_norm": "max"}


USER_EVALUATOR = """
from lrbench_gui.api import EvalContext, Evaluator, Params, hookimpl, param


class Always(Evaluator):
    name = "always-{value}"
    summary = "A constant score"
    metrics = {{"always": "max"}}

    class Params(Params):
        scale: float = param(1.0, "Multiplier.", ge=0, le=10)

    def evaluate(self, model, ctx):
        return {{"always": {value} * self.params.scale}}


class Duplicate(Always):
    name = "multiple-choice"


@hookimpl
def register_evaluators(register):
    register(Always)
    register(Duplicate)
"""


def test_a_third_party_evaluator_loads_from_the_plugins_folder(tmp_path):
    (tmp_path / "my_eval.py").write_text(USER_EVALUATOR.format(value=3))
    reg = load_plugins(tmp_path)
    item = reg.evaluators["always-3"]
    assert item.plugin == "user:my_eval" and item.obj.metrics == {"always": "max"}
    assert [p.message for p in reg.problems] == [
        "evaluator refused: duplicate evaluator name 'multiple-choice': already registered by plugin "
        "'builtin-tasks-tinylm'"]
    assert check_evaluator_metrics(item.obj, {"scale": 2}, None, EvalContext()) == {"always": 6.0}


def test_registry_refuses_an_evaluator_without_directions():
    class NoDirection(Evaluator):
        name = "no-direction"
        summary = "x"
        Params = type("P", (Params,), {})
        metrics = {"score": "higher"}

        def evaluate(self, model, ctx):
            return {"score": 1.0}

    with pytest.raises(Exception, match="'min' or 'max'"):
        Registry().add("evaluator", NoDirection, "p", "s")
    with pytest.raises(ContractError, match="refused"):
        check_evaluator(NoDirection)


def test_shipped_sets_are_reproducible_and_small(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sets", _data.BUILTIN_DIR / "make_tinylm_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("tinylm-mc", "tinylm-gen"):
        shipped = _data.resolve(f"builtin:{name}")
        assert shipped.read_bytes() == (tmp_path / f"{name}.jsonl").read_bytes()
        assert shipped.stat().st_size < 16_000
    kinds = {it["kind"] for it in load_items("builtin:tinylm-mc")}
    assert kinds == {"words", "agreement", "arithmetic"}
    with pytest.raises(ValueError, match=r"no shipped evaluation set 'builtin:nope' \(shipped: builtin:tinylm-gen"):
        _data.resolve("builtin:nope")


def test_bad_sets_fail_in_one_line(tmp_path):
    bad = tmp_path / "mc.jsonl"
    bad.write_text('{"question": "q", "choices": [" a", " b"], "answer": 2}\n')
    with pytest.raises(ValueError, match="answer 2 is not an index of its 2 choices"):
        load_items(str(bad))
    bad.write_text('{"question": "q", "choices": [" a"]}\n')
    with pytest.raises(ValueError, match="line 1 needs 'answer' as int"):
        load_items(str(bad))
    with pytest.raises(ValueError, match="is not a file"):
        load_items(str(tmp_path / "missing.jsonl"))


def test_multiple_choice_pretrained_beats_chance_untrained_does_not(tiny):
    task, untrained, trained = tiny
    items = load_items("builtin:tinylm-mc")
    chance = sum(1 / len(it["choices"]) for it in items) / len(items)
    ev = MultipleChoice(MultipleChoice.Params())
    ctx = EvalContext.of(task)
    ev.check(ctx)
    with torch.no_grad():
        before, after = ev.evaluate(untrained, ctx), ev.evaluate(trained, ctx)
    assert abs(before["mc_acc"] - chance) < 0.12, (before, chance)
    assert before["mc_acc_words"] < 0.45
    assert after["mc_acc"] > chance + 0.08, (after, chance)
    assert after["mc_acc_words"] > 0.55, after
    assert set(after) >= {"mc_acc", "mc_acc_norm", "mc_acc_words", "mc_acc_agreement", "mc_acc_arithmetic"}


def test_multiple_choice_few_shot_prompts_hold_solved_items(tiny):
    task, untrained, _ = tiny
    ev = MultipleChoice(MultipleChoice.Params(fewshot=2, fewshot_sep=" ", limit=6))
    items = load_items("builtin:tinylm-mc", 6)
    prompts = ev._prompts(items)
    assert all(p.endswith(it["question"]) and p.count(" ") > it["question"].count(" ") + 1
               for p, it in zip(prompts, items))
    with torch.no_grad():
        got = check_evaluator_metrics(MultipleChoice, {"fewshot": 2, "limit": 6}, untrained, EvalContext.of(task))
    assert 0 <= got["mc_acc"] <= 1


def test_generation_scoring_rules():
    assert score("19", "19", "exact") and not score("19 ", "1", "exact")
    assert score("it is 19 today", "19", "contains") and not score("18", "19", "contains")
    assert score("answer: 19", "19", "regex", r"answer: (\d+)") and not score("answer: 18", "19", "regex", r"answer: (\d+)")
    assert score("x 19", r"\d+", "regex")
    with pytest.raises(Exception, match="not a regular expression"):
        validate_params(Generation.Params, {"match": "regex", "regex": "("})


def test_generation_cuts_at_the_stop_string(tiny):
    task, _, trained = tiny
    ctx = EvalContext.of(task)
    long = Generation(Generation.Params(limit=4, max_new_tokens=6))
    cut = Generation(Generation.Params(limit=4, max_new_tokens=6, stop=" "))
    with torch.no_grad():
        outs, cuts = long.outputs(trained, ctx), cut.outputs(trained, ctx)
    assert all(c == o.split(" ", 1)[0].strip() or c == o for c, o in zip(cuts, outs))
    assert all(" " not in c for c in cuts)


class TestMultipleChoiceContract(EvaluatorContract):
    evaluator_params = {"limit": 12}

    @pytest.fixture
    def evaluator_class(self):
        return MultipleChoice

    @pytest.fixture
    def evaluator_inputs(self, tiny):
        return tiny[1], EvalContext.of(tiny[0])


class TestGenerationContract(EvaluatorContract):
    evaluator_params = {"limit": 4, "max_new_tokens": 3, "stop": ";"}

    @pytest.fixture
    def evaluator_class(self):
        return Generation

    @pytest.fixture
    def evaluator_inputs(self, tiny):
        return tiny[1], EvalContext.of(tiny[0])


def test_lm_eval_harness_missing_is_one_line(tiny):
    assert not harness_available(), "lm_eval is installed here: this test checks its absence"
    ev = LMEvalHarness(LMEvalHarness.Params(tasks="arc_easy, hellaswag"))
    assert ev.params.tasks == "arc_easy,hellaswag"
    with pytest.raises(ValueError) as err:
        ev.check(EvalContext.of(tiny[0]))
    assert str(err.value) == MISSING and "\n" not in MISSING and "pip install lm-eval" in MISSING


def _trial(evaluators, **extra):
    return {"trial_id": "ev", "task": "tinylm-pretrain", "task_params": SMALL, "policy": {"name": "fixed",
            "params": {"lr": 1e-2}}, "budget": {"steps": 4}, "batch_size": 8, "eval_every": 2, "device": "cpu",
            "threads": 0, "evaluators": evaluators, **extra}


def test_validate_trial_names_the_bad_evaluator(reg):
    with pytest.raises(TrialError, match=r"evaluators\[0\]: unknown evaluator 'multiple-choise'; did you mean multiple-choice"):
        validate_trial(load_trial(_trial([{"name": "multiple-choise"}])), reg)
    with pytest.raises(TrialError, match=r"evaluators\[0\]\.params\.fewshot"):
        validate_trial(load_trial(_trial([{"name": "multiple-choice", "params": {"fewshot": -1}}])), reg)


def test_a_trial_streams_evaluator_metrics_and_records_their_cost(reg, tmp_path):
    """One real trial: evaluators at eval_every and at the end, in the eval events, eval/mc_acc
    curves and cost.eval_seconds in the database record; a trial whose evaluator cannot run fails
    before training, in one line."""
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.runs.recorder import TrialRecorder
    from lrbench_gui.trainer.run import Emitter, run_trial

    cfg = validate_trial(load_trial(_trial([
        {"name": "multiple-choice", "params": {"limit": 16}},
        {"name": "generation", "params": {"limit": 4, "max_new_tokens": 3, "stop": ";"}},
        {"name": "heldout-loss"},
    ], output_dir=str(tmp_path))), reg)
    stream = io.StringIO()
    assert run_trial(cfg, Emitter(cfg.trial_id, stream=stream), reg) == "completed"
    events = [e for e in map(parse_line, stream.getvalue().splitlines()) if e is not None]
    evals = [e for e in events if e.type == "eval"]
    assert [e["step"] for e in evals] == [1, 3]
    assert all({"val_loss", "mc_acc", "mc_acc_words", "gen_acc", "gen_exact"} <= set(e["metrics"]) for e in evals)
    end = next(e for e in events if e.type == "end")
    assert end["cost"]["eval_seconds"] > 0 and "mc_acc" in end["metrics"]
    rec = TrialRecorder(cfg)
    for e in events:
        rec.feed(e)
    rec.finish(0, [])
    db = PolicyDB(tmp_path / "db.json", registry=reg)
    stored = db.add_trial(rec.record())
    assert stored["cost"]["eval_seconds"] == pytest.approx(end["cost"]["eval_seconds"], abs=1e-3)
    from lrbench_gui.core.records import curve_points

    assert [s for s, _ in curve_points(stored["curves"]["eval/mc_acc"])] == [1, 3]
    assert len(stored["curves"]) == 8 and "eval/val_loss" in stored["curves"]  # capped, the task's metric kept
    assert "a record keeps 8 curves: eval/mc_acc_" in stored["notes"]

    bad = validate_trial(load_trial(_trial([{"name": "lm-eval-harness"}], output_dir=str(tmp_path / "b"))), reg)
    with pytest.raises(TrialError) as err:
        run_trial(bad, Emitter(bad.trial_id, stream=io.StringIO()), reg)
    assert str(err.value) == MISSING


def test_study_takes_the_objective_direction_from_its_evaluators(reg):
    mc = reg.evaluator("multiple-choice")
    task = reg.task("tinylm-pretrain")
    assert metric_direction("mc_acc", task, [mc]) == "max"
    assert metric_direction("mc_acc_words", task, [mc]) == "max"
    assert metric_direction("val_loss", task, [mc]) == "min"
    heldout = reg.evaluator("heldout-loss")
    assert metric_direction("val_ppl", task, [heldout]) == "min"
    config = StudyConfig(task="tinylm-pretrain", task_params=SMALL, tuner="random", policies=["cosine"],
                         metric="mc_acc", evaluators=[{"name": "multiple-choice", "params": {"limit": 8}}],
                         budget_steps=4, trials=1)
    study = Study(config, registry=reg)
    assert (study.objective.metric, study.objective.mode) == ("mc_acc", "max")
    trial = study.next_trials(1)[0]
    assert [e.model_dump() for e in trial.evaluators] == [{"name": "multiple-choice", "params": {"limit": 8}}]
    with pytest.raises(ValueError, match=r"evaluators\[0\]: unknown evaluator 'nope'"):
        Study(config.model_copy(update={"evaluators": [{"name": "nope"}]}), registry=reg)


def test_tune_parses_evaluator_flags():
    from lrbench_gui.cli import CliError
    from lrbench_gui.cli.tune import parse_evaluator

    assert parse_evaluator("multiple-choice:path=builtin:tinylm-mc,fewshot=2") == {
        "name": "multiple-choice", "params": {"path": "builtin:tinylm-mc", "fewshot": 2}}
    assert parse_evaluator("lm-eval-harness:tasks=arc_easy,hellaswag,limit=5")["params"] == {
        "tasks": "arc_easy,hellaswag", "limit": 5}
    with pytest.raises(CliError, match="expected NAME"):
        parse_evaluator(":x=1")
    assert json.dumps(parse_evaluator("heldout-loss")) == '{"name": "heldout-loss", "params": {}}'


def test_the_docs_evaluator_example_loads_and_scores(tmp_path, tiny):
    """docs/plugins.md's evaluator example, written to a plugins folder and used as a reader would."""
    import re
    from pathlib import Path

    from lrbench_gui.testing import check_evaluator, check_evaluator_deterministic

    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- example: text_loss.py -->\n```python\n(.*?)```", docs, re.S).group(1)
    (tmp_path / "text_loss.py").write_text(code)
    reg = load_plugins(tmp_path)
    cls = reg.evaluator("text-loss")
    check_evaluator(cls)
    task, untrained, trained = tiny
    with torch.no_grad():
        before = check_evaluator_metrics(cls, {}, untrained, EvalContext.of(task))["text_loss"]
        after = check_evaluator_metrics(cls, {}, trained, EvalContext.of(task))["text_loss"]
    check_evaluator_deterministic(cls, {}, trained, EvalContext.of(task))
    assert after < before - 0.5


def test_an_lm_evaluator_on_a_task_without_a_tokenizer_is_refused(reg):
    digits = reg.task("digits-mlp")
    task = digits(validate_params(digits.Params, {}))
    with pytest.raises(ValueError, match="needs a language-model task .*; task digits-mlp gives none"):
        MultipleChoice(MultipleChoice.Params()).check(EvalContext.of(task))
