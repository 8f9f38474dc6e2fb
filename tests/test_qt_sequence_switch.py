"""The Policies panel's sequence editor keeps a plateau ``switch``: a spec with one loads into
the "Switch on a plateau" form, saves back the same JSON, an edited field reaches the spec, and
the curve is drawn against the picked synthetic loss with its switch points."""

from __future__ import annotations

import json

from lrbench_gui.core.reactive import Trace, drive
from lrbench_gui.core.spec import build_schedule


def test_a_sequence_switch_round_trips_and_an_edit_reaches_the_spec(qtbot, registry, tmp_path):
    from lrbench_gui.qt.policies.panel import PolicyPanel

    panel = PolicyPanel(registry)
    qtbot.addWidget(panel)
    spec = {"sequence": [{"name": "fixed", "params": {"lr": 0.1}}, {"name": "fixed", "params": {"lr": 0.01}}],
            "boundaries": [700], "switch": {"monitor": "loss", "every": 10, "patience": 2, "threshold": 0.001}}
    panel.load_spec(spec, total_steps=1000)
    panel.redraw()
    box = panel.sequence.switch_box
    assert box.check.isChecked() and not box.form.isHidden()
    assert "plateau" not in panel.banner.text()  # no "the switch is dropped" warning any more
    saved = panel.current_spec()
    assert saved["boundaries"] == [700] and saved["switch"] == {
        "monitor": "loss", "every": 10, "smoothing": 0.9, "mode": "min", "threshold": 0.001,
        "threshold_mode": "rel", "patience": 2, "cooldown": 0}  # as given, the rest at the defaults
    # the curve on screen: the schedule fed the picked synthetic loss, switched before step 700
    assert panel.curve.against.currentData() == "plateaus" and not panel.curve.against_row.isHidden()
    expected = drive(build_schedule(saved, 1000, registry), Trace.synthetic("plateaus", 1000), 1000)
    assert [float(v) for v in panel.current_curve()[1]] == expected
    first = panel.curve.switches[0]["step"]
    assert first < 700 and round(float(panel.curve.switch_lines[0].value())) == first
    # save -> open -> save gives the same file
    path, path2 = tmp_path / "spec.json", tmp_path / "again.json"
    assert panel.save_spec_file(path) and json.loads(path.read_text()) == saved
    again = PolicyPanel(registry)
    qtbot.addWidget(again)
    assert again.open_spec_file(path)
    again.redraw()
    assert again.save_spec_file(path2) and path2.read_text() == path.read_text()
    # an edited field reaches the spec; unticking drops the switch
    editor = box.form.editor("patience")
    editor.setValue(7)
    box.form.flush()
    panel.redraw()
    assert panel.current_spec()["switch"]["patience"] == 7
    box.check.setChecked(False)
    panel.redraw()
    assert "switch" not in panel.current_spec() and box.form.isHidden()
    assert panel.curve.against_row.isHidden()
