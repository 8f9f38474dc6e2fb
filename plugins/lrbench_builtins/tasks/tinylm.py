"""The LLM-pretraining workload in miniature: a small Llama-architecture causal LM trained from
scratch, character by character, on a seeded synthetic language (or a local text file).

The corpus (see ``_corpus.py``) is generated on the fly, so the data never repeats and a token
budget of any size is real pre-training; its ``version`` shifts the distribution for
continued-pretraining and path-switching studies. Default size: 2 layers, d=96, 4 heads, context
64, about 0.23 M parameters, tens of thousands of tokens a second on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import model_validator

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.hookspecs import hookimpl

__all__ = ["TinyLMPretrain", "TinyLMParams"]

_TRAIN_STREAM, _VAL_STREAM = 1, 2
_CHUNK_TOKENS = 1 << 17  # tokens generated at a time (~25 ms); batches are drawn from a chunk
_EVAL_BATCH = 64


class TinyLMParams(Params):
    version: int = param(
        0, "Version of the synthetic corpus: each version permutes word frequencies and changes the "
        "share of arithmetic, the number range and the grammar's rates.", ge=0, le=100_000)
    replay_versions: list[int] = param(
        [], "Other corpus versions mixed into training in equal shares with `version` (replay).")
    version_schedule: list[int] = param(
        [], "Versions trained on one after another, version_steps batches each (the main path of a "
        "path-switching study: the data of each release in turn); empty: version and replay_versions throughout.")
    version_steps: int = param(0, "Batches per entry of version_schedule (the last one runs to the end).", ge=0,
                               unit="steps")
    val_versions: list[int] = param(
        [], "Versions validated on (equal weights, one val_loss_v<N> each); empty: the training versions.")
    corpus_seed: int = param(
        0, "Seed of the corpus: the validation text, and with the trial seed the training stream.", ge=0)
    text_file: str = param(
        "", "A local UTF-8 text file to train on instead of the synthetic corpus (its last "
        "val_fraction is held out).")
    val_fraction: float = param(0.1, "Share of text_file held out for validation.", gt=0, le=0.5)
    val_tokens: int = param(32768, "Tokens validated on, per validation version.", ge=256, le=10_000_000,
                            unit="tokens")
    context: int = param(64, "Context length: tokens per training sample.", ge=8, le=8192, unit="tokens")
    n_layers: int = param(2, "Transformer blocks.", ge=1, le=64)
    d_model: int = param(96, "Hidden size.", ge=8, le=8192)
    n_heads: int = param(4, "Attention heads (d_model must be divisible by it, head size even).", ge=1, le=128)
    n_kv_heads: int = param(0, "Key/value heads for grouped-query attention; 0: as many as n_heads.", ge=0, le=128)
    intermediate_size: int = param(0, "Width of the SwiGLU MLP; 0: 8/3 x d_model rounded up to 32.", ge=0,
                                   le=65536)
    tie_embeddings: bool = param(True, "Share the input embedding and the output projection.")
    init_from: str = param(
        "", "Start from trained weights instead of a fresh model: a folder saved by this task, or a "
        "trainer checkpoint (.safetensors) of a model with the same sizes.")

    @model_validator(mode="after")
    def _shapes(self) -> "TinyLMParams":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"the head size d_model/n_heads ({self.d_model // self.n_heads}) must be even (RoPE)")
        if self.n_kv_heads and self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if any(v < 0 for v in [*self.replay_versions, *self.val_versions, *self.version_schedule]):
            raise ValueError("corpus versions must be >= 0")
        if self.version_schedule and not self.version_steps:
            raise ValueError("version_schedule needs version_steps (batches per version)")
        return self

    def ffn_size(self) -> int:
        return self.intermediate_size or -(-8 * self.d_model // 3 // 32) * 32

    def train_versions(self) -> list[int]:
        if self.version_schedule:
            return list(dict.fromkeys(self.version_schedule))
        return list(dict.fromkeys([self.version, *self.replay_versions]))


class TinyLMPretrain(Task):
    name = "tinylm-pretrain"
    summary = "Pre-train a tiny Llama on a seeded synthetic language (character level)"
    Params = TinyLMParams
    metric = "val_loss"
    metric_mode = "min"
    model_family = "llama"

    def setup(self, ctx: TaskContext) -> Any:
        import numpy as np
        import torch

        from lrbench_builtins.tasks import _lm_common as lm

        p = self.params
        self.ctx = ctx
        self.device = ctx.device
        self.batch_size = ctx.batch_size
        self.rank, self.world = ctx.rank, ctx.world_size
        self.rng = np.random.default_rng([ctx.seed, ctx.rank, 0x7A11])
        self.epoch_rng = np.random.default_rng([ctx.seed, 0xE90C])  # the same on every rank
        if p.text_file:
            self._load_text(Path(p.text_file).expanduser())
        else:
            self.vocab = lm.char_vocab()
            self.val = {v: self._val_windows(v, ctx.cache) for v in (p.val_versions or p.train_versions())}
        self.tokenizer = lm.char_tokenizer(self.vocab)
        torch.manual_seed(ctx.seed)
        model = self._build_model()
        self.n_params = lm.count_parameters(model)[0]
        return model

    def _val_windows(self, version: int, cache: dict | None = None) -> Any:
        """The validation text of one version (a warm worker's ``cache`` keeps it: it is only read)."""
        from lrbench_builtins.tasks import _corpus

        p = self.params
        key = ("tinylm-pretrain:val", p.corpus_seed, version, p.val_tokens, p.context)
        if cache is not None and key in cache:
            return cache[key]
        n = max(1, p.val_tokens // p.context)
        size = p.context + 1
        windows = _corpus.generate((p.corpus_seed, _VAL_STREAM), version, n * size).reshape(n, size)
        if cache is not None:
            cache[key] = windows
        return windows

    @classmethod
    def warm_reuse(cls, params: Params) -> bool:
        return True  # the model is built afresh from the seed; the corpus is a pure function of its seeds

    def _load_text(self, path: Path) -> None:
        import numpy as np

        from lrbench_builtins.tasks import _lm_common as lm

        if not path.is_file():
            raise ValueError(f"text_file {str(path)!r} does not exist or is not a file: give a local UTF-8 text file")
        text = path.read_text(encoding="utf-8")
        self.vocab = lm.char_vocab(text)
        ids = lm.encode_chars(text, self.vocab)
        ctx_len = self.params.context
        n_val = int(len(ids) * self.params.val_fraction)
        if n_val < ctx_len + 1 or len(ids) - n_val < ctx_len + 1:
            raise ValueError(
                f"text_file {str(path)!r} has {len(ids)} characters: too short for context {ctx_len} with "
                f"val_fraction {self.params.val_fraction} (each part needs at least {ctx_len + 1})"
            )
        self.train_ids = ids[: len(ids) - n_val]
        val_ids = ids[len(ids) - n_val :]
        starts = np.arange(0, len(val_ids) - ctx_len, ctx_len)[: max(1, self.params.val_tokens // ctx_len)]
        self.val = {-1: val_ids[starts[:, None] + np.arange(ctx_len + 1)]}
        self.train_starts = np.arange(0, len(self.train_ids) - ctx_len, ctx_len)

    def _config(self) -> Any:
        from transformers import LlamaConfig

        from lrbench_builtins.tasks._corpus import SPECIAL_TOKENS

        p = self.params
        return LlamaConfig(
            vocab_size=len(self.vocab), hidden_size=p.d_model, intermediate_size=p.ffn_size(),
            num_hidden_layers=p.n_layers, num_attention_heads=p.n_heads,
            num_key_value_heads=p.n_kv_heads or p.n_heads, max_position_embeddings=p.context,
            tie_word_embeddings=p.tie_embeddings, rms_norm_eps=1e-5,
            pad_token_id=SPECIAL_TOKENS.index("<pad>"), bos_token_id=SPECIAL_TOKENS.index("<s>"),
            eos_token_id=SPECIAL_TOKENS.index("</s>"),
        )

    def _build_model(self) -> Any:
        from transformers import AutoModelForCausalLM, LlamaForCausalLM

        init = self.params.init_from
        if not init:
            return LlamaForCausalLM(self._config())
        path = Path(init).expanduser()
        if path.is_dir() and (path / "config.json").is_file():
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
            if model.config.vocab_size != len(self.vocab):
                raise ValueError(
                    f"init_from {init!r} has a vocabulary of {model.config.vocab_size} tokens, this corpus "
                    f"{len(self.vocab)}: start from a model trained on the same kind of corpus"
                )
            return model
        if path.is_file() and path.suffix == ".safetensors":
            from safetensors.torch import load_model

            model = LlamaForCausalLM(self._config())
            try:
                load_model(model, str(path))
            except RuntimeError as exc:
                raise ValueError(
                    f"init_from {init!r} does not fit a model of these sizes (n_layers, d_model, n_heads, "
                    f"context...): set them as in the run that wrote it. {exc}"
                ) from None
            return model
        raise ValueError(
            f"init_from {init!r} is neither a model folder (with config.json) nor a .safetensors checkpoint"
        )

    def samples_per_epoch(self) -> int | None:
        return len(self.train_starts) if self.params.text_file else None

    def tokens_per_sample(self) -> int:
        return self.params.context

    def train_batches(self) -> Iterator[Any]:
        return self._file_batches() if self.params.text_file else self._corpus_batches()

    def _corpus_batches(self) -> Iterator[Any]:
        """Chunks of fresh text, chunk ``c`` going to rank ``c % world_size``; each chunk holds
        the training versions in equal shares, cut into windows that are served shuffled."""
        import numpy as np
        import torch

        from lrbench_builtins.tasks import _corpus

        p = self.params
        size = p.context + 1
        chunk = self.rank
        drawn = 0

        def current() -> list[int]:
            if not p.version_schedule:
                return p.train_versions()
            return [p.version_schedule[min(drawn // p.version_steps, len(p.version_schedule) - 1)]]

        while True:
            versions = current()
            per_version = max(1, -(-max(self.batch_size, _CHUNK_TOKENS // size) // len(versions)))
            windows = np.concatenate([
                _corpus.generate((p.corpus_seed, _TRAIN_STREAM, self.ctx.seed, chunk), v, per_version * size)
                .reshape(per_version, size)
                for v in versions
            ])
            order = self.rng.permutation(len(windows))
            for i in range(0, len(order) - self.batch_size + 1, self.batch_size):
                yield torch.from_numpy(windows[order[i : i + self.batch_size]].astype(np.int64))
                drawn += 1
                if p.version_schedule and current() != versions:
                    break  # the next version's data starts at this boundary
            chunk += self.world

    def _file_batches(self) -> Iterator[Any]:
        """Epochs over the file's windows (stride ``context``), shuffled, window ``i`` of an
        epoch's order going to rank ``i % world_size``."""
        import numpy as np
        import torch

        offsets = np.arange(self.params.context + 1)
        while True:
            mine = self.epoch_rng.permutation(self.train_starts)[self.rank :: self.world]
            step = min(self.batch_size, len(mine))
            for i in range(0, len(mine) - step + 1, step):
                yield torch.from_numpy(self.train_ids[mine[i : i + step, None] + offsets].astype(np.int64))

    def loss(self, model: Any, batch: Any) -> tuple[Any, dict[str, int]]:
        import torch.nn.functional as F

        batch = batch.to(self.device, non_blocking=True)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        return loss, {"samples": int(batch.shape[0]), "tokens": int(inputs.numel())}

    def evaluate(self, model: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        from lrbench_builtins.tasks import _lm_common as lm

        losses = {}
        with lm.eval_mode(model):
            for version, windows in self.val.items():
                total, count = 0.0, 0
                for i in range(0, len(windows), _EVAL_BATCH):
                    batch = torch.from_numpy(windows[i : i + _EVAL_BATCH].astype("int64")).to(self.device)
                    logits = model(input_ids=batch[:, :-1], use_cache=False).logits
                    total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                   batch[:, 1:].reshape(-1), reduction="sum"))
                    count += batch[:, 1:].numel()
                losses[version] = total / count
        metrics = lm.loss_metrics(sum(losses.values()) / len(losses))
        if len(losses) > 1:
            metrics.update({f"val_loss_v{v}": lm.loss_metrics(loss)["val_loss"] for v, loss in losses.items()})
        return metrics

    def eval_context(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "device": self.device}

    def model_info(self) -> dict[str, Any]:
        p = self.params
        info: dict[str, Any] = {"family": "llama", "layers": p.n_layers, "d_model": p.d_model,
                                "heads": p.n_heads, "context": p.context, "vocab": len(getattr(self, "vocab", ()))}
        if hasattr(self, "n_params"):
            info["params"] = self.n_params
        return info

    def save_model(self, model: Any, folder: Path) -> None:
        """``save_pretrained`` of the model and its character tokenizer: the folder loads back with
        ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained`` offline."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


@hookimpl
def register_tasks(register):
    register(TinyLMPretrain)


# The built-in evaluators register through this entry point's module (no entry point of their own).
from lrbench_builtins.evaluators import register_evaluators  # noqa: E402,F401
