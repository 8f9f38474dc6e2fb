"""LR path switching for version updates in miniature (Wang et al., arXiv 2410.04103).

``path-switch`` studies on ``tinylm-pretrain`` (0.23 M parameters, batch 16, context 64, peak LR
7e-3, AdamW): 4 versions over 4 data chunks whose distribution shifts a little per version (the
corpus ``version``). Per seed, one study runs the main path (5 % warmup, then constant through the
chunks), branches from its checkpoints with a fast cosine decay to 10 % over f = 0.25 and 0.5 of a
chunk, on a replay mix of all chunks so far and on the newest chunk only, and the two baselines:
retraining from scratch per version (1+2+3+4 chunks) and continued pre-training (re-warm and
cosine over the newest chunk from the previous release). Every release is validated on an equal
mix of the versions so far; the final one on all four.

Goal (issue 7, replay branches): the final version's validation loss within 1 % of retraining from
scratch at no more than 60 % of its total steps, and better than continued pre-training.

Usage: python bench/path_switch.py [--quick] [--plot PNG]
  full : chunks of 640 steps, 2 seeds (about 10 min on 2 cores)
  quick: chunks of 256 steps, 1 seed (about 3 min)
The last line of output is one JSON object with the figures (means over seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _methods import ROOT, load, run_study, workdir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", help="where the figure goes (default: docs/figures/path_switch[-quick].png)")
    args = ap.parse_args(argv)
    chunk, seeds = (256, 1) if args.quick else (640, 2)
    params = {"versions": 4, "chunk_steps": chunk, "lr": 7e-3, "min_lr_ratio": 0.1, "warmup": 0.05,
              "decay": "cosine", "fractions": [0.25, 0.5], "branch_data": "both", "scratch": True, "continued": True}
    workdir("path-switch")
    load0 = load()
    summaries, minutes = [], 0.0
    for seed in range(seeds):
        study, s, seconds = run_study(f"path-switch seed {seed}", "path-switch", params, task_params={},
                                      batch_size=16, seed=seed)
        summaries.append(s)
        minutes += seconds / 60
    plot = args.plot or str(ROOT / "docs" / "figures" / ("path_switch-quick.png" if args.quick else "path_switch.png"))
    from lrbench_gui.cli.method_plots import plot_path_switch

    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    plot_path_switch(summaries[0], plot, title=f"tinylm-pretrain, 4 versions, chunks of {chunk} steps (seed 0)",
                     registry=study.registry)

    if not args.quick:  # the Methods panel's screenshot shows seed 0 (docs/screenshots/make_screenshots.py)
        (ROOT / "docs" / "figures" / "path-switch-summary.json").write_text(json.dumps(summaries[0], indent=1))
    rows = {}
    for name in summaries[0]["methods"]:
        ms = [s["methods"][name] for s in summaries if name in s["methods"]]
        losses = [m["final_val_loss"] for m in ms if m["final_val_loss"] is not None]
        rows[name] = {
            "label": ms[0]["label"], "final_val_loss": statistics.fmean(losses) if losses else None,
            "per_seed": losses, "total_steps": ms[0]["total_steps"], "total_tokens": ms[0]["total_tokens"],
            "per_version": [statistics.fmean(v) for v in zip(*[[r["val_loss"] for r in m["releases"]] for m in ms])]
            if ms[0]["releases"] and all(r["val_loss"] is not None for m in ms for r in m["releases"]) else None,
        }
    base = rows["scratch"]
    for r in rows.values():
        if r["final_val_loss"] is not None and base["final_val_loss"]:
            r["vs_scratch"] = r["final_val_loss"] / base["final_val_loss"] - 1
            r["cost_vs_scratch"] = r["total_steps"] / base["total_steps"]
    print(f"\n{'method':<44} {'final val loss':>14} {'vs scratch':>10} {'steps':>7} {'share':>6}  per version")
    for r in rows.values():
        per = " ".join(f"{v:.4f}" for v in r["per_version"] or [])
        print(f"{r['label']:<44} {r['final_val_loss']:>14.4f} {r.get('vs_scratch', 0):>+10.2%} {r['total_steps']:>7} "
              f"{r.get('cost_vs_scratch', 0):>6.0%}  {per}")
    best = rows["branch_f0.5_replay"]
    figures = {
        "mode": "quick" if args.quick else "full", "chunk_steps": chunk, "seeds": seeds,
        "minutes": round(minutes, 2), "load_before": load0, "load_after": load(),
        "methods": {k: {kk: v[kk] for kk in ("final_val_loss", "vs_scratch", "cost_vs_scratch", "total_steps",
                                              "per_seed") if kk in v} for k, v in rows.items()},
        "goal_within_1pct_of_scratch": best.get("vs_scratch") is not None and best["vs_scratch"] <= 0.01,
        "goal_cost_at_most_60pct": best.get("cost_vs_scratch") is not None and best["cost_vs_scratch"] <= 0.6,
        "goal_better_than_continued": (best["final_val_loss"] or 9e9) < (rows["continued"]["final_val_loss"] or 0),
        "plot": plot,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
