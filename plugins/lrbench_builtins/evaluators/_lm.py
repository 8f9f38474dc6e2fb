"""What the language-model evaluators share: encoding, batched continuation log-likelihoods
(lm-evaluation-harness's loglikelihood request) and batched greedy generation. torch is imported
inside the functions."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["encode", "max_length", "continuation_logprobs", "greedy_generate"]


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def max_length(model: Any, default: int = 2048) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "max_position_embeddings", None) or default)


def _start_id(tokenizer: Any) -> int:
    for tok in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id):
        if tok is not None:
            return int(tok)
    return 0


def _pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _start_id(tokenizer))


def _split(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of the context and of the continuation, encoded together (so a BPE merge across
    the boundary is the one the model saw) when the context's ids are a prefix of the whole."""
    ctx = encode(tokenizer, context)
    whole = encode(tokenizer, context + continuation)
    if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
        cont = whole[len(ctx):]
    else:
        cont = encode(tokenizer, continuation)
    if not ctx:
        ctx = [_start_id(tokenizer)]
    return ctx, cont


def continuation_logprobs(model: Any, tokenizer: Any, device: Any, pairs: Sequence[tuple[str, str]],
                          batch_size: int = 32) -> list[float]:
    """Sum of log p(continuation | context) for each ``(context, continuation)``; the context is
    cut from the left to fit the model's length."""
    import torch

    limit = max_length(model)
    rows = []
    for context, continuation in pairs:
        ctx, cont = _split(tokenizer, context, continuation)
        cont = cont[: limit - 1]
        ids = (ctx + cont)[-limit:]
        rows.append((ids, len(cont)))
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    out = [0.0] * len(rows)
    pad = _pad_id(tokenizer)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(rows[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):
            seq = rows[i][0]
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for r, i in enumerate(chunk):
            seq, n = rows[i]
            targets = torch.tensor(seq[len(seq) - n :])
            picked = logp[r, len(seq) - n - 1 : len(seq) - 1].gather(1, targets[:, None])
            out[i] = float(picked.sum())
    return out


def greedy_generate(model: Any, tokenizer: Any, device: Any, prompts: Sequence[str], max_new_tokens: int,
                    batch_size: int = 32) -> list[str]:
    """The greedy continuation of each prompt (decoded, special tokens dropped), at most
    ``max_new_tokens`` tokens, ended early by the end-of-sequence token. Batches are padded on
    the left, with positions counted from each prompt's first token."""
    import torch

    limit = max_length(model)
    pad = _pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    encoded = [(encode(tokenizer, p) or [_start_id(tokenizer)])[-max(1, limit - max_new_tokens):] for p in prompts]
    out: list[str] = [""] * len(prompts)
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, seq in enumerate(chunk):
            ids[r, width - len(seq) :] = torch.tensor(seq)
            mask[r, width - len(seq) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        new: list[list[int]] = [[] for _ in chunk]
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            window_ids, window_mask = ids[:, -limit:], mask[:, -limit:]
            positions = (window_mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=window_ids, attention_mask=window_mask, position_ids=positions,
                           use_cache=False).logits
            nxt = logits[:, -1].argmax(-1)
            for r in range(len(chunk)):
                if not done[r]:
                    new[r].append(int(nxt[r]))
            if eos is not None:
                done |= nxt == eos
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(nxt)[:, None]], dim=1)
            if bool(done.all()):
                break
        for r, toks in enumerate(new):
            out[start + r] = tokenizer.decode(toks, skip_special_tokens=True)
    return out
