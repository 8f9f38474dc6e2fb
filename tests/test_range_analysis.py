"""The range-test analysis on synthetic loss(LR) curves whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrbench_gui.core.tuning.range_analysis import analyze_range_test, smooth_losses, valley_index

STEPS = 600


def _lrs(n: int = STEPS, lo: float = 1e-6, hi: float = 1.0) -> np.ndarray:
    return lo * (hi / lo) ** (np.arange(n) / (n - 1))


def _curve(lrs: np.ndarray, steep_at: float = 1e-3, blow_at: float = 0.1) -> np.ndarray:
    """A loss that falls along a sigmoid in log10(LR), steepest at ``steep_at``, then blows up
    past ``blow_at``."""
    x = np.log10(lrs)
    fall = 2.0 - 1.5 / (1.0 + np.exp(-(x - math.log10(steep_at)) / 0.3))
    rise = np.where(x > math.log10(blow_at), np.expm1(4.0 * (x - math.log10(blow_at))) * 3.0, 0.0)
    return fall + rise


def _decades(a: float, b: float) -> float:
    return abs(math.log10(a) - math.log10(b))


def test_smoothing_is_bias_corrected():
    assert np.allclose(smooth_losses([3.0] * 50), 3.0)
    raw = np.array([1.0, 2.0, 3.0])
    s = smooth_losses(raw, beta=0.5)
    assert s[0] == pytest.approx(1.0)  # no pull towards 0 at the start
    assert s[1] == pytest.approx((0.25 * 1 + 0.5 * 2) / 0.75)


def test_steepest_point_found_without_smoothing():
    lrs = _lrs()
    out = analyze_range_test(lrs, _curve(lrs), beta=0.0, choose="steepest")
    assert out["chosen"] == "steepest"
    assert _decades(out["suggestions"]["steepest"]["lr"], 1e-3) < 0.05
    assert out["lr"] == out["suggestions"]["steepest"]["lr"]


def test_smoothed_suggestions_are_ordered_and_near_the_truth():
    lrs = _lrs()
    out = analyze_range_test(lrs, _curve(lrs))
    s = out["suggestions"]
    # the moving average lags: the smoothed steepest point comes a little later, never earlier
    assert 0 <= math.log10(s["steepest"]["lr"]) - math.log10(1e-3) < 0.5
    lr_at_min = s["minimum"]["lr_at_minimum"]
    assert s["minimum"]["lr"] == pytest.approx(lr_at_min / 10)
    assert 1e-2 < lr_at_min <= 0.2  # the loss bottoms out before the blow-up at 0.1
    assert s["valley"]["from_lr"] < s["valley"]["lr"] < s["valley"]["to_lr"]
    # half the sigmoid's fall is at its centre, 1e-3; the smoothing's lag moves it up a little
    assert 0 <= math.log10(s["halfway"]["lr"]) - math.log10(1e-3) < 0.5
    assert s["halfway"]["to_loss"] < s["halfway"]["loss"] < s["halfway"]["from_loss"]
    # the default: half way in log LR between halfway and minimum/10
    assert s["balanced"]["lr"] == pytest.approx(math.sqrt(s["halfway"]["lr"] * s["minimum"]["lr"]))
    assert out["chosen"] == "balanced" and out["lr"] == s["balanced"]["lr"]
    assert "balanced" in out["why"] and "default" in out["why"]
    # every rule's LR is reported, in the summary and in words
    assert out["rules"] == {r: s[r]["lr"] for r in ("balanced", "halfway", "valley", "steepest", "minimum")}
    assert all(f"{s[r]['lr']:.3g}" in out["why"] for r in ("halfway", "valley", "steepest", "minimum"))
    assert out["lr_range"] == [s["steepest"]["lr"], lr_at_min]
    assert out["diverged_at"] is not None and out["diverged_at"] > lr_at_min


def test_divergence_cuts_the_curve():
    lrs = _lrs()
    out = analyze_range_test(lrs, _curve(lrs))
    assert max(out["curve"]["lr"]) < out["diverged_at"]
    assert max(out["curve"]["smoothed"]) <= 4 * min(out["curve"]["smoothed"])


def test_nan_losses_end_the_curve():
    lrs = _lrs()
    loss = _curve(lrs, blow_at=10.0)  # no blow-up: the NaN is the only divergence
    loss[450:] = np.nan
    out = analyze_range_test(lrs, loss)
    assert out["diverged_at"] == pytest.approx(lrs[450])
    assert out["chosen"] == "balanced"
    assert all(lr < lrs[450] for lr in out["curve"]["lr"])
    inf_loss = loss.copy()
    inf_loss[450:] = np.inf
    assert analyze_range_test(lrs, inf_loss)["diverged_at"] == pytest.approx(lrs[450])


def test_bad_lrs_are_dropped():
    lrs = _lrs()
    lrs_bad = lrs.copy()
    lrs_bad[:5] = 0.0
    out = analyze_range_test(lrs_bad, _curve(lrs))
    assert out["chosen"] == "balanced"


def test_a_loss_that_never_falls_gives_no_answer():
    lrs = _lrs()
    out = analyze_range_test(lrs, 1.0 + np.log10(lrs / 1e-6))
    assert out["chosen"] is None and out["lr"] is None
    assert "never fell" in out["why"] and set(out["rules"].values()) == {None}


def test_too_few_points_gives_no_answer():
    out = analyze_range_test([1e-4, 1e-3, 1e-2], [1.0, 0.9, 0.8])
    assert out["chosen"] is None and "usable points" in out["why"]
    out = analyze_range_test([1e-4, 1e-3], [math.nan, math.nan])
    assert out["chosen"] is None and out["diverged_at"] == 1e-4


def test_still_falling_at_the_end_is_flagged():
    lrs = _lrs()
    out = analyze_range_test(lrs, 2.0 - np.log10(lrs / 1e-6) / 10)
    assert any("raise end_lr" in w for w in out["warnings"])


def test_choose_minimum():
    lrs = _lrs()
    out = analyze_range_test(lrs, _curve(lrs), choose="minimum")
    assert out["chosen"] == "minimum" and out["lr"] == out["suggestions"]["minimum"]["lr"]
    valley = analyze_range_test(lrs, _curve(lrs), choose="valley")  # fastai's default, still on request
    assert valley["chosen"] == "valley" and "balanced" in valley["why"]


def test_halfway_ignores_odd_first_batches_and_early_dips():
    """The start level is the median of the first raw losses, and the answer is the last crossing
    of half the fall: a few huge first losses and a noise dip early on do not move it."""
    lrs = _lrs()
    clean = analyze_range_test(lrs, _curve(lrs))["suggestions"]["halfway"]
    loss = _curve(lrs)
    loss[:4] = 20.0  # odd first batches
    loss[100:160] = 0.2  # a dip below half the fall, long before the real descent
    odd = analyze_range_test(lrs, loss)["suggestions"]["halfway"]
    assert _decades(odd["lr"], clean["lr"]) < 0.05
    assert odd["from_loss"] == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError):
        analyze_range_test(lrs, _curve(lrs), choose="median")


def _fastai_valley(losses: list[float]) -> int:
    """fastai 2.x ``valley``, loop for loop."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_valley_matches_fastai(seed):
    rng = np.random.default_rng(seed)
    losses = np.cumsum(rng.normal(-0.05, 0.2, 120)) + 10
    assert valley_index(losses)[2] == _fastai_valley(list(losses))


def test_noisy_curve_keeps_valley_in_the_falling_part():
    lrs = _lrs()
    rng = np.random.default_rng(7)
    loss = _curve(lrs) * (1 + rng.normal(0, 0.03, len(lrs)))
    out = analyze_range_test(lrs, loss)
    assert 1e-4 < out["lr"] < 3e-2
    assert out["suggestions"]["valley"]["loss"] < 1.9
