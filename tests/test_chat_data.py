"""causal-lm-finetune's data: chats through a chat template with the loss on the assistant turns,
ShareGPT records, a separate eval file, packing with per-sample attention, the truncation
policy and its counts, and the tokenized data cache across trials and processes. A tinylm model
saved with ``save_model`` (a character vocabulary, no chat template of its own)."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lrbench_builtins.tasks import finetune  # noqa: E402
from lrbench_builtins.tasks.finetune import CausalLMFinetune  # noqa: E402
from lrbench_gui.core.params import validate_params  # noqa: E402
from lrbench_gui.core.task import TaskContext  # noqa: E402


def chat(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"{i}+{i + 1}="},
            {"role": "assistant", "content": str(2 * i + 1)}, {"role": "user", "content": "and twice?"},
            {"role": "assistant", "content": f"{4 * i + 2} ok"}]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tinylm model (untrained: the data side does not care) and chat data in three formats."""
    from lrbench_builtins.tasks.tinylm import TinyLMPretrain

    folder = tmp_path_factory.mktemp("chat")
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {"context": 128, "val_tokens": 1024}))
    task.save_model(task.setup(TaskContext(0, torch.device("cpu"), 4, log=lambda *a: None)), folder / "model")
    records = [{"messages": chat(i)} for i in range(24)]
    records += [{"messages": [{"role": "user", "content": "x" * 150}, {"role": "assistant", "content": "y"}]},
                {"messages": [{"role": "user", "content": "long answer"}, {"role": "assistant", "content": "z" * 150}]}]
    (folder / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    sharegpt = [{"conversations": [{"from": {"system": "system", "user": "human", "assistant": "gpt"}[m["role"]],
                                    "value": m["content"]} for m in chat(i)]} for i in range(100, 106)]
    (folder / "sharegpt.json").write_text(json.dumps(sharegpt))
    (folder / "eval.txt").write_text("1+2=3; 5+6=11; " * 20)
    return folder


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def make(files, data="chat.jsonl", log=None, **params):
    params = {"model_path": str(files / "model"), "data_path": str(files / data), "max_length": 96, **params}
    task = CausalLMFinetune(validate_params(CausalLMFinetune.Params, params))
    model = task.setup(TaskContext(0, torch.device("cpu"), 4, log=log or (lambda *a: None)))
    return task, model


def trained_text(task, sample):
    labels = task.collate([sample])["labels"][0]
    return task.tokenizer.decode(labels[labels != -100])


def test_chats_render_with_a_template_and_train_on_the_assistant_turns_only(files, tmp_path):
    task, _ = make(files, val_fraction=0.2)
    info = task.data_info()
    # a character vocabulary without ChatML's markers: auto takes the plain role headers
    assert task.data_kind == "messages" and info["chat_template"] == "plain"
    ids, trained = next(s for s in task.train if len(s[0]) < 96)
    text = task.tokenizer.decode(ids)
    i = int(text.split("User: ")[1].split("+")[0])
    assert text == f"System: be brief\nUser: {i}+{i + 1}=\nAssistant: {2 * i + 1}</s>\nUser: and twice?\n" \
                   f"Assistant: {4 * i + 2} ok</s>\n"
    assert trained_text(task, (ids, trained)) == f"{2 * i + 1}</s>{4 * i + 2} ok</s>"

    # ShareGPT's from/value and human/gpt give the same tokens as the messages they stand for
    sharegpt, _ = make(files, "sharegpt.json")
    expected = task.tokenizer.apply_chat_template(chat(100), chat_template=finetune.CHAT_TEMPLATES["plain"],
                                                  tokenize=False)
    assert sharegpt.data_kind == "sharegpt"
    assert expected in {task.tokenizer.decode(s[0]) for s in sharegpt.train + sharegpt.val}

    # ChatML on request (its markers are plain characters here), a Jinja string and a .jinja file
    chatml, _ = make(files, chat_template="chatml", max_length=256)
    sample = next(s for s in chatml.train if len(s[0]) < 200)
    assert trained_text(chatml, sample).count("<|im_end|>") == 2
    assert trained_text(chatml, sample).startswith(tuple("0123456789"))
    jinja = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}" \
            "{% if add_generation_prompt %}[assistant] {% endif %}"
    (tmp_path / "brackets.jinja").write_text(jinja)
    for given in (jinja, str(tmp_path / "brackets.jinja")):
        custom, _ = make(files, chat_template=given)
        sample = next(s for s in custom.train if len(s[0]) < 96)
        decoded = trained_text(custom, sample)
        assert "[" not in decoded and decoded.endswith(" ok")  # the answers, not the headers
    # a template that writes the last turn differently: its partial renderings are no prefixes of
    # the whole chat, so the answers are found by their text, turn after turn
    ends = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% if loop.last %} END{% endif %}\n{% endfor %}"
    odd, _ = make(files, chat_template=ends)
    sample = next(s for s in odd.train if len(s[0]) < 96)
    i = int(odd.tokenizer.decode(sample[0]).split("user: ")[1].split("+")[0])
    assert trained_text(odd, sample) == f"{2 * i + 1}{4 * i + 2} ok"
    with pytest.raises(ValueError, match="neither auto, chatml, plain, a Jinja template nor an existing"):
        make(files, chat_template="no-such-template")


