"""The live folder: a trial run outside the app is mirrored (meta + protocol lines) so an open app
can follow it; a scan tells running from ended and from abandoned, and never trusts a bad file."""

from __future__ import annotations

import json
import os
import time

from lrbench_gui.core.runs.live import KEEP_SECONDS, LiveMirror, scan
from lrbench_gui.core.runs.protocol import Event, parse_line
from lrbench_gui.core.runs.trial import load_trial


def _cfg(**extra):
    return load_trial({"task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.1}},
                       "budget": {"steps": 5}, **extra})


def test_a_mirror_is_seen_running_then_ended_with_its_lines(tmp_path):
    cfg = _cfg()
    mirror = LiveMirror(cfg, "lrbench run", folder=tmp_path)
    mirror.event(Event("step", cfg.trial_id, {"step": 0, "lr": 0.1, "loss": 2.0}))
    (entry,) = scan(tmp_path)
    assert entry.trial_id == cfg.trial_id and entry.running
    assert entry.meta["source"] == "lrbench run" and entry.meta["pid"] == os.getpid() and entry.meta["steps"] == 5
    assert not mirror.stop_requested()
    open(entry.meta["stop"], "w").close()  # what the app's Cancel does
    assert mirror.stop_requested()
    mirror.close("stopped")
    (entry,) = scan(tmp_path)
    assert not entry.running and entry.meta["status"] == "stopped"
    (line,) = entry.lines.read_text().splitlines()
    assert parse_line(line).data["loss"] == 2.0
    assert not os.path.exists(entry.meta["stop"]), "the stop file is cleared with the trial"


def test_scan_skips_bad_files_and_sees_a_dead_process_as_not_running(tmp_path):
    cfg = _cfg()
    mirror = LiveMirror(cfg, "lrbench watch", folder=tmp_path)
    meta = json.loads(mirror.meta_path.read_text())
    meta["pid"] = 2**22 + 12345  # no such process
    mirror.meta_path.write_text(json.dumps(meta))
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "deep.json").write_text("[" * 10000 + "]" * 10000)
    (tmp_path / "other.json").write_text(json.dumps({"trial": "someone-else"}))  # names another trial
    (entry,) = scan(tmp_path)
    assert entry.trial_id == cfg.trial_id and not entry.running


def test_old_mirrors_are_cleaned_and_an_unwritable_folder_turns_the_mirror_off(tmp_path):
    old = LiveMirror(_cfg(), "x", folder=tmp_path)
    old.close("completed")
    past = time.time() - KEEP_SECONDS - 60
    for path in (old.meta_path, old.lines_path):
        os.utime(path, (past, past))
    LiveMirror(_cfg(), "x", folder=tmp_path)
    assert not old.meta_path.exists() and not old.lines_path.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    off = LiveMirror(_cfg(), "x", folder=blocker / "live")  # a file where the folder should be
    assert not off.active
    off.line('{"v": 1}')
    off.close("completed")  # nothing raises


