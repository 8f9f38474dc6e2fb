"""Synthetic studies and trials with realistic curves, for tests, the benchmark and demos.

The curves are computed here with numpy (no plugins needed): a warmup-cosine or constant LR,
and a noisy loss that decays faster for LRs near a task's sweet spot and diverges above it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lrbench_gui.core.db.curves import pack
from lrbench_gui.core.records import StudyStatus, TrialStatus

__all__ = ["synthetic_study", "synthetic_trial", "synthetic_range_test", "SAMPLE_POLICIES"]

SAMPLE_POLICIES = ("fixed", "cosine", "warmup_decay")
_CREATED = "2024-05-01T12:00:00Z"


def synthetic_study(study_id: str = "s1", task: str = "digits", *, family: str | None = "mlp") -> dict[str, Any]:
    return {
        "id": study_id,
        "name": f"{task} LR study {study_id}",
        "task": task,
        "task_params": {"hidden": 64},
        "model": {"family": family, "size": "small", "parameters": 12_000},
        "tuner": {"name": "grid", "params": {}},
        "objective": {"metric": "eval_loss", "mode": "min"},
        "budget": {"steps": 1000},
        "status": StudyStatus.FINISHED.value,
        "provenance": {"user": "bench", "host": "localhost", "created": _CREATED, "app_version": "0.1.0"},
    }


def _lr_curve(kind: str, peak: float, steps: np.ndarray, total: int) -> np.ndarray:
    t = steps.astype(np.float64)
    warm = max(1, total // 20)
    if kind == "fixed":
        return np.full_like(t, peak)
    if kind == "cosine":
        return np.where(t < warm, peak * (t + 1) / warm, 0.5 * peak * (1 + np.cos(math.pi * np.clip(t - warm, 0, None) / max(1, total - warm))))
    return np.where(t < warm, peak * (t + 1) / warm, peak * np.clip((total - t) / max(1, total - warm), 0, None))


def synthetic_trial(
    i: int,
    *,
    study: str | None = "s1",
    task: str = "digits",
    points: int = 1000,
    total_steps: int = 10_000,
    seed: int | None = None,
    packed: bool = True,
    family: str | None = "mlp",
) -> dict[str, Any]:
    """Trial number ``i``: the policy kind and peak LR cycle with ``i``, the noise with ``seed``."""
    rng = np.random.default_rng(i if seed is None else seed * 100_003 + i)
    kind = SAMPLE_POLICIES[i % len(SAMPLE_POLICIES)]
    peak = float(10 ** (-4 + (i // len(SAMPLE_POLICIES)) % 8 * 0.25))  # 1e-4 .. ~5.6e-3
    if kind == "fixed":
        spec = {"name": "fixed", "params": {"lr": peak}}
    elif kind == "cosine":
        spec = {"name": "cosine", "params": {"lr": peak, "min_lr": 0.0, "warmup_steps": total_steps // 20}}
    else:
        spec = {"name": "warmup_decay", "params": {"warmup_min_lr": 0.0, "warmup_max_lr": peak, "warmup_num_steps": total_steps // 20, "warmup_type": "linear"}}
    steps = np.linspace(0, total_steps - 1, points).astype(np.int64)
    steps = np.unique(steps)
    lr = _lr_curve(kind, peak, steps, total_steps)
    quality = abs(math.log10(peak) - math.log10(1e-3))  # the sweet spot is 1e-3
    floor = 0.2 + 0.3 * quality + (0.05 if kind == "fixed" else 0.0)
    loss = floor + 2.1 * np.exp(-steps / (total_steps / 6)) + rng.normal(0, 0.02, len(steps))
    loss = np.abs(loss)
    final = float(loss[-50:].mean())
    curves = {"lr": (steps, lr), "loss": (steps, loss)}
    if packed:
        curve_obj = {name: pack(s, v) for name, (s, v) in curves.items()}
    else:
        curve_obj = {name: {"steps": s.tolist(), "values": v.astype(np.float32).astype(float).tolist()} for name, (s, v) in curves.items()}
    return {
        "id": f"{study or 'x'}-t{i:05d}" if seed is None else f"{study or 'x'}-t{i:05d}-s{seed}",
        "study": study,
        "kind": "train",
        "task": task,
        "task_params": {"hidden": 64},
        "model": {"family": family, "size": "small", "parameters": 12_000},
        "policy": spec,
        "optimizer": {"name": "adamw", "params": {"weight_decay": 0.0}},
        "budget": {"steps": total_steps},
        "seed": seed if seed is not None else i,
        "status": TrialStatus.COMPLETED.value,
        "objective": {"metric": "eval_loss", "mode": "min"},
        "metrics": {"eval_loss": final, "train_loss": float(loss[-1])},
        "cost": {"steps": total_steps, "tokens": total_steps * 2048, "seconds": round(30.0 + 0.01 * i, 3)},
        "curves": curve_obj,
        "plugins": {"lrbench_builtins": "0.1.0"},
        "provenance": {"user": "bench", "host": "localhost", "created": _CREATED, "app_version": "0.1.0"},
    }


def synthetic_range_test(trial_id: str, *, study: str | None = "s1", task: str = "digits", best_lr: float = 1e-3, points: int = 400) -> dict[str, Any]:
    """An LR range test: the LR grows exponentially; the loss falls, bottoms near ``best_lr``, diverges."""
    steps = np.arange(points, dtype=np.int64)
    lrs = 1e-6 * (1.0 / 1e-6) ** (steps / (points - 1))  # 1e-6 .. 1
    x = np.log10(lrs / best_lr)
    loss = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 1.2))) + np.where(x > 0, 4 * x**2, 0.0)
    return {
        "id": trial_id,
        "study": study,
        "kind": "range_test",
        "task": task,
        "policy": {"name": "lr_range", "params": {"min_lr": 1e-6, "step_size": 1, "step_rate": 0.05}},
        "status": TrialStatus.COMPLETED.value,
        "metrics": {},
        "cost": {"steps": points, "seconds": 5.0},
        "curves": {"lr": {"steps": steps.tolist(), "values": lrs.tolist()}, "loss": {"steps": steps.tolist(), "values": loss.tolist()}},
    }
