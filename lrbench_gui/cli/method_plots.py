"""The CLI's output of a study kind, looked up by the tuner's ``view`` key: its table
(:func:`print_summary`) and its matplotlib figure (:data:`FIGURES`, ``-o``; the benches and docs
draw with the same functions).

Each takes the study's summary (its tuner's ``summary_json()``); the range tests' figure also
reads the trial's curves from the study. A kind without a view prints the ranking of its trials.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["plot_horizon", "plot_path_switch", "plot_merge", "plot_range_test", "print_summary", "FIGURES",
           "TABLES"]


def _plt() -> Any:
    """pyplot on the Agg backend; a one-line CliError when matplotlib (the [plot] extra) is missing."""
    try:
        import matplotlib
    except ImportError:
        from lrbench_gui.cli import CliError

        raise CliError('plots need matplotlib: pip install "lrbench-gui[plot]"') from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, output: str, title: str) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)


def plot_horizon(summary: dict[str, Any], output: str, title: str = "") -> None:
    """Left: loss against LR per horizon (seed means, the quadratic, LR*). Right: LR* against
    tokens in log-log space, the power law with its band, the prediction and the zero-overhead rule."""
    import numpy as np

    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    rows = summary.get("horizons") or []
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(rows):
        color = cmap(i / max(1, len(rows) - 1) * 0.9)
        pts = [(lr, m) for lr, m in zip(r["lrs"], r["loss_mean"]) if m is not None]
        if pts:
            sd = [s or 0.0 for lr, m, s in zip(r["lrs"], r["loss_mean"], r["loss_sd"]) if m is not None]
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=sd, fmt="o", ms=4, color=color,
                        label=f"{r['steps']} steps ({r['tokens'] / 1e6:.2g} M tokens)")
        if r.get("coef") and r.get("fit_lrs"):
            a, b, c = r["coef"]
            u = np.linspace(math.log(min(r["fit_lrs"])), math.log(max(r["fit_lrs"])), 60)
            ax.plot(np.exp(u), a * u * u + b * u + c, color=color, linewidth=1)
        if r.get("lr_star") and r.get("loss_at_star") is not None:
            ax.plot([r["lr_star"]], [r["loss_at_star"]], marker="*", ms=12, color=color, markeredgecolor="black")
        for lr, m, d in zip(r["lrs"], r["loss_mean"], r.get("diverged") or []):
            if m is None and d:
                ax.axvline(lr, color=color, linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(f"validation loss (mean of {summary.get('seeds', 1)} seeds)")
    ax.set_title("loss against LR per horizon (star: fitted LR*)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")

    law = summary.get("power_law")
    used = set((law or {}).get("horizons") or [])
    for r in rows:
        if r.get("lr_star"):
            held = used and r["steps"] not in used
            bx.plot([r["tokens"]], [r["lr_star"]], marker="s" if held else "o", ms=7,
                    color="#d62728" if held else "#1f77b4",
                    label="held out (measured)" if held else None)
    if law:
        ds = [p[0] for p in law["points"]]
        hold = summary.get("holdout") or {}
        target = summary.get("target") or {}
        hi_d = max([*ds, hold.get("tokens") or 0, target.get("tokens") or 0])
        x = np.geomspace(min(ds) / 1.3, hi_d * 1.3, 80)
        bx.plot(x, law["B"] * x ** (-law["beta"]), color="#1f77b4",
                label=f"fit: LR* = {law['B']:.3g} D^-{law['beta']:.3f}")
        band = law.get("beta_band")
        if band:
            bx.text(0.02, 0.04, f"beta {law['beta']:.3f}, 90% band [{band[0]:.3f}, {band[1]:.3f}] "
                    f"({law['band_method']})", transform=bx.transAxes, fontsize="small")
        if hold.get("predicted_lr"):
            bx.plot([hold["tokens"]], [hold["predicted_lr"]], marker="*", ms=13, color="#2ca02c",
                    markeredgecolor="black", label=f"predicted {hold['predicted_lr']:.3g}")
            if hold.get("band"):
                bx.vlines(hold["tokens"], *hold["band"], color="#2ca02c", linewidth=2, alpha=0.6)
            if hold.get("zero_overhead_lr"):
                bx.plot([hold["tokens"]], [hold["zero_overhead_lr"]], marker="D", ms=7, color="#ff7f0e",
                        label=f"zero-overhead rule {hold['zero_overhead_lr']:.3g}")
        if target.get("lr"):
            bx.plot([target["tokens"]], [target["lr"]], marker="*", ms=13, color="#9467bd", markeredgecolor="black",
                    label=f"target {target['steps']} steps: {target['lr']:.3g}")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("horizon D (tokens)")
    bx.set_ylabel("optimal LR")
    bx.set_title("LR* against the horizon")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend(fontsize="small")
    _save(plt, fig, output, title)


_METHOD_COLORS = {"main": "#6b7280", "scratch": "#d62728", "continued": "#ff7f0e", "path_switch": "#2ca02c"}


def plot_path_switch(summary: dict[str, Any], output: str, title: str = "", registry: Any = None) -> None:
    """The LR paths as a tree (global step on x), the release loss per version, the cost bars;
    ``registry`` knows the paths' policies (a path whose policy it lacks is not drawn)."""
    plt = _plt()
    from lrbench_gui.core.spec import build_schedule

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.4), dpi=110, gridspec_kw={"width_ratios": [2.2, 1.3, 1.3]})
    offsets: dict[str, int] = {}
    for path in summary.get("paths") or []:
        method = path["method"]
        if method == "scratch":
            continue  # drawn below the tree, not part of it
        start = int(path.get("start") or 0)
        offsets[path["trial"]] = start
        try:
            lrs = build_schedule(path["policy"], max(1, path["steps"]), registry).lrs()
        except Exception:  # a policy of a plugin not installed here
            continue
        xs = list(range(start, start + len(lrs)))
        style = "-" if path.get("data") != "newest" else "--"
        ax.plot(xs, lrs, style, color=_METHOD_COLORS.get(method, "#1f77b4"),
                linewidth=2.2 if method == "main" else 1.2, alpha=0.9)
    for m, color in _METHOD_COLORS.items():
        if m != "scratch":
            ax.plot([], [], color=color, label={"main": "main path (constant)", "continued": "continued pre-training",
                                                "path_switch": "branches (fast decay)"}[m])
    c = summary.get("chunk_steps") or 1
    for v in range(summary.get("versions") or 0):
        ax.axvline(c * (v + 1), color="#9ca3af", linewidth=0.6, linestyle=":")
    ax.set_xlabel("step (chunks in order)")
    ax.set_ylabel("learning rate")
    ax.set_title("LR paths: main path and its branches")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)

    methods = summary.get("methods") or {}
    for name, m in methods.items():
        rel = [r for r in m.get("releases") or [] if r.get("val_loss") is not None]
        if not rel:
            continue
        kind = "path_switch" if name.startswith("branch") else name
        bx.plot([r["version"] for r in rel], [r["val_loss"] for r in rel], marker="o",
                linestyle="--" if name.endswith("newest") else "-", color=_METHOD_COLORS.get(kind),
                alpha=1.0 if "0.5" in name or not name.startswith("branch") else 0.6, label=m["label"])
    bx.set_xlabel("version")
    bx.set_ylabel("val loss (mix of versions so far)")
    bx.set_title("released model per version")
    bx.grid(True, alpha=0.3)
    bx.legend(fontsize="x-small")

    names = [n for n in methods if methods[n].get("total_steps")]
    steps = [methods[n]["total_steps"] for n in names]
    colors = [_METHOD_COLORS.get("path_switch" if n.startswith("branch") else n, "#1f77b4") for n in names]
    cx.barh(range(len(names)), steps, color=colors)
    cx.set_yticks(range(len(names)))
    cx.set_yticklabels([methods[n]["label"].replace("path switching, ", "switch ") for n in names], fontsize="x-small")
    for i, n in enumerate(names):
        loss = methods[n].get("final_val_loss")
        if loss is not None:
            cx.text(steps[i], i, f" {loss:.4f}", va="center", fontsize="x-small")
    cx.set_xlabel("total steps (all versions); label: final val loss")
    cx.set_title("cost")
    cx.invert_yaxis()
    _save(plt, fig, output, title)


