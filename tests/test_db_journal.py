"""The write-ahead journal: a trial added to a large database is one appended line, replayed on
open and by other handles, folded into the file atomically, and as safe as the rewrite it
replaces: a torn last line (a writer killed mid-append) is ignored and cut off, an earlier line
is never lost, concurrent writers never lose each other's records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from lrbench_gui.core.db import DatabaseCorrupt, PolicyDB
from lrbench_gui.core.db import journal as jr
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial
from lrbench_gui.core.db.storage import list_backups


def _db(path, registry, **kw) -> PolicyDB:
    return PolicyDB(path, registry=registry, journal_after=0, **kw)  # journal from the first byte


@pytest.fixture
def jdb(tmp_path, registry):
    db = _db(tmp_path / "p.json", registry)
    with db.batch():
        db.add_study(synthetic_study())
        db.add_many("trials", [synthetic_trial(i, points=50) for i in range(3)])
    return db


def test_an_add_appends_one_line_and_leaves_the_file_alone(jdb, registry):
    before = jdb.path.read_bytes()
    jdb.add_trial(synthetic_trial(10, points=50))
    assert jdb.path.read_bytes() == before, "the document itself is not rewritten"
    lines = jdb.journal_path.read_bytes().splitlines()
    assert len(lines) == 2 and json.loads(lines[0][9:])["lrbench_journal"] == 1
    entry = json.loads(lines[1][9:])
    assert [r["id"] for r in entry["set"]["trials"].values()] == ["s1-t00010"]
    jdb.add_trial(synthetic_trial(11, points=50))
    assert len(jdb.journal_path.read_bytes().splitlines()) == 3
    fresh = _db(jdb.path, registry)
    assert sorted(t["id"] for t in fresh.trials())[-2:] == ["s1-t00010", "s1-t00011"]


def test_a_small_database_is_rewritten_not_journaled(tmp_path, registry):
    db = PolicyDB(tmp_path / "p.json", registry=registry)  # the default threshold: 1 MiB
    db.add_study(synthetic_study())
    db.add_trial(synthetic_trial(0, points=50))
    assert not db.journal_path.exists()
    assert len(json.loads(db.path.read_text())["trials"]) == 1


def test_two_handles_read_each_others_appends(jdb, registry):
    other = _db(jdb.path, registry)
    jdb.add_trial(synthetic_trial(20, points=20))
    other.add_trial(synthetic_trial(21, points=20))  # other must read 20 first, then append after it
    jdb.add_trial(synthetic_trial(22, points=20))
    ids = lambda db: sorted(t["id"] for t in db.trials())  # noqa: E731
    assert ids(jdb) == ids(other) == ids(_db(jdb.path, registry))
    assert {"s1-t00020", "s1-t00021", "s1-t00022"} <= set(ids(jdb))
    doc_ids = [k for line in jdb.journal_path.read_bytes().splitlines()[1:] for k in json.loads(line[9:])["set"]["trials"]]
    assert len(doc_ids) == len(set(doc_ids)) == 3, "every writer took a fresh doc id"


def test_replace_is_journaled_as_a_removal_and_an_insert(jdb, registry):
    changed = synthetic_trial(1, points=50)
    changed["notes"] = "re-run"
    jdb.add_trial(changed, replace=True)
    fresh = _db(jdb.path, registry)
    assert fresh.get("s1-t00001")["notes"] == "re-run" and len(fresh.trials()) == 3


def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_writer(jdb, registry):
    jdb.add_trial(synthetic_trial(30, points=20))
    good = jdb.journal_path.read_bytes()
    torn = synthetic_trial(31, points=20)
    line = jr._line({"set": {"trials": {"99": torn}}, "del": {}})
    jdb.journal_path.write_bytes(good + line[: len(line) // 2])
    reader = _db(jdb.path, registry)
    assert reader.get("s1-t00030") is not None and reader.get("s1-t00031") is None
    reader.add_trial(synthetic_trial(32, points=20))
    data = jdb.journal_path.read_bytes()
    assert data.startswith(good) and data.count(b"\n") == good.count(b"\n") + 1, "the torn half is gone"
    assert {"s1-t00030", "s1-t00032"} <= {t["id"] for t in _db(jdb.path, registry).trials()}


def test_a_damaged_line_before_good_ones_refuses_the_database(jdb, registry):
    jdb.add_trial(synthetic_trial(40, points=20))
    jdb.add_trial(synthetic_trial(41, points=20))
    lines = jdb.journal_path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"s1-t00040", b"s1-t00049")  # the CRC no longer matches
    jdb.journal_path.write_bytes(b"\n".join(lines))
    before = jdb.path.read_bytes(), jdb.journal_path.read_bytes()
    with pytest.raises(DatabaseCorrupt) as info:
        _db(jdb.path, registry)
    message = str(info.value)
    assert "journal" in message and "damaged" in message and "\n" not in message
    assert (jdb.path.read_bytes(), jdb.journal_path.read_bytes()) == before


def test_a_journal_of_another_generation_is_ignored_and_moved_aside(jdb, registry):
    jdb.add_trial(synthetic_trial(50, points=20))
    stale = jdb.journal_path.read_bytes()
    jdb.compact()
    assert not jdb.journal_path.exists()
    jdb.journal_path.write_bytes(stale)  # as if a crash came between the rewrite and the unlink
    reader = _db(jdb.path, registry)
    assert len(reader.trials()) == 4, "its records are in the file already; it is not replayed twice"
    reader.add_trial(synthetic_trial(51, points=20))
    aside = [p for p in (jdb.path.parent / "p-backups").iterdir() if "stale-journal" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == stale
    assert len(_db(jdb.path, registry).trials()) == 5


def test_close_backup_and_export_fold_the_journal_in(jdb, registry, tmp_path):
    jdb.add_trial(synthetic_trial(60, points=20))
    made = jdb.backup()
    assert not jdb.journal_path.exists() and made.read_bytes() == jdb.path.read_bytes()
    assert "s1-t00060" in {t["id"] for t in json.loads(made.read_text())["trials"].values()}
    jdb.add_trial(synthetic_trial(61, points=20))
    jdb.export(tmp_path / "e.json")
    assert not jdb.journal_path.exists()
    jdb.add_trial(synthetic_trial(62, points=20))
    with jdb:
        pass
    assert not jdb.journal_path.exists()
    plain = json.loads(jdb.path.read_text())  # what a plain TinyDB reader sees: everything
    assert {"s1-t00060", "s1-t00061", "s1-t00062"} <= {t["id"] for t in plain["trials"].values()}


def test_the_journal_is_folded_in_past_its_threshold(jdb, registry, monkeypatch):
    monkeypatch.setattr(jr, "compact_after", lambda base: 1)
    jdb.add_trial(synthetic_trial(70, points=20))  # appended: there was no journal yet
    jdb.add_trial(synthetic_trial(71, points=20))  # past the threshold: rewritten
    assert not jdb.journal_path.exists()
    assert "s1-t00071" in jdb.path.read_text()


def test_an_import_backs_up_everything_including_the_journal(jdb, registry, tmp_path):
    jdb.add_trial(synthetic_trial(80, points=20))
    source = _db(tmp_path / "src.json", registry)
    source.add_study(synthetic_study("other"))
    source.export(tmp_path / "other.json")
    report = jdb.import_file(tmp_path / "other.json")
    (backup,) = list_backups(jdb.path)
    assert report.backup == str(backup) and "s1-t00080" in backup.read_text()
    assert not jdb.journal_path.exists() and _db(jdb.path, registry).get("other") is not None


TORN_CHILD = r"""
import os, sys
from lrbench_gui.core.db import PolicyDB, journal
from lrbench_gui.core.db.sample import synthetic_trial
real = os.pwrite
def pwrite(fd, data, offset):
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".journal") and len(data) > 100:
        real(fd, bytes(data[: len(data) // 2]), offset)
        print("HALF", flush=True)
        sys.stdin.read()
    return real(fd, data, offset)
os.pwrite = pwrite
PolicyDB(sys.argv[1], journal_after=0).add_trial(synthetic_trial(90, points=20))
"""


def test_sigkill_mid_append_loses_nothing_that_was_there(jdb, registry):
    jdb.add_trial(synthetic_trial(89, points=20))
    before = jdb.path.read_bytes(), jdb.journal_path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", TORN_CHILD, str(jdb.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"HALF", child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert jdb.journal_path.read_bytes().startswith(before[1]) and len(jdb.journal_path.read_bytes()) > len(before[1])
    reopened = _db(jdb.path, registry, lock_timeout=1)
    assert reopened.get("s1-t00089") is not None and reopened.get("s1-t00090") is None
    reopened.add_trial(synthetic_trial(91, points=20))  # the dead writer's lock is gone; its half line too
    final = _db(jdb.path, registry)
    assert {"s1-t00089", "s1-t00091"} <= {t["id"] for t in final.trials()} and final.get("s1-t00090") is None


WRITER = r"""
import sys
from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_trial
db = PolicyDB(sys.argv[1], journal_after=0, lock_timeout=60)
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 10):
    db.add_trial(synthetic_trial(i, points=20))
"""


@pytest.mark.slow
def test_eight_concurrent_writers_lose_nothing(jdb, registry):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(jdb.path), str(100 + 10 * w)], stderr=subprocess.PIPE) for w in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
    final = _db(jdb.path, registry)
    ids = {t["id"] for t in final.trials()}
    assert {f"s1-t{i:05d}" for i in range(100, 180)} <= ids and len(ids) == 83
    assert os.path.getsize(jdb.journal_path) > 0
