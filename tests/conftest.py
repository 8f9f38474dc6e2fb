"""Shared fixtures: every test gets a fresh data folder, database path and plugins folder, a
plugin registry that sees only the built-ins (and whatever the test drops into its plugins
folder), and fails if it leaves a thread or a child process running."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Between tests (and in a widget a test left open) the paths fall back to a session folder, never
# to this machine's real data folder: a Watch panel polling ~/.local/share/lrbench/live would see
# the terminal trials of whoever ran `lrbench tune` here.
_SESSION_DATA = tempfile.mkdtemp(prefix="lrbench-tests-")
os.environ["LRBENCH_DATA_DIR"] = _SESSION_DATA
os.environ["LRBENCH_DB"] = os.path.join(_SESSION_DATA, "policies.json")
os.environ.pop("LRBENCH_LIVE_DIR", None)


def _children() -> set[int]:
    """Live child processes of this process (Linux /proc), zombies excluded."""
    me = os.getpid()
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and fields[0] != "Z":
            out.add(int(entry.name))
    return out


@pytest.fixture(autouse=True)
def lrbench_env(tmp_path, monkeypatch):
    """A fresh data folder, database and plugins folder; only built-in entry-point plugins."""
    data = tmp_path / "lrbench-data"
    plugins = tmp_path / "lrbench-plugins"
    data.mkdir()
    plugins.mkdir()
    monkeypatch.setenv("LRBENCH_DATA_DIR", str(data))
    monkeypatch.setenv("LRBENCH_PLUGINS_DIR", str(plugins))
    monkeypatch.setenv("LRBENCH_DB", str(data / "policies.json"))
    monkeypatch.setenv("LRBENCH_LOAD_PLUGINS", "")
    monkeypatch.delenv("LRBENCH_TRACE_PLUGINS", raising=False)
    from lrbench_gui.plugins import reset_registry

    reset_registry()
    yield {"data": data, "plugins": plugins, "db": data / "policies.json"}
    reset_registry()


@pytest.fixture(autouse=True)
def no_leftovers():
    """Fail a test that leaves a thread or a child process running."""
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    deadline = time.monotonic() + 15.0  # a loaded machine takes seconds to end a torch process
    while True:
        threads = [
            t for t in threading.enumerate() if t not in threads_before and t.is_alive() and not t.daemon
        ]
        children = _children() - children_before
        if (not threads and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not threads, f"test left threads running: {threads}"
    assert not children, f"test left child processes running: {sorted(children)}"


@pytest.fixture
def registry():
    """The registry of the built-in plugins (plus the test's plugins folder)."""
    from lrbench_gui.plugins import get_registry

    return get_registry()