def plot_merge(summaries: list[tuple[str, dict[str, Any]]], output: str, title: str = "") -> None:
    """Held-out loss against lambda: the dense grid (line) and the BO's points, numbered in order."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(summaries), figsize=(6 * len(summaries), 4.2), dpi=110, squeeze=False)
    for ax, (label, s) in zip(axes[0], summaries):
        grid = s.get("grid") or []
        if grid:
            ax.plot([g["lambda"] for g in grid], [g["value"] for g in grid], color="#9ca3af", marker=".",
                    label="grid")
        ev = s.get("evaluations") or []
        ax.scatter([e["lambda"] for e in ev], [e["value"] for e in ev], color="#1f77b4", zorder=3, label="BO")
        for e in ev:
            ax.annotate(str(e["order"] + 1), (e["lambda"], e["value"]), textcoords="offset points", xytext=(4, 4),
                        fontsize="x-small")
        best = s.get("best")
        if best:
            ax.scatter([best["lambda"]], [best["value"]], marker="*", s=180, color="#2ca02c", edgecolor="black",
                       zorder=4, label=f"best lambda {best['lambda']:.3f}")
        gain = s.get("gain_vs_better_endpoint")
        sub = f" (gain {gain:+.2%} vs the better checkpoint)" if gain is not None else ""
        ax.set_title(f"{label}{sub}", fontsize="medium")
        ax.set_xlabel("lambda (share of the later checkpoint)")
        ax.set_ylabel(f"held-out {s.get('metric', 'loss')}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    _save(plt, fig, output, title)


def plot_range_test(study: Any, summary: dict[str, Any], output: str, title: str = "") -> None:
    """The range test: the loss against the LR (raw and smoothed) with the suggested LRs. The value
    range test: each LR's final value, the range that trains well shaded."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if "per_lr" in summary:
        rows = [r for r in summary["per_lr"] if r.get("value") is not None]
        ax.plot([r["lr"] for r in rows], [r["value"] for r in rows], marker="o", color="#1f77b4", label="final value")
        if summary.get("lr_range"):
            ax.axvspan(*summary["lr_range"], color="#2ca02c", alpha=0.15, label="trains well")
        ax.set_ylabel(study.objective.metric)
    else:
        results = list(study.results.values())
        lrs = dict(results[0].lrs) if results else {}
        pts = [(lrs[s], v) for s, v in (results[0].losses if results else []) if s in lrs and lrs[s] > 0]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#9ca3af", linewidth=1, label="loss")
        smooth = summary.get("curve") or {}
        if smooth.get("lr"):
            ax.plot(smooth["lr"], smooth["smoothed"], color="#1f77b4", linewidth=2, label="smoothed loss")
        colors = {"steepest": "#d62728", "valley": "#2ca02c", "minimum": "#ff7f0e"}
        for name, info in (summary.get("suggestions") or {}).items():
            lr = info.get("lr") if isinstance(info, dict) else info
            if isinstance(lr, (int, float)) and lr > 0:
                ax.axvline(lr, linestyle="--", color=colors.get(name, "#6b7280"), label=f"{name} {lr:.2g}")
        ax.set_ylabel("training loss")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    _save(plt, fig, output, title)


