"""The LLM fine-tuning workload: any local Hugging Face causal LM, fine-tuned fully or with LoRA
(peft) on a local data set, the loss masked to the response for instruction data.

Data formats, detected from the file: plain text (``.txt``: cut into ``max_length`` blocks),
JSON Lines with a ``text`` field (one sample per record, long ones cut into blocks), Alpaca-style
records (``instruction``, optional ``input``, ``output``) as a JSON list or JSON Lines, and
``prompt``/``completion`` records. Nothing is downloaded: the model folder must hold the config,
the weights and the tokenizer (what ``save_pretrained`` writes, or the ``model`` folder of a
``tinylm-pretrain`` trial).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.hookspecs import hookimpl

__all__ = ["CausalLMFinetune", "FinetuneParams", "ALPACA_TEMPLATES", "load_records", "render_prompt"]

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
_RECORD_KINDS = [("alpaca", {"instruction", "output"}), ("prompt-completion", {"prompt", "completion"}),
                 ("text-records", {"text"})]
_FORMATS = "plain text (.txt), JSON Lines with a 'text' field, Alpaca records (instruction, input, output) " \
           "as a JSON list or JSON Lines, or prompt/completion records"


class FinetuneParams(Params):
    model_path: str = param(
        "", "A local Hugging Face causal-LM folder (config.json, weights, tokenizer files), as written by "
        "save_pretrained, e.g. the model folder of a tinylm-pretrain trial.")
    data_path: str = param(
        "", "A local data set: plain text (.txt), JSON Lines with 'text', Alpaca records (instruction, "
        "input, output) as JSON or JSON Lines, or prompt/completion JSON Lines.")
    data_format: Literal["auto", "text", "text-records", "alpaca", "prompt-completion"] = param(
        "auto", "How to read data_path; auto: from the file name and its records' fields.")
    template: Literal["alpaca", "alpaca-short"] = param(
        "alpaca", "Prompt template of instruction data: Stanford Alpaca's, or its headings without the preamble.")
    mask_prompt: bool = param(True, "Train on the response only (labels -100 on the prompt) for instruction data.")
    max_length: int = param(256, "Longest sample in tokens; longer text is cut into blocks, longer "
                                 "instruction samples are truncated.", ge=8, le=131072, unit="tokens")
    val_fraction: float = param(0.1, "Share of the records held out for validation.", gt=0, lt=1)
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
        "'instruction'/'input'/'output' (Alpaca) or 'prompt'/'completion'"
    )


def load_records(path: Path, data_format: str = "auto") -> tuple[str, list[Any]]:
    """``(kind, records)`` of a data file: ``("text", [whole text])`` or a list of dicts with
    kind ``text-records``, ``alpaca`` or ``prompt-completion``. Raises ``ValueError`` naming the
    file and what was expected."""
    if not path.exists():
        raise ValueError(f"data_path {str(path)!r} does not exist: give a local file with {_FORMATS}")
    if not path.is_file():
        raise ValueError(f"data_path {str(path)!r} is not a file: give a local file with {_FORMATS}")
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
        records = self._read_data() if data is None else None  # before the model: a bad data file should fail fast
        self._check_options(ctx)
        base = cache.pop(_BASE, None) if cache is not None else None
        if base is not None and base[0] == self._base_key:
            model, self.tokenizer = base[1], base[2]
        else:
            base = None  # a stale base goes before another is loaded
            model, self.tokenizer = self._load_model(ctx)
        if data is not None:
            self.data_kind, self.train, self.val, self.eos, self.pad_id = data
        else:
            self.train, self.val = self._split(records)
            if cache is not None:
                cache[_DATA] = (data_key, (self.data_kind, self.train, self.val, self.eos, self.pad_id))
        ctx.log(f"{self.name}: {len(self.train)} training and {len(self.val)} validation samples "
                f"({self.data_kind}), mean length {self.tokens_per_sample()} tokens")
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

    def _read_data(self) -> list[Any]:
        p = self.params
        if not p.data_path:
            raise ValueError(f"data_path is empty: set it to a local file with {_FORMATS}")
        self.data_kind, records = load_records(Path(p.data_path).expanduser(), p.data_format)
        return records

    def _split(self, records: list[Any]) -> tuple[list[Any], list[Any]]:
        """Train and validation samples, each ``(token ids, prompt length)``; the records are
        split before tokenizing, so blocks of one record never straddle the split."""
        import numpy as np

        p = self.params
        path = Path(p.data_path).expanduser()
        tok = self.tokenizer
        self.eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        self.pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None))
        if self.data_kind == "text":
            ids = self._token_ids(records, True)[0] + self.eos
            records = [ids[i : i + p.max_length] for i in range(0, len(ids), p.max_length)]
        order = np.random.default_rng(p.split_seed).permutation(len(records))
        if p.max_samples:
            order = order[: p.max_samples]
        if len(order) < 2:
            raise ValueError(f"data_path {str(path)!r} gives {len(order)} sample(s): at least 2 are needed "
                             "(one to train on, one to validate on)")
        n_val = min(len(order) - 1, max(1, round(len(order) * p.val_fraction)))
        parts = [self._samples([records[i] for i in order[n_val:]]),
                 self._samples([records[i] for i in order[:n_val]])[: p.max_val_samples]]
        for part, name in zip(parts, ("training", "validation")):
            if not part:
                raise ValueError(f"data_path {str(path)!r}: no {name} sample is left with max_length {p.max_length} "
                                 "(every prompt fills it): raise max_length")
        return parts[0], parts[1]

    def _samples(self, records: list[Any]) -> list[tuple[Any, int]]:
        import numpy as np

        p = self.params
        out: list[tuple[list[int], int]] = []
        if self.data_kind == "text":
            out = [(ids, 0) for ids in records]
        elif self.data_kind == "text-records":
            for ids in self._token_ids([str(r["text"]) for r in records], True):
                ids = ids + self.eos
                out += [(ids[i : i + p.max_length], 0) for i in range(0, len(ids), p.max_length)]
        else:
            if self.data_kind == "alpaca":
                prompts = [render_prompt(r, p.template) for r in records]
                answers = [str(r["output"]) for r in records]
            else:
                prompts = [str(r["prompt"]) for r in records]
                answers = [str(r["completion"]) for r in records]
            for prompt, answer in zip(self._token_ids(prompts, True), self._token_ids(answers, False)):
                if self.eos and prompt[-1:] == self.eos:
                    prompt = prompt[:-1]  # a tokenizer that closes every sequence: the response goes on
                ids = (prompt + answer + self.eos)[: p.max_length]
                if len(prompt) < len(ids):
                    out.append((ids, len(prompt)))
        return [(np.asarray(ids, dtype=np.int64), n) for ids, n in out if len(ids) >= 2]

    def collate(self, samples: list[tuple[Any, int]]) -> dict[str, Any]:
        """A right-padded batch: ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on
        padding and, with ``mask_prompt``, on the prompt), on the CPU."""
        import torch

        from lrbench_builtins.tasks._lm_common import IGNORE_INDEX

        width = max(len(ids) for ids, _ in samples)
        input_ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(samples), width), dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, n_prompt) in enumerate(samples):
            ids = torch.from_numpy(ids)
            input_ids[row, : len(ids)] = ids
            attention[row, : len(ids)] = 1
            labels[row, : len(ids)] = ids
            if self.params.mask_prompt:
                labels[row, :n_prompt] = IGNORE_INDEX
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

    def samples_per_epoch(self) -> int:
        return len(self.train)

    def tokens_per_sample(self) -> int:
        return max(1, round(sum(len(ids) for ids, _ in self.train) / max(1, len(self.train))))

    def train_batches(self) -> Iterator[Any]:
        """Epochs in an order every rank shares; sample ``i`` of it goes to rank ``i % world_size``."""
        while True:
            mine = self.epoch_rng.permutation(len(self.train))[self.rank :: self.world]
            step = max(1, min(self.batch_size, len(mine)))
            for i in range(0, len(mine) - step + 1, step):
                yield self.collate([self.train[j] for j in mine[i : i + step]])

    def _forward(self, model: Any, batch: dict[str, Any], reduction: str = "mean") -> tuple[Any, Any]:
        from lrbench_builtins.tasks._lm_common import causal_lm_loss

        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
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
             "gradient_checkpointing", "quantization", "quant_compute_dtype", "attn_implementation"}
_NOT_BASE = {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_on_save", "data_path",
             "data_format", "template", "mask_prompt", "max_length", "val_fraction", "split_seed", "max_samples",
             "max_val_samples"}


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
    return (json.dumps([data, folder, _stamp(Path(params.data_path).expanduser())], sort_keys=True, default=str),
            json.dumps([base, folder, ctx.precision, str(ctx.device)], sort_keys=True, default=str))


@hookimpl
def register_tasks(register):
    register(CausalLMFinetune)
