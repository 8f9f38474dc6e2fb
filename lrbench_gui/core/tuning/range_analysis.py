"""Reading an LR range test: which learning rate the (LR, loss) curve suggests, and why.

Pure numpy, so it runs in the app, in tests and in a notebook alike. :func:`analyze_range_test`
follows fastai's ``lr_find`` (fastai 2.x ``callback/schedule.py``):

1. drop points whose LR is not a positive finite number; stop at the first non-finite loss;
2. smooth the loss with an exponential moving average, ``beta = 0.98``, bias-corrected
   (``avg / (1 - beta ** (i + 1))``), so the first points are not pulled towards 0;
3. cut at divergence: the curve ends before the first point whose smoothed loss exceeds
   ``diverge`` (4) times the lowest smoothed loss so far;
4. skip the first 10 % of the points (the average still settling) and the last 5 (the rise into
   divergence), as fastai does, when enough points remain;
5. suggest, each with its LR:

   * **balanced**: the geometric mean of halfway and minimum/10 (their midpoint in log LR);
   * **halfway**: the LR where the smoothed loss has made half its fall, from where it started
     (the median of the raw losses over the first 20 % of the curve) down to its lowest: the last
     crossing of that level before the lowest point, interpolated in log LR; it reads the curve's
     shape, not its slope, so a little noise moves it little;
   * **steepest**: the LR where the smoothed loss falls fastest against log(LR) (fastai ``steep``:
     the minimum of the forward difference);
   * **valley**: fastai's ``valley``: the longest decreasing run of the smoothed loss (its longest
     decreasing subsequence), and the point ``start + len // 3 + len // 6`` along it (about half
     way down; fastai's own index);
   * **minimum**: the LR of the lowest smoothed loss divided by 10 (fastai ``minimum``).

The chosen suggestion is ``choose`` (default balanced) unless it cannot be computed, in which
case the next of balanced, halfway, valley, steepest, minimum is taken and ``why`` says so; ``why``
and ``rules`` give every rule's LR. Balanced is the default by what ``bench/tuning.py`` measured
against the grid's best fixed LR at the same budget (docs/tuning.md has the table): within 2.4x
on every seed of digits-mlp, digits-cnn, tinylm-pretrain and a LoRA fine-tune, where fastai's
valley was up to 9x too low (the loss keeps falling long after its longest descent starts),
steepest too low on digits and far too low on LoRA, minimum/10 up to 5.6x too high on tinylm (its
loss bottoms out far above the LR a whole run bears), and halfway alone up to 3.8x off on the
noisy LoRA curves. Halfway and minimum/10 err in different ways, so their midpoint halves each
one's error in log LR.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["smooth_losses", "analyze_range_test", "valley_index", "RULES"]

RULES = ("balanced", "halfway", "valley", "steepest", "minimum")

_RULE_TEXT = {
    "balanced": "the geometric mean of halfway and minimum/10",
    "halfway": "where the smoothed loss has made half its fall, from where it started to its lowest",
    "steepest": "where the smoothed loss falls fastest against log(LR)",
    "valley": "about half way down the longest descending stretch of the smoothed loss (fastai's valley)",
    "minimum": "a tenth of the LR of the lowest smoothed loss",
}


_LABEL = {"balanced": "balanced", "halfway": "halfway", "valley": "valley", "steepest": "steepest",
          "minimum": "minimum/10"}


def smooth_losses(losses: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """The bias-corrected exponential moving average of ``losses`` (fastai's smoothing)."""
    x = np.asarray(losses, dtype=float)
    out = np.empty_like(x)
    avg = 0.0
    for i, v in enumerate(x):
        avg = beta * avg + (1.0 - beta) * v
        out[i] = avg / (1.0 - beta ** (i + 1))
    return out


def valley_index(losses: np.ndarray) -> tuple[int, int, int]:
    """(start, end, index) of fastai's valley on ``losses``: the longest decreasing subsequence
    ends at ``end`` and is about ``end - start`` long; ``index`` is the suggestion."""
    n = len(losses)
    lds = np.ones(n, dtype=int)
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            lds[i] = int(lds[:i][higher].max()) + 1
    end = int(np.argmax(lds))  # the first of the longest, as fastai's strict comparison keeps
    start = end - int(lds[end])
    sections = (end - start) / 3
    index = start + int(sections) + int(sections / 2)
    return max(0, start), end, min(max(0, index), n - 1)


def _downsample(x: np.ndarray, k: int) -> np.ndarray:
    if len(x) <= k:
        return x
    idx = np.unique(np.round(np.linspace(0, len(x) - 1, k)).astype(int))
    return x[idx]


def analyze_range_test(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    beta: float = 0.98,
    diverge: float = 4.0,
    choose: str = "balanced",
    skip_start: float = 0.1,
    skip_end: int = 5,
    min_points: int = 8,
    valley_points: int = 2000,
    curve_points: int = 100,
) -> dict[str, Any]:
    """Suggestions from a range test's ``lrs`` and training ``losses``, one pair per logged step,
    in the order they were run. Returns a JSON-ready dict::

        {"suggestions": {"halfway": {"lr", "loss", "index", "rule"}, "valley": ..., "steepest": ...,
                         "minimum": ...},
         "rules": {"halfway": lr, ...}, "chosen": "halfway", "lr": ..., "why": "...",
         "lr_range": [steepest lr, lr of the min],
         "diverged_at": lr or None, "points": n used, "warnings": [...],
         "curve": {"lr": [...], "smoothed": [...]}}

    Suggestions that cannot be computed are None; with too few points or a loss that never fell,
    ``chosen`` and ``lr`` are None and ``why`` says what to change. The valley's O(n^2) search
    runs on at most ``valley_points`` points (evenly spaced in the run) for long tests.
    """
    if choose not in RULES:
        raise ValueError(f"choose must be one of {RULES}, got {choose!r}")
    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    if lr.shape != loss.shape:
        raise ValueError(f"lrs and losses differ in length ({len(lr)} and {len(loss)})")
    out: dict[str, Any] = {
        "suggestions": {r: None for r in RULES},
        "rules": {r: None for r in RULES},
        "chosen": None,
        "lr": None,
        "why": "",
        "lr_range": None,
        "diverged_at": None,
        "points": 0,
        "warnings": [],
        "curve": {"lr": [], "smoothed": []},
    }
    keep = np.isfinite(lr) & (lr > 0)
    lr, loss = lr[keep], loss[keep]
    bad = np.flatnonzero(~np.isfinite(loss))
    if len(bad):
        out["diverged_at"] = float(lr[bad[0]])
        lr, loss = lr[: bad[0]], loss[: bad[0]]
    if len(loss) == 0:
        out["why"] = "no usable points: the loss was not finite from the first step; lower start_lr"
        return out
    smooth = smooth_losses(loss, beta)
    running_min = np.minimum.accumulate(smooth)
    over = np.flatnonzero(smooth > diverge * running_min)
    if len(over):
        if out["diverged_at"] is None:
            out["diverged_at"] = float(lr[over[0]])
        lr, smooth = lr[: over[0]], smooth[: over[0]]
    n = len(smooth)
    # where the loss starts: the median of the raw losses of the first 20 % of the curve (the LR is
    # still far too low to move anything; the median ignores a few odd batches)
    start_loss = float(np.median(loss[: max(3, int(0.2 * n))][:n])) if n else math.nan
    lo = int(n * skip_start)
    hi = n - skip_end
    if hi - lo < min_points:  # too short to skip: keep everything
        lo, hi = 0, n
    lr, smooth = lr[lo:hi], smooth[lo:hi]
    n = len(smooth)
    out["points"] = n
    curve_idx = _downsample(np.arange(n), curve_points)
    out["curve"] = {"lr": [float(v) for v in lr[curve_idx]], "smoothed": [float(v) for v in smooth[curve_idx]]}
    if n < min_points:
        out["why"] = f"only {n} usable points (at least {min_points} needed): run the test longer or start lower"
        return out

    i_min = int(np.argmin(smooth))
    if i_min == 0:
        out["why"] = (
            f"the smoothed loss never fell below its first value ({smooth[0]:.4g} at {lr[0]:.3g}): "
            "start_lr is too high, or the test too short for the model to react"
        )
        out["warnings"].append("loss never fell")
        return out
    if out["diverged_at"] is None and i_min >= n - max(2, n // 20):
        out["warnings"].append("the loss was still falling at the end: raise end_lr to see where it turns")

    dlog = np.diff(np.log(lr))
    with np.errstate(divide="ignore", invalid="ignore"):
        grads = np.where(dlog > 0, np.diff(smooth) / np.where(dlog > 0, dlog, 1.0), np.inf)
    suggestions: dict[str, Any] = {}
    if np.isfinite(grads).any() and grads[np.isfinite(grads)].min() < 0:
        i = int(np.argmin(grads))
        suggestions["steepest"] = {"lr": float(lr[i]), "loss": float(smooth[i]), "index": i + lo,
                                   "slope": float(grads[i]), "rule": _RULE_TEXT["steepest"]}
    else:
        suggestions["steepest"] = None

    stride = max(1, math.ceil(n / valley_points))
    sub = smooth[::stride]
    v_start, v_end, v_idx = valley_index(sub)
    if v_end > 0 and v_end - v_start >= 2:
        i = v_idx * stride
        suggestions["valley"] = {"lr": float(lr[i]), "loss": float(smooth[i]), "index": i + lo,
                                 "from_lr": float(lr[v_start * stride]), "to_lr": float(lr[v_end * stride]),
                                 "rule": _RULE_TEXT["valley"]}
    else:
        suggestions["valley"] = None

    top = start_loss if start_loss > smooth[i_min] else float(smooth[0])
    level = top - 0.5 * (top - smooth[i_min])
    above = np.flatnonzero(smooth[: i_min + 1] > level)
    j = int(above[-1]) + 1 if len(above) else 0  # the last crossing: from here on it stays below
    if j > 0:
        a, b = smooth[j - 1], smooth[j]
        t = (a - level) / (a - b) if a > b else 1.0
        half_lr = float(np.exp(np.log(lr[j - 1]) + t * (np.log(lr[j]) - np.log(lr[j - 1]))))
    else:
        half_lr = float(lr[0])
    suggestions["halfway"] = {"lr": half_lr, "loss": float(level), "index": j + lo, "from_loss": top,
                              "to_loss": float(smooth[i_min]), "rule": _RULE_TEXT["halfway"]}

    suggestions["minimum"] = {"lr": float(lr[i_min]) / 10.0, "loss": float(smooth[i_min]), "index": i_min + lo,
                              "lr_at_minimum": float(lr[i_min]), "rule": _RULE_TEXT["minimum"]}
    half, tenth = suggestions["halfway"], suggestions["minimum"]
    suggestions["balanced"] = {"lr": math.sqrt(half["lr"] * tenth["lr"]), "halfway_lr": half["lr"],
                               "minimum_lr": tenth["lr"], "rule": _RULE_TEXT["balanced"]}
    out["suggestions"] = {r: suggestions[r] for r in RULES}
    out["rules"] = {r: (suggestions[r] or {}).get("lr") for r in RULES}
    lower = suggestions["steepest"]["lr"] if suggestions["steepest"] else float(lr[i_min]) / 10.0
    out["lr_range"] = [min(lower, float(lr[i_min])), float(lr[i_min])]

    order = [choose] + [r for r in RULES if r != choose]
    chosen = next(r for r in order if suggestions[r] is not None)  # minimum always exists here
    out["chosen"] = chosen
    out["lr"] = suggestions[chosen]["lr"]
    s = suggestions[chosen]
    if chosen == "balanced":
        detail = (f"half way between (in log LR) the halfway point, {s['halfway_lr']:.3g}, and minimum/10, "
                  f"{s['minimum_lr']:.3g}, is {s['lr']:.3g}")
    elif chosen == "halfway":
        detail = (f"the smoothed loss fell from {s['from_loss']:.4g} to {s['to_loss']:.4g}; it was half way down "
                  f"({s['loss']:.4g}) at LR {s['lr']:.3g}")
    elif chosen == "valley":
        detail = (f"the smoothed loss fell along its longest descending stretch, from LR {s['from_lr']:.3g} to "
                  f"{s['to_lr']:.3g}; the point about half way down it is {s['lr']:.3g}")
    elif chosen == "steepest":
        detail = f"the smoothed loss fell fastest at LR {s['lr']:.3g} ({s['slope']:.3g} per unit of ln LR)"
    else:
        detail = f"the lowest smoothed loss ({s['loss']:.4g}) was at LR {s['lr_at_minimum']:.3g}; a tenth of it is {s['lr']:.3g}"
    if chosen == choose:
        reason = {
            "balanced": "balanced is the default: on the benchmark's tasks it stayed closest to the best fixed LR "
                        "of a whole run (halfway alone strays on noisy curves, minimum/10 alone is too high on "
                        "tinylm, valley and steepest are too low on digits)",
            "halfway": "halfway was asked for",
            "valley": "valley was asked for",
            "steepest": "steepest was asked for",
            "minimum": "minimum/10 was asked for",
        }[chosen]
    else:
        reason = f"{choose} was asked for but could not be computed (no descending stretch), so {chosen} was used"
    others = ", ".join(f"{_LABEL[r]} {v:.3g}" for r, v in out["rules"].items() if r != chosen and v is not None)
    out["why"] = f"{chosen}: {detail}. {reason[0].upper() + reason[1:]}."
    if others:
        out["why"] += f" The other rules: {others}."
    return out
