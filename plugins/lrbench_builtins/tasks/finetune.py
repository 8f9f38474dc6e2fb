"""The LLM fine-tuning workload: any local Hugging Face causal LM, fine-tuned fully or with LoRA
(peft) on a local data set, the loss masked to the response for instruction data.

Data formats, detected from the file: plain text (``.txt``: cut into ``max_length`` blocks),
JSON Lines with a ``text`` field (one sample per record, long ones cut into blocks), Alpaca-style
records (``instruction``, optional ``input``, ``output``) as a JSON list or JSON Lines,
``prompt``/``completion`` records, and chats: ``messages`` (``role``/``content``) or ShareGPT
``conversations`` (``from``/``value``), rendered with a chat template, the loss on the assistant
turns only. Tokenized data is cached in the data folder across trials and processes. Nothing is
downloaded: the model folder must hold the config, the weights and the tokenizer (what
``save_pretrained`` writes, or the ``model`` folder of a ``tinylm-pretrain`` trial).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.hookspecs import hookimpl

__all__ = ["CausalLMFinetune", "FinetuneParams", "ALPACA_TEMPLATES", "CHAT_TEMPLATES", "load_records",
           "render_prompt"]

#: Prompt templates as (with input, without input); the response follows the prompt directly.
ALPACA_TEMPLATES = {
    "alpaca": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n",
    ),
    "alpaca-short": (
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        "### Instruction:\n{instruction}\n\n### Response:\n",
    ),
}
_TEXT_SUFFIXES = {".txt", ".text", ".md"}
#: Built-in chat templates (Jinja, rendered by ``apply_chat_template``). ``chatml`` is ChatML
#: (``<|im_start|>role ... <|im_end|>``); ``plain`` writes plain-text role headers and closes each
#: assistant turn with the end-of-sequence token, so it tokenizes into a few tokens on any
#: vocabulary, a character vocabulary included.
CHAT_TEMPLATES = {
    "chatml": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "plain": "{% for m in messages %}{% if m['role'] == 'system' %}System: {{ m['content'] }}\n"
             "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
             "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}Assistant: {% endif %}",
}
_CHAT_KINDS = ("messages", "sharegpt")
_ROLES = {"messages": {"system": "system", "user": "user", "assistant": "assistant"},
          "sharegpt": {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                       "assistant": "assistant"}}
_RECORD_KINDS = [("messages", {"messages"}), ("sharegpt", {"conversations"}), ("alpaca", {"instruction", "output"}),
                 ("prompt-completion", {"prompt", "completion"}), ("text-records", {"text"})]
_FORMATS = "plain text (.txt), JSON Lines with a 'text' field, Alpaca records (instruction, input, output) " \
           "as a JSON list or JSON Lines, prompt/completion records, or chats ('messages' with role/content, " \
           "ShareGPT 'conversations' with from/value)"


class FinetuneParams(Params):
    model_path: str = param(
        "", "A local Hugging Face causal-LM folder (config.json, weights, tokenizer files), as written by "
        "save_pretrained, e.g. the model folder of a tinylm-pretrain trial.")
    data_path: str = param(
        "", "A local data set: plain text (.txt), JSON Lines with 'text', Alpaca records (instruction, "
        "input, output) as JSON or JSON Lines, prompt/completion JSON Lines, or chats: 'messages' "
        "(role/content) or ShareGPT 'conversations' (from/value).")
    data_format: Literal["auto", "text", "text-records", "alpaca", "prompt-completion", "messages", "sharegpt"] = param(
        "auto", "How to read data_path; auto: from the file name and its records' fields.")
    eval_path: str = param(
        "", "A separate validation file in any format data_path takes (read on its own); empty: hold out "
        "val_fraction of data_path.")
    template: Literal["alpaca", "alpaca-short"] = param(
        "alpaca", "Prompt template of instruction data: Stanford Alpaca's, or its headings without the preamble.")
    chat_template: str = param(
        "auto", "How chats are rendered: auto (the tokenizer's own template; without one ChatML when the "
        "tokenizer knows its markers, else plain), chatml, plain (User:/Assistant: headers, the end-of-sequence "
        "token after each answer), a Jinja template, or the path of a .jinja file.")
    mask_prompt: bool = param(True, "Train on the response only (labels -100 on the prompt; for chats on all "
                                    "but the assistant turns) for instruction data.")
    max_length: int = param(256, "Longest sample in tokens; longer text is cut into blocks, longer "
                                 "instruction and chat samples are truncated or dropped.", ge=8, le=131072,
                            unit="tokens")
    truncation: Literal["truncate", "drop"] = param(
        "truncate", "An instruction or chat sample longer than max_length: truncate it (dropped if nothing to "
        "train on is left), or drop it. The counts are in the trial's hello event.")
    packing: bool = param(False, "Concatenate training samples into rows of up to max_length tokens; position "
                                 "ids restart at each sample, so attention never crosses samples.")
    val_fraction: float = param(0.1, "Share of the records held out for validation (unless eval_path is set).",
                                gt=0, lt=1)
    split_seed: int = param(0, "Seed of the train/validation split (the same for every trial by default).", ge=0)
    max_samples: int = param(0, "Use at most this many records, drawn by split_seed (0: all).", ge=0)
    max_val_samples: int = param(512, "Validate on at most this many samples.", ge=1)
    lora: bool = param(True, "Train LoRA adapters (peft) instead of all the weights.")
    lora_r: int = param(8, "LoRA rank.", ge=1, le=4096, log=True, search=(4, 64))
    lora_alpha: float = param(16.0, "LoRA scaling numerator (the update is scaled by alpha / r).", gt=0,
                              search=(4.0, 64.0))
    lora_dropout: float = param(0.05, "Dropout on the LoRA branch.", ge=0, lt=1, search=(0.0, 0.2))
    lora_target_modules: str = param(
        "q_proj,k_proj,v_proj,o_proj", "Comma-separated names of the modules that get adapters "
        "(Llama: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; GPT-2: c_attn,c_proj), or all-linear: "
        "every linear layer but the output head (peft's all-linear).")
    merge_on_save: bool = param(False, "Save the model with the adapters merged in, instead of the adapters only.")
    dtype: Literal["float32", "bfloat16", "float16"] = param(
        "float32", "Weight dtype the model is loaded in. A full fine-tune (lora=false) needs float32 unless the "
        "trial's precision is bf16-true: bf16-/fp16-mixed keep float32 master weights and autocast the compute. "
        "With LoRA, bfloat16 or float16 hold the frozen base and the adapters train in float32.")
    gradient_checkpointing: bool = param(False, "Recompute activations in the backward pass to save memory.")
    quantization: Literal["none", "4bit", "8bit"] = param(
        "none", "Load the frozen base model quantized by bitsandbytes and train LoRA adapters on it (needs lora, "
        "bitsandbytes and a CUDA GPU): 4bit is QLoRA (NF4 with double quantization), 8bit LLM.int8().")
    quant_compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = param(
        "auto", "Dtype 4-bit layers compute in; auto: bfloat16 under bf16 precision or dtype, float16 under fp16, "
        "else float32.")
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = param(
        "auto", "Attention kernel: auto (transformers' choice), eager, sdpa (torch's fused attention) or "
        "flash_attention_2 (needs the flash-attn package and a CUDA GPU).")
    trust_remote_code: bool = param(
        False, "Run the Python code a model folder ships (auto_map in its config.json); only for folders you trust.")


def render_prompt(record: dict[str, Any], template: str) -> str:
    """The prompt of an Alpaca record under ``template`` (the response is appended after it)."""
    with_input, without_input = ALPACA_TEMPLATES[template]
    extra = str(record.get("input") or "")
    if extra.strip():
        return with_input.format(instruction=record["instruction"], input=extra)
    return without_input.format(instruction=record["instruction"])


def _records_kind(records: list[Any], path: Path) -> str:
    if not records:
        raise ValueError(f"data_path {str(path)!r} holds no records: give {_FORMATS}")
    bad = next((r for r in records if not isinstance(r, dict)), None)
    if bad is not None:
        raise ValueError(f"data_path {str(path)!r}: every record must be a JSON object, found {bad!r:.80}")
    keys = set(records[0])
    for kind, needed in _RECORD_KINDS:
        if needed <= keys:
            for number, record in enumerate(records, 1):
                if not needed <= set(record):
                    raise ValueError(f"data_path {str(path)!r}, record {number}: lacks "
                                     f"{', '.join(sorted(needed - set(record)))} (the first record is {kind})")
            return kind
    raise ValueError(
        f"data_path {str(path)!r}: records have the fields {sorted(keys)}; expected 'text', "
        "'instruction'/'input'/'output' (Alpaca), 'prompt'/'completion', 'messages' or 'conversations'"
    )


def _conversation(record: dict[str, Any], kind: str, where: str) -> list[dict[str, str]]:
    """The turns of a chat record as ``{"role", "content"}`` (ShareGPT's ``from``/``value`` and
    its human/gpt roles mapped to user/assistant)."""
    field, role_key, text_key = ("messages", "role", "content") if kind == "messages" else \
        ("conversations", "from", "value")
    turns = record[field]
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where}: '{field}' must be a non-empty list of turns, found {turns!r:.80}")
    roles = _ROLES[kind]
    out = []
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ValueError(f"{where}, turn {number}: expected an object with '{role_key}' and '{text_key}', "
                             f"found {turn!r:.80}")
        role, text = turn[role_key], turn[text_key]
        if role not in roles:
            raise ValueError(f"{where}, turn {number}: role {role!r} is not one of {', '.join(roles)}")
        if not isinstance(text, str):
            raise ValueError(f"{where}, turn {number}: '{text_key}' must be a string, found {text!r:.80}")
        out.append({"role": roles[role], "content": text})
    return out


def _check_file(path: Path, what: str = "data_path") -> None:
    if not path.exists():
        raise ValueError(f"{what} {str(path)!r} does not exist: give a local file with {_FORMATS}")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is not a file: give a local file with {_FORMATS}")


def load_records(path: Path, data_format: str = "auto", what: str = "data_path") -> tuple[str, list[Any]]:
    """``(kind, records)`` of a data file: ``("text", [whole text])`` or a list of dicts with
    kind ``text-records``, ``alpaca``, ``prompt-completion``, or a chat kind (``messages``,
    ``sharegpt``: each record becomes ``{"messages": [{"role", "content"}, ...]}``). Raises
    ``ValueError`` naming the file (as ``what``) and what was expected."""
    try:
        return _load_records(path, data_format, what)
    except ValueError as exc:
        if what == "data_path":
            raise
        raise ValueError(str(exc).replace("data_path", what, 1)) from None


def _load_records(path: Path, data_format: str, what: str) -> tuple[str, list[Any]]:
    _check_file(path, what)
    text = path.read_text(encoding="utf-8")
    head = text.lstrip()[:1]
    is_text = data_format == "text" or (
        data_format == "auto" and (path.suffix.lower() in _TEXT_SUFFIXES or head not in ("[", "{"))
    )
    if is_text:
        if not text.strip():
            raise ValueError(f"data_path {str(path)!r} is empty")
        return "text", [text]
    records: list[Any]
    if head == "[":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"data_path {str(path)!r} is not valid JSON: {exc}") from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"data_path {str(path)!r}, line {number}: not valid JSON Lines: {exc}") from None
    kind = _records_kind(records, path)
    if data_format not in ("auto", kind):
        raise ValueError(f"data_path {str(path)!r}: data_format is {data_format!r} but its records look like {kind!r}")
    if kind in _CHAT_KINDS:
        records = [{"messages": _conversation(r, kind, f"data_path {str(path)!r}, record {number}")}
                   for number, r in enumerate(records, 1)]
    return kind, records


class CausalLMFinetune(Task):
    name = "causal-lm-finetune"
    summary = "Fine-tune a local Hugging Face causal LM (full or LoRA) on local text or instructions"
    Params = FinetuneParams
    metric = "val_loss"
    metric_mode = "min"
    model_family = "causal-lm"

    def setup(self, ctx: TaskContext) -> Any:
        import numpy as np
        import torch

        from lrbench_builtins.tasks import _lm_common as lm

        self.device, self.precision = ctx.device, ctx.precision
        self.batch_size = ctx.batch_size
        self.rank, self.world = ctx.rank, ctx.world_size
        self.epoch_rng = np.random.default_rng([ctx.seed, 0xF17E])  # the same on every rank
        # a warm worker's cache keeps the tokenized splits and the frozen base (taken out while a
        # trial holds it, given back by release); keyed by all that determines them
        self._cache = cache = ctx.cache if self.warm_reuse(self.params) else None
        data_key, self._base_key = (_warm_keys(self.params, ctx) if cache is not None else (None, None))
        data = cache.get(_DATA) if cache is not None else None
        data = data[1] if data is not None and data[0] == data_key else None
        source = "warm" if data is not None else None
        if data is None:  # the data folder's cache: an earlier trial or process tokenized the same
            disk_key = self._disk_key()
            data = _load_tokenized(disk_key, ctx.log)
            source = "disk" if data is not None else None
        records = self._read_data() if data is None else None  # before the model: a bad data file should fail fast
        self._check_options(ctx)
        base = cache.pop(_BASE, None) if cache is not None else None
        if base is not None and base[0] == self._base_key:
            model, self.tokenizer = base[1], base[2]
        else:
            base = None  # a stale base goes before another is loaded
            model, self.tokenizer = self._load_model(ctx)
        if data is None:
            data = self._tokenize(records)
            _save_tokenized(disk_key, data, ctx.log)
        if cache is not None:
            cache[_DATA] = (data_key, data)
        self._use_data(data, source, ctx.log)
        torch.manual_seed(ctx.seed)
        if self.params.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.params.lora:
            model = self._add_lora(model)
        self.n_params, self.n_trainable = lm.count_parameters(model)
        self.model_type = model.config.model_type
        return model

    def _check_options(self, ctx: TaskContext) -> None:
        """One line for an option this trial or machine cannot run, before anything is loaded."""
        p = self.params
        if p.quantization != "none":
            if not p.lora:
                raise ValueError(f"quantization={p.quantization} trains LoRA adapters on a frozen quantized base: "
                                 "set lora=true (or quantization=none for a full fine-tune)")
            if ctx.precision == "bf16-true":
                raise ValueError(f"quantization={p.quantization} keeps its quantized layers as loaded and bf16-true "
                                 "would cast them: use precision bf16-mixed (dtype=bfloat16 loads the rest in bf16)")
            if ctx.deepspeed_config is not None:
                raise ValueError(f"quantization={p.quantization} runs with the torch backend only (lrbench does not "
                                 "hand bitsandbytes layers to DeepSpeed): set the trial's backend to torch")
        on_gpu = getattr(ctx.device, "type", str(ctx.device)) == "cuda"
        needs = {"quantization": (p.quantization != "none", "bitsandbytes", "pip install bitsandbytes", "none"),
                 "attn_implementation": (p.attn_implementation == "flash_attention_2", "flash_attn",
                                         "pip install flash-attn", "sdpa")}
        for name, (asked, module, install, instead) in needs.items():
            if not asked:
                continue
            missing = [] if importlib.util.find_spec(module) else [f"the {module} package ({install})"]
            if not on_gpu:
                missing.append(f"a CUDA GPU (this trial runs on {ctx.device})")
            if missing:
                raise ValueError(f"{name}={getattr(p, name)} needs {' and '.join(missing)}: run it on a GPU "
                                 f"machine that has it, or set {name}={instead}")

    def _quantization_config(self) -> Any:
        import torch
        from transformers import BitsAndBytesConfig

        p = self.params
        if p.quantization == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        compute = p.quant_compute_dtype
        if compute == "auto":
            bf16 = self.precision in ("bf16-mixed", "bf16-true") or p.dtype == "bfloat16"
            fp16 = self.precision == "fp16-mixed" or p.dtype == "float16"
            compute = "bfloat16" if bf16 else "float16" if fp16 else "float32"
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=getattr(torch, compute))

    def _from_pretrained_options(self) -> dict[str, Any]:
        """``from_pretrained``'s options from the parameters (beyond the folder, config and dtype)."""
        import torch

        p = self.params
        options: dict[str, Any] = {"trust_remote_code": p.trust_remote_code}
        if p.attn_implementation != "auto":
            options["attn_implementation"] = p.attn_implementation
        if p.quantization != "none":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            options.update(quantization_config=self._quantization_config(), device_map={"": index})
        return options

    def _load_model(self, ctx: TaskContext | None = None) -> tuple[Any, Any]:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        given = self.params.model_path
        precision = ctx.precision if ctx is not None else getattr(self, "precision", "fp32")
        if not self.params.lora and self.params.dtype != "float32" and precision != "bf16-true":
            raise ValueError(
                f"dtype={self.params.dtype} with precision {precision} in a full fine-tune: {precision} trains "
                "float32 weights, so set dtype=float32 (the compute is still autocast under a mixed precision), "
                "or precision bf16-true to train the weights in bfloat16")
        what = "a folder written by save_pretrained (config.json, model weights and tokenizer files)"
        if not given:
            raise ValueError(f"model_path is empty: set it to a local causal-LM folder, {what}")
        path = Path(given).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"model_path {given!r} does not exist: point it at {what}")
        if not path.is_dir():
            raise ValueError(f"model_path {given!r} is a file, not a model folder: point it at {what}")
        if not (path / "config.json").is_file():
            if (path / "adapter_config.json").is_file():
                raise ValueError(
                    f"model_path {given!r} holds a LoRA adapter, not a whole model: fine-tune its base model "
                    "(named in adapter_config.json), or save the adapter merged (merge_on_save=true)"
                )
            raise ValueError(f"model_path {given!r} is not a Hugging Face model folder (no config.json): "
                             f"point it at {what}")
        trust = self.params.trust_remote_code
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
        except Exception as exc:
            if "trust_remote_code" in str(exc):
                raise ValueError(f"model_path {given!r} ships its own model code (auto_map in config.json): set "
                                 "trust_remote_code=true to run it, only for a folder you trust") from None
            raise ValueError(f"model_path {given!r}: config.json is not a model configuration ({exc})") from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
        except Exception as exc:
            raise ValueError(
                f"model_path {given!r} has no usable tokenizer ({type(exc).__name__}: {exc}): save it into the "
                "folder with tokenizer.save_pretrained(folder)"
            ) from None
        ds_config = ctx.deepspeed_config if ctx is not None else None
        if ds_config and (ds_config.get("zero_optimization") or {}).get("stage") == 3:
            # ZeRO-3: while this object lives, from_pretrained builds every weight partitioned across
            # the ranks (deepspeed.zero.Init), so a model larger than one GPU loads
            from transformers.integrations import HfDeepSpeedConfig

            from lrbench_gui.core.runs.deepspeed_config import fill_model_autos

            hidden = getattr(config, "hidden_size", None)
            self._hf_deepspeed_config = HfDeepSpeedConfig(fill_model_autos(ds_config, hidden))
        try:
            model = AutoModelForCausalLM.from_pretrained(
                path, config=config, local_files_only=True, dtype=getattr(torch, self.params.dtype),
                **self._from_pretrained_options(),
            )
        except Exception as exc:
            if self.params.attn_implementation != "auto" and ("attn" in str(exc) or "attention" in str(exc)):
                raise ValueError(f"attn_implementation={self.params.attn_implementation}: {str(exc).splitlines()[0]} "
                                 "(set attn_implementation=auto or eager)") from None
            raise ValueError(
                f"model_path {given!r}: cannot load a causal LM ({type(exc).__name__}: {exc}); the folder needs "
                "model weights (model.safetensors or pytorch_model.bin) of a causal-LM architecture"
            ) from None
        return model, tokenizer

    def _add_lora(self, model: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        p = self.params
        targets: Any = [t.strip() for t in p.lora_target_modules.split(",") if t.strip()]
        leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if not list(module.children())}
        missing = [t for t in targets if t not in leaves and t != "all-linear"]
        if targets == ["all-linear"]:
            targets = "all-linear"  # peft's own value: every linear layer but the output head
        elif "all-linear" in targets:
            raise ValueError(f"lora_target_modules {p.lora_target_modules!r}: all-linear stands alone (it already "
                             "names every linear layer)")
        if not targets or missing:
            raise ValueError(
                f"lora_target_modules {p.lora_target_modules!r}: {', '.join(missing) or 'empty'} "
                f"{'is' if len(missing) == 1 else 'are'} not a module of {p.model_path!r}; its layers are "
                f"{', '.join(sorted(leaves))}"
            )
        config = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                            target_modules=targets, bias="none", task_type="CAUSAL_LM")
        if p.quantization != "none":  # norms in fp32, inputs that carry gradients through the frozen base
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=p.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; nothing for users to do
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            return get_peft_model(model, config)

    def _token_ids(self, texts: list[str], special: bool) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=special)["input_ids"]

    def _data_paths(self) -> tuple[Path, Path | None]:
        p = self.params
        if not p.data_path:
            raise ValueError(f"data_path is empty: set it to a local file with {_FORMATS}")
        data = Path(p.data_path).expanduser()
        _check_file(data)
        evals = Path(p.eval_path).expanduser() if p.eval_path else None
        if evals is not None:
            _check_file(evals, "eval_path")
        return data, evals

    def _disk_key(self) -> str:
        """The tokenized data cache's key of this trial (checks the data files first)."""
        return _tokenized_key(self.params, *self._data_paths())

    def _read_data(self) -> tuple[list[Any], list[Any] | None]:
        """The records of data_path and of eval_path (None without one); sets ``data_kind`` and
        ``eval_kind``. Raises ``ValueError`` in one line on a bad file."""
        p = self.params
        data, evals = self._data_paths()
        self.data_kind, records = load_records(data, p.data_format)
        self.eval_kind, eval_records = (load_records(evals, "auto", "eval_path") if evals is not None
                                        else (self.data_kind, None))
        return records, eval_records

    def _tokenize(self, read: tuple[list[Any], list[Any] | None]) -> dict[str, Any]:
        """Everything the tokenized data cache keeps: the splits, the kinds, the special ids and
        the counts of dropped and truncated records."""
        self._counts = {"records": 0, "dropped": 0, "truncated": 0}
        self.train, self.val = self._split(*read)
        return {"kind": self.data_kind, "eval_kind": self.eval_kind, "train": self.train, "val": self.val,
                "eos": self.eos, "pad_id": self.pad_id, "info": {**self._counts, "chat_template": self._chat_name}}

    def _use_data(self, data: dict[str, Any], source: str | None, log: Any) -> None:
        """Take the tokenized data (fresh or cached), pack it if asked, and say what it is: one
        line, and a warning line when records were dropped or truncated."""
        p = self.params
        self.data_kind, self.eval_kind = data["kind"], data["eval_kind"]
        self.train, self.val, self.eos, self.pad_id = data["train"], data["val"], data["eos"], data["pad_id"]
        info = data["info"]
        self.rows = _pack(self.train, p.max_length, p.split_seed) if p.packing else None
        self._info = {"kind": self.data_kind, **({"eval_kind": self.eval_kind} if p.eval_path else {}),
                      "train_samples": len(self.train), "val_samples": len(self.val), **info,
                      "from_cache": source is not None}
        if self.rows is not None:
            self._info["packed_rows"] = len(self.rows)
        if source is not None:
            log(f"{self.name}: tokenized data from cache ({'this worker' if source == 'warm' else 'data folder'})")
        packed = f", packed into {len(self.rows)} rows" if self.rows is not None else ""
        log(f"{self.name}: {len(self.train)} training and {len(self.val)} validation samples "
            f"({self.data_kind}), mean length {self.tokens_per_sample()} tokens{packed}")
        if info["dropped"] or info["truncated"]:
            why = "longer than max_length" if p.truncation == "drop" else "nothing to train on within max_length"
            log(f"{self.name}: warning: {info['dropped']} of {info['records']} records dropped ({why}) and "
                f"{info['truncated']} truncated at max_length {p.max_length} (truncation={p.truncation}): "
                "raise max_length to keep them")

    def data_info(self) -> dict[str, Any]:
        """What the data became, for the trial's hello event: kinds, sample counts, records
        dropped and truncated, the chat template used, packed rows, whether it came from the cache."""
        return dict(getattr(self, "_info", {}))

    def _units(self, kind: str, records: list[Any]) -> list[Any]:
        """Plain text is tokenized whole and cut into ``max_length`` blocks before the split;
        other records are split as they are."""
        if kind != "text":
            return records
        n = self.params.max_length
        ids = self._token_ids(records, True)[0] + self.eos
        return [ids[i : i + n] for i in range(0, len(ids), n)]

    def _split(self, records: list[Any], eval_records: list[Any] | None = None) -> tuple[list[Any], list[Any]]:
        """Train and validation samples, each ``(token ids, trained)`` (see ``_samples``); the
        records are split before tokenizing, so blocks of one record never straddle the split.
        With ``eval_records`` (eval_path) every record of data_path trains."""
        import numpy as np

        p = self.params
        path = Path(p.data_path).expanduser()
        tok = self.tokenizer
        self.eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        self.pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None))
        if not hasattr(self, "eval_kind"):
            self.eval_kind = self.data_kind
        self._chat_name = None
        records = self._units(self.data_kind, records)
        order = np.random.default_rng(p.split_seed).permutation(len(records))
        if p.max_samples:
            order = order[: p.max_samples]
        if eval_records is None:
            if len(order) < 2:
                raise ValueError(f"data_path {str(path)!r} gives {len(order)} sample(s): at least 2 are needed "
                                 "(one to train on, one to validate on), or give eval_path")
            n_val = min(len(order) - 1, max(1, round(len(order) * p.val_fraction)))
            train, val = [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]
            val_kind, val_name = self.data_kind, f"data_path {str(path)!r}"
        else:
            train, val = [records[i] for i in order], self._units(self.eval_kind, eval_records)
            val_kind, val_name = self.eval_kind, f"eval_path {p.eval_path!r}"
        parts = [self._samples(train), self._samples(val, val_kind)[: p.max_val_samples]]
        for part, name, where in zip(parts, ("training", "validation"), (f"data_path {str(path)!r}", val_name)):
            if not part:
                raise ValueError(f"{where}: no {name} sample is left with max_length {p.max_length} "
                                 "(every prompt fills it): raise max_length")
        return parts[0], parts[1]

    def _fit(self, ids: list[int], trained: list[bool] | Any) -> tuple[list[int], Any] | None:
        """One instruction or chat sample under max_length and the truncation policy (counted),
        or None when it is dropped."""
        import numpy as np

        p = self.params
        counts = self.__dict__.setdefault("_counts", {"records": 0, "dropped": 0, "truncated": 0})
        counts["records"] += 1
        trained = np.asarray(trained, dtype=bool)
        if len(ids) > p.max_length:
            if p.truncation == "drop":
                counts["dropped"] += 1
                return None
            ids, trained = ids[: p.max_length], trained[: p.max_length]
            if trained.any():
                counts["truncated"] += 1
        if not trained.any() or len(ids) < 2:
            counts["dropped"] += 1
            return None
        return ids, trained

    def _samples(self, records: list[Any], kind: str | None = None) -> list[tuple[Any, Any]]:
        """Samples ``(token ids, trained)``: ``trained`` is the index of the first trained token
        (the prompt's length; 0 for text), or for a chat whose trained tokens are not one suffix
        a boolean mask of them (the assistant turns)."""
        p = self.params
        kind = kind or self.data_kind
        out: list[tuple[Any, Any]] = []
        if kind == "text":
            out = [(ids, [True] * len(ids)) for ids in records]
        elif kind == "text-records":
            for ids in self._token_ids([str(r["text"]) for r in records], True):
                ids = ids + self.eos
                out += [(ids[i : i + p.max_length], [True] * len(ids[i : i + p.max_length]))
                        for i in range(0, len(ids), p.max_length)]
        elif kind in _CHAT_KINDS:
            out = [s for s in (self._fit(ids, trained) for ids, trained in self._chat_tokens(records)) if s]
        else:
            if kind == "alpaca":
                prompts = [render_prompt(r, p.template) for r in records]
                answers = [str(r["output"]) for r in records]
            else:
                prompts = [str(r["prompt"]) for r in records]
                answers = [str(r["completion"]) for r in records]
            for prompt, answer in zip(self._token_ids(prompts, True), self._token_ids(answers, False)):
                if self.eos and prompt[-1:] == self.eos:
                    prompt = prompt[:-1]  # a tokenizer that closes every sequence: the response goes on
                ids = prompt + answer + self.eos
                sample = self._fit(ids, [False] * len(prompt) + [True] * (len(ids) - len(prompt)))
                if sample:
                    out.append(sample)
        return [_sample(ids, trained) for ids, trained in out if len(ids) >= 2]

    def _chat_template(self) -> tuple[str | None, str]:
        """``(template, name)`` for chats: the Jinja text to render with (None: the tokenizer's
        own) and the name the data info shows."""
        choice = self.params.chat_template.strip()
        tok = self.tokenizer
        if choice == "auto":
            if getattr(tok, "chat_template", None):
                return None, "tokenizer"
            unk = tok.unk_token_id
            known = all(tok.convert_tokens_to_ids(m) not in (None, unk) for m in ("<|im_start|>", "<|im_end|>"))
            choice = "chatml" if known else "plain"
        if choice in CHAT_TEMPLATES:
            if choice == "chatml" and tok.unk_token_id is not None:
                ids = tok("<|im_start|>user\n<|im_end|>", add_special_tokens=False)["input_ids"]
                if tok.unk_token_id in ids:
                    raise ValueError("chat_template=chatml: this tokenizer cannot write ChatML's <|im_start|>/"
                                     "<|im_end|> markers (they become unknown tokens): use chat_template=plain")
            return CHAT_TEMPLATES[choice], choice
        if "{{" in choice or "{%" in choice:
            return choice, "custom"
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ValueError(f"chat_template {self.params.chat_template!r} is neither auto, chatml, plain, a Jinja "
                             "template nor an existing .jinja file")
        return path.read_text(encoding="utf-8"), path.name

    def _chat_tokens(self, records: list[dict[str, Any]]) -> list[tuple[list[int], list[bool]]]:
        """Each chat rendered with the chat template and tokenized, with the tokens of its
        assistant turns marked. A turn's characters are found by rendering the chat up to it (with
        the generation prompt: where the answer starts) and through it (where it ends, trailing
        whitespace left out); a template whose prefixes are not prefixes of the whole chat falls
        back to finding every turn's text in order (and an end-of-sequence token right after an answer)."""
        import numpy as np

        template, self._chat_name = self._chat_template()
        tok = self.tokenizer

        def render(messages: list[dict[str, str]], prompt: bool, number: int) -> str:
            try:
                return tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                               add_generation_prompt=prompt)
            except Exception as exc:
                raise ValueError(f"chat_template ({self._chat_name}) cannot render record {number}: "
                                 f"{type(exc).__name__}: {exc}") from None

        texts, spans = [], []
        for number, record in enumerate(records, 1):
            messages = record["messages"]
            full = render(messages, False, number)
            found: list[tuple[int, int]] = []
            located: list[tuple[int, int]] | None = None
            for i, message in enumerate(messages):
                if message["role"] != "assistant":
                    continue
                start, end = render(messages[:i], True, number), render(messages[: i + 1], False, number)
                if full.startswith(start) and full.startswith(end) and len(start) <= len(end):
                    a, b = len(start), len(end.rstrip())
                else:  # every turn's text found in order, the answer's then taken
                    located = located or _locate(full, messages, f"chat_template ({self._chat_name}), record {number}")
                    a, b = located[i]
                    eos = tok.eos_token or ""
                    if eos and full.startswith(eos, b):
                        b += len(eos)
                if b > a:
                    found.append((a, b))
            texts.append(full)
            spans.append(found)
        if not texts:
            return []
        try:
            encoded = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
            starts = [[o[0] for o in offsets] for offsets in encoded["offset_mapping"]]
        except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer: no offsets
            encoded = tok(texts, add_special_tokens=False)
            starts = [self._char_starts(text, len(ids)) for text, ids in zip(texts, encoded["input_ids"])]
        out = []
        for ids, begin, found in zip(encoded["input_ids"], starts, spans):
            begin = np.asarray(begin)
            trained = np.zeros(len(ids), dtype=bool)
            for a, b in found:
                trained |= (begin >= a) & (begin < b)
            out.append((list(ids), trained))
        return out

    def _char_starts(self, text: str, n: int) -> list[int]:
        """Where each token starts, for a tokenizer without offsets: the token count of every
        prefix (slow, only for slow tokenizers)."""
        starts, count = [0] * n, 0
        for c in range(1, len(text) + 1):
            now = len(self.tokenizer(text[:c], add_special_tokens=False)["input_ids"])
            for t in range(count, min(now, n)):
                starts[t] = c - 1
            count = max(count, now)
        return starts

    def collate(self, samples: list[Any]) -> dict[str, Any]:
        """A right-padded batch: ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on
        padding and, with ``mask_prompt``, on the prompt), on the CPU. A batch of packed rows
        (lists of samples) gets ``position_ids`` that restart at each sample instead of an
        attention mask's use: see ``_collate_packed``."""
        import torch

        from lrbench_builtins.tasks._lm_common import IGNORE_INDEX

        if samples and isinstance(samples[0], list):
            return self._collate_packed(samples)
        width = max(len(ids) for ids, _ in samples)
        input_ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(samples), width), dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, trained) in enumerate(samples):
            n = len(ids)
            input_ids[row, :n] = torch.from_numpy(ids)
            attention[row, :n] = 1
            labels[row, :n] = self._labels(ids, trained)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    def _labels(self, ids: Any, trained: Any) -> Any:
        import torch

        from lrbench_builtins.tasks._lm_common import IGNORE_INDEX

        labels = torch.from_numpy(ids).clone()
        if self.params.mask_prompt:
            if isinstance(trained, int):
                labels[:trained] = IGNORE_INDEX
            else:
                labels[~torch.from_numpy(trained)] = IGNORE_INDEX
        return labels

    def _collate_packed(self, rows: list[list[Any]]) -> dict[str, Any]:
        """Packed rows: samples side by side, ``position_ids`` from 0 at each sample (and at the
        padding), no attention mask handed to the model, so transformers' packed-sequence masking
        keeps attention within each sample; the first token of each sample is not a target (the
        previous sample's last token does not predict it). ``attention_mask`` marks the real
        tokens for counting only."""
        import torch

        from lrbench_builtins.tasks._lm_common import IGNORE_INDEX

        width = max(sum(len(ids) for ids, _ in row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for ids, trained in row:
                n = len(ids)
                input_ids[r, at : at + n] = torch.from_numpy(ids)
                attention[r, at : at + n] = 1
                labels[r, at : at + n] = self._labels(ids, trained)
                labels[r, at] = IGNORE_INDEX
                positions[r, at : at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(width - at)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "position_ids": positions}

    def _train_units(self) -> list[Any]:
        return self.rows if getattr(self, "rows", None) is not None else self.train

    def samples_per_epoch(self) -> int:
        """Training samples, or with packing the packed rows (a batch holds ``batch_size`` rows)."""
        return len(self._train_units())

    def tokens_per_sample(self) -> int:
        units = self._train_units()
        lengths = [sum(len(ids) for ids, _ in u) if isinstance(u, list) else len(u[0]) for u in units]
        return max(1, round(sum(lengths) / max(1, len(lengths))))

    def train_batches(self) -> Iterator[Any]:
        """Epochs in an order every rank shares; sample (or packed row) ``i`` of it goes to rank
        ``i % world_size``."""
        units = self._train_units()
        while True:
            mine = self.epoch_rng.permutation(len(units))[self.rank :: self.world]
            step = max(1, min(self.batch_size, len(mine)))
            for i in range(0, len(mine) - step + 1, step):
                yield self.collate([units[j] for j in mine[i : i + step]])

    def _forward(self, model: Any, batch: dict[str, Any], reduction: str = "mean") -> tuple[Any, Any]:
        from lrbench_builtins.tasks._lm_common import causal_lm_loss

        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        # packed rows: position ids restart per sample and no mask goes in (transformers masks per sample)
        where = ({"position_ids": batch["position_ids"]} if "position_ids" in batch
                 else {"attention_mask": batch["attention_mask"]})
        logits = model(input_ids=batch["input_ids"], **where, use_cache=False).logits
        return causal_lm_loss(logits, batch["labels"], reduction), batch

    def loss(self, model: Any, batch: Any) -> tuple[Any, dict[str, int]]:
        loss, batch = self._forward(model, batch)
        return loss, {"samples": int(batch["input_ids"].shape[0]), "tokens": int(batch["attention_mask"].sum())}

    def evaluate(self, model: Any) -> dict[str, float]:
        from lrbench_builtins.tasks import _lm_common as lm

        total, count = 0.0, 0
        size = max(8, self.batch_size)
        with lm.eval_mode(model):
            for i in range(0, len(self.val), size):
                loss, batch = self._forward(model, self.collate(self.val[i : i + size]), "sum")
                total += float(loss)
                count += int((batch["labels"][:, 1:] != lm.IGNORE_INDEX).sum())
        return lm.loss_metrics(total / max(1, count))

    def eval_context(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "device": self.device}

    def model_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"family": getattr(self, "model_type", self.model_family)}
        if hasattr(self, "n_params"):
            info.update(params=self.n_params, trainable_params=self.n_trainable)
        if self.params.lora:
            info["lora_r"] = self.params.lora_r
        return info

    def save_model(self, model: Any, folder: Path) -> None:
        """``save_pretrained`` of the model (with LoRA: the adapter, or with ``merge_on_save`` the
        merged model; merging changes ``model`` in place) and of the tokenizer."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if hasattr(model, "peft_config") and self.params.merge_on_save:
            self._merged = True  # the base now holds the adapters: a warm worker must not keep it
            model = model.merge_and_unload()
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    @classmethod
    def warm_reuse(cls, params: Params) -> bool:
        """LoRA on an unquantized base: the base stays frozen, so a warm worker keeps it (and
        the tokenized data) and each trial gets new adapters; a full fine-tune changes every
        weight and runs fresh. Quantized bases run fresh too (their reuse is not checked yet)."""
        return bool(params.lora) and getattr(params, "quantization", "none") == "none"

    def release(self, model: Any) -> None:
        """Back to the cache: the base as ``from_pretrained`` gave it (adapters unloaded,
        trainable again, in eval mode), unless the adapters were merged into it."""
        from peft import PeftModel

        if self._cache is None or getattr(self, "_merged", False) or not isinstance(model, PeftModel):
            return
        base = model.unload()
        if getattr(base, "_require_grads_hook", None) is not None:  # peft's hook for gradient checkpointing
            base.disable_input_require_grads()
        for weight in base.parameters():
            weight.requires_grad_(True)
        base.eval()
        self._cache[_BASE] = (self._base_key, base, self.tokenizer)


_DATA, _BASE = "causal-lm-finetune:data", "causal-lm-finetune:base"
#: parameters that change neither the tokenized data nor, in the second set, the base model
_NOT_DATA = {"lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_on_save", "dtype",
             "gradient_checkpointing", "quantization", "quant_compute_dtype", "attn_implementation",
             "packing"}  # packing is done on the tokenized samples, in every trial
_NOT_BASE = {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_on_save", "data_path",
             "data_format", "template", "mask_prompt", "max_length", "val_fraction", "split_seed", "max_samples",
             "max_val_samples", "eval_path", "chat_template", "truncation", "packing"}


def _stamp(path: Path) -> list[Any]:
    """Size and modification time of a file, or of each file in a folder: a changed model or
    data file is loaded again."""
    try:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        return [(f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()]]
    except OSError:
        return []


def _warm_keys(params: FinetuneParams, ctx: TaskContext) -> tuple[str, str]:
    """The cache keys of the tokenized data and of the base model: every parameter that can
    change them (a parameter added later counts until it is listed as not mattering), the files'
    stamps, and for the base the trial's precision and device."""
    given = params.model_dump(mode="json")
    folder = _stamp(Path(params.model_path).expanduser())
    data = {k: v for k, v in given.items() if k not in _NOT_DATA}
    base = {k: v for k, v in given.items() if k not in _NOT_BASE}
    files = [_stamp(Path(f).expanduser()) if f else [] for f in (params.data_path, params.eval_path,
                                                                 _template_file(params.chat_template))]
    return (json.dumps([data, folder, files], sort_keys=True, default=str),
            json.dumps([base, folder, ctx.precision, str(ctx.device)], sort_keys=True, default=str))


def _template_file(choice: str) -> str:
    """The file a chat_template value names, or "" (auto, a built-in name or Jinja text)."""
    choice = choice.strip()
    if choice in ("auto", *CHAT_TEMPLATES) or "{{" in choice or "{%" in choice:
        return ""
    return choice


def _locate(text: str, messages: list[dict[str, str]], where: str) -> list[tuple[int, int]]:
    """Where each turn's content is in a rendered chat, searched in order."""
    out, cursor = [], 0
    for number, message in enumerate(messages, 1):
        a = text.find(message["content"], cursor)
        if a < 0:
            raise ValueError(f"{where}: the rendered chat does not hold the text of turn {number}: check the template")
        cursor = a + len(message["content"])
        out.append((a, cursor))
    return out


def _sample(ids: list[int], trained: Any) -> tuple[Any, Any]:
    """``(ids as int64, trained)`` with ``trained`` the first trained index when the trained
    tokens are one suffix, else their boolean mask: fresh and cached samples come out alike."""
    import numpy as np

    ids = np.asarray(ids, dtype=np.int64)
    trained = np.asarray(trained, dtype=bool)
    first = int(trained.argmax()) if trained.any() else len(trained)
    return (ids, first) if trained[first:].all() else (ids, trained)


def _trained_mask(sample: tuple[Any, Any]) -> Any:
    import numpy as np

    ids, trained = sample
    if isinstance(trained, int):
        return np.arange(len(ids)) >= trained
    return trained


def _pack(samples: list[Any], width: int, seed: int) -> list[list[Any]]:
    """Rows of whole samples, each at most ``width`` tokens: the samples in a seeded order, a
    row closed when the next one does not fit (every sample is at most ``width`` already)."""
    import numpy as np

    rows: list[list[Any]] = []
    row: list[Any] = []
    used = 0
    for i in np.random.default_rng([seed, 0x9AC]).permutation(len(samples)):
        n = len(samples[i][0])
        if row and used + n > width:
            rows.append(row)
            row, used = [], 0
        row.append(samples[i])
        used += n
    if row:
        rows.append(row)
    return rows


#: bump when tokenizing changes, so no cache file of an older lrbench is read
_CACHE_FORMAT = 1
_CACHE_FILES = 64


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tokenizer_digest(folder: Path) -> str:
    """A hash of the model folder's files but the weights: the tokenizer, its chat template and
    the config (a changed tokenizer tokenizes again; a copied folder does not)."""
    weights = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt", ".onnx"}
    h = hashlib.sha256()
    try:
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix not in weights
                       and not f.name.endswith(".index.json"))
    except OSError:
        return ""
    for f in files:
        if f.stat().st_size <= 256 << 20:
            h.update(f"{f.name}\0{_digest(f)}\0".encode())
    return h.hexdigest()


