"""The first window, offscreen: the policy visualizer, the composition editor, the overlay,
spec files, and the plugin view (including plugins written to the test's plugins folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402

from lrbench_gui.core.spec import build_schedule, parse_spec  # noqa: E402
from lrbench_gui.plugins import get_registry  # noqa: E402
from lrbench_gui.qt.main_window import MainWindow  # noqa: E402
from lrbench_gui.qt.param_form import format_float, parse_int_list  # noqa: E402
from lrbench_gui.qt.policies import PolicyPanel, sample_steps  # noqa: E402

PLUGIN = textwrap.dedent(
    '''
    """A third-party policy plugin, the way an author writes one."""
    from lrbench_gui.core.params import Params, param
    from lrbench_gui.core.policy import Policy
    from lrbench_gui.hookspecs import hookimpl

    __version__ = "2.1.0"


    class HalfLife(Policy):
        name = "half_life"
        summary = "Halve the learning rate every half_life steps"
        family = "research"

        class Params(Params):
            lr: float = param(0.01, "Initial learning rate.", gt=0, log=True)
            half_life: int = param(250, "Steps for the LR to halve.", ge=1, unit="steps")

        def lr_at(self, step):
            return self.params.lr * 0.5 ** (step / self.params.half_life)


    @hookimpl
    def register_policies(register):
        register(HalfLife)
    '''
)

BROKEN = 'raise RuntimeError("boom while importing")\n'


def expected(spec: dict, total: int = 1000) -> np.ndarray:
    return np.array(build_schedule(spec, total, get_registry()).lrs())


def full(spec: dict) -> dict:
    """A spec with every parameter written out, as the panel reports it."""
    return parse_spec(spec, get_registry()).to_json()


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.policy_panel.current_spec() is not None, timeout=3000)
    return win


@pytest.fixture
def panel(window) -> PolicyPanel:
    return window.policy_panel


def type_into(qtbot, editor, text: str) -> None:
    editor.selectAll()
    qtbot.keyClicks(editor, text)


def spec_is(spec: dict):
    want = full(spec)
    return lambda got: got == want


def test_window_opens_with_policies_first_and_plugins_last(window):
    assert window.panel_names()[0] == "Policies"
    assert window.panel_names()[-1] == "Plugins"
    assert window.current_panel() == "Policies"
    n = len(window.registry.policies)
    assert n >= 36
    assert f"{n} policies" in window.status_text()
    assert not window.windowIcon().isNull()
    titles = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert titles == ["File", "View", "Help"]


def test_add_panel_slots_in_before_plugins(window, qtbot):
    from PySide6.QtWidgets import QLabel

    window.add_panel("Notes", QLabel("notes"))
    window.add_panel("Extra", QLabel("extra"))
    assert window.panel_names() == ["Policies", "Run", "Study", "Live", "Watch", "Results", "Methods", "Recipes", "Notes", "Extra", "Plugins"]
    window.show_panel("extra")
    assert window.current_panel() == "Extra"
    assert window.stack.currentWidget().text() == "extra"
    with pytest.raises(ValueError):
        window.add_panel("Study", QLabel())


def test_changing_a_parameter_redraws_the_curve(panel, qtbot):
    assert panel.select_policy("cosine")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "cosine")
    lr = panel.form.editor("lr")
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is({"name": "cosine", "params": {"lr": 3e-2}})):
        type_into(qtbot, lr, "3e-2")
    np.testing.assert_allclose(panel.curve.current_item.yData, expected({"name": "cosine", "params": {"lr": 0.03}}))
    np.testing.assert_array_equal(panel.curve.current_item.xData, np.arange(1000))

    warmup = panel.form.editor("warmup_steps")
    want = {"name": "cosine", "params": {"lr": 0.03, "warmup_steps": 100}}
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is(want)):
        warmup.setValue(100)
    np.testing.assert_allclose(panel.curve.current_item.yData, expected(want))
    assert json.loads(panel.spec_box.spec_view.toPlainText()) == full(want)

    with qtbot.waitSignal(panel.curveChanged, timeout=3000):
        panel.total_steps_spin.setValue(400)
    np.testing.assert_allclose(panel.curve.current_item.yData, expected(want, 400))


def test_choice_bool_and_int_list_fields(panel, qtbot):
    panel.select_policy("wsd")
    want = {"name": "wsd", "params": {"decay_type": "linear"}}
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is(want)):
        panel.form.editor("decay_type").setCurrentText("linear")
    np.testing.assert_allclose(panel.current_curve()[1], expected(want))

    panel.select_policy("lr_range")
    want = {"name": "lr_range", "params": {"staircase": True}}
    qtbot.waitUntil(lambda: panel.form.editor("staircase").isVisible())
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is(want)):
        qtbot.mouseClick(panel.form.editor("staircase"), Qt.MouseButton.LeftButton)
    np.testing.assert_allclose(panel.current_curve()[1], expected(want))

    panel.select_policy("multistep")
    want = {"name": "multistep", "params": {"milestones": [100, 300, 600]}}
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is(want)):
        type_into(qtbot, panel.form.editor("milestones"), "100, 300 600")
    np.testing.assert_allclose(panel.current_curve()[1], expected(want))


def test_invalid_input_shows_errors_and_keeps_the_last_curve(panel, qtbot):
    panel.select_policy("cosine")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "cosine")
    before = panel.curve.current_item.yData.copy()
    lr = panel.form.editor("lr")

    with qtbot.waitSignal(panel.form.paramsRejected, timeout=3000):
        type_into(qtbot, lr, "abc")
    assert lr.property("invalid") is True
    assert "not a number" in panel.form.error_text()
    assert "last valid curve" in panel.curve_title.text()

    # A field that does not parse does not hide another field's problem.
    with qtbot.waitSignal(panel.form.paramsRejected, timeout=3000) as blocker:
        type_into(qtbot, panel.form.editor("min_lr"), "-3")
    assert "not a number" in blocker.args[0] and "min_lr: must be >= 0" in blocker.args[0]
    with qtbot.waitSignal(panel.form.paramsRejected, timeout=3000):
        type_into(qtbot, panel.form.editor("min_lr"), "0")

    with qtbot.waitSignal(panel.form.paramsRejected, timeout=3000):
        type_into(qtbot, lr, "-1")
    assert "must be > 0" in panel.form.error_text()
    np.testing.assert_array_equal(panel.curve.current_item.yData, before)
    assert panel.current_spec()["params"]["lr"] == 0.001

    with qtbot.waitSignal(panel.curveChanged, timeout=3000):
        type_into(qtbot, lr, "0.002")
    assert panel.form.is_valid() and lr.property("invalid") is False
    assert "last valid" not in panel.curve_title.text()

    # A rule across fields (min_lr <= max_lr) lands under the form, not on one field.
    panel.select_policy("triangle")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "triangle")
    with qtbot.waitSignal(panel.form.paramsRejected, timeout=3000) as blocker:
        type_into(qtbot, panel.form.editor("min_lr"), "0.5")
    assert "must not exceed max_lr" in blocker.args[0]
    assert panel.current_spec() == full({"name": "triangle"})


def test_log_scale_toggle(window, panel, qtbot):
    assert not panel.is_log_scale()
    qtbot.mouseClick(panel.log_check, Qt.MouseButton.LeftButton)
    assert panel.is_log_scale()
    assert window.log_action.isChecked()
    raw = panel.curve.current_item.yData.copy()
    window.log_action.trigger()
    assert not panel.is_log_scale() and not panel.log_check.isChecked()
    np.testing.assert_array_equal(panel.curve.current_item.yData, raw)


def test_overlay_add_and_remove(panel, qtbot):
    panel.select_policy("cosine")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "cosine")
    qtbot.mouseClick(panel.pin_button, Qt.MouseButton.LeftButton)
    panel.select_policy("linear")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "linear")
    qtbot.mouseClick(panel.pin_button, Qt.MouseButton.LeftButton)

    assert [o["spec"]["name"] for o in panel.overlays()] == ["cosine", "linear"]
    assert panel.overlay.list.count() == 2
    assert len({o["color"] for o in panel.overlays()}) == 2
    items = panel.curve.plot_item.listDataItems()
    assert len([i for i in items if i is not panel.curve.current_item and i.opts["symbol"] is None]) == 2
    assert len(panel.curve.legend.items) == 3
    pinned = panel.overlay.items[0].item
    np.testing.assert_allclose(pinned.yData, expected({"name": "cosine"}))

    panel.overlay.list.setCurrentRow(0)
    qtbot.mouseClick(panel.overlay.remove_button, Qt.MouseButton.LeftButton)
    assert [o["spec"]["name"] for o in panel.overlays()] == ["linear"]
    assert pinned not in panel.curve.plot_item.listDataItems()
    assert len(panel.curve.legend.items) == 2

    # Pinning the same policy again with other parameters gives a label that tells them apart.
    with qtbot.waitSignal(panel.curveChanged, timeout=3000):
        panel.form.editor("warmup_steps").setValue(50)
    panel.pin_current()
    assert panel.overlays()[-1]["label"] == "linear(lr=0.001, warmup_steps=50)"

    panel.clear_overlays()
    assert panel.overlays() == [] and panel.overlay.list.count() == 0


def test_hover_readout(panel, qtbot):
    panel.curve.plot_item.vb.setRange(xRange=(0, 1000), yRange=(0, 0.001), padding=0)
    pos = panel.curve.plot_item.vb.mapViewToScene(QPointF(250, 0.0005))
    panel.curve.plot.scene().sigMouseMoved.emit(pos)
    lr = expected({"name": "cosine"})[250]
    assert "step <b>250</b>" in panel.curve.readout.text()
    assert f"{lr:.4g}" in panel.curve.readout.text()


def test_composition_builds_a_sequence_spec_and_its_curve(panel, qtbot):
    panel.select_policy("fixed")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "fixed")
    with qtbot.waitSignal(panel.curveChanged, timeout=3000):
        type_into(qtbot, panel.form.editor("lr"), "0.02")
    panel.mode_bar.setCurrentIndex(1)
    assert panel.mode() == "sequence" and len(panel.segments()) == 1
    panel.set_segment_length(100)
    panel.add_segment()
    panel.select_policy("cosine")  # the new (selected) segment becomes a cosine, keeping the edited lr
    panel.set_segment_length(900)
    want = {
        "sequence": [{"name": "fixed", "params": {"lr": 0.02}}, {"name": "cosine", "params": {"lr": 0.02}}],
        "boundaries": [100],
    }
    qtbot.waitUntil(lambda: panel.current_spec() == full(want), timeout=3000)
    np.testing.assert_allclose(panel.curve.current_item.yData, expected(want))
    assert panel.total_steps_spin.value() == 1000 and not panel.total_steps_spin.isEnabled()
    assert [line.value() for line in panel.curve.boundary_lines] == [100]

    # Editing the form edits the selected segment only.
    with qtbot.waitSignal(panel.curveChanged, timeout=3000):
        type_into(qtbot, panel.form.editor("min_lr"), "1e-4")
    assert panel.current_spec()["sequence"][1]["params"]["min_lr"] == 1e-4
    panel.select_segment(0)
    assert panel.picker.current_name() == "fixed"
    assert panel.form.names() == ["lr"]

    # Back to one policy: the single policy was kept as it was.
    panel.set_mode("single")
    qtbot.waitUntil(lambda: panel.current_spec() == full({"name": "fixed", "params": {"lr": 0.02}}))
    assert panel.total_steps_spin.isEnabled()


def test_a_composition_with_share_boundaries_opens_laid_out_over_the_run(panel, qtbot):
    spec = {"sequence": [{"name": "fixed", "params": {"lr": 0.02}}, {"name": "cosine", "params": {"lr": 0.02}}],
            "boundaries": [0.25]}
    panel.load_spec(spec, total_steps=400)
    qtbot.waitUntil(lambda: [s.steps for s in panel.segments()] == [100, 300], timeout=3000)
    qtbot.waitUntil(lambda: [line.value() for line in panel.curve.boundary_lines] == [100], timeout=3000)


def test_save_and_open_spec_round_trip(panel, qtbot, tmp_path):
    tmp_path = tmp_path / "specs"
    tmp_path.mkdir()
    panel.select_policy("cosine")
    want = {"name": "cosine", "params": {"lr": 0.02}}
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is(want)):
        type_into(qtbot, panel.form.editor("lr"), "0.02")
    path = tmp_path / "cosine.json"
    with qtbot.waitSignal(panel.statusMessage):
        assert panel.save_spec_file(path)
    assert json.loads(path.read_text()) == full(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cosine.json"]  # no temp file left

    panel.select_policy("step")
    qtbot.waitUntil(lambda: panel.current_spec()["name"] == "step")
    assert panel.open_spec_file(path)
    qtbot.waitUntil(lambda: panel.current_spec() == full(want))
    assert panel.picker.current_name() == "cosine"
    assert panel.form.editor("lr").text() == "0.02"
    np.testing.assert_allclose(panel.curve.current_item.yData, expected(want))

    seq = {"sequence": [{"name": "linear", "params": {"lr": 0.01}}, {"name": "exp"}], "boundaries": [200]}
    seq_path = tmp_path / "seq.json"
    seq_path.write_text(json.dumps(seq))
    assert panel.open_spec_file(seq_path)
    qtbot.waitUntil(lambda: panel.current_spec() == full(seq))
    assert panel.mode() == "sequence"
    assert [(s.name, s.steps) for s in panel.segments()] == [("linear", 200), ("exp", 800)]
    saved = tmp_path / "seq-saved.json"
    assert panel.save_spec_file(saved)
    assert json.loads(saved.read_text()) == full(seq)


def test_bad_spec_files_show_a_message_and_change_nothing(panel, qtbot, tmp_path):
    before = panel.current_spec()
    cases = {
        "broken.json": ("{not json", "not valid JSON"),
        "unknown.json": (json.dumps({"name": "cosinus"}), "unknown policy 'cosinus'"),
        "badparam.json": (json.dumps({"name": "cosine", "params": {"lr": -1}}), "params.lr"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        assert not panel.open_spec_file(tmp_path / name)
        assert panel.banner.isVisibleTo(panel) and message in panel.banner.text(), panel.banner.text()
        assert panel.current_spec() == before
    assert not panel.open_spec_file(tmp_path / "missing.json")
    assert "Could not read" in panel.banner.text()


def test_save_button_asks_for_a_path(panel, qtbot, tmp_path, monkeypatch):
    from lrbench_gui.qt.policies import spec_box

    target = tmp_path / "chosen"
    monkeypatch.setattr(spec_box.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    qtbot.mouseClick(panel.spec_box.save_button, Qt.MouseButton.LeftButton)
    assert json.loads((tmp_path / "chosen.json").read_text()) == panel.current_spec()


def test_a_plugin_in_the_plugins_folder_shows_up(lrbench_env, qtbot):
    (lrbench_env["plugins"] / "halflife.py").write_text(PLUGIN)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    panel = win.policy_panel
    assert "half_life" in panel.picker.names()
    panel.picker.filter.setText("research")
    visible = [n for n, item in panel.picker._items.items() if not item.isHidden()]
    assert visible == ["half_life"]

    want = {"name": "half_life", "params": {"half_life": 100}}
    panel.select_policy("half_life")
    with qtbot.waitSignal(panel.curveChanged, timeout=3000, check_params_cb=spec_is(want)):
        panel.form.editor("half_life").setValue(100)
    np.testing.assert_allclose(panel.curve.current_item.yData, expected(want))

    win.show_panel("Plugins")
    table = win.plugin_panel.table
    rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())}
    assert rows["user:halflife"][1:5] == ["loaded", "1 policy", "1", "2.1.0"]
    assert rows["user:halflife"][5].endswith("halflife.py")


def test_a_broken_plugin_is_reported_and_the_window_still_opens(lrbench_env, qtbot):
    (lrbench_env["plugins"] / "broken.py").write_text(BROKEN)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.policy_panel.current_spec() is not None, timeout=3000)
    messages = win.plugin_panel.error_messages()
    assert any("boom while importing" in m for m in messages), messages
    assert win.plugin_warning.isVisible()
    assert "had problems" in win.status_text()
    qtbot.mouseClick(win.plugin_warning, Qt.MouseButton.LeftButton)
    assert win.current_panel() == "Plugins"
    table = win.plugin_panel.table
    status = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert status["user:broken"] == "failed"


def test_reload_plugins_picks_up_a_new_file(window, lrbench_env, qtbot):
    assert "half_life" not in window.policy_panel.picker.names()
    (lrbench_env["plugins"] / "halflife.py").write_text(PLUGIN)
    window.show_panel("Plugins")
    with qtbot.waitSignal(window.plugin_panel.registryReloaded, timeout=5000) as blocker:
        qtbot.mouseClick(window.plugin_panel.reload_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] is get_registry() is window.registry
    assert "half_life" in window.policy_panel.picker.names()
    assert f"{len(blocker.args[0].policies)} policies" in window.status_text()


def test_form_helpers():
    assert parse_int_list("10, 20 30") == [10, 20, 30]
    assert parse_int_list("[1;2]") == [1, 2]
    assert parse_int_list("") == []
    with pytest.raises(ValueError, match="'x'"):
        parse_int_list("1, x")
    assert [format_float(v) for v in (0.001, 1e-5, 25.0, 0.1)] == ["0.001", "1e-5", "25", "0.1"]
    steps = sample_steps(1_000_000)
    assert len(steps) <= 20_001 and steps[0] == 0 and steps[-1] == 999_999


def test_log_field_steps_on_a_1_2_5_ladder(panel, qtbot):
    lr = panel.form.editor("lr")
    lr.setText("0.001")
    qtbot.keyClick(lr, Qt.Key.Key_Up)
    assert lr.text() == "0.002"
    qtbot.keyClick(lr, Qt.Key.Key_Up)
    assert lr.text() == "0.005"
    qtbot.keyClick(lr, Qt.Key.Key_Down)
    qtbot.keyClick(lr, Qt.Key.Key_Down)
    qtbot.keyClick(lr, Qt.Key.Key_Down)
    assert lr.text() == "0.0005"


def test_main_takes_a_screenshot_and_quits(tmp_path):
    # in a process of its own: app.exec() and quit() would leave this test process's
    # QApplication closing down, and later tests' QProcess signals would never arrive
    shot = tmp_path / "plugins.png"
    run = [sys.executable, "-m", "lrbench_gui.qt.app"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([*run, "--screenshot", str(shot), "--panel", "plugins", "--size", "1000x700"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = subprocess.run([*run, "--panel", "nope"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and "no panel 'nope'" in out.stderr


def test_start_up_imports_no_torch():
    code = (
        "import sys\n"
        "from lrbench_gui.qt import app, main_window\n"
        "from lrbench_gui.plugins import get_registry\n"
        "get_registry()\n"
        "print(sorted(m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
