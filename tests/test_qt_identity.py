"""In the window: a trial has one colour in Live and Results, the Live table tells its trials
apart, the Policies overlay says what a pinned curve changed, and the dark theme reaches every
plot (also one made after the switch), its axes and the grey hint text."""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial
from lrbench_gui.qt.identity import trial_colour
from lrbench_gui.qt.main_window import MainWindow
from lrbench_gui.qt.settings_dialog import apply_theme


def _lum(colour: QColor) -> float:
    return 0.2126 * colour.redF() + 0.7152 * colour.greenF() + 0.0722 * colour.blueF()


def _pen_colours(widget) -> set[str]:
    out = set()
    for plot in widget.findChildren(pg.PlotWidget):
        for item in plot.getPlotItem().items:
            pen = item.opts.get("pen") if hasattr(item, "opts") else None
            if pen is not None:
                out.add(pg.mkPen(pen).color().name())
    return out


@pytest.fixture
def window(qtbot, lrbench_env, registry):
    db = PolicyDB(registry=registry)
    with db.batch():
        db.add_study(synthetic_study("s1"))
        db.add_many("trials", [synthetic_trial(i, study="s1", points=30) for i in range(2)])
    win = MainWindow()
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    yield win
    apply_theme("light", win)


def test_one_colour_per_trial_across_live_and_results_and_a_dark_theme_everywhere(window, qtbot, registry):
    trial = PolicyDB(registry=registry).records("trials")[0]
    tid = trial["id"]
    live = window.live_panel
    step = {"name": "step", "params": {"lr": 0.1, "gamma": 0.5, "step_size": 30}}
    for key, gamma in (("a", 0.5), ("b", 0.1)):  # two trials of one label: the table must tell them apart
        other = {**step, "params": {**step["params"], "gamma": gamma}}
        live._trial_added(f"s1-{key}", {"trial": f"s1-{key}", "key": key, "family": "step", "label": "step(lr=0.1)",
                                         "policy": other, "steps": 100, "point": {}})
    live._trial_added(tid, {"trial": tid, "key": "0", "family": trial["policy"]["name"], "label": "x",
                            "policy": trial["policy"], "steps": 30, "point": {}})
    assert live.model.colors[tid] == live.plot.series[tid].color == trial_colour(tid)
    assert live.model.labels["s1-a"] == "step(lr=0.1, gamma=0.5)" and live.model.labels["s1-b"] == "step(lr=0.1, gamma=0.1)"
    assert live.plot.legend.labels()["s1-a"] == "step(lr=0.1, gamma=0.5)"  # the side list, not a legend on the data

    window.show_panel("Results")
    results = window.results_panel
    qtbot.waitUntil(lambda: tid in results.visible_ids(), timeout=5000)
    from lrbench_gui.qt.db_panel import _COLUMNS
    from lrbench_gui.qt.identity import short_labels

    col = [key for _, key, _ in _COLUMNS].index("label")  # the Policy column: the same short labels
    shown = {results.proxy.index(r, col).data() for r in range(results.proxy.rowCount())}
    assert shown == set(short_labels(PolicyDB(registry=registry).records("trials"), registry).values())
    with qtbot.waitSignal(results.curvesShown, timeout=5000):
        results.select_trials([tid])
    qtbot.waitUntil(lambda: trial_colour(tid) in _pen_colours(results), timeout=5000)

    apply_theme("dark", window)
    window.show_panel("Methods")
    from lrbench_gui.qt.methods._plots import make_plot

    late = make_plot(window.methods_panel, "made after the switch", "x", "y", log_x=True)  # a view drawn later
    plots = window.findChildren(pg.PlotWidget)
    assert len(plots) >= 6
    for plot in plots:
        assert _lum(plot.backgroundBrush().color()) < 0.2, plot
        axis = plot.getPlotItem().getAxis("left")
        assert _lum(axis.textPen().color()) > 0.6, plot
    assert _lum(late.backgroundBrush().color()) < 0.2
    hint = window.policy_panel.overlay.hint  # "color: #6b7280" in the light theme
    assert "#9ca3af" in hint.styleSheet()
    window.run_panel._set_status("ready", None)  # no status colour: the theme's own text
    assert window.run_panel.status.styleSheet() == ""
    apply_theme("light", window)
    assert "#6b7280" in hint.styleSheet()
    assert all(_lum(p.backgroundBrush().color()) > 0.9 for p in window.findChildren(pg.PlotWidget))


def test_log_axis_labels_decades_not_every_minor_tick(qtbot):
    from lrbench_gui.qt.plot_style import LogAxis

    axis = LogAxis("left")
    axis.setLogMode(True)

    def labelled(lo: float, hi: float, size: float = 300) -> list[str]:
        out = []
        for spacing, values in axis.tickValues(lo, hi, size):
            out += [t for t in axis.tickStrings(values, 1.0, spacing) if t]
        return out

    assert labelled(-4.2, -0.8) == ["1e-4", "1e-3", "0.01", "0.1"]  # decades only, short plain numbers
    short = labelled(-0.35, 0.0)  # 0.45 .. 1: pyqtgraph labelled 1 0.9 0.8 0.7 0.6 0.5
    assert 2 <= len(short) <= 7 and "1" in short
    many = labelled(-12, 0, size=120)  # twelve decades on a short axis: every k-th decade
    assert 2 <= len(many) <= 5


def test_results_filter_bar_and_the_tags_editor(qtbot, lrbench_env, registry):
    from lrbench_gui.qt.db_jobs import DatabaseJobs
    from lrbench_gui.qt.results_filter import AnnotationEditor, ResultsFilter

    db = PolicyDB(registry=registry)
    with db.batch():
        db.add_study(synthetic_study("s1"))
        trials = [synthetic_trial(i, study="s1", points=10) for i in range(3)]
        trials[0]["tags"] = ["interrupted"]  # lrbench's own tag: shown, kept, not editable
        db.add_many("trials", trials)
    first = trials[0]["id"]
    jobs = DatabaseJobs(registry=registry)
    editor = AnnotationEditor(jobs)
    qtbot.addWidget(editor)
    editor.show_record(first, ["interrupted"], "")
    assert editor.tags_edit.text() == "" and "interrupted" in editor.message.text()
    editor.tags_edit.setText("bad tag!")
    assert editor.save() == 0 and "no spaces" in editor.message.text()  # refused here, nothing written
    editor.tags_edit.setText("baseline, keep")
    editor.notes_edit.setPlainText("the reference run")
    with qtbot.waitSignal(editor.saved, timeout=5000):
        editor.save()
    jobs.close()
    stored = PolicyDB(registry=registry).get(first)
    assert stored["tags"] == ["interrupted", "baseline", "keep"] and stored["notes"] == "the reference run"

    rows = PolicyDB(registry=registry).trial_rows()
    bar = ResultsFilter()
    qtbot.addWidget(bar)
    bar.set_rows(rows)
    assert [bar.combos["tag"].itemText(i) for i in range(bar.combos["tag"].count())] == [
        "any", "baseline", "interrupted", "keep"]
    with qtbot.waitSignal(bar.changed):
        bar.set_choice("tag", "keep")
    assert [r["id"] for r in bar.apply(rows)] == [first]
    bar.set_choice("tag", None)
    bar.group_by.setCurrentText("tag")
    ordered = bar.ordered(rows)
    assert [r["group"] for r in ordered][:1] == [""] and {r["group"] for r in ordered} == {"", "baseline", "interrupted", "keep"}
    bar.set_rows(rows)  # reloading keeps the choices
    assert bar.grouping() == "tag"
