"""The ``path-switch`` study kind: LR path switching for version updates (Wang et al., arXiv 2410.04103).

A model is released in N versions, version ``v`` after data chunk ``v`` arrives. The paradigm:

* the **main path** trains once through the chunks in order (warmup, then the maximal LR held
  constant), with a checkpoint at the end of every chunk;
* the release of version ``v`` is a **branch** from the main path's checkpoint after chunk
  ``v``: a fast decay (cosine or linear, to ``min_lr_ratio`` x LR) over a fraction ``f`` of a
  chunk's steps, on the newest chunk only or on a replay mix of all chunks so far.

Against two baselines: **retrain from scratch** per version (all chunks so far, warmup and full
decay: 1 + 2 + ... + N chunks of compute) and **continued pre-training** (version ``v`` starts
from release ``v - 1``, re-warms and decays over the newest chunk). Each method's cost is
counted in steps and tokens. Every release is validated on an equal mix of the versions seen so
far (``val_versions``), so the final releases are compared on all N.

The task must take the corpus-version parameters of ``tinylm-pretrain``: ``version``,
``replay_versions``, ``val_versions``, ``version_schedule``, ``version_steps`` and ``init_from``.
A branch starts from the checkpoint's weights with a fresh optimizer (the trainer keeps no
optimizer state in checkpoints); ``branch_warmup`` eases that in.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.tuner import TrialRequest
from lrbench_gui.core.tuning.search import PlannedTuner, finite
from lrbench_gui.hookspecs import hookimpl
from lrbench_builtins.tuners.horizon import LM_OPTIMIZER

__all__ = ["PathSwitchTuner", "PathSwitchSummary"]


class Release(TypedDict):
    trial: str
    version: int | None
    status: str  # the trial's status, or "pending"
    val_loss: float | None
    steps: int
    tokens: int


class MethodRow(TypedDict, total=False):
    """One method (scratch, continued, main, ``branch_f{f}_{data}``): its releases and its cost."""

    label: str
    releases: list[Release]
    total_steps: int  # every trial the method needs, the shared main path included
    total_tokens: int
    final_val_loss: float | None
    complete: bool
    vs_scratch: float  # relative to retraining from scratch
    cost_vs_scratch: float


class PathSwitchSummary(TypedDict, total=False):
    """``PathSwitchTuner.summary_json()``: every method's releases and cost, and the LR-path tree."""

    tuner: str
    versions: int
    chunk_steps: int
    lr: float
    methods: dict[str, MethodRow]
    paths: list[dict[str, Any]]  # trial, method, version, parent, start, steps, policy, status, val_loss, f, data
    warnings: list[str]


