"""``multiple-choice``: accuracy by the log-likelihood of each choice given the question, the way
lm-evaluation-harness scores ARC and HellaSwag: ``mc_acc`` picks the choice with the highest
summed log-probability, ``mc_acc_norm`` the highest per character of the choice.

The set is a local JSONL file (or a shipped ``builtin:NAME``) of ``{"question": str, "choices":
[str, ...], "answer": index}``; each choice is scored as the continuation of the question as
written (put the space in front of the choice when the language wants one). With ``fewshot`` k,
each question is preceded by k other items of the same file with their right answer, joined by
``fewshot_sep``. Items with a ``kind`` (a short lower-case name) also count into
``mc_acc_KIND``, the accuracy on that kind alone.
"""

from __future__ import annotations

import random
import re
from typing import Any

from lrbench_gui.core.evaluator import EvalContext, Evaluator
from lrbench_gui.core.params import Params, param

__all__ = ["MultipleChoice", "MCParams"]

_KIND = re.compile(r"[a-z0-9_]{1,32}")


class MCParams(Params):
    path: str = param("builtin:tinylm-mc", "The JSONL set (question, choices, answer), or builtin:NAME for a "
                      "shipped one.")
    fewshot: int = param(0, "Solved items of the same file put before each question.", ge=0, le=64)
    fewshot_sep: str = param("\n", "What joins the few-shot items and the question.")
    limit: int = param(0, "Score only the first N items (0: all).", ge=0)
    batch_size: int = param(64, "Question-choice pairs per forward pass.", ge=1, le=65536)
    seed: int = param(1234, "Seed of the few-shot draw.", ge=0)


class MultipleChoice(Evaluator):
    name = "multiple-choice"
    summary = "Multiple-choice accuracy by log-likelihood (lm-eval-harness style)"
    Params = MCParams
    metrics = {"mc_acc": "max", "mc_acc_norm": "max"}
    needs_tokenizer = True

    def check(self, ctx: EvalContext) -> None:
        super().check(ctx)
        self.items = load_items(self.params.path, self.params.limit)

    def evaluate(self, model: Any, ctx: EvalContext) -> dict[str, float]:
        from lrbench_builtins.evaluators._lm import continuation_logprobs

        items = getattr(self, "items", None) or load_items(self.params.path, self.params.limit)
        prompts = self._prompts(items)
        pairs = [(prompt, choice) for prompt, it in zip(prompts, items) for choice in it["choices"]]
        scores = continuation_logprobs(model, ctx.tokenizer, ctx.device, pairs, self.params.batch_size)
        hits: dict[str, list[bool]] = {}
        hits_norm: list[bool] = []
        k = 0
        for it in items:
            s = scores[k : k + len(it["choices"])]
            k += len(it["choices"])
            norm = [v / max(1, len(c)) for v, c in zip(s, it["choices"])]
            right = max(range(len(s)), key=s.__getitem__) == it["answer"]
            hits.setdefault("", []).append(right)
            if isinstance(it.get("kind"), str) and _KIND.fullmatch(it["kind"]):
                hits.setdefault(it["kind"], []).append(right)
            hits_norm.append(max(range(len(norm)), key=norm.__getitem__) == it["answer"])
        out = {"mc_acc": sum(hits.pop("")) / len(items), "mc_acc_norm": sum(hits_norm) / len(items)}
        out.update({f"mc_acc_{kind}": sum(v) / len(v) for kind, v in sorted(hits.items())})
        return out

    def _prompts(self, items: list[dict]) -> list[str]:
        k = self.params.fewshot
        if not k:
            return [it["question"] for it in items]
        rng = random.Random(self.params.seed)
        out = []
        for i, it in enumerate(items):
            others = [j for j in range(len(items)) if j != i]
            shots = [items[j] for j in rng.sample(others, min(k, len(others)))]
            solved = [s["question"] + s["choices"][s["answer"]] for s in shots]
            out.append(self.params.fewshot_sep.join([*solved, it["question"]]))
        return out


def load_items(path: str, limit: int = 0) -> list[dict]:
    """The checked items of a multiple-choice set."""
    from lrbench_builtins.evaluators._data import read_jsonl

    items = read_jsonl(path, {"question": str, "choices": list, "answer": int}, "multiple-choice")
    for n, it in enumerate(items, 1):
        if len(it["choices"]) < 2 or not all(isinstance(c, str) and c for c in it["choices"]):
            raise ValueError(f"multiple-choice: {path} record {n}: choices must be at least two non-empty strings")
        if not 0 <= it["answer"] < len(it["choices"]):
            raise ValueError(f"multiple-choice: {path} record {n}: answer {it['answer']} is not an index of its "
                             f"{len(it['choices'])} choices")
    return items[:limit] if limit else items
