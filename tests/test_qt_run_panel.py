"""The Run panel with a real trainer process: start, live curves, progress, record, cancel;
and the database job queue that stores its trials, including a trial the database refuses."""

from __future__ import annotations

import json
from pathlib import Path
import threading

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial
from lrbench_gui.plugins import get_registry
from lrbench_gui.qt.db_jobs import DatabaseJobs
from lrbench_gui.qt.run_panel import RunPanel


def _panel(qtbot):
    panel = RunPanel(get_registry())
    qtbot.addWidget(panel)
    return panel


def test_run_a_trial_watch_it_and_record_it(qtbot, lrbench_env):
    panel = _panel(qtbot)
    jobs = DatabaseJobs(lrbench_env["db"], registry=get_registry())
    written: list[str] = []
    panel.trialRecorded.connect(lambda record: jobs.write_trial(record, on_done=written.append))
    assert panel.task_combo.currentText() == "digits-mlp" and panel.policy_combo.currentText() == "cosine"
    panel.steps.setValue(120)
    with qtbot.waitSignal(jobs.drained, timeout=60_000):
        panel.start_btn.click()
        qtbot.waitUntil(lambda: panel.plot.points(panel.trial_id or "") > 10 if panel.trial_id else False,
                        timeout=30_000)
        assert not panel.start_btn.isEnabled() and panel.cancel_btn.isEnabled()
    jobs.close()
    record = panel.last_record
    assert record["status"] == "completed"
    assert panel.plot.points(record["id"]) == 120 and panel.progress.value() == 120
    assert "Completed after 120 steps" in panel.status.text()
    (stored,) = PolicyDB(lrbench_env["db"]).trials()
    assert stored["id"] == record["id"] and stored["policy"]["params"]["lr"] == 0.05
    assert written == [record["id"]]


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


def test_jobs_keep_one_database_open_and_run_in_order_off_the_gui_thread(qtbot, tmp_path, registry):
    path = tmp_path / "policies.json"
    jobs = DatabaseJobs(path, registry=registry)
    seen: list[tuple[int, bool, object]] = []

    def job(i: int):
        def fn(db):
            seen.append((i, threading.current_thread() is threading.main_thread(), db))
            return i
        return fn

    results: list[int] = []
    jobs.write_trial(synthetic_trial(0, study="s1", points=20), synthetic_study("s1"))
    for i in range(5):
        jobs.submit(job(i), results.append)
    with qtbot.waitSignal(jobs.drained, timeout=10_000):
        pass
    jobs.close()
    assert results == [0, 1, 2, 3, 4]
    assert [i for i, _, _ in seen] == results and not any(gui for _, gui, _ in seen)
    assert len({id(db) for _, _, db in seen}) == 1  # opened once, kept
    stored = PolicyDB(path, registry=registry)
    assert stored.get("s1", "studies") is not None and len(stored.trials(study="s1")) == 1
    assert jobs.submit(job(9)) == 0  # a closed queue drops late work


def test_a_trial_the_database_refuses_is_saved_and_the_user_told(qtbot, tmp_path, registry):
    blocked = tmp_path / "db-is-a-folder"  # reading it fails with an OSError, as a locked-out file would
    blocked.mkdir()
    jobs = DatabaseJobs(blocked, registry=registry)
    record = synthetic_trial(3, study=None, points=20, packed=False)
    messages: list[str] = []
    jobs.write_trial(record, on_done=lambda tid: messages.append(f"stored {tid}"), on_failed=messages.append)
    with qtbot.waitSignal(jobs.drained, timeout=10_000):
        pass
    jobs.close()
    (message,) = messages
    assert message.startswith(f"could not record trial {record['id']} in {blocked}: ") and "\n" not in message
    assert_recoverable(message, record, tmp_path, registry)


def assert_recoverable(message, record, tmp_path, registry):
    """The message names the recovery file and the exact command; the file imports the trial."""
    import re
    import shlex
    import subprocess
    import sys

    found = re.search(r"Saved it to (.+?); to add it: (lrbench db import .+)$", message)
    assert found, message
    spare, command = Path(found.group(1)), found.group(2)
    assert spare.exists() and shlex.split(command)[3] == str(spare)
    target = tmp_path / "elsewhere.json"
    out = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "db", "import", str(spare), "--db", str(target)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert PolicyDB(target, registry=registry).get(record["id"], "trials")["metrics"] == record["metrics"]


def test_the_window_says_in_one_line_where_a_refused_run_trial_went(qtbot, tmp_path):
    from lrbench_gui.qt.main_window import MainWindow

    blocked = tmp_path / "db-is-a-folder"
    blocked.mkdir()
    win = MainWindow(db_path=blocked)
    qtbot.addWidget(win)
    assert win.database_jobs() is win.db_jobs is win.results_panel.jobs is win.study_panel.jobs
    record = synthetic_trial(1, study=None, points=10, packed=False)
    with qtbot.waitSignal(win.db_jobs.drained, timeout=10_000):
        win.run_panel.trialRecorded.emit(record)
    message = win.statusBar().currentMessage()
    assert message.startswith(f"Could not record trial {record['id']} in ") and "\n" not in message
    assert_recoverable(message, record, tmp_path, win.registry)
    win.close()


def test_run_a_command_streams_the_script_and_records_it_with_the_panels_policy(qtbot, tmp_path):
    import sys

    script = tmp_path / "train.py"
    script.write_text("import sys\nfrom lrbench_gui import report\n"
                      "steps = int(sys.argv[2])\n"
                      "for step in range(steps):\n"
                      "    report.step(step, loss=1.0 / (step + 1), lr=report.lr_at(step))\n"
                      "report.eval(steps, val_loss=0.5)\n")
    panel = _panel(qtbot)
    panel.steps.setValue(20)
    panel.start_command("python train.py --steps 3", str(tmp_path / "nowhere"))
    assert "does not exist" in panel.status.text() and panel.trial_id is None
    with qtbot.waitSignal(panel.trialRecorded, timeout=60_000) as blocker:
        panel.start_command(f"{sys.executable} train.py --steps {{steps}}", str(tmp_path))
        assert not panel.command_btn.isEnabled()
    record = blocker.args[0]
    assert record["status"] == "completed" and record["task"] == "command"
    assert record["policy"]["name"] == "cosine" and record["metrics"]["val_loss"] == 0.5
    assert panel.plot.points(record["id"]) == 20 and panel.command_btn.isEnabled()
    assert record["curves"]["lr"]["values"][0] == 0.05  # the panel's cosine, followed through report.lr_at