def test_the_watcher_follows_mirrors_and_report_files_until_they_end(tmp_path):
    from lrbench_gui.core.runs.live import LiveMirrors, LiveWatcher, request_stop

    folder = tmp_path / "live"
    mirrors = LiveMirrors("lrbench tune", folder)
    cfg = _cfg()
    mirrors.started(cfg.trial_id, cfg)
    watcher = LiveWatcher(folder)
    assert mirrors.event(cfg.trial_id, Event("hello", cfg.trial_id, {"pid": 1, "steps": 5}))
    assert mirrors.event(cfg.trial_id, Event("step", cfg.trial_id, {"step": 0, "lr": 0.1, "loss": 2.0}))
    got = watcher.poll()
    assert [e.type for e in got[cfg.trial_id]] == ["hello", "step"]
    item = watcher.trials[cfg.trial_id]
    assert item.running and item.steps == 5 and item.last_loss == 2.0 and item.source == "lrbench tune"
    assert request_stop(item)  # the app's Cancel: the runner's next event says stop
    assert not mirrors.event(cfg.trial_id, Event("step", cfg.trial_id, {"step": 1, "lr": 0.1, "loss": 1.5}))
    mirrors.finished(cfg.trial_id, "stopped")
    got = watcher.poll()
    assert [e.data["step"] for e in got[cfg.trial_id]] == [1]
    assert not item.running and item.status == "stopped"
    assert watcher.poll() == {}

    # a script lrbench did not start, writing its report file: followed until its end event
    report_file = tmp_path / "elsewhere" / "run-7.jsonl"
    report_file.parent.mkdir()
    report_file.write_text('{"v": 1, "type": "step", "trial": "run-7", "step": 3, "lr": 0.01, "loss": 0.5}\n')
    followed = watcher.follow(report_file)
    assert watcher.follow(report_file) is followed
    assert [e.data["step"] for e in watcher.poll()["run-7"]] == [3]
    with report_file.open("a") as fh:
        fh.write('{"v": 1, "type": "end", "trial": "run-7", "status": "completed", "metrics": {"val_loss": 0.4}}\n')
    watcher.poll()
    assert not followed.running and followed.status == "completed" and followed.metrics == {"val_loss": 0.4}
    assert request_stop(followed) and (tmp_path / "elsewhere" / "run-7.jsonl.stop").exists()


def test_a_very_long_run_is_recorded_bounded_and_the_database_takes_it(tmp_path):
    """A 250,000-step run: the recorder thins its curves in memory and gives the database a curve
    it accepts (before, such a record went to a recovery file)."""
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.runs import recorder as rec_mod
    from lrbench_gui.core.runs.recorder import TrialRecorder

    cfg = _cfg()
    rec = TrialRecorder(cfg)
    keep = rec_mod._KEEP_POINTS
    rec_mod._KEEP_POINTS = 180_000  # thin sooner so the test stays quick
    try:
        for step in range(250_000):
            rec.feed(Event("step", cfg.trial_id, {"step": step, "lr": 0.1, "loss": 3.0 if step == 777 else 1.0}))
    finally:
        rec_mod._KEEP_POINTS = keep
    rec.feed(Event("end", cfg.trial_id, {"status": "completed", "metrics": {"val_loss": 0.5}}))
    rec.finish(0, [])
    record = rec.record()
    assert 100_000 < len(rec.steps) <= 180_001 and "thinned" in record["notes"]
    assert len(record["curves"]["loss"]["steps"]) <= 1000  # above the input bound: downsampled as the database would
    assert record["curves"]["loss"]["steps"][-1] == 249_999
    assert 3.0 in record["curves"]["loss"]["values"], "a loss spike survives the thinning"
    db = PolicyDB(tmp_path / "db.json")
    result = db.add_trial_or_recover(record)
    assert result.ok, result.message()
    (stored,) = db.trials()
    assert stored["status"] == "completed" and stored["metrics"]["val_loss"] == 0.5


def test_terminal_runs_and_studies_are_mirrored_for_the_app(tmp_path, monkeypatch):
    from lrbench_gui.cli import main
    from lrbench_gui.core.runs.live import LiveWatcher

    live = tmp_path / "live"
    monkeypatch.setenv("LRBENCH_LIVE_DIR", str(live))
    db = str(tmp_path / "db.json")
    assert main(["run", "--task", "digits-mlp", "--policy", "fixed", "--steps", "4", "--db", db]) == 0
    assert main(["tune", "--task", "digits-mlp", "--tuner", "random", "--trials", "2", "--budget-steps", "4",
                 "--policies", "fixed", "--db", db]) == 0
    entries = scan(live)
    assert sorted(e.meta["source"] for e in entries) == ["lrbench run", "lrbench tune", "lrbench tune"]
    assert all(e.meta["status"] == "completed" and not e.running for e in entries)
    watcher = LiveWatcher(live)
    watcher.poll()
    assert all(item.last_step == 3 for item in watcher.trials.values()), "every step streamed into the mirror"
