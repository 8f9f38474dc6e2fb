"""The plugin system, tested the way plugin authors meet it: write a plugin to a folder (or as an
installed distribution with an entry point), load it, use it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from lrbench_gui import hookspecs
from lrbench_gui.core.spec import sample
from lrbench_gui.plugins import get_registry, load_plugins

GOOD_PLUGIN = '''
from lrbench_gui.core.params import Params, param
from lrbench_gui.core.policy import Policy
from lrbench_gui.hookspecs import hookimpl


class Halving(Policy):
    name = "{name}"
    summary = "Halve the LR every `every` steps"
    version = "0.3"

    class Params(Params):
        lr: float = param(0.1, "Starting LR.", gt=0, log=True)
        every: int = param(10, "Steps between halvings.", ge=1)

    def lr_at(self, step):
        return self.params.lr * 0.5 ** (step // self.params.every)


@hookimpl
def register_policies(register):
    register(Halving)
'''


def write_plugin(folder, filename, source):
    path = folder / filename
    path.write_text(textwrap.dedent(source))
    return path


def test_builtins_load_through_entry_points_without_problems():
    reg = load_plugins(None)
    assert reg.problems == []
    assert len(reg.policies) >= 34
    for name in ["fixed", "step", "cosine", "wsd", "onecycle", "warmup_decay", "triangle2", "cosine_restarts"]:
        item = reg.policies[name]
        assert item.source.startswith("builtin (lrbench_builtins."), item.source
    # every builtin module is an entry point of its own, like a third party's
    assert {p for p in reg.plugins if p.startswith("builtin-")} >= {
        "builtin-policies-classic",
        "builtin-policies-cyclic",
        "builtin-policies-llm",
        "builtin-policies-deepspeed",
        "builtin-policies-restart",
    }


def test_every_hook_has_a_spec_and_a_test():
    # datasette-style: the hooks declared are exactly the ones this file exercises
    hooks = {n for n in dir(hookspecs) if n.startswith("register_")}
    assert hooks == {"register_policies", "register_tuners", "register_tasks",
                     "register_evaluators"}  # register_evaluators: tests/test_evaluators.py


def test_user_folder_plugin_is_loaded_and_usable(lrbench_env):
    write_plugin(lrbench_env["plugins"], "halving.py", GOOD_PLUGIN.format(name="halving"))
    reg = get_registry()
    assert reg.problems == []
    item = reg.policies["halving"]
    assert item.plugin == "user:halving" and item.version == "0.3"
    lrs = sample({"name": "halving", "params": {"lr": 1.0, "every": 2}}, 6, reg)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_user_folder_package_plugin(lrbench_env):
    pkg = lrbench_env["plugins"] / "mypkg"
    pkg.mkdir()
    (pkg / "policies.py").write_text(textwrap.dedent(GOOD_PLUGIN.format(name="pkg-halving")))
    (pkg / "__init__.py").write_text("from .policies import register_policies\n")
    reg = get_registry()
    assert "pkg-halving" in reg.policies, reg.problems
    assert reg.policies["pkg-halving"].plugin == "user:mypkg"


def test_plugin_that_raises_on_import_is_reported_not_fatal(lrbench_env):
    write_plugin(lrbench_env["plugins"], "broken.py", "raise RuntimeError('boom at import')\n")
    write_plugin(lrbench_env["plugins"], "exits.py", "import sys\nsys.exit(3)\n")
    write_plugin(lrbench_env["plugins"], "good.py", GOOD_PLUGIN.format(name="halving"))
    reg = get_registry()
    msgs = {p.plugin: p.message for p in reg.problems}
    assert "RuntimeError: boom at import" in msgs["user:broken"]
    assert "failed to import" in msgs["user:broken"] and "broken.py" in msgs["user:broken"]
    assert "SystemExit" in msgs["user:exits"]
    assert "halving" in reg.policies and "cosine" in reg.policies


def test_hook_that_raises_loses_only_its_own_items(lrbench_env):
    write_plugin(
        lrbench_env["plugins"],
        "halfway.py",
        GOOD_PLUGIN.format(name="first-one").replace(
            "    register(Halving)", "    register(Halving)\n    raise ValueError('second item broke')"
        ),
    )
    reg = get_registry()
    assert "first-one" not in reg.policies
    (problem,) = reg.problems
    assert problem.plugin == "user:halfway"
    assert "register_policies raised ValueError: second item broke" in problem.message


def test_duplicate_name_is_refused_and_the_original_kept(lrbench_env):
    write_plugin(lrbench_env["plugins"], "dupe.py", GOOD_PLUGIN.format(name="cosine"))
    reg = get_registry()
    assert reg.policies["cosine"].plugin == "builtin-policies-llm"
    (problem,) = reg.problems
    assert "duplicate policy name 'cosine'" in problem.message
    assert "builtin-policies-llm" in problem.message


@pytest.mark.parametrize(
    "change, expected",
    [
        (('lr: float = param(0.1, "Starting LR.", gt=0, log=True)', "lr: float"), "has no default"),
        (('name = "bad-schema"', 'name = "Bad Name!"'), "must be lower case"),
        (("class Params(Params):", "class Params:"), "Params must subclass"),
        (('every: int = param(10, "Steps between halvings.", ge=1)', 'every: int = param(0, "x", ge=1)'), "invalid"),
        (("    def lr_at(self, step):", "    def lr_at_(self, step):"), "lr_at is not implemented"),
        (("register(Halving)", "register(object)"), "expected a subclass"),
    ],
)
def test_invalid_items_are_refused_with_the_reason(lrbench_env, change, expected):
    source = GOOD_PLUGIN.format(name="bad-schema").replace(*change)
    write_plugin(lrbench_env["plugins"], "bad.py", source)
    reg = get_registry()
    assert "bad-schema" not in reg.policies
    assert len(reg.problems) == 1
    assert expected in reg.problems[0].message, reg.problems[0].message
    assert "cosine" in reg.policies


def test_misspelled_hook_is_an_error_not_a_silence(lrbench_env):
    write_plugin(
        lrbench_env["plugins"],
        "typo.py",
        GOOD_PLUGIN.format(name="typo").replace("def register_policies(", "def register_policy("),
    )
    reg = get_registry()
    assert "typo" not in reg.policies
    (problem,) = reg.problems
    assert "invalid hook" in problem.message and "register_policy" in problem.message


def test_tuner_and_task_hooks_register_through_the_same_host(lrbench_env):
    write_plugin(
        lrbench_env["plugins"],
        "kinds.py",
        '''
from lrbench_gui.core.params import Params, param
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuner import Tuner
from lrbench_gui.hookspecs import hookimpl


class OneShot(Tuner):
    name = "one-shot"

    class Params(Params):
        trials: int = param(1, "How many trials.", ge=1)

    def ask(self):
        return None

    def tell(self, result):
        pass

    def done(self):
        return True


class Noop(Task):
    name = "noop"

    class Params(Params):
        size: int = param(4, "Size.", ge=1)

    def setup(self, device, seed):
        return None


@hookimpl
def register_tuners(register):
    register(OneShot)
    register(Noop)  # wrong kind: refused, the hook goes on


@hookimpl
def register_tasks(register):
    register(Noop)
''',
    )
    reg = get_registry()
    assert reg.tuner("one-shot").name == "one-shot"
    assert reg.task("noop").name == "noop"
    (problem,) = reg.problems
    assert "tuner refused" in problem.message and "Tuner" in problem.message


def _make_distribution(site, dist_name, ep_name, module_name, source):
    dist = site / f"{dist_name}-1.2.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text(f"[lrbench]\n{ep_name} = {module_name}\n")
    (site / f"{module_name}.py").write_text(textwrap.dedent(source))


def test_installed_distribution_entry_point_and_load_filter(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _make_distribution(site, "lrbench-halving", "halving", "lrbench_halving", GOOD_PLUGIN.format(name="ep-halving"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("LRBENCH_LOAD_PLUGINS")
    reg = load_plugins(None)
    assert reg.policies["ep-halving"].plugin == "halving"
    assert "lrbench-halving 1.2" in reg.policies["ep-halving"].source

    monkeypatch.setenv("LRBENCH_LOAD_PLUGINS", "")  # none of the third-party ones
    reg = load_plugins(None)
    assert "ep-halving" not in reg.policies and "cosine" in reg.policies

    monkeypatch.setenv("LRBENCH_LOAD_PLUGINS", "other, halving")
    assert "ep-halving" in load_plugins(None).policies


def test_trace_prints_each_hook_call(lrbench_env, monkeypatch, capsys):
    monkeypatch.setenv("LRBENCH_TRACE_PLUGINS", "1")
    write_plugin(lrbench_env["plugins"], "halving.py", GOOD_PLUGIN.format(name="halving"))
    load_plugins()
    err = capsys.readouterr().err
    assert "calling user:halving.register_policies" in err
    assert "user:halving.register_policies registered ['halving']" in err


def test_what_a_plugin_prints_while_loading_goes_to_stderr(lrbench_env, capfd):
    write_plugin(lrbench_env["plugins"], "noisy.py", """
        import os
        from lrbench_gui.hookspecs import hookimpl
        print("noisy at import")
        os.write(1, b"noisy from C-level stdout\\n")

        @hookimpl
        def register_tasks(register):
            print("noisy in a hook")
        """)
    reg = load_plugins()
    out, err = capfd.readouterr()
    assert "user:noisy" in reg.plugins and out == ""
    assert "noisy at import" in err and "noisy from C-level stdout" in err and "noisy in a hook" in err
    print("after loading")  # stdout is stdout again
    assert capfd.readouterr().out == "after loading\n"


def test_a_slow_plugin_is_named_with_the_way_to_disable_it(lrbench_env, monkeypatch, capfd):
    monkeypatch.setenv("LRBENCH_PLUGIN_NOTICE", "0.1")
    write_plugin(lrbench_env["plugins"], "sleepy.py", "import time\ntime.sleep(0.35)\n")
    reg = load_plugins()
    err = capfd.readouterr().err
    assert "user:sleepy" in reg.plugins
    folder = lrbench_env["plugins"]
    assert f"lrbench: still loading plugin user:sleepy (0.1 s); disable it by moving sleepy.py out of {folder}" in err
    assert "user:sleepy (0.3 s)" in err


def test_threads_a_plugin_leaves_running_are_remembered(lrbench_env):
    from lrbench_gui.plugins import plugin_threads

    write_plugin(lrbench_env["plugins"], "spinner.py", """
        import threading
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="spinner-thread").start()
        """)
    load_plugins()
    try:
        found = [(p, t.name) for p, t in plugin_threads()]
        assert ("user:spinner", "spinner-thread") in found
    finally:
        sys.modules["lrbench_user_plugins.spinner"].stop.set()
    for _, t in plugin_threads():
        t.join(5)
    assert plugin_threads() == []


def test_the_command_does_not_wait_for_a_plugins_thread(lrbench_env):
    write_plugin(lrbench_env["plugins"], "forever.py", """
        import threading, time
        threading.Thread(target=time.sleep, args=(600,), name="forever").start()
        """)
    proc = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "policy", "sample", "fixed", "--steps", "2",
                           "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout) == [0.01, 0.01]
    assert "not waiting for threads that plugins left running: user:forever (forever)" in proc.stderr


def test_cli_lists_plugins_and_their_errors_and_still_runs(lrbench_env):
    write_plugin(lrbench_env["plugins"], "halving.py", GOOD_PLUGIN.format(name="halving"))
    write_plugin(lrbench_env["plugins"], "broken.py", "import no_such_module_here\n")
    out = subprocess.run(
        [sys.executable, "-m", "lrbench_gui.cli", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout)
    names = {i["name"]: i for i in report["items"] if i["kind"] == "policy"}
    assert names["halving"]["plugin"] == "user:halving" and names["halving"]["version"] == "0.3"
    assert names["cosine"]["kind"] == "policy"
    (err,) = report["errors"]
    assert err["plugin"] == "user:broken" and "No module named 'no_such_module_here'" in err["error"]
    # the plugin's policy works from the command line too
    out = subprocess.run(
        [sys.executable, "-m", "lrbench_gui.cli", "policy", "sample", "halving", "--steps", "3", "--set", "every=1",
         "--json"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout) == [0.1, 0.05, 0.025]
