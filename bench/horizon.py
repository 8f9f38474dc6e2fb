"""Token-horizon LR transfer in miniature (Bjorck et al., arXiv 2409.19913).

One ``horizon`` study on ``tinylm-pretrain`` (0.23 M parameters, batch 8, context 64): peak LRs
on a sqrt(2) grid at four horizons, several seeds, cosine to 10 % after a 45-step warmup (the same at
every horizon), AdamW. The
longest horizon is held out (``check``): the power law is fitted on the three shorter ones, the
LR it predicts for the longest is run there with every seed, and compared with the longest
horizon's own sweep. The zero-overhead rule (beta fixed at 0.32, B from the longest fitted
horizon) is reported beside the fit.

Goals (issue 7): beta > 0 with a 90 % band that excludes 0; the predicted LR within 1.5x of the
held-out horizon's measured LR*; the loss at the predicted LR within 0.5 % of that horizon's best.

Usage: python bench/horizon.py [--quick] [--plot PNG]
  full : horizons 448/896/1792/3584 steps, 7 LRs 1.75e-3..1.4e-2 (sqrt 2 apart), 3 seeds (about 25 min
         on 2 cores when nothing else runs)
  quick: horizons 224/448/896, 5 LRs 2.5e-3..1e-2, 1 seed (about 3 min): shows the pipeline runs, not the law
The grid is centred where a probe found LR* (4-6e-3 at 224-896 steps); the study widens it by up to
two LRs on a side where the best LR sits at an end.
The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _methods import ROOT, load, run_study, workdir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plot", help="where the figure goes (default: docs/figures/horizon[-quick].png)")
    args = ap.parse_args(argv)
    if args.quick:
        params = {"horizons": [224, 448, 896], "lr_min": 2.5e-3, "lr_max": 1e-2, "points": 5, "seeds": 1}
    else:
        params = {"horizons": [448, 896, 1792, 3584], "lr_min": 1.75e-3, "lr_max": 1.4e-2, "points": 7, "seeds": 3}
    # the same warmup at every horizon: a fraction would give the shortest runs a warmup too short for
    # the high LRs, and LR* there would measure the warmup, not the horizon
    params.update(policy="cosine", warmup_steps=45, min_lr_ratio=0.1, widen=2, check=True, window=5,
                  target_steps=4 * max(params["horizons"]))
    workdir("horizon")
    load0 = load()
    study, s, seconds = run_study("horizon", "horizon", params, task_params={}, batch_size=8)
    plot = args.plot or str(ROOT / "docs" / "figures" / ("horizon-quick.png" if args.quick else "horizon.png"))
    from lrbench_gui.cli.method_plots import plot_horizon

    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    plot_horizon(s, plot, title=f"tinylm-pretrain, {params['seeds']} seed(s): fit on the shorter horizons, "
                                f"the longest held out")
    if not args.quick:  # the Methods panel's screenshot shows this study (docs/screenshots/make_screenshots.py)
        (ROOT / "docs" / "figures" / "horizon-summary.json").write_text(json.dumps(s, indent=1))
    law, hold = s.get("power_law") or {}, s.get("holdout") or {}
    print(f"\n{'steps':>6} {'tokens':>9} {'LR*':>9} {'fit':>9} {'bracketed':>9} {'best loss':>9}  loss by LR")
    for r in s["horizons"]:
        by = "  ".join(f"{lr:.3g}:{m:.4f}" if m is not None else f"{lr:.3g}:div" for lr, m in zip(r["lrs"], r["loss_mean"]))
        lr_star = f"{r['lr_star']:.3g}" if r["lr_star"] else "-"
        best = f"{r['best_loss']:.4f}" if r["best_loss"] else "-"
        print(f"{r['steps']:>6} {r['tokens']:>9.0f} {lr_star:>9} {r['method']:>9} {str(r['bracketed']):>9} {best:>9}  {by}")
    band = law.get("beta_band")
    figures = {
        "mode": "quick" if args.quick else "full",
        "horizons": params["horizons"], "seeds": params["seeds"], "lrs": params["points"],
        "trials": len(study.results), "minutes": round(seconds / 60, 2), "load_before": load0, "load_after": load(),
        "beta": law.get("beta"), "beta_band_90": band, "band_method": law.get("band_method"),
        "B": law.get("B"), "fit_horizons": law.get("horizons"),
        "lr_star": {str(r["steps"]): r["lr_star"] for r in s["horizons"]},
        "bracketed": {str(r["steps"]): r["bracketed"] for r in s["horizons"]},
        "heldout_steps": hold.get("steps"), "predicted_lr": hold.get("predicted_lr"),
        "measured_lr_star": hold.get("measured_lr_star"), "prediction_ratio": hold.get("ratio"),
        "loss_at_predicted": hold.get("loss_at_predicted"), "best_loss": hold.get("best_grid_loss"),
        "loss_gap": hold.get("loss_gap"),
        "zero_overhead_lr": hold.get("zero_overhead_lr"), "zero_overhead_ratio": hold.get("zero_overhead_ratio"),
        "target_steps": (s.get("target") or {}).get("steps"), "target_lr": (s.get("target") or {}).get("lr"),
        "target_zero_overhead_lr": (s.get("target") or {}).get("zero_overhead_lr"),
        "warnings": s.get("warnings"), "plot": plot,
    }
    figures["goal_beta_band_excludes_0"] = bool(band and band[0] > 0)
    figures["goal_prediction_within_1_5x"] = bool(hold.get("ratio") and hold["ratio"] <= 1.5)
    figures["goal_loss_within_0_5pct"] = bool(hold.get("loss_gap") is not None and hold["loss_gap"] <= 0.005)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
