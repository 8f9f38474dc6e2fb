"""The Results panel with a real database file: table, filter, sort, overlaid curves,
recommendations, export and import through the worker thread, refusals in plain words."""

from __future__ import annotations

import json
import threading

import pytest
from PySide6.QtCore import Qt

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_range_test, synthetic_study, synthetic_trial
from lrbench_gui.qt.db_panel import _COLUMNS, MAX_OVERLAY, DatabasePanel

TIMEOUT = 20_000


@pytest.fixture
def db(tmp_path, registry):
    db = PolicyDB(tmp_path / "policies.json", registry=registry)
    with db.batch():
        db.add_study(synthetic_study("s1"))
        db.add_study(synthetic_study("s2", task="tinylm"))
        db.add_many("trials", [synthetic_trial(i, study="s1", points=100) for i in range(9)])
        db.add_many("trials", [synthetic_trial(i, study="s2", task="tinylm", points=100) for i in range(3)])
        db.add_trial(synthetic_range_test("rt1", study="s1"))
    return db


@pytest.fixture
def panel(qtbot, db):
    panel = DatabasePanel(db.path)  # opened by the worker thread, not here
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT) as blocker:
        pass
    assert blocker.args == [13]
    yield panel
    panel.shutdown()


def test_table_filter_and_numeric_sort(panel):
    assert panel.model.rowCount() == 13
    assert panel.task_combo.count() == 2
    panel.filter_edit.setText("TinyLM")  # case-insensitive, any column
    assert sorted(panel.visible_ids()) == ["s2-t00000", "s2-t00001", "s2-t00002"]
    panel.filter_edit.setText("")
    assert len(panel.visible_ids()) == 13
    value_col = [key for _, key, _ in _COLUMNS].index("value")
    panel.table.sortByColumn(value_col, Qt.SortOrder.AscendingOrder)
    ids = panel.visible_ids()
    values = [panel.model.rows[[r["id"] for r in panel.model.rows].index(i)]["value"] for i in ids]
    numeric = [v for v in values if v is not None]
    assert numeric == sorted(numeric) and values[-1] is None  # the range test has no value: last
    assert "13 trials in" in panel.status_label.text()


def test_selected_trials_overlay_their_curves(qtbot, panel):
    ids = ["s1-t00001", "s1-t00004", "s2-t00002"]
    with qtbot.waitSignal(panel.curvesShown, timeout=TIMEOUT) as blocker:
        panel.select_trials(ids)
    assert sorted(blocker.args[0]) == sorted(ids)
    assert sorted(panel.plotted_ids()) == sorted(ids)
    assert len(panel.lr_plot.plotItem.listDataItems()) == 3
    with qtbot.waitSignal(panel.curvesShown, timeout=TIMEOUT):
        panel.table.selectAll()
    assert len(panel.plotted_ids()) == MAX_OVERLAY


def test_recommendations(qtbot, panel):
    with qtbot.waitSignal(panel.recommended, timeout=TIMEOUT) as blocker:
        panel.recommend_for("digits", k=3)
    result = blocker.args[0]
    assert [r["rank"] for r in result["recommend"]["results"]] == [1, 2, 3]
    assert panel.rec_table.rowCount() == 3
    assert panel.rec_table.item(0, 1).text() == result["recommend"]["results"][0]["label"]
    assert "LR range from 1 range test" in panel.range_label.text()


def test_export_then_import_into_another_database(qtbot, panel, tmp_path):
    out = tmp_path / "share.json.gz"
    with qtbot.waitSignal(panel.exportFinished, timeout=TIMEOUT) as blocker:
        panel.export_to(out)
    assert blocker.args[0]["counts"]["trials"] == 13 and out.exists()

    other = DatabasePanel(tmp_path / "other.json")
    qtbot.addWidget(other)
    with qtbot.waitSignal(other.refreshed, timeout=TIMEOUT):
        pass
    with qtbot.waitSignal(other.importFinished, timeout=TIMEOUT) as blocker:
        other.import_from(out, dry_run=True)
    report = blocker.args[0]
    assert report["dry_run"] and report["added"]["trials"] == 13
    assert "would add 2 studies, 13 trials" in report["summary"]
    assert not (tmp_path / "other.json").exists(), "a dry run writes nothing"
    with qtbot.waitSignals([other.importFinished, other.refreshed], timeout=TIMEOUT):
        other.import_from(out, dry_run=False)
    assert other.model.rowCount() == 13
    assert "added 2 studies, 13 trials" in other.banner.text()
    other.shutdown()


def test_refused_import_is_explained_and_writes_nothing(qtbot, panel, tmp_path, db):
    bad = tmp_path / "bad.json"
    doc = {"format": "lrbench-db-export", "version": 1, "trials": [synthetic_trial(0, study=None, points=5, packed=False)]}
    doc["trials"][0]["metrics"]["eval_loss"] = "very good"
    bad.write_text(json.dumps(doc))
    before = db.path.read_bytes()
    with qtbot.waitSignal(panel.importRefused, timeout=TIMEOUT) as blocker:
        panel.import_from(bad, dry_run=True)
    summary = blocker.args[0]["summary"]
    assert "nothing was written" in summary
    assert "trials[0] (id 'x-t00000'): field metrics.eval_loss: must be a finite number, got a string" in summary
    assert not panel.banner.isHidden() and "metrics.eval_loss" in panel.banner.text()
    assert db.path.read_bytes() == before


def test_unreadable_database_is_reported(qtbot, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    panel = DatabasePanel(broken)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.operationFailed, timeout=TIMEOUT) as blocker:
        pass
    assert "cannot be read" in blocker.args[0] and not panel.banner.isHidden()
    assert broken.read_text() == "{not json"
    panel.shutdown()


def test_work_runs_off_the_gui_thread(qtbot, panel, monkeypatch):
    threads = []
    real = PolicyDB.trial_rows

    def spy(self):
        threads.append(threading.get_ident() == threading.main_thread().ident)
        return real(self)

    monkeypatch.setattr(PolicyDB, "trial_rows", spy)
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT):
        panel.refresh()
    assert threads == [False]
