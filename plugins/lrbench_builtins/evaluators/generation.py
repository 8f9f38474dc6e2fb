"""``generation``: greedy generation on a local JSONL set of ``{"prompt": str, "reference": str}``
(or a shipped ``builtin:NAME``), each output cut at the first ``stop`` string and stripped, then
scored against its reference: ``exact`` (equal), ``contains`` (the reference occurs in the
output) or ``regex`` (the first group, or the whole match, of ``regex`` in the output equals the
reference; with no ``regex``, the reference itself is the pattern searched for). ``gen_acc`` is
the share scored right by ``match``, ``gen_exact`` the share exactly equal whatever ``match``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator

from lrbench_gui.core.evaluator import EvalContext, Evaluator
from lrbench_gui.core.params import Params, param

__all__ = ["Generation", "GenerationParams", "score"]


class GenerationParams(Params):
    path: str = param("builtin:tinylm-gen", "The JSONL set (prompt, reference), or builtin:NAME for a shipped one.")
    match: Literal["exact", "contains", "regex"] = param("exact", "How an output is compared with its reference.")
    regex: str = param("", "For match=regex: the pattern whose first group (or whole match) must equal the "
                       "reference; empty: the reference is the pattern.")
    max_new_tokens: int = param(16, "Tokens generated at most per prompt.", ge=1, le=4096)
    stop: str = param("", "Cut the output at the first occurrence of this string (empty: no cut).")
    limit: int = param(0, "Generate for only the first N prompts (0: all).", ge=0)
    batch_size: int = param(32, "Prompts per batch.", ge=1, le=4096)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


def score(output: str, reference: str, match: str, regex: str = "") -> bool:
    if match == "exact":
        return output == reference.strip()
    if match == "contains":
        return reference.strip() in output
    if not regex:
        return re.search(reference, output) is not None
    found = re.search(regex, output)
    if found is None:
        return False
    return (found.group(1) if found.groups() else found.group(0)).strip() == reference.strip()


class Generation(Evaluator):
    name = "generation"
    summary = "Greedy generation scored by exact match, contains or a regex"
    Params = GenerationParams
    metrics = {"gen_acc": "max", "gen_exact": "max"}
    needs_tokenizer = True

    def check(self, ctx: EvalContext) -> None:
        super().check(ctx)
        self.items = self._load()

    def _load(self) -> list[dict]:
        from lrbench_builtins.evaluators._data import read_jsonl

        items = read_jsonl(self.params.path, {"prompt": str, "reference": str}, "generation")
        return items[: self.params.limit] if self.params.limit else items

    def outputs(self, model: Any, ctx: EvalContext, items: list[dict] | None = None) -> list[str]:
        """The cut, stripped output of each prompt (of ``items``, default the evaluator's set)."""
        from lrbench_builtins.evaluators._lm import greedy_generate

        items = items or getattr(self, "items", None) or self._load()
        p = self.params
        raw = greedy_generate(model, ctx.tokenizer, ctx.device, [it["prompt"] for it in items], p.max_new_tokens,
                              p.batch_size)
        return [(o.split(p.stop, 1)[0] if p.stop else o).strip() for o in raw]

    def evaluate(self, model: Any, ctx: EvalContext) -> dict[str, float]:
        items = getattr(self, "items", None) or self._load()
        outs = self.outputs(model, ctx, items)
        p = self.params
        right = sum(score(o, it["reference"], p.match, p.regex) for o, it in zip(outs, items))
        exact = sum(o == it["reference"].strip() for o, it in zip(outs, items))
        return {"gen_acc": right / len(items), "gen_exact": exact / len(items)}