def _tokenized_key(params: FinetuneParams, data: Path, evals: Path | None) -> str:
    """The tokenized data's cache key: the data files' content, the tokenizer's files, every
    data parameter and the tokenizer libraries' versions."""
    import tokenizers
    import transformers

    given = params.model_dump(mode="json")
    fields = {k: v for k, v in given.items() if k not in _NOT_DATA | {"model_path", "data_path", "eval_path"}}
    template = _template_file(params.chat_template)
    template_file = Path(template).expanduser() if template else None
    key = [_CACHE_FORMAT, fields, _digest(data), _digest(evals) if evals else None,
           _digest(template_file) if template_file is not None and template_file.is_file() else None,
           _tokenizer_digest(Path(params.model_path).expanduser()), transformers.__version__, tokenizers.__version__]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _cache_dir() -> Path:
    from lrbench_gui.core.paths import data_dir

    return data_dir() / "cache" / "tokenized"


def _cache_limit() -> int:
    """Bytes the tokenized data cache may hold (``LRBENCH_TOKENIZED_CACHE_MB``, 2048 by default;
    0 turns the cache off)."""
    try:
        return max(0, int(float(os.environ.get("LRBENCH_TOKENIZED_CACHE_MB", "2048")) * (1 << 20)))
    except ValueError:
        return 2048 << 20


