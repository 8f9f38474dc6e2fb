"""GPU slots in the app, with ``LRBENCH_GPUS=0,1,2,3`` on this CPU machine: the Run and Study
panels and the settings show the GPUs found, and the study controller gives its trials distinct
GPUs (each trial's process sees its own ``CUDA_VISIBLE_DEVICES``; its record and its row in the
live table say which). The trials are a small script of the user's (a command study): real
processes that start in a fraction of a second."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from lrbench_gui.core.runs import gpus as gpus_mod  # noqa: E402
from lrbench_gui.core.tuning.study import StudyConfig  # noqa: E402
from lrbench_gui.qt.main_window import MainWindow  # noqa: E402

SCRIPT = """import os, sys
from lrbench_gui import report
lr = float(sys.argv[1])
for step in range(3):
    report.step(step, loss=1.0 / (1 + step), lr=lr)
report.eval(2, val_loss=1.0, gpu=int(os.environ["CUDA_VISIBLE_DEVICES"]))
"""


def test_the_study_controller_gives_its_trials_distinct_gpus(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("LRBENCH_GPUS", "0,1,2,3")
    gpus_mod.clear_cache()
    win = MainWindow(settings=QSettings(str(tmp_path / "lrbench.ini"), QSettings.Format.IniFormat))
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    # what the panels and the settings show before anything runs
    assert win.app_settings.gpus == ["0", "1", "2", "3"]  # the settings' GPU field defaults to the found ones
    assert win.run_panel.gpus_label.text().startswith("4 GPUs (0,1,2,3)")
    assert "the trial gets GPU 0" in win.run_panel.gpus_label.text()
    panel = win.study_panel
    panel._update_summary()
    assert panel.backend_box.gpus_label.text().startswith("4 GPUs (0,1,2,3), 1 per trial: 4 trials at a time")
    assert panel.parallel.value() == 4
    panel.backend_box.trainer_combo.setCurrentText("deepspeed")
    panel.backend_box.gpus_spin.setValue(2)
    panel._update_summary()
    assert panel.parallel.value() == 2 and "2 per trial: 2 trials at a time" in panel.backend_box.gpus_label.text()

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    ctl, live = win.study_controller, win.live_panel
    finished: dict[str, dict] = {}
    ctl.trialFinished.connect(lambda tid, rec: finished.__setitem__(tid, rec))
    ctl.start(StudyConfig(task="command", command=[sys.executable, str(script), "{lr}"], cwd=str(tmp_path),
                          tuner="random", policies=["fixed"], budget_steps=3, trials=4, parallel=4))
    with qtbot.waitSignal(ctl.studyFinished, timeout=60_000):
        pass
    records = list(finished.values())
    assert len(records) == 4 and {r["status"] for r in records} == {"completed"}, [r["notes"] for r in records]
    given = sorted(r["resources"]["gpus"][0] for r in records)
    assert given == [0, 1, 2, 3]  # four trials at once, one GPU each
    assert all(r["metrics"]["gpu"] == r["resources"]["gpus"][0] for r in records)  # the process saw its own GPU
    assert sorted(row["device"] for row in live.model.rows) == ["GPU 0", "GPU 1", "GPU 2", "GPU 3"]
    col = next(c for c in range(live.model.columnCount()) if live.model.headerData(c, Qt.Orientation.Horizontal) == "Device")
    assert live.model.data(live.model.index(0, col)).startswith("GPU ")
    win.close()
    # an empty list saved in the settings means CPU workers; nothing saved, the GPUs found
    from lrbench_gui.qt.settings_dialog import AppSettings

    saved = QSettings(str(tmp_path / "other.ini"), QSettings.Format.IniFormat)
    assert AppSettings.load(saved).gpus == ["0", "1", "2", "3"]
    saved.setValue("workers/gpus", "")
    assert AppSettings.load(saved).gpus == []
    gpus_mod.clear_cache()
