"""causal-lm-finetune on a model that tinylm-pretrain trained: full and LoRA fine-tuning on a
shifted version of the corpus, response masking, data formats, and the errors users meet."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded, ever
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from lrbench_builtins.tasks import _corpus, finetune  # noqa: E402
from lrbench_builtins.tasks.finetune import CausalLMFinetune, render_prompt  # noqa: E402
from lrbench_builtins.tasks.tinylm import TinyLMPretrain  # noqa: E402
from lrbench_gui.core.params import validate_params  # noqa: E402
from lrbench_gui.core.registry import Registry  # noqa: E402
from lrbench_gui.core.task import TaskContext  # noqa: E402
from lrbench_gui.testing import check_task  # noqa: E402

SHIFTED_VERSION = 2


def context(batch_size=8, rank=0, world_size=1):
    return TaskContext(seed=0, device=torch.device("cpu"), batch_size=batch_size, rank=rank, world_size=world_size,
                       log=lambda *a: None)


def train(task, model, steps, lr):
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    batches = task.train_batches()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 10) * (1 - 0.9 * step / steps)  # warmup, linear decay
        loss, _ = task.loss(model, next(batches))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss.item()


@pytest.fixture(scope="session")
def base_model(tmp_path_factory):
    """A tiny Llama pre-trained by tinylm-pretrain on corpus version 0 (150 steps, context 128)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {"context": 128, "val_tokens": 4096}))
    model = task.setup(context())
    train(task, model, 150, 5e-3)
    folder = tmp_path_factory.mktemp("tinylm") / "model"
    task.save_model(model, folder)
    torch.set_num_threads(threads)
    return folder