def test_bad_chat_records_give_one_clear_line(files, tmp_path):
    cases = {
        "role.jsonl": ({"messages": [{"role": "robot", "content": "hi"}]}, "turn 1: role 'robot' is not one of"),
        "empty.jsonl": ({"messages": []}, "non-empty list of turns"),
        "value.jsonl": ({"conversations": [{"from": "human", "value": 3}]}, "'value' must be a string"),
    }
    for name, (record, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(record) + "\n")
        with pytest.raises(ValueError, match=message):
            make(files, str(tmp_path / name))
    with pytest.raises(ValueError, match=r"eval_path '.*nowhere.jsonl' does not exist"):
        make(files, eval_path=str(tmp_path / "nowhere.jsonl"))


def test_truncation_policy_eval_path_and_their_counts(files):
    lines = []
    task, _ = make(files, eval_path=str(files / "eval.txt"), log=lines.append)
    info = task.data_info()
    # every record of data_path trains; the eval file (plain text here) is the validation set
    assert info["eval_kind"] == "text" and task.eval_kind == "text"
    assert len(task.val) == 4  # 300 characters + </s> in blocks of 96
    # the prompt of 150 x's leaves nothing to train on: dropped; the answer of 150 z's: truncated
    assert (info["records"], info["dropped"], info["truncated"], info["train_samples"]) == (26, 1, 1, 25)
    assert max(len(s[0]) for s in task.train) == 96
    warning = [line for line in lines if "warning" in line]
    assert len(warning) == 1 and "1 of 26 records dropped" in warning[0] and "1 truncated" in warning[0]

    drop, _ = make(files, eval_path=str(files / "eval.txt"), truncation="drop")
    assert (drop.data_info()["dropped"], drop.data_info()["truncated"], len(drop.train)) == (2, 0, 24)


def test_a_packed_batch_has_the_loss_of_its_samples_and_attention_stays_inside_each(files):
    task, model = make(files, packing=True, max_length=160, eval_path=str(files / "eval.txt"), lora=False)
    assert task.data_info()["packed_rows"] == len(task.rows) < len(task.train)
    rows = [row for row in task.rows if len(row) > 1][:3]
    batch = task.collate(rows)
    first = rows[0]
    assert batch["position_ids"][0, : len(first[0][0]) + 2].tolist() == \
        list(range(len(first[0][0]))) + [0, 1]  # the second sample starts again at 0
    model.eval()
    with torch.no_grad():
        packed, _ = task._forward(model, batch, "sum")
        alone = sum(float(task._forward(model, task.collate([s]), "sum")[0]) for row in rows for s in row)
        targets = sum(int((task.collate([s])["labels"][:, 1:] != -100).sum()) for row in rows for s in row)
        crossing = {k: v for k, v in batch.items() if k != "position_ids"}  # one causal mask over the whole row
        crossed, _ = task._forward(model, crossing, "sum")
    assert int((batch["labels"][:, 1:] != -100).sum()) == targets
    assert abs(float(packed) - alone) <= 1e-4 * abs(alone), (float(packed), alone)
    assert abs(float(crossed) - alone) > 1e-3 * abs(alone)  # the check can fail: without it attention crosses
    assert task.samples_per_epoch() == len(task.rows)
    loss, counts = task.loss(model, next(task.train_batches()))
    assert np.isfinite(loss.item()) and counts["samples"] == 4 and counts["tokens"] > 4 * 60