def _load_tokenized(key: str, log: Any) -> dict[str, Any] | None:
    """The cached data of ``key``, or None when there is none (a file that cannot be read is
    ignored, and rewritten after tokenizing). No pickle: ``allow_pickle=False``."""
    import numpy as np

    if not _cache_limit():
        return None
    path = _cache_dir() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(stored["meta"].tobytes().decode("utf-8"))
            if meta.get("key") != key:
                raise ValueError("the file holds another key")
            parts = {}
            for part in ("train", "val"):
                ids, lengths, mask = (stored[f"{part}_{x}"] for x in ("ids", "lengths", "mask"))
                ends = np.cumsum(lengths).tolist()
                if int(lengths.sum()) != len(ids) or len(ids) != len(mask) or (lengths < 2).any():
                    raise ValueError(f"the {part} arrays do not fit together")
                parts[part] = [_sample(ids[e - n : e], mask[e - n : e]) for n, e in zip(lengths.tolist(), ends)]
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn or foreign file: tokenize again, and write it anew
        log(f"causal-lm-finetune: ignoring the unreadable tokenized-data cache file {path.name} "
            f"({type(exc).__name__}: {exc}); tokenizing again")
        return None
    try:
        os.utime(path)  # recently used: kept longest when the cache is trimmed
    except OSError:
        pass
    return {"kind": meta["kind"], "eval_kind": meta["eval_kind"], "eos": meta["eos"], "pad_id": meta["pad_id"],
            "info": meta["info"], **parts}


