"""The Run panel with a real trainer process: start, live curves, progress, record, cancel."""

from __future__ import annotations

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.plugins import get_registry
from lrbench_gui.qt.db_writer import DbWriter
from lrbench_gui.qt.run_panel import RunPanel


def _panel(qtbot):
    panel = RunPanel(get_registry())
    qtbot.addWidget(panel)
    return panel


def test_run_a_trial_watch_it_and_record_it(qtbot, lrbench_env):
    panel = _panel(qtbot)
    writer = DbWriter(lrbench_env["db"])
    panel.trialRecorded.connect(writer.write_trial)
    assert panel.task_combo.currentText() == "digits-mlp" and panel.policy_combo.currentText() == "cosine"
    panel.steps.setValue(120)
    with qtbot.waitSignal(writer.written, timeout=60_000):
        panel.start_btn.click()
        qtbot.waitUntil(lambda: panel.plot.points(panel.trial_id or "") > 10 if panel.trial_id else False,
                        timeout=30_000)
        assert not panel.start_btn.isEnabled() and panel.cancel_btn.isEnabled()
    writer.close()
    record = panel.last_record
    assert record["status"] == "completed"
    assert panel.plot.points(record["id"]) == 120 and panel.progress.value() == 120
    assert "Completed after 120 steps" in panel.status.text()
    (stored,) = PolicyDB(lrbench_env["db"]).trials()
    assert stored["id"] == record["id"] and stored["policy"]["params"]["lr"] == 0.05


def test_cancel_and_bad_input(qtbot):
    panel = _panel(qtbot)
    panel.policy_form.set_values({"lr": -1.0})
    panel.start_btn.click()
    assert "Cannot start" in panel.status.text() and panel.trial_id is None
    panel.policy_form.set_values({"lr": 0.01})
    panel.steps.setValue(1_000_000)
    with qtbot.waitSignal(panel.trialRecorded, timeout=60_000) as blocker:
        panel.start_btn.click()
        qtbot.waitUntil(lambda: panel.progress.value() > 5, timeout=30_000)
        panel.cancel_btn.click()
    assert blocker.args[0]["status"] == "stopped"
    assert "Stopped" in panel.status.text()


def test_failed_trial_shows_its_log(qtbot, lrbench_env):
    (lrbench_env["plugins"] / "crashy.py").write_text(
        "from lrbench_gui.hookspecs import hookimpl\n"
        "from lrbench_builtins.tasks.digits import DigitsMLP\n"
        "class Crashy(DigitsMLP):\n"
        "    name = 'crashy'\n"
        "    def loss(self, model, batch):\n"
        "        raise RuntimeError('bad batch in the loader')\n"
        "@hookimpl\n"
        "def register_tasks(register):\n"
        "    register(Crashy)\n"
    )
    panel = _panel(qtbot)
    panel.task_combo.setCurrentText("crashy")
    with qtbot.waitSignal(panel.trialRecorded, timeout=60_000) as blocker:
        panel.start_btn.click()
    assert blocker.args[0]["status"] == "failed"
    assert "Failed" in panel.status.text() and "bad batch in the loader" in panel.status.text()
    panel.log_btn.click()
    assert panel.log.isVisibleTo(panel) and "RuntimeError: bad batch in the loader" in panel.log.toPlainText()
