"""``lm-eval-harness``: tasks of EleutherAI's lm-evaluation-harness (the optional ``lm_eval``
package) run on the model being trained. The tasks' data must already be local (the trainer
never downloads: set ``HF_DATASETS_OFFLINE=1`` and a filled cache, or use tasks that read local
files). Without ``lm_eval`` the trial fails before training, in one line."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from lrbench_gui.core.evaluator import EvalContext, Evaluator
from lrbench_gui.core.params import Params, param

__all__ = ["LMEvalHarness", "HarnessParams", "harness_available", "MISSING"]

MISSING = ("evaluator lm-eval-harness needs the lm_eval package, which is not installed: pip install lm-eval "
           "(its tasks' data must be local), or leave this evaluator out")


class HarnessParams(Params):
    tasks: str = param("arc_easy", "Names of installed lm-evaluation-harness tasks, comma-separated.")
    num_fewshot: int = param(0, "Few-shot examples per question.", ge=0, le=64)
    limit: int = param(0, "Documents per task (0: all).", ge=0)
    batch_size: int = param(16, "Requests per batch.", ge=1, le=4096)

    @field_validator("tasks")
    @classmethod
    def _some(cls, value: str) -> str:
        names = [t.strip() for t in value.split(",")]
        if not all(re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", t) for t in names):
            raise ValueError("give one or more task names, comma-separated (letters, digits, _ . -)")
        return ",".join(names)


def harness_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


class LMEvalHarness(Evaluator):
    name = "lm-eval-harness"
    summary = "lm-evaluation-harness tasks on the model (needs the optional lm_eval package)"
    Params = HarnessParams
    #: the means over the tasks; each task's own numbers come as TASK_METRIC too
    metrics = {"lm_eval_acc": "max", "lm_eval_acc_norm": "max"}
    needs_tokenizer = True

    def check(self, ctx: EvalContext) -> None:
        if not harness_available():
            raise ValueError(MISSING)
        super().check(ctx)

    def evaluate(self, model: Any, ctx: EvalContext) -> dict[str, float]:
        if not harness_available():
            raise ValueError(MISSING)
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        p = self.params
        lm = HFLM(pretrained=model, tokenizer=ctx.tokenizer, batch_size=p.batch_size, device=str(ctx.device))
        results = lm_eval.simple_evaluate(model=lm, tasks=p.tasks.split(","), num_fewshot=p.num_fewshot,
                                          limit=p.limit or None, log_samples=False)
        out: dict[str, float] = {}
        means: dict[str, list[float]] = {"acc": [], "acc_norm": []}
        for task, numbers in (results or {}).get("results", {}).items():
            for key, value in numbers.items():
                metric = key.split(",")[0]
                if isinstance(value, (int, float)) and not isinstance(value, bool) and not metric.endswith("_stderr"):
                    out[re.sub(r"[^A-Za-z0-9_]", "_", f"{task}_{metric}")] = float(value)
                    if metric in means:
                        means[metric].append(float(value))
        for metric, values in means.items():
            if values:
                out[f"lm_eval_{metric}"] = sum(values) / len(values)
        return out