def _save_tokenized(key: str, data: dict[str, Any], log: Any) -> None:
    """Write ``data`` under ``key``: a temporary file renamed into place (readers see a whole file
    or none; of two writers the last wins), then the cache trimmed to its size limit."""
    import numpy as np

    limit = _cache_limit()
    if not limit:
        return
    folder = _cache_dir()
    arrays: dict[str, Any] = {}
    for part in ("train", "val"):
        samples = data[part]
        arrays[f"{part}_ids"] = np.concatenate([s[0] for s in samples]).astype(np.int32) if samples else \
            np.zeros(0, np.int32)
        arrays[f"{part}_lengths"] = np.asarray([len(s[0]) for s in samples], dtype=np.int64)
        arrays[f"{part}_mask"] = np.concatenate([_trained_mask(s) for s in samples]) if samples else \
            np.zeros(0, bool)
    meta = {"key": key, **{k: data[k] for k in ("kind", "eval_kind", "eos", "pad_id", "info")}}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if sum(a.nbytes for a in arrays.values()) > limit:
        return
    tmp = folder / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, folder / f"{key}.npz")
    except OSError as exc:  # a full or read-only disk costs the cache, not the trial
        log(f"causal-lm-finetune: could not write the tokenized-data cache ({exc}); the trial goes on")
        tmp.unlink(missing_ok=True)
        return
    _trim_cache(folder, limit)


def _trim_cache(folder: Path, limit: int) -> None:
    """Keep the most recently used files within ``limit`` bytes and ``_CACHE_FILES`` files, and
    remove temporary files an interrupted writer left (older than an hour)."""
    entries = []
    for f in folder.iterdir():
        try:
            st = f.stat()
        except OSError:
            continue
        if f.suffix == ".tmp" and time.time() - st.st_mtime > 3600:
            f.unlink(missing_ok=True)
        elif f.suffix == ".npz":
            entries.append((st.st_mtime, st.st_size, f))
    total = 0
    for number, (_, size, f) in enumerate(sorted(entries, key=lambda e: e[0], reverse=True)):
        total += size
        if number >= _CACHE_FILES or total > limit:
            f.unlink(missing_ok=True)


@hookimpl
def register_tasks(register):
    register(CausalLMFinetune)