#: view key -> figure(study, summary, output, title)
FIGURES: dict[str, Callable[[Any, dict[str, Any], str, str], None]] = {
    "horizon": lambda study, s, output, title: plot_horizon(s, output, title),
    "path-switch": lambda study, s, output, title: plot_path_switch(s, output, title, study.registry),
    "merge": lambda study, s, output, title: plot_merge(
        [(f"{Path(s['earlier']).stem} -> {Path(s['later']).stem}", s)], output, title),
    "range-test": plot_range_test,
}


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _horizon_table(s: dict[str, Any]) -> None:
    print(f"{'steps':>7} {'tokens':>10} {'best LR':>9} {'LR*':>9} {'fit':>9} {'bracketed':>9} {'best loss':>9}")
    for r in s["horizons"]:
        print(f"{r['steps']:>7} {r['tokens']:>10.0f} {_fmt(r['best_lr'], '.3g'):>9} {_fmt(r['lr_star'], '.3g'):>9} "
              f"{r['method']:>9} {str(r['bracketed']):>9} {_fmt(r['best_loss']):>9}")
    law = s.get("power_law")
    if law:
        band = law.get("beta_band")
        band_text = f", 90% band [{band[0]:.3f}, {band[1]:.3f}] by {law['band_method']}" if band else ""
        print(f"\npower law: LR*(D) = {law['B']:.4g} * D^-{law['beta']:.4f}{band_text}")
    z = s.get("zero_overhead")
    if z:
        print(f"zero-overhead rule: beta fixed at {z['beta']}, B from the {z['from_steps']}-step sweep")
    if s.get("target"):
        t = s["target"]
        print(f"target {t['steps']} steps ({t['tokens']:.3g} tokens): LR {_fmt(t.get('lr'), '.3g')} "
              f"(band {t.get('band') and [round(x, 6) for x in t['band']]}); zero-overhead rule "
              f"{_fmt(t.get('zero_overhead_lr'), '.3g')}")
    h = s.get("holdout")
    if h:
        print(f"held-out horizon {h['steps']} steps: predicted {_fmt(h['predicted_lr'], '.3g')}, measured LR* "
              f"{_fmt(h.get('measured_lr_star'), '.3g')} (x{_fmt(h.get('ratio'), '.2f')}); loss at the prediction "
              f"{_fmt(h.get('loss_at_predicted'))} vs best {_fmt(h.get('best_grid_loss'))} "
              f"({_fmt(h.get('loss_gap'), '+.2%')})")