class PathSwitchTuner(PlannedTuner):
    name = "path-switch"
    version = "1"
    summary = "LR path switching: a constant-LR main path with fast-decay branches per version, vs retraining"
    title = "LR path switching"
    hint = ("A constant-LR main path with a fast-decay branch per version, against retraining from scratch and "
            "continued pre-training.")
    uses_space = False
    study_defaults = {"task": "tinylm-pretrain", "batch_size": 16, "optimizer": LM_OPTIMIZER, "parallel": 2}
    view = "path-switch"
    Summary = PathSwitchSummary
    # branches and the continued chain go as soon as what they start from exists: they are short
    # and sequential, and would otherwise leave a slot idle at the end
    plan_eagerly = True

    class Params(Params):
        versions: int = param(4, "Versions released (data chunks).", ge=2, le=32)
        chunk_steps: int = param(640, "Optimizer steps of one data chunk.", ge=2, unit="steps")
        lr: float = param(7e-3, "The maximal LR: the main path's constant LR and every decay's start.", gt=0,
                          log=True)
        min_lr_ratio: float = param(0.1, "Every decay ends at this fraction of lr.", ge=0, lt=1)
        warmup: float = param(0.05, "Warmup of the main path and the baselines, as a fraction of a chunk.",
                              ge=0, lt=1)
        decay: Literal["cosine", "linear"] = param("cosine", "Shape of the branches' fast decay.")
        fractions: list[float] = param([0.5], "Branch lengths, as fractions f of a chunk (one set of branches "
                                       "per f).")
        branch_data: Literal["replay", "newest", "both"] = param(
            "replay", "What the branches train on: replay (all chunks so far, equal shares), newest (the newest "
            "chunk only), or both (one set of branches each).")
        branch_warmup: float = param(0.0, "Warmup at the start of a branch, as a fraction of its steps (its "
                                     "optimizer starts fresh).", ge=0, lt=1)
        scratch: bool = param(True, "Run the retrain-from-scratch baseline.")
        continued: bool = param(True, "Run the continued-pre-training baseline.")

    @classmethod
    def budget_steps(cls, params: Params) -> int | None:
        """One chunk: what every per-version trial is measured against."""
        return int(params.chunk_steps)

    def __init__(self, params: Any = None, space: Any = None, objective: Any = None, budget: Any = None,
                 seed: int = 0) -> None:
        super().__init__(params, space, objective, budget, seed)
        p = self.params
        if not p.fractions or any(not 0 < f <= 1 for f in p.fractions):
            raise ValueError("path-switch: fractions must lie in (0, 1]")
        self.mixes = ["replay", "newest"] if p.branch_data == "both" else [p.branch_data]
        self._branched = False
        self._continued_upto = 0
        n, c = p.versions, p.chunk_steps
        self.queue.append(self._request(
            "main", "main", None, n * c, self._constant(),
            {"version_schedule": list(range(n)), "version_steps": c, "val_versions": list(range(n))},
            eval_every=c, trial={"checkpoint_steps": [c * (v + 1) for v in range(n)]}))
        if p.scratch:
            # the first release first: the continued chain starts from it
            for v in [0, *reversed(range(1, n))]:
                # the first release also starts the continued chain: keep its last weights
                keep = {"checkpoint_steps": [c]} if v == 0 and p.continued else None
                self.queue.append(self._request(
                    f"scratch-v{v}", "scratch", v, (v + 1) * c, self._decay("cosine", (v + 1) * c, p.warmup * c),
                    self._data(v, "replay"), trial=keep))
        elif p.continued:
            self.queue.append(self._first_release())

    # building blocks

    def _constant(self) -> dict[str, Any]:
        p = self.params
        return {"name": "constant_warmup", "params": {"lr": p.lr, "warmup_steps": int(round(p.warmup * p.chunk_steps))}}

    def _decay(self, shape: str, steps: int, warmup: float) -> dict[str, Any]:
        p = self.params
        return {"name": shape, "params": {"lr": p.lr, "min_lr": p.lr * p.min_lr_ratio,
                                          "warmup_steps": min(int(round(warmup)), max(0, steps - 1))}}

    @staticmethod
    def _data(v: int, mix: str) -> dict[str, Any]:
        replay = list(range(v)) if mix == "replay" else []
        return {"version": v, "replay_versions": replay, "val_versions": list(range(v + 1))}

    def _request(self, key: str, method: str, version: int | None, steps: int, policy: dict[str, Any],
                 task_params: dict[str, Any], eval_every: int = 0, parent: str | None = None,
                 start: int = 0, trial: dict[str, Any] | None = None, **tags: Any) -> TrialRequest:
        return TrialRequest(
            key=key, policy=policy, steps=steps, family=policy["name"], task_params=task_params,
            point={"method": method, "version": version, **{k: v for k, v in tags.items() if k in ("f", "data")}},
            eval_every=eval_every or max(1, steps // 4),
            tags={"kind": "path_switch", "method": method, "version": version, "parent": parent, "start": start,
                  **tags},
            trial={"seed": self.seed, **(trial or {})},
        )

    def _first_release(self) -> TrialRequest:
        p = self.params
        c = p.chunk_steps
        return self._request("cont-v0", "continued", 0, c, self._decay("cosine", c, p.warmup * c), self._data(0, "replay"),
                             trial={"checkpoint_steps": [c]})

    def _checkpoint(self, key: str, step: int | None = None) -> str | None:
        res = self.results.get(key)
        if res is None:
            return None
        files = [c for c in res.checkpoints if c.endswith(".safetensors")]
        if step is None:  # the run's last weights: only a run that completed has them
            return files[-1] if files and res.status == "completed" else None
        return next((c for c in files if c.endswith(f"step-{step:07d}.safetensors")), None)

    def _plan(self) -> None:
        p = self.params
        c = p.chunk_steps
        if not self._branched and "main" in self.results:
            self._branched = True
            for f in p.fractions:
                steps = max(1, int(round(f * c)))
                for mix in self.mixes:
                    for v in range(p.versions):
                        ckpt = self._checkpoint("main", c * (v + 1))
                        if ckpt is None:
                            continue  # the main path did not get that far (see the summary)
                        self.queue.append(self._request(
                            f"branch-v{v}-f{f:g}-{mix}", "path_switch", v, steps,
                            self._decay(p.decay, steps, p.branch_warmup * steps),
                            {**self._data(v, mix), "init_from": ckpt}, parent="main", start=c * (v + 1),
                            f=f, data=mix))
        if p.continued:
            # v0 of continued pre-training is the first release trained from scratch
            first = "scratch-v0" if p.scratch else "cont-v0"
            while self._continued_upto < p.versions - 1:
                v = self._continued_upto + 1
                prev = first if v == 1 else f"cont-v{v - 1}"
                if prev not in self.results:
                    break
                ckpt = self._checkpoint(prev)
                self._continued_upto = v
                if ckpt is None:
                    break  # the chain is broken: the summary says so
                # ahead of everything queued: the chain is sequential, the rest can wait
                self.queue.insert(0, self._request(
                    f"cont-v{v}", "continued", v, c, self._decay("cosine", c, p.warmup * c),
                    {**self._data(v, "newest"), "init_from": ckpt}, parent=prev, start=v * c,
                    trial={"checkpoint_steps": [c]}))

    def _planned(self) -> list[int]:
        """The steps of every trial of the full plan: the main path, the baselines, the branches."""
        p = self.params
        n, c = p.versions, p.chunk_steps
        out = [n * c]
        if p.scratch:
            out += [(v + 1) * c for v in range(n)]
        if p.continued:
            out += [c] * (n - 1 if p.scratch else n)
        out += [max(1, int(round(f * c))) for f in p.fractions for _ in self.mixes for _ in range(n)]
        return out

    def planned_trials(self) -> int:
        return max(len(self._planned()), super().planned_trials())

    def planned_steps(self) -> int:
        return max(sum(self._planned()), super().planned_steps())

    # results

    def _release(self, key: str) -> dict[str, Any] | None:
        req, res = self.requests.get(key), self.results.get(key)
        if req is None:
            return None
        value = res.value if res is not None and res.status == "completed" and finite(res.value) else None
        return {"trial": key, "version": req.tags.get("version"), "status": res.status if res else "pending",
                "val_loss": value, "steps": int((res.cost if res else {}).get("steps", 0) or 0),
                "tokens": int((res.cost if res else {}).get("tokens", 0) or 0)}

    def summary_json(self) -> dict[str, Any]:
        p = self.params
        n, c = p.versions, p.chunk_steps
        methods: dict[str, dict[str, Any]] = {}

        def method(name: str, label: str, keys: list[str], shared: list[str] = ()) -> None:
            rel = [self._release(k) for k in keys]
            if any(r is None for r in rel):
                return
            paid = rel + [r for r in map(self._release, shared) if r is not None]  # the main path too
            methods[name] = {
                "label": label, "releases": rel,
                "total_steps": sum(r["steps"] for r in paid),
                "total_tokens": sum(r["tokens"] for r in paid),
                "final_val_loss": rel[-1]["val_loss"] if rel else None,
                "complete": all(r["status"] == "completed" for r in rel),
            }

        if p.scratch:
            method("scratch", "retrain from scratch", [f"scratch-v{v}" for v in range(n)])
        if p.continued:
            first = "scratch-v0" if p.scratch else "cont-v0"
            method("continued", "continued pre-training (re-warm, cosine)",
                   [first] + [f"cont-v{v}" for v in range(1, n)])
        main = self.results.get("main")
        if main is not None:
            methods["main"] = {"label": "main path only (no decay)", "releases": [],
                               "total_steps": int(main.cost.get("steps", 0) or 0),
                               "total_tokens": int(main.cost.get("tokens", 0) or 0),
                               "final_val_loss": main.value if main.status == "completed" else None,
                               "complete": main.status == "completed"}
        for f in p.fractions:
            for mix in self.mixes:
                keys = [f"branch-v{v}-f{f:g}-{mix}" for v in range(n)]
                method(f"branch_f{f:g}_{mix}", f"path switching, f={f:g}, {mix} data", keys, shared=["main"])
        base = methods.get("scratch")
        for m in methods.values():
            if base and base["total_steps"] and m["final_val_loss"] is not None and base["final_val_loss"]:
                m["vs_scratch"] = m["final_val_loss"] / base["final_val_loss"] - 1.0
                m["cost_vs_scratch"] = m["total_steps"] / base["total_steps"]
        paths = []
        for key, req in self.requests.items():
            res = self.results.get(key)
            paths.append({"trial": key, "method": req.tags.get("method"), "version": req.tags.get("version"),
                          "parent": req.tags.get("parent"), "start": req.tags.get("start", 0), "steps": req.steps,
                          "policy": req.policy, "status": res.status if res else "pending",
                          "val_loss": res.value if res and finite(res.value) else None,
                          "f": req.tags.get("f"), "data": req.tags.get("data")})
        out = {"tuner": self.name, "versions": n, "chunk_steps": c, "lr": p.lr, "methods": methods, "paths": paths,
               "warnings": []}
        if main is not None and main.status != "completed":
            out["warnings"].append(f"the main path ended {main.status}: only the branches before that exist")
        return out


@hookimpl
def register_tuners(register):
    register(PathSwitchTuner)
