"""Pieces the language-model tasks share: the character tokenizer, the causal-LM loss, metrics.

Imported lazily by the task modules (it imports numpy, and torch or tokenizers inside functions),
so plugin discovery stays free of heavy imports.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

IGNORE_INDEX = -100


def char_vocab(text: str | None = None) -> list[str]:
    """The character vocabulary: the synthetic corpus's, plus any other character of ``text``."""
    from lrbench_builtins.tasks._corpus import VOCAB

    vocab = list(VOCAB)
    if text:
        known = set(vocab)
        vocab += sorted(ch for ch in set(text) if ch not in known)
    return vocab


def encode_chars(text: str, vocab: Sequence[str]) -> np.ndarray:
    """Token ids of ``text`` under a character vocabulary, vectorised (unknown characters become
    ``<unk>``). The dtype is the smallest unsigned type that holds the vocabulary."""
    from lrbench_builtins.tasks._corpus import UNK_ID

    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    uniques, inverse = np.unique(points, return_inverse=True)
    index = {ch: i for i, ch in enumerate(vocab) if len(ch) == 1}
    mapped = np.array([index.get(chr(cp), UNK_ID) for cp in uniques], dtype=np.int64)
    dtype = np.uint8 if len(vocab) <= 256 else np.uint16 if len(vocab) <= 65536 else np.int64
    return mapped[inverse].astype(dtype)


def char_tokenizer(vocab: Sequence[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per character of ``vocab``.

    Its ``save_pretrained`` folder loads back with ``AutoTokenizer.from_pretrained`` offline. It
    adds no special tokens when encoding (the corpus has none); ``</s>`` is the end-of-sequence
    token a fine-tuning task appends to responses.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lrbench_builtins.tasks._corpus import SPECIAL_TOKENS

    backend = Tokenizer(models.WordLevel(vocab={tok: i for i, tok in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(tok, special=True) for tok in SPECIAL_TOKENS])
    pad, unk, bos, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=pad, unk_token=unk, bos_token=bos, eos_token=eos,
        clean_up_tokenization_spaces=False,
    )


def causal_lm_loss(logits: Any, labels: Any, reduction: str = "mean") -> Any:
    """Next-token cross-entropy: position ``t`` predicts ``labels[t + 1]``; ``-100`` is ignored."""
    import torch.nn.functional as F

    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
    )


def loss_metrics(loss: float, prefix: str = "val") -> dict[str, float]:
    """``{prefix}_loss`` and ``{prefix}_ppl``, finite even for a diverged model."""
    if not math.isfinite(loss):
        loss = 1e9  # a large finite loss keeps the metric JSON-safe
    return {f"{prefix}_loss": loss, f"{prefix}_ppl": math.exp(min(loss, 80.0))}


def count_parameters(model: Any) -> tuple[int, int]:
    """(all parameters, trainable parameters), each shared tensor counted once; a parameter that
    ZeRO-3 partitioned counts its whole size (``ds_numel``), not this rank's empty placeholder."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = int(getattr(p, "ds_numel", p.numel()))
        total += n
        trainable += n if p.requires_grad else 0
    return total, trainable


def eval_mode(model: Any) -> Any:
    """A context manager: ``model.eval()`` and no gradients inside, the previous mode restored."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def scope():
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            model.train(was_training)

    return scope()
