"""Published fine-tuning recipes and rules of thumb: the seed of the ``policies`` table.

Each recipe keeps what its authors published in the recipe's own fields (``lr``, ``epochs``,
``scheduler`` as they named it, ``warmup_ratio`` or ``warmup_steps``) and, where one of our
policies reproduces the schedule, a ``spec`` in the form ``parse_spec`` reads.

Warmup given as a *ratio* (Alpaca, Vicuna: 3 % of the run) lives in the spec itself where the
policy takes one (cosine's and linear's ``warmup_ratio``, as HF Trainer reads it): Vicuna's spec
is a ratio spec, the same shape at any run length. A policy that takes its warmup only in steps
(DeepSpeed's WarmupDecayLR, Alpaca's) stores ``warmup_ratio`` in the recipe and a spec without
the warmup-steps parameter; :func:`resolve_recipe_spec` fills it in for a run of ``total_steps``:
the parameter whose schema gives it the role ``warmup`` (:func:`lrbench_gui.core.params.param`),
so the recipes name no policy's parameters here. A recipe for a *range* of
learning rates (the LRBench++ sweep, "1e-5 to 1e-4 for transformers") stores ``lr_range`` and a
spec at the low end of the range, which a tuner scales over the range.

The records are deterministic (no creation time, no app version), so every database seeds the
same records with the same hashes and an import between two databases skips them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = ["SEED_POLICIES", "seed_policies", "resolve_recipe_spec", "warmup_param", "WARMUP_NAMES"]

#: the conventional names of a warmup-steps parameter (torch/HF style, DeepSpeed style), for a
#: policy whose schema is not known here
WARMUP_NAMES = ("warmup_steps", "warmup_num_steps")

_LRBENCH_PP = {
    "title": "LRBench++: Jin, Wei, Wang, Zhang, Wu, Rethinking Learning Rate Tuning in the Era of Large Language Models (IEEE CogMI 2023)",
    "url": "https://arxiv.org/abs/2309.08859",
}
_SEED_PROVENANCE = {"user": "lrbench", "host": None, "created": None, "app_version": None}


def _recipe(
    id: str,
    name: str,
    *,
    spec: dict | None,
    lr: float | None,
    scheduler: str | None,
    source: dict,
    kind: str = "recipe",
    epochs: float | None = None,
    warmup_ratio: float | None = None,
    warmup_steps: int | None = None,
    lr_range: list[float] | None = None,
    optimizer: str | None = "adamw",
    family: str | None = None,
    size: str | None = None,
    task: str | None = None,
    notes: str = "",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "kind": kind,
        "spec": spec,
        "lr": lr,
        "lr_range": lr_range,
        "optimizer": optimizer,
        "epochs": epochs,
        "warmup_ratio": warmup_ratio,
        "warmup_steps": warmup_steps,
        "scheduler": scheduler,
        "model": {"family": family, "size": size, "parameters": None},
        "task": task,
        "source": {"title": source["title"], "url": source.get("url"), "citation": source.get("citation")},
        "provenance": dict(_SEED_PROVENANCE),
        "tags": tags or [],
        "notes": notes,
        "extra": {},
    }


def _warmup_decay(peak: float, steps: int | None = None) -> dict:
    params: dict[str, Any] = {"warmup_min_lr": 0.0, "warmup_max_lr": peak, "warmup_type": "linear"}
    if steps is not None:
        params["warmup_num_steps"] = steps
    return {"name": "warmup_decay", "params": params}


def _warmup(peak: float, steps: int) -> dict:
    # DeepSpeed WarmupLR's own default warmup_type is "log"; the recipes name no other.
    return {"name": "warmup", "params": {"warmup_min_lr": 0.0, "warmup_max_lr": peak, "warmup_num_steps": steps, "warmup_type": "log"}}


SEED_POLICIES: list[dict[str, Any]] = [
    _recipe(
        "recipe:alpaca-7b",
        "Alpaca-7B",
        spec=_warmup_decay(2e-5),
        lr=2e-5,
        scheduler="WarmupDecayLR",
        epochs=3,
        warmup_ratio=0.03,
        family="llama",
        size="7B",
        task="instruction-tuning",
        source={
            "title": "Stanford Alpaca (Taori et al., 2023), as tabulated by LRBench++",
            "url": "https://github.com/tatsu-lab/stanford_alpaca",
            "citation": _LRBENCH_PP["title"],
        },
        notes="Batch size 128. Warmup is 3% of the run's steps: resolve_recipe_spec fills warmup_num_steps.",
        tags=["llm", "fine-tuning"],
    ),
    _recipe(
        "recipe:vicuna-7b",
        "Vicuna-7B",
        spec={"name": "cosine", "params": {"lr": 2e-5, "min_lr": 0.0, "warmup_steps": 0, "warmup_ratio": 0.03}},
        lr=2e-5,
        scheduler="cosine",
        epochs=3,
        warmup_ratio=0.03,
        family="llama",
        size="7B",
        task="instruction-tuning",
        source={
            "title": "Vicuna (LMSYS FastChat training scripts), as tabulated by LRBench++",
            "url": "https://github.com/lm-sys/FastChat",
            "citation": _LRBENCH_PP["title"],
        },
        notes="Cosine decay to 0 after a linear warmup of 3% of the run (the spec's warmup_ratio, as in HF Trainer).",
        tags=["llm", "fine-tuning"],
    ),
    _recipe(
        "recipe:wizardlm-7b",
        "WizardLM-7B",
        spec={"name": "cosine", "params": {"lr": 2e-5, "min_lr": 0.0, "warmup_steps": 2}},
        lr=2e-5,
        scheduler="cosine",
        epochs=3,
        warmup_steps=2,
        family="llama",
        size="7B",
        task="instruction-tuning",
        source={
            "title": "WizardLM (Xu et al., 2023), as tabulated by LRBench++",
            "url": "https://github.com/nlpxucan/WizardLM",
            "citation": _LRBENCH_PP["title"],
        },
        tags=["llm", "fine-tuning"],
    ),
    _recipe(
        "recipe:gpt4all-j-6b",
        "GPT4All-J-6B",
        spec=_warmup(2e-5, 500),
        lr=2e-5,
        scheduler="WarmupLR",
        epochs=2,
        warmup_steps=500,
        family="gpt-j",
        size="6B",
        task="instruction-tuning",
        source={
            "title": "GPT4All-J (Nomic AI technical report, 2023), as tabulated by LRBench++",
            "url": "https://github.com/nomic-ai/gpt4all",
            "citation": _LRBENCH_PP["title"],
        },
        notes="DeepSpeed WarmupLR: warms up over 500 steps, then holds the peak LR.",
        tags=["llm", "fine-tuning"],
    ),
    _recipe(
        "recipe:dolly-7b",
        "Dolly-7B",
        spec=_warmup(5e-6, 50),
        lr=5e-6,
        scheduler="WarmupLR",
        epochs=2,
        warmup_steps=50,
        family="pythia",
        size="7B",
        task="instruction-tuning",
        source={
            "title": "Dolly (Databricks, 2023), as tabulated by LRBench++",
            "url": "https://github.com/databrickslabs/dolly",
            "citation": _LRBENCH_PP["title"],
        },
        notes="DeepSpeed WarmupLR: warms up over 50 steps, then holds the peak LR.",
        tags=["llm", "fine-tuning"],
    ),
    _recipe(
        "recipe:lrbenchpp-llama-7b-fixed",
        "LRBench++ LLaMA-7B sweep, fixed LR",
        spec={"name": "fixed", "params": {"lr": 1e-5}},
        lr=None,
        lr_range=[1e-5, 6e-5],
        scheduler="fixed",
        family="llama",
        size="7B",
        task="instruction-tuning",
        source=_LRBENCH_PP,
        notes="A sweep of the fixed LR from 1e-5 to 6e-5; the spec is the low end of the range.",
        tags=["llm", "fine-tuning", "sweep"],
    ),
    _recipe(
        "recipe:lrbenchpp-llama-7b-warmupdecay",
        "LRBench++ LLaMA-7B sweep, WarmupDecayLR",
        spec=_warmup_decay(1e-5),
        lr=None,
        lr_range=[1e-5, 6e-5],
        scheduler="WarmupDecayLR",
        family="llama",
        size="7B",
        task="instruction-tuning",
        source=_LRBENCH_PP,
        notes="A sweep of the peak LR from 1e-5 to 6e-5; the spec is the low end of the range.",
        tags=["llm", "fine-tuning", "sweep"],
    ),
    _recipe(
        "rule:sgd",
        "SGD: start at 0.1",
        kind="rule_of_thumb",
        spec={"name": "fixed", "params": {"lr": 0.1}},
        lr=0.1,
        scheduler=None,
        optimizer="sgd",
        source={
            "title": "Rule of thumb: SGD with momentum on image classifiers (e.g. He et al., Deep Residual Learning, 2016)",
            "url": "https://arxiv.org/abs/1512.03385",
        },
        tags=["rule-of-thumb"],
    ),
    _recipe(
        "rule:adam",
        "Adam: start at 1e-3",
        kind="rule_of_thumb",
        spec={"name": "fixed", "params": {"lr": 1e-3}},
        lr=1e-3,
        scheduler=None,
        optimizer="adam",
        source={
            "title": "Rule of thumb: Adam's default step size (Kingma and Ba, Adam, ICLR 2015)",
            "url": "https://arxiv.org/abs/1412.6980",
        },
        tags=["rule-of-thumb"],
    ),
    _recipe(
        "rule:transformer-finetuning",
        "Transformer fine-tuning: 1e-5 to 1e-4",
        kind="rule_of_thumb",
        spec=None,
        lr=None,
        lr_range=[1e-5, 1e-4],
        scheduler=None,
        optimizer="adamw",
        source={
            "title": "Rule of thumb: fine-tuning pretrained transformers (e.g. Devlin et al., BERT, 2019: 2e-5 to 5e-5)",
            "url": "https://arxiv.org/abs/1810.04805",
        },
        tags=["rule-of-thumb", "fine-tuning"],
    ),
]


def seed_policies() -> list[dict[str, Any]]:
    """Fresh copies of the seed records (not yet hashed)."""
    return copy.deepcopy(SEED_POLICIES)


def warmup_param(spec: dict[str, Any], registry: "Registry | None") -> str | None:
    """The parameter of a (leaf) spec's policy that holds its warmup in steps.

    For a policy ``registry`` has: the parameter its schema gives the role ``warmup`` (None if
    it declares none). For one it does not have: the conventional name the spec already uses,
    else ``warmup_num_steps`` when its other parameters follow DeepSpeed's ``warmup_*`` naming,
    else ``warmup_steps``.
    """
    name = spec.get("name", "")
    if registry is not None and name in registry.policies:
        from lrbench_gui.core.params import describe

        return next((row.name for row in describe(registry.policy(name).Params) if row.role == "warmup"), None)
    params = spec.get("params") or {}
    given = next((k for k in WARMUP_NAMES if k in params), None)
    if given is not None:
        return given
    return "warmup_num_steps" if any(k.startswith("warmup_") for k in params) else "warmup_steps"


def resolve_recipe_spec(recipe: dict[str, Any], total_steps: int, registry: "Registry | None") -> dict[str, Any] | None:
    """The recipe's spec for a run of ``total_steps``: a ratio warmup becomes steps.

    The steps go into the parameter :func:`warmup_param` names (the role ``warmup`` of the
    policy's schema in ``registry``). Returns None for a recipe without a spec (a bare rule of
    thumb).
    """
    spec = recipe.get("spec")
    if spec is None:
        return None
    spec = copy.deepcopy(spec)
    ratio = recipe.get("warmup_ratio")
    if ratio is None or "sequence" in spec or (spec.get("params") or {}).get("warmup_ratio"):
        return spec  # no ratio, a composition, or a ratio spec already (its own share at any length)
    key = warmup_param(spec, registry)
    if key is not None:
        spec.setdefault("params", {})[key] = max(1, round(ratio * total_steps))
    return spec