@pytest.fixture(scope="session")
def shifted_data(tmp_path_factory):
    """Data of corpus version 2 (other word frequencies, numbers, rates) as instructions and text."""
    folder = tmp_path_factory.mktemp("shifted")
    records = _corpus.instruction_records(5, SHIFTED_VERSION, 400)
    (folder / "instructions.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (folder / "instructions.json").write_text(json.dumps(records[:40]))
    (folder / "pairs.jsonl").write_text("\n".join(
        json.dumps({"prompt": r["input"] + " => ", "completion": r["output"]}) for r in records[:40]))
    (folder / "docs.jsonl").write_text("\n".join(
        json.dumps({"text": _corpus.generate_text((6, i), SHIFTED_VERSION, 300)}) for i in range(30)))
    (folder / "book.txt").write_text(_corpus.generate_text(5, SHIFTED_VERSION, 60_000))
    return folder


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def make_task(base_model, data, batch_size=8, rank=0, world_size=1, **params):
    params = {"model_path": str(base_model), "data_path": str(data), "template": "alpaca-short",
              "max_length": 128, **params}
    task = CausalLMFinetune(validate_params(CausalLMFinetune.Params, params))
    return task, task.setup(context(batch_size, rank, world_size))


def logits_of(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_registers_through_its_hook_and_passes_the_task_contract():
    reg = Registry()
    finetune.register_tasks(lambda cls: reg.add("task", cls, "builtin-tasks-finetune", "lrbench_builtins.tasks.finetune"))
    assert reg.items["task"]["causal-lm-finetune"].obj is CausalLMFinetune
    check_task(CausalLMFinetune)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # inside peft
def test_lora_on_instructions_trains_only_the_adapters_and_learns_the_shift(base_model, shifted_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    task, model = make_task(base_model, shifted_data / "instructions.jsonl", lora_r=8, lora_dropout=0.0)
    assert task.data_kind == "alpaca" and len(task.train) == 360 and len(task.val) == 40
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # r x (96 + 96) per adapted projection, 4 projections in each of 2 layers
    assert task.model_info()["trainable_params"] == 8 * 192 * 4 * 2
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = task.evaluate(model)["val_loss"]
    train(task, model, 40, 1e-2)
    after = task.evaluate(model)["val_loss"]
    assert after < 0.7 * before, (before, after)  # about 0.5 here
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)

    ids = torch.from_numpy(task.val[0][0])[None]
    expected = logits_of(model, ids)
    task.save_model(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert torch.allclose(logits_of(reloaded, ids), expected, atol=1e-5)

    merged_task = CausalLMFinetune(task.params.model_copy(update={"merge_on_save": True}))
    merged_task.tokenizer = task.tokenizer
    merged_task.save_model(model, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", local_files_only=True)
    assert torch.allclose(logits_of(merged, ids), expected, atol=1e-4)

    with pytest.raises(ValueError, match="LoRA adapter"):
        make_task(tmp_path / "adapter", shifted_data / "instructions.jsonl")


def test_full_fine_tuning_on_plain_text_learns_the_shift_and_round_trips(base_model, shifted_data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task, model = make_task(base_model, shifted_data / "book.txt", lora=False)
    assert task.data_kind == "text" and task.tokens_per_sample() == 128
    assert all(p.requires_grad for p in model.parameters())
    before = task.evaluate(model)["val_loss"]
    train(task, model, 40, 2e-3)
    after = task.evaluate(model)["val_loss"]
    assert after < 0.9 * before, (before, after)

    task.save_model(model, tmp_path / "model")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "model", local_files_only=True)
    assert AutoTokenizer.from_pretrained(tmp_path / "model", local_files_only=True).eos_token == "</s>"
    ids = torch.from_numpy(task.val[0][0])[None]
    assert torch.allclose(logits_of(again, ids), logits_of(model, ids), atol=1e-6)


def test_lora_on_plain_text_lowers_the_shifted_val_loss(base_model, shifted_data):
    task, model = make_task(base_model, shifted_data / "book.txt", lora_dropout=0.0)
    before = task.evaluate(model)["val_loss"]
    train(task, model, 40, 1e-2)
    assert task.evaluate(model)["val_loss"] < 0.95 * before


@pytest.mark.parametrize("template", ["alpaca", "alpaca-short"])
def test_labels_mask_exactly_the_prompt(base_model, shifted_data, template):
    task, _ = make_task(base_model, shifted_data / "instructions.json", template=template, max_length=512)
    tok = task.tokenizer
    records = json.loads((shifted_data / "instructions.json").read_text())
    record = {"instruction": "compute", "input": "12+30", "output": "42"}
    for rec in (record, {**record, "input": ""}):
        prompt = render_prompt(rec, template)
        assert ("### Input:" in prompt) == bool(rec["input"])
        ids = tok(prompt + rec["output"])["input_ids"] + [tok.eos_token_id]
        sample = task._samples([rec])[0]
        assert sample[0].tolist() == ids and sample[1] == len(tok(prompt)["input_ids"])
    samples = [task.train[0], task.train[1]]
    batch = task.collate(samples)
    for row, (ids, n_prompt) in enumerate(samples):
        labels = batch["labels"][row]
        assert (labels[:n_prompt] == -100).all() and (labels[n_prompt : len(ids)] == torch.from_numpy(ids[n_prompt:])).all()
        assert (labels[len(ids) :] == -100).all() and (batch["attention_mask"][row, len(ids) :] == 0).all()
        answer = tok.decode(labels[labels != -100])
        assert answer.endswith("</s>") and answer[: -len("</s>")] in {r["output"] for r in records}
    unmasked = CausalLMFinetune(task.params.model_copy(update={"mask_prompt": False}))
    unmasked.pad_id = task.pad_id
    plain = unmasked.collate(samples)["labels"]
    assert (plain[0, : len(samples[0][0])] != -100).all()


def test_other_formats_are_detected(base_model, shifted_data):
    for name, kind in [("instructions.json", "alpaca"), ("pairs.jsonl", "prompt-completion"), ("docs.jsonl", "text-records")]:
        task, model = make_task(base_model, shifted_data / name, lora=False)
        assert task.data_kind == kind
        loss, counts = task.loss(model, next(task.train_batches()))
        assert np.isfinite(loss.item()) and counts["samples"] == 8 and counts["tokens"] > 8
    task, _ = make_task(base_model, shifted_data / "docs.jsonl", lora=False, max_length=64)
    assert len(task.train) + len(task.val) == 30 * 5  # 300 characters + </s> in blocks of 64


def test_ranks_get_disjoint_batches(base_model, shifted_data):
    seen = []
    for rank in (0, 1):
        task, _ = make_task(base_model, shifted_data / "book.txt", rank=rank, world_size=2)
        per_rank = task.samples_per_epoch() // 2 // 8
        batches = task.train_batches()
        seen.append({
            bytes(row[mask.bool()].numpy())
            for batch in (next(batches) for _ in range(per_rank))
            for row, mask in zip(batch["input_ids"], batch["attention_mask"])
        })
    assert len(seen[0]) == len(seen[1]) == per_rank * 8 and not seen[0] & seen[1]


def test_a_folder_that_is_not_a_model_gives_a_clear_error(base_model, shifted_data, tmp_path):
    data = shifted_data / "instructions.jsonl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty' is not a Hugging Face model folder \(no config.json\)"):
        make_task(tmp_path / "empty", data)
    with pytest.raises(ValueError, match="does not exist"):
        make_task(tmp_path / "nowhere", data)
    with pytest.raises(ValueError, match="is a file, not a model folder"):
        make_task(data, data)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((base_model / name).read_bytes())
    with pytest.raises(ValueError, match="broken.*model weights"):
        make_task(broken, data)
    with pytest.raises(ValueError, match="model_path is empty"):
        make_task("", data)
    with pytest.raises(ValueError, match=r"c_attn is not a module of .*q_proj"):
        make_task(base_model, data, lora_target_modules="q_proj,c_attn")


def test_bad_data_gives_a_clear_error(base_model, tmp_path):
    cases = {
        "missing.jsonl": (None, "does not exist"),
        "odd.jsonl": ('{"question": "x"}\n', "expected 'text'"),
        "partial.jsonl": ('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', "record 2: lacks output"),
        "broken.jsonl": ('{"text": "a"}\n{"text": \n', "line 2"),
        "one.txt": ("ab", "at least 2"),
    }
    for name, (content, message) in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=message):
            make_task(base_model, tmp_path / name, max_length=8)
