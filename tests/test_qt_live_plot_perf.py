"""The live plot's drawing economy: peak decimation, curves bounded in points, ranges set here
(pyqtgraph's auto-range off), hidden curves left alone, log axes applied to the data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrbench_gui.qt.live_plot import LivePlot, peak_decimate


def test_peak_decimate_keeps_extremes_and_bounds_the_points():
    n = 10_000
    x = np.arange(n, dtype=float)
    y = np.sin(x * 0.7)
    y[1234] = 50.0  # a spike
    y[5000:5300] = np.nan
    xs, ys = peak_decimate(x, y, n, 300)
    assert len(xs) == len(ys) <= 2 * 300 + 64
    assert np.nanmax(ys) == 50.0 and np.nanmin(ys) == np.nanmin(y)
    assert np.all(np.diff(xs) >= 0)  # still in step order
    assert np.isnan(ys).any()  # a whole run of NaNs stays a gap
    # few points: kept as they are
    xs, ys = peak_decimate(x, y, 100, 300)
    assert np.array_equal(xs, x[:100]) and np.array_equal(ys, y[:100])


def _fill(plot: LivePlot, trials: int, steps: int) -> list[str]:
    ids = [f"t{i}" for i in range(trials)]
    for i, t in enumerate(ids):
        plot.add_trial(t, f"trial {t}")
        for step in range(steps):
            lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = 2.0 * math.exp(-3.0 * step / steps) + 0.05 * math.sin(step * 0.7 + i) + 0.1
            plot.append(t, step, lr, loss)
    return ids


def test_curves_are_decimated_and_ranged_without_autorange(qtbot):
    plot = LivePlot()
    qtbot.addWidget(plot)
    plot.resize(900, 600)
    plot.show()
    ids = _fill(plot, 4, 5000)
    plot.redraw_all()
    for t in ids:
        s = plot.series[t]
        assert plot.points(t) == 5000
        for curve in s.curves.values():
            x, y = curve.getData()
            assert 0 < len(x) <= LivePlot.MAX_DRAWN
        # the raw loss's extremes survive the decimation
        _, raw = s.curves["raw"].getData()
        assert raw.max() == s.losses[:5000].max() and raw.min() == s.losses[:5000].min()
    for p in (plot.lr_plot, plot.loss_plot):
        vb = p.getPlotItem().getViewBox()
        assert list(vb.autoRangeEnabled()) == [False, False]
    (x0, x1), (y0, y1) = plot.loss_plot.getPlotItem().getViewBox().viewRange()
    losses = np.concatenate([plot.series[t].losses[:5000] for t in ids])
    assert x0 <= 0 and x1 >= 4999 and y0 <= losses.min() and y1 >= losses.max()
    # nothing new: a tick leaves the curves alone
    before = [plot.series[t].curves["lr"].getData()[0] for t in ids]
    plot.redraw_all()
    assert all(a is plot.series[t].curves["lr"].getData()[0] for a, t in zip(before, ids))


def test_hidden_curves_are_skipped_then_caught_up(qtbot):
    plot = LivePlot()
    qtbot.addWidget(plot)
    plot.raw.setChecked(False)
    ids = _fill(plot, 2, 200)
    plot.redraw_all()
    raw = plot.series[ids[0]].curves["raw"]
    assert len(raw.getData()[0] if raw.getData()[0] is not None else []) == 0
    plot.raw.setChecked(True)
    assert len(raw.getData()[0]) == 200


def test_log_axes_transform_the_data_and_manual_zoom_stops_following(qtbot):
    plot = LivePlot()
    qtbot.addWidget(plot)
    ids = _fill(plot, 1, 300)
    plot.log_lr.setChecked(True)
    _, y = plot.series[ids[0]].curves["lr"].getData()
    assert np.nanmax(y) == pytest.approx(math.log10(1e-3))
    vb = plot.lr_plot.getPlotItem().getViewBox()
    assert vb.viewRange()[1][1] >= math.log10(1e-3)
    vb.setYRange(-10, -9, padding=0)
    vb.sigRangeChangedManually.emit([False, True])
    for step in range(300, 400):
        plot.append(ids[0], step, 1e-3, 1.0)
    plot.redraw_all()
    assert vb.viewRange()[1] == pytest.approx([-10, -9])  # the user's zoom is kept


def test_plots_export_as_png_svg_and_csv(qtbot, tmp_path):
    plot = LivePlot()
    qtbot.addWidget(plot)
    plot.resize(640, 480)
    ids = _fill(plot, trials=2, steps=40)
    plot.export_image(tmp_path / "curves.png")
    plot.export_image(tmp_path / "curves.svg")
    for name in ("curves.png", "curves-loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("curves.svg", "curves-loss.svg"):
        text = (tmp_path / name).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text and text.count("<path") + text.count("<polyline") > 2
    assert not list(tmp_path.glob("*.tmp"))
    plot.export_csv(tmp_path / "curves.csv")
    rows = (tmp_path / "curves.csv").read_text().splitlines()
    assert rows[0] == "trial,step,lr,loss,loss_smooth" and len(rows) == 1 + 2 * 40
    assert {r.split(",")[0] for r in rows[1:]} == set(ids)
