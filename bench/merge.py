"""Checkpoint merging by Bayesian optimization in miniature (Liu et al., arXiv 2403.19390).

Two ``tinylm-pretrain`` runs (0.23 M parameters, batch 16, context 64, AdamW) per seed: one at a
constant LR of 7e-3 (5 % warmup), one with cosine decay to 10 % — each with a checkpoint every
``every`` steps. For each run, one ``merge`` study on its last adjacent pair: lambda in [0, 1],
Optuna's GP sampler, the endpoints (1, 0) and the midpoint first, 6 evaluations in all, plus a
21-point grid over [0, 1] for reference (all evaluated on the same held-out text).

Goal (issue 7): the BO's best within 0.01 % of the grid's best held-out loss in at most 6
evaluations (endpoints counted); the gain of the merge over the better endpoint for both runs
(the paper's effect: large for a constant LR, small after decay).

Usage: python bench/merge.py [--quick] [--plot PNG]
  full : 1536 steps, a checkpoint every 128, 2 seeds (about 10 min on 2 cores)
  quick: 768 steps, a checkpoint every 64, 1 seed (about 4 min)
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _methods import OPTIMIZER, PARALLEL, ROOT, load, run_study, workdir  # noqa: E402

LR = 7e-3


def train_runs(steps: int, every: int, seed: int) -> dict[str, list[str]]:
    """The constant-LR and the cosine run of one seed, side by side; their checkpoint files."""
    from lrbench_gui.core.runs.runner import LocalScheduler
    from lrbench_gui.core.runs.trial import load_trial

    warm = int(round(0.05 * steps))
    policies = {"constant": {"name": "constant_warmup", "params": {"lr": LR, "warmup_steps": warm}},
                "cosine": {"name": "cosine", "params": {"lr": LR, "min_lr": LR / 10, "warmup_steps": warm}}}
    sched = LocalScheduler(PARALLEL)
    ids = {}
    for name, policy in policies.items():
        cfg = load_trial({"task": "tinylm-pretrain", "policy": policy, "budget": {"steps": steps}, "batch_size": 16,
                          "optimizer": OPTIMIZER, "checkpoint_every": every, "eval_every": steps, "seed": seed,
                          "trial_id": f"merge-{name}-s{seed}"})
        ids[name] = cfg.trial_id
        sched.submit(cfg)
    records = sched.run()
    out = {}
    for name, tid in ids.items():
        rec = records[tid]
        if rec["status"] != "completed":
            raise SystemExit(f"the {name} run ended {rec['status']}: {rec.get('notes', '')[-500:]}")
        out[name] = [c for c in rec["extra"]["checkpoints"] if c.endswith(".safetensors")]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", help="where the figure goes (default: docs/figures/merge[-quick].png)")
    args = ap.parse_args(argv)
    steps, every, seeds = (768, 64, 1) if args.quick else (1536, 128, 2)
    workdir("merge")
    load0 = load()
    results: dict[str, list[dict]] = {"constant": [], "cosine": []}
    minutes = 0.0
    first: list[tuple[str, dict]] = []
    for seed in range(seeds):
        import time

        t0 = time.perf_counter()
        ckpts = train_runs(steps, every, seed)
        minutes += (time.perf_counter() - t0) / 60
        for name, files in ckpts.items():
            later, earlier = files[-1], files[-2]
            params = {"later": later, "earlier": earlier, "alpha": 0.0, "evaluations": 6,
                      "initial": [1.0, 0.0, 0.5], "grid": 21, "write": False}
            _, s, seconds = run_study(f"merge {name} seed {seed}", "merge", params, task_params={}, batch_size=16,
                                      seed=seed)
            minutes += seconds / 60
            results[name].append(s)
            if seed == 0:
                first.append((f"{name} LR: steps {steps - every} and {steps}", s))
    plot = args.plot or str(ROOT / "docs" / "figures" / ("merge-quick.png" if args.quick else "merge.png"))
    from lrbench_gui.cli.method_plots import plot_merge

    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    plot_merge(first, plot, title="merging the last two checkpoints (seed 0): 21-point grid and the GP-BO's points")

    if not args.quick:  # the Methods panel's screenshot shows the constant-LR run of seed 0
        (ROOT / "docs" / "figures" / "merge-summary.json").write_text(json.dumps(results["constant"][0], indent=1))
    figures: dict = {"mode": "quick" if args.quick else "full", "steps": steps, "checkpoint_every": every,
                     "seeds": seeds, "minutes": round(minutes, 2), "load_before": load0, "load_after": load()}
    print(f"\n{'run':<9} {'seed':>4} {'best lambda':>11} {'BO best':>9} {'grid best':>9} {'BO vs grid':>10} "
          f"{'evals to 0.01%':>14} {'gain vs better ckpt':>19}")
    for name, ss in results.items():
        for seed, s in enumerate(ss):
            print(f"{name:<9} {seed:>4} {s['best']['lambda']:>11.3f} {s['best']['value']:>9.5f} "
                  f"{s['grid_best']['value']:>9.5f} {s['bo_vs_grid']:>+10.4%} {str(s['evaluations_to_reach_grid']):>14} "
                  f"{s['gain_vs_better_endpoint']:>+19.3%}")
        figures[name] = {
            "best_lambda": [s["best"]["lambda"] for s in ss],
            "grid_best_lambda": [s["grid_best"]["lambda"] for s in ss],
            "bo_vs_grid": [s["bo_vs_grid"] for s in ss],
            "evaluations_to_reach_grid": [s["evaluations_to_reach_grid"] for s in ss],
            "gain_vs_better_endpoint": [s["gain_vs_better_endpoint"] for s in ss],
            "mean_gain": statistics.fmean(s["gain_vs_better_endpoint"] for s in ss),
        }
    all_s = [s for ss in results.values() for s in ss]
    figures["goal_bo_within_0_01pct_in_6"] = all(
        s["evaluations_to_reach_grid"] is not None and s["evaluations_to_reach_grid"] <= 6 for s in all_s)
    figures["goal_gain_larger_for_constant"] = figures["constant"]["mean_gain"] > figures["cosine"]["mean_gain"]
    figures["plot"] = plot
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