def test_tokenized_data_is_cached_in_the_data_folder_across_trials_and_processes(files, lrbench_env, monkeypatch):
    from lrbench_gui.core.runs.runner import LocalScheduler
    from lrbench_gui.core.runs.trial import load_trial

    calls = []
    real = CausalLMFinetune._chat_tokens
    monkeypatch.setattr(CausalLMFinetune, "_chat_tokens", lambda self, r: calls.append(len(r)) or real(self, r))
    lines = []
    first, _ = make(files, packing=True, log=lines.append)
    assert calls and not first.data_info()["from_cache"]
    folder = lrbench_env["data"] / "cache" / "tokenized"
    (stored,) = folder.glob("*.npz")
    calls.clear()
    second, _ = make(files, packing=True, log=lines.append)  # no warm worker here: from the file
    assert not calls and "causal-lm-finetune: tokenized data from cache (data folder)" in lines
    assert second.data_info() == {**first.data_info(), "from_cache": True}
    for a, b in zip(first.train + first.val, second.train + second.val):
        assert np.array_equal(a[0], b[0]) and np.array_equal(finetune._trained_mask(a), finetune._trained_mask(b))
    # another data parameter is another entry; a torn file is ignored, then written whole again
    make(files, max_length=80)
    assert len(list(folder.glob("*.npz"))) == 2
    stored.write_bytes(stored.read_bytes()[:200])
    lines.clear()
    make(files, packing=True, log=lines.append)
    assert any("ignoring the unreadable tokenized-data cache file" in line for line in lines) and calls
    with np.load(stored, allow_pickle=False) as whole:
        assert whole["train_ids"].size > 0
    assert not list(folder.glob("*.tmp"))

    # a trial in its own process reads the same file (its hello event says so, with the counts)
    events = []
    sched = LocalScheduler(1, on_event=lambda tid, e: events.append(e))
    sched.submit(load_trial({
        "task": "causal-lm-finetune", "policy": {"name": "fixed", "params": {"lr": 3e-3}},
        "task_params": {"model_path": str(files / "model"), "data_path": str(files / "chat.jsonl"),
                        "max_length": 96, "packing": True, "lora_r": 4},
        "budget": {"steps": 3}, "batch_size": 4, "eval_every": 3, "threads": 2}))
    (record,) = sched.run().values()
    assert record["status"] == "completed", record["notes"]
    data = events[0]["data"]
    assert data["from_cache"] is True and data["dropped"] == 1 and data["truncated"] == 1
    assert data["packed_rows"] == len(first.rows)


def test_the_cache_is_bounded(tmp_path):
    import time

    folder = tmp_path / "tokenized"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.npz").write_bytes(b"x" * 1000)
        os.utime(folder / f"{i}.npz", (time.time() - 100 + i, time.time() - 100 + i))
    (folder / "old.tmp").write_bytes(b"x")  # an interrupted writer's
    os.utime(folder / "old.tmp", (time.time() - 7200, time.time() - 7200))
    (folder / "new.tmp").write_bytes(b"x")  # a writer at work
    finetune._trim_cache(folder, 2500)
    assert sorted(f.name for f in folder.iterdir()) == ["3.npz", "4.npz", "new.tmp"]  # the most recently used
