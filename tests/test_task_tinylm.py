"""tinylm-pretrain, run in-process the way the trainer runs it: the corpus, learning, saving."""

from __future__ import annotations

import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded, ever
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lrbench_builtins.tasks import _corpus, tinylm  # noqa: E402
from lrbench_builtins.tasks.tinylm import TinyLMPretrain  # noqa: E402
from lrbench_gui.core.params import ParamError, validate_params  # noqa: E402
from lrbench_gui.core.registry import Registry  # noqa: E402
from lrbench_gui.core.task import TaskContext  # noqa: E402
from lrbench_gui.testing import check_task  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def make_task(batch_size=16, seed=0, rank=0, world_size=1, **params):
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, params))
    ctx = TaskContext(seed=seed, device=torch.device("cpu"), batch_size=batch_size, rank=rank, world_size=world_size,
                      log=lambda *a: None)
    return task, task.setup(ctx)


def train(task, model, steps, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    batches = task.train_batches()
    losses = []
    for _ in range(steps):
        loss, counts = task.loss(model, next(batches))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, counts


@pytest.fixture(scope="module")
def trained():
    """The default task after 40 steps: (task, model, val loss before, val loss after, train losses)."""
    task, model = make_task()
    before = task.evaluate(model)["val_loss"]
    losses, counts = train(task, model, 40, 1e-2)
    return task, model, before, task.evaluate(model)["val_loss"], losses, counts


def test_registers_through_its_hook_and_passes_the_task_contract():
    reg = Registry()
    tinylm.register_tasks(lambda cls: reg.add("task", cls, "builtin-tasks-tinylm", "lrbench_builtins.tasks.tinylm"))
    assert reg.items["task"]["tinylm-pretrain"].obj is TinyLMPretrain
    check_task(TinyLMPretrain)


def test_bad_shapes_are_refused_by_the_schema():
    with pytest.raises(ParamError, match="divisible by n_heads"):
        validate_params(TinyLMPretrain.Params, {"d_model": 100, "n_heads": 3})
    with pytest.raises(ParamError, match="even"):
        validate_params(TinyLMPretrain.Params, {"d_model": 12, "n_heads": 4})


def test_corpus_is_a_pure_function_of_seed_and_version():
    a = _corpus.generate(0, 0, 50_000)
    assert a.dtype == np.uint8 and len(a) == 50_000
    assert np.array_equal(a, _corpus.generate(0, 0, 50_000))
    assert not np.array_equal(a, _corpus.generate(1, 0, 50_000))
    assert not np.array_equal(a, _corpus.generate(0, 1, 50_000))
    assert np.array_equal(_corpus.encode(_corpus.generate_text(3, 2, 1000)), _corpus.generate(3, 2, 1000))
    assert _corpus.decode(a[:500]) == _corpus.generate_text(0, 0, 500)


def _histogram(ids):
    return np.bincount(ids, minlength=len(_corpus.VOCAB)) / len(ids)


def _word_shares(text):
    words = re.findall(r"[a-z]+", text)
    return {w: words.count(w) / len(words) for w in ("cat", "dog", "geese", "goose", "the", "a")}


def test_a_version_shifts_the_distribution_not_just_the_sample():
    n = 300_000
    same = np.abs(_histogram(_corpus.generate(0, 0, n)) - _histogram(_corpus.generate(1, 0, n))).sum()
    for version in (1, 2, 3):
        other = np.abs(_histogram(_corpus.generate(0, 0, n)) - _histogram(_corpus.generate(0, version, n))).sum()
        assert other > 5 * same, (version, other, same)
    v0, v2 = _word_shares(_corpus.generate_text(0, 0, n)), _word_shares(_corpus.generate_text(0, 2, n))
    assert v0["cat"] > 3 * v2["cat"] and v2["geese"] + v2["goose"] > 3 * (v0["geese"] + v0["goose"])
    assert {_corpus.language(v).number_max for v in range(4)} >= {199, 499}


SING = "(?:" + "|".join(s for s, p, _ in _corpus._NOUNS if s != p) + ")"
PLUR = "(?:" + "|".join(p for s, p, _ in _corpus._NOUNS if s != p) + ")"
PREP = "(?:" + "|".join(_corpus._PREPOSITIONS) + ")"
VERBS_SINGULAR = {s for s, *_ in _corpus._VERBS}
VERBS_PLURAL = {p for _, p, *_ in _corpus._VERBS}


def test_the_corpus_has_correct_arithmetic_and_agreement():
    for version in (0, 1):
        text = _corpus.generate_text(7, version, 200_000)
        sums = re.findall(r"(?<![0-9])(\d+)([+*-])(\d+)=(\d+);", text)
        assert len(sums) > 1000
        ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
        assert all(ops[op](int(a), int(b)) == int(c) for a, op, b, c in sums)
        assert max(int(a) for a, op, b, c in sums if op == "+") <= _corpus.language(version).number_max
        arith_chars = sum(len("".join(s)) + 2 for s in sums)
        assert 0.1 < arith_chars / len(text) < 0.5
        # the subject's verb agrees across a prepositional phrase with a noun of the other number
        singular = re.findall(rf"(?:every|this|one) {SING} {PREP} (?:these|many|two) {PLUR} (\w+)", text)
        plural = re.findall(rf"(?:these|many|two) {PLUR} {PREP} (?:every|this|one) {SING} (\w+)", text)
        assert len(singular) > 10 and len(plural) > 10
        assert set(singular) <= VERBS_SINGULAR and set(plural) <= VERBS_PLURAL
        assert "an old" in text and "a old" not in text
    records = _corpus.instruction_records(0, 2, 50)
    assert len(records) == 50 and {r["instruction"] for r in records} == {"compute", "complete the sentence"}


def test_loss_falls_and_counts_tokens(trained):
    task, model, before, after, losses, counts = trained
    assert task.tokens_per_sample() == 64 and task.samples_per_epoch() is None
    assert counts == {"samples": 16, "tokens": 16 * 64}
    assert 150_000 < task.model_info()["params"] < 500_000
    assert 4.0 < before < 5.0  # ~ln(100): a fresh model knows nothing
    assert after < 0.8 * before and np.mean(losses[-5:]) < 0.8 * losses[0]
    metrics = task.evaluate(model)
    assert metrics["val_ppl"] == pytest.approx(np.exp(metrics["val_loss"]))


def test_save_model_round_trips_through_from_pretrained(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task, model, *_ = trained
    task.save_model(model, tmp_path / "model")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "model", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model", local_files_only=True)
    text = _corpus.generate_text(11, 0, 60)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == _corpus.encode(text).tolist()
    assert tokenizer.decode(ids[0]) == text
    assert tokenizer.eos_token == "</s>" and tokenizer.pad_token_id == 0
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-6)
    assert again.config.model_type == "llama" and again.config.tie_word_embeddings


def test_init_from_a_saved_folder_or_a_checkpoint_continues_the_model(trained, tmp_path):
    from safetensors.torch import save_model

    task, model, _, after, *_ = trained
    task.save_model(model, tmp_path / "model")
    save_model(model, str(tmp_path / "step-0000040.safetensors"))  # what the trainer's checkpoints are
    for source in (tmp_path / "model", tmp_path / "step-0000040.safetensors"):
        task2, model2 = make_task(init_from=str(source))
        assert task2.evaluate(model2)["val_loss"] == pytest.approx(after, rel=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        make_task(init_from=str(tmp_path / "step-0000040.safetensors"), d_model=64)


def test_replay_and_validation_versions():
    task, model = make_task(batch_size=8, version=1, replay_versions=[0], val_versions=[0, 1, 2], val_tokens=1024)
    metrics = task.evaluate(model)
    assert {"val_loss", "val_ppl", "val_loss_v0", "val_loss_v1", "val_loss_v2"} <= set(metrics)
    parts = [metrics[f"val_loss_v{v}"] for v in (0, 1, 2)]
    assert metrics["val_loss"] == pytest.approx(sum(parts) / 3)


def _windows(task, n_batches):
    batches = task.train_batches()
    return {bytes(row.numpy().astype(np.uint8)) for _ in range(n_batches) for row in next(batches)}


def test_ranks_get_disjoint_batches_of_the_generated_stream():
    shards = [_windows(make_task(batch_size=8, rank=r, world_size=2, val_tokens=256)[0], 20) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 160
    assert not shards[0] & shards[1]


def test_text_file_mode_splits_shards_and_reports_epochs(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(_corpus.generate_text(2, 0, 20_000) + " caf\u00e9 \u00fcber")
    task, model = make_task(batch_size=8, text_file=str(path), val_fraction=0.1, context=32)
    assert "\u00e9" in task.vocab and task.samples_per_epoch() == len(task.train_starts)
    assert task.samples_per_epoch() == (18_000 + 11 - 32) // 32 + 1  # stride-32 windows of the first 90%
    epoch = task.samples_per_epoch() // 8
    shards = [_windows(make_task(batch_size=8, text_file=str(path), context=32, rank=r, world_size=2)[0], epoch // 2)
              for r in (0, 1)]
    assert not shards[0] & shards[1] and len(shards[0]) + len(shards[1]) == 8 * (epoch // 2) * 2
    assert np.isfinite(task.evaluate(model)["val_loss"])
    with pytest.raises(ValueError, match="missing.txt"):
        make_task(text_file=str(tmp_path / "missing.txt"))
