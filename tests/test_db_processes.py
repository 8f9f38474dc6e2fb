"""Real processes: SIGKILL in the middle of a large import leaves the previous database intact
and loadable; the lock file keeps a second writer out (with a message naming the holder) or
makes it wait."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lrbench_gui.cli import main as cli_main
from lrbench_gui.core.db import DatabaseLocked, PolicyDB
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

# Runs an import; the patches make it stop (and say so) at one exact point, where the parent kills it.
IMPORT_CHILD = r"""
import os, sys
db_path, export, point = sys.argv[1], sys.argv[2], sys.argv[3]
from lrbench_gui.core.db import policy_db as dbmod

def stop(tag):
    print(tag, flush=True)
    sys.stdin.read()  # the parent kills us while we wait here
    raise SystemExit("not killed")

if point == "plan":
    real_plan = dbmod.PolicyDB._plan
    def _plan(self, *a, **k):
        stop("AT plan")
        return real_plan(self, *a, **k)
    dbmod.PolicyDB._plan = _plan
elif point == "fsync":
    real_fsync = os.fsync
    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if os.path.basename(name).startswith("." + os.path.basename(db_path)) and name.endswith(".tmp"):
            stop("AT fsync")
        return real_fsync(fd)
    os.fsync = fsync
elif point == "replace":
    real_replace = os.replace
    def replace(src, dst):
        if os.path.abspath(dst) == os.path.abspath(db_path):
            stop("AT replace")
        return real_replace(src, dst)
    os.replace = replace
from lrbench_gui.plugins import get_registry  # the child is an edge, like the CLI

registry = get_registry()
print("START", flush=True)
dbmod.PolicyDB(db_path, registry=registry).import_file(export)
print("DONE", flush=True)
"""

HOLD_LOCK_CHILD = r"""
import sys
from lrbench_gui.core.db import PolicyDB
db = PolicyDB(sys.argv[1])
with db.batch():
    print("LOCKED", flush=True)
    sys.stdin.readline()
print("RELEASED", flush=True)
"""


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _expect(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()
    if got != line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"child said {got!r}, expected {line!r}; stderr:\n{err}")


def _finish(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


@pytest.fixture
def big(tmp_path, registry):
    """A database with some data, and an export of 400 trials with 1,000-point curves (~3 MB)."""
    db = PolicyDB(tmp_path / "policies.json", registry=registry)
    with db.batch():
        db.add_study(synthetic_study("mine"))
        db.add_many("trials", [synthetic_trial(i, study="mine", points=100) for i in range(5)])
    source = PolicyDB(tmp_path / "source.json", registry=registry)
    with source.batch():
        source.add_study(synthetic_study("big"))
        source.add_many("trials", [synthetic_trial(i, study="big", points=1000) for i in range(400)])
    export = tmp_path / "big.json"
    source.export(export)
    return db, export


def _assert_intact(db_path: Path, before: bytes, registry) -> None:
    assert db_path.read_bytes() == before
    reopened = PolicyDB(db_path, registry=registry)
    assert len(reopened.trials()) == 5 and reopened.get("big") is None


@pytest.mark.parametrize("point", ["plan", "fsync", "replace"])
def test_sigkill_mid_import_leaves_the_previous_database(big, registry, point):
    db, export = big
    before = db.path.read_bytes()
    child = _spawn(IMPORT_CHILD, str(db.path), str(export), point)
    try:
        _expect(child, "START")
        _expect(child, f"AT {point}")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        _finish(child)
    assert child.returncode == -signal.SIGKILL
    _assert_intact(db.path, before, registry)
    temps = list(db.path.parent.glob(f".{db.path.name}.*.tmp"))
    assert bool(temps) == (point != "plan"), temps
    # The kernel dropped the dead writer's lock: the next import goes through at once and tidies up.
    again = PolicyDB(db.path, registry=registry, lock_timeout=0.5)
    report = again.import_file(export)
    assert report.added["trials"] == 400
    assert not list(db.path.parent.glob(f".{db.path.name}.*.tmp"))
    assert len(PolicyDB(db.path, registry=registry).trials()) == 405


def test_sigkill_at_the_first_sign_of_writing(big, registry):
    """No patches: kill the real import as soon as its temporary file appears."""
    db, export = big
    before = db.path.read_bytes()
    child = _spawn(IMPORT_CHILD, str(db.path), str(export), "none")
    try:
        _expect(child, "START")
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if any(p.name.endswith(".tmp") for p in db.path.parent.glob(f".{db.path.name}.*")):
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        child.wait(timeout=60)
    finally:
        _finish(child)
    reopened = PolicyDB(db.path, registry=registry)
    if child.returncode == -signal.SIGKILL:
        _assert_intact(db.path, before, registry)
    else:  # it finished first: then the new database is complete
        assert len(reopened.trials()) == 405


def test_second_writer_gets_a_message_naming_the_holder(big, registry, capsys):
    db, export = big
    before = db.path.read_bytes()
    holder = _spawn(HOLD_LOCK_CHILD, str(db.path))
    try:
        _expect(holder, "LOCKED")
        other = PolicyDB(db.path, registry=registry, lock_timeout=0.2)
        with pytest.raises(DatabaseLocked) as info:
            other.add_study(synthetic_study("late"))
        assert f"pid {holder.pid}" in str(info.value) and str(db.path) in str(info.value)
        rc = cli_main(["db", "import", str(export), "--db", str(db.path), "--wait", "0.2"])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {holder.pid}" in err and err.count("\n") == 1
        assert other.stats()["counts"]["trials"] == 5, "readers need no lock"
        assert db.path.read_bytes() == before
        holder.stdin.write("\n")
        holder.stdin.flush()
        _expect(holder, "RELEASED")
    finally:
        _finish(holder)
    other.add_study(synthetic_study("late"))
    assert PolicyDB(db.path, registry=registry).get("late") is not None


def test_second_writer_waits_for_the_first(big, registry):
    db, _ = big
    holder = _spawn(HOLD_LOCK_CHILD, str(db.path))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            PolicyDB(db.path, registry=registry, lock_timeout=30).add_study(synthetic_study("waited"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    writer = threading.Thread(target=write)
    try:
        _expect(holder, "LOCKED")
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive(), "the writer should be waiting for the lock"
        assert PolicyDB(db.path, registry=registry).get("waited") is None
        holder.stdin.write("\n")
        holder.stdin.flush()
        writer.join(timeout=30)
        assert not writer.is_alive() and not errors
    finally:
        _finish(holder)
        writer.join(timeout=30)
    assert PolicyDB(db.path, registry=registry).get("waited") is not None
    lock_note = (db.path.parent / f"{db.path.name}.lock").read_text()
    assert lock_note == "" or json.loads(lock_note).get("pid") != holder.pid
