"""The Watch panel follows a trial run from a terminal (`lrbench watch -- CMD`, a real subprocess)
live, and its Stop reaches the script, which the terminal's lrbench records as stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from lrbench_gui.core.db import PolicyDB  # noqa: E402
from lrbench_gui.qt.watch_panel import WatchPanel  # noqa: E402

SCRIPT = textwrap.dedent("""
    import time
    from lrbench_gui import report
    for step in range(400):
        report.step(step, loss=1.0 / (step + 1), lr=0.01)
        if report.should_stop():
            break
        time.sleep(0.05)
""")


def test_a_terminal_watch_appears_live_and_stops_from_the_app(qtbot, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    live = tmp_path / "live"
    env = {**os.environ, "LRBENCH_LIVE_DIR": str(live), "LRBENCH_STOP_GRACE": "20"}
    proc = subprocess.Popen([sys.executable, "-m", "lrbench_gui.cli", "watch", "--db", str(tmp_path / "db.json"),
                             "--json", "--steps", "400", "--", sys.executable, str(script)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        panel = WatchPanel(folder=live, interval_ms=100)
        qtbot.addWidget(panel)
        qtbot.waitUntil(lambda: panel.running() == 1 and panel.plot.points(next(iter(panel.rows))) >= 3,
                        timeout=30000)
        (trial_id,) = panel.rows
        assert panel.table.item(0, 1).text() == "lrbench watch"
        panel.table.selectRow(0)
        assert panel.stop_btn.isEnabled()
        panel.stop_selected()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    qtbot.waitUntil(lambda: panel.running() == 0, timeout=10000)
    item = panel.watcher.trials[trial_id]
    assert item.status == "stopped" and item.last_step < 399, "the script stopped early"
    assert proc.returncode == 1, err[-600:]  # not completed
    (record,) = PolicyDB(tmp_path / "db.json").trials()
    assert record["id"] == trial_id and record["status"] == "stopped", "the terminal's lrbench recorded it"
    panel.clear_ended()
    panel.poll()
    assert panel.table.rowCount() == 0, "a cleared trial stays cleared"