def _path_switch_table(s: dict[str, Any]) -> None:
    print(f"{'method':<44} {'final val loss':>14} {'vs scratch':>10} {'steps':>8} {'tokens':>11}  per version")
    for m in s["methods"].values():
        per = " ".join(_fmt(r["val_loss"], ".4f") for r in m["releases"])
        print(f"{m['label']:<44} {_fmt(m['final_val_loss'], '.4f'):>14} {_fmt(m.get('vs_scratch'), '+.2%'):>10} "
              f"{m['total_steps']:>8} {m['total_tokens']:>11}  {per}")


def _merge_table(s: dict[str, Any]) -> None:
    print(f"{'#':>2} {'lambda':>8} {s['metric']:>12}")
    for e in s["evaluations"]:
        print(f"{e['order'] + 1:>2} {e['lambda']:>8.4f} {e['value']:>12.6f}")
    if s.get("best"):
        b = s["best"]
        gain = s.get("gain_vs_better_endpoint")
        print(f"\nbest lambda {b['lambda']:.4f}: {s['metric']} {b['value']:.6f}"
              + (f", {gain:+.3%} vs the better checkpoint" if gain is not None else ""))
    if s.get("grid_best"):
        print(f"grid of {len(s['grid'])}: best lambda {s['grid_best']['lambda']:.4f} ({s['grid_best']['value']:.6f}); "
              f"BO within {s['bo_vs_grid']:+.4%} of it, reached (0.01%) after "
              f"{s.get('evaluations_to_reach_grid') or '-'} evaluations")
    if s.get("model_dir"):
        print(f"merged model written to {s['model_dir']} (with merge-report.json)")


def _range_test_table(s: dict[str, Any]) -> None:
    if "per_lr" in s:
        print(f"{'LR':>10} {'status':>10} {'value':>10} {'loss fell':>9} {'good':>5}")
        for r in s["per_lr"]:
            print(f"{r['lr']:>10.3g} {r['status']:>10} {_fmt(r['value']):>10} {str(r['loss_fell']):>9} "
                  f"{str(r['good']):>5}")
    for name, info in (s.get("suggestions") or {}).items():
        lr = info.get("lr") if isinstance(info, dict) else None
        rule = info.get("rule", "") if isinstance(info, dict) else "could not be computed"
        print(f"{name:>9}: {lr:.3g}   {rule}" if isinstance(lr, (int, float)) else f"{name:>9}: -   {rule}")
    if s.get("chosen"):
        print(f"\nchosen: {s['chosen']}, lr = {s['lr']:.3g}")
    if s.get("lr_range"):
        print(f"LR range: {s['lr_range'][0]:.3g} to {s['lr_range'][1]:.3g}")
    if s.get("why"):
        print(s["why"])


#: view key -> table(summary), printed to stdout
TABLES: dict[str, Callable[[dict[str, Any]], None]] = {
    "horizon": _horizon_table, "path-switch": _path_switch_table, "merge": _merge_table,
    "range-test": _range_test_table,
}


def print_summary(view: str, study: Any, summary: dict[str, Any]) -> None:
    """The kind's table; for a kind without one, the ranking of its trials."""
    table = TABLES.get(view)
    if table is not None:
        table(summary)
        return
    from lrbench_gui.cli.tune import format_ranking

    print(format_ranking(study))
    sys.stdout.flush()
