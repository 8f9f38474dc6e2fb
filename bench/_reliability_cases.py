"""The reliability cases of issue 12 that are not the database's: each one a bad input, a hostile
plugin or a misbehaving trainer, and what must happen instead of a traceback, a hang or a lost
trial.

One table serves ``tests/test_reliability.py`` (one test per case) and ``bench/reliability.py``
(how many hold). A case runs a real process, ``python -m lrbench_gui.cli ...`` or
``python -m lrbench_gui.trainer FILE``, in a temporary folder of its own (data folder, database,
plugins folder), or, for the recorder, a function over real events and a real database. Nothing
is written outside that folder.

What holds, by the case's ``expect``:

- ``error``: exit status ``code`` (2 unless said), stderr exactly one line
  ``lrbench: error: ...`` containing every ``needle``, at most ``max_line`` characters (600), no
  traceback.
- ``trainer-error``: exit status ``code``; stdout's protocol events end with an ``error`` whose
  message contains every needle and an ``end`` whose status is ``failed``; no traceback.
- ``json``: exit status 0 and stdout one JSON document; stderr contains every needle.
- ``call``: ``check(folder)`` returns None (it returns what went wrong otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Case", "CASES", "run_case"]

BASE_TRIAL: dict[str, Any] = {"task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.01}},
                              "budget": {"steps": 3}, "trial_id": "rel-1"}

POLICY_PLUGIN = '''
from lrbench_gui.core.params import Params, param
from lrbench_gui.core.policy import Policy
from lrbench_gui.hookspecs import hookimpl


class Odd(Policy):
    name = "{name}"
    summary = "a policy that misbehaves at step 2"

    class Params(Params):
        lr: float = param(0.1, "LR.", gt=0, log=True)

    def lr_at(self, step):
        if step < 2:
            return self.params.lr
        {body}


@hookimpl
def register_policies(register):
    register(Odd)
'''

PLUGINS = {
    "slow.py": "import time\ntime.sleep(1.5)\n",
    "noisy.py": textwrap.dedent('''
        from lrbench_gui.hookspecs import hookimpl
        print("noisy: hello at import")

        @hookimpl
        def register_tasks(register):
            print("noisy: hello from a hook")
        '''),
    "threads.py": textwrap.dedent('''
        import threading, time
        threading.Thread(target=time.sleep, args=(600,), name="forgotten", daemon=False).start()
        '''),
    "boom.py": POLICY_PLUGIN.format(name="boom", body="raise RuntimeError('boom at step two')"),
    "negative.py": POLICY_PLUGIN.format(name="negative", body="return -self.params.lr"),
}


def _trial(**fields: Any) -> str:
    return json.dumps({**BASE_TRIAL, **fields})


def _deep_policy(depth: int) -> str:
    """A trial file whose policy nests ``depth`` compositions deep (written as text: building it
    as objects would itself hit the recursion limit)."""
    policy = '{"name": "fixed"}'
    head = '{"sequence": [' * depth
    tail = '], "boundaries": []}' * depth
    return json.dumps(BASE_TRIAL).replace('{"name": "fixed", "params": {"lr": 0.01}}', head + policy + tail)


@dataclass(frozen=True)
class Case:
    name: str
    #: the issue's words for the case
    issue: str
    argv: tuple[str, ...] = ()
    module: str = "lrbench_gui.cli"
    expect: str = "error"
    needles: tuple[str, ...] = ()
    code: int = 2
    #: files to write into the case's folder (text or bytes); ``{dir}`` in argv is that folder
    files: dict[str, Any] = field(default_factory=dict)
    #: plugin files (keys of PLUGINS) to drop into the plugins folder
    plugins: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: run in the case's folder before the command (e.g. make the database read-only)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path], str | None] | None = None
    slow: bool = False
    timeout: float = 120.0
    #: the longest acceptable error line (one that names several paths may need more)
    max_line: int = 600


def _second_end_is_ignored(folder: Path) -> str | None:
    from lrbench_gui.core.runs.protocol import encode, parse_line
    from lrbench_gui.core.runs.recorder import TrialRecorder
    from lrbench_gui.core.runs.trial import load_trial

    rec = TrialRecorder(load_trial(dict(BASE_TRIAL)))
    for line in (encode("step", "rel-1", step=0, lr=0.01, loss=2.0),
                 encode("end", "rel-1", status="completed", metrics={"val_loss": 1.5}),
                 encode("end", "rel-1", status="failed", metrics={"val_loss": 9.0})):
        event = parse_line(line)
        if event is None:
            return f"not an event: {line}"
        rec.feed(event)
    rec.finish(0, [])
    record = rec.record()
    if record["status"] != "completed" or record["metrics"].get("val_loss") != 1.5:
        return f"the second end overrode the first: {record['status']}, {record['metrics']}"
    if "second end event" not in record["notes"]:
        return "the notes do not say a second end was ignored"
    return None


def _non_finite_points_are_kept_out(folder: Path) -> str | None:
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.runs.protocol import parse_line
    from lrbench_gui.core.runs.recorder import TrialRecorder
    from lrbench_gui.core.runs.trial import load_trial
    from lrbench_gui.plugins import load_plugins

    rec = TrialRecorder(load_trial(dict(BASE_TRIAL)))
    lines = ['{"v": 1, "type": "hello", "trial": "rel-1", "pid": 1, "steps": 3}',
             '{"v": 1, "type": "step", "trial": "rel-1", "step": 0, "lr": 0.01, "loss": 2.0}',
             '{"v": 1, "type": "step", "trial": "rel-1", "step": 1, "lr": "inf", "loss": "inf"}',
             '{"v": 1, "type": "step", "trial": "rel-1", "step": 2, "lr": "nan", "loss": 1.0}',
             '{"v": 1, "type": "step", "trial": "rel-1", "step": "three", "lr": 0.01, "loss": 1.0}',
             '{"v": 1, "type": "eval", "trial": "rel-1", "step": 2, "metrics": {"val_loss": "inf", "acc": 0.5}}',
             '{"v": 1, "type": "end", "trial": "rel-1", "status": "completed", '
             '"metrics": {"val_loss": "inf", "acc": 0.5}, "cost": {"steps": 3, "seconds": "inf"}}']
    for line in lines:
        event = parse_line(line)
        if event is not None:
            rec.feed(event)
    rec.finish(0, [])
    record = rec.record()
    if record["curves"]["lr"]["values"] != [0.01]:
        return f"non-finite LR points were kept: {record['curves']['lr']}"
    if "non-finite LR" not in record["notes"]:
        return "the notes do not say LR points were left out"
    db = PolicyDB(folder / "db.json", registry=load_plugins(None))
    try:
        db.add_trial(record)
    except Exception as exc:  # the point of the case: the database takes the record
        return f"the database refused the record: {type(exc).__name__}: {str(exc)[:300]}"
    stored = db.get("rel-1")
    if stored is None or stored["status"] != "completed":
        return f"the trial was not stored as completed: {stored and stored['status']}"
    return None


def _read_only_database(folder: Path) -> None:
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.plugins import load_plugins

    db = PolicyDB(folder / "ro.json", registry=load_plugins(None))
    db.add_study({"id": "s-ro", "name": "a study, so that the file exists"})
    (folder / "ro.json").chmod(0o444)


def _study_without_task(folder: Path) -> None:
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.plugins import load_plugins

    db = PolicyDB(folder / "data" / "policies.json", registry=load_plugins(None))
    db.add_study({"id": "s-notask", "name": "imported", "extra": {"config": {"method": "single", "tuner": "grid"}}})


_SPEC_CMD = ("policy", "sample", "--steps", "5", "--spec")

CASES: list[Case] = [
    Case("plugin-slow-import", "a plugin that sleeps at import hangs every command with no word of which plugin",
         ("policy", "list", "--json"), expect="json", plugins=("slow.py",), env={"LRBENCH_PLUGIN_NOTICE": "0.5"},
         needles=("still loading plugin user:slow", "slow.py out of")),
    Case("plugin-print", "a plugin's print() at import breaks every --json output",
         ("policy", "list", "--json"), expect="json", plugins=("noisy.py",),
         needles=("noisy: hello at import", "noisy: hello from a hook")),
    Case("plugin-thread", "a plugin that starts a non-daemon thread keeps every command from exiting",
         ("policy", "list", "--json"), expect="json", plugins=("threads.py",), timeout=60,
         needles=("not waiting for threads", "user:threads")),
    Case("param-string-nan", "parameters given as the strings \"nan\"/\"inf\" (policy export sigmoid prints nan)",
         ("policy", "export", "sigmoid", "--set", 'gamma="nan"', "--to", "torch", "--steps", "100"),
         needles=("gamma", "finite")),
    Case("param-string-infinity", "a parameter given as the string \"Infinity\"",
         ("policy", "sample", "exp", "--set", 'gamma="Infinity"', "--steps", "5"), needles=("gamma", "finite")),
    Case("sample-overflow", "policy sample exp --set gamma=10 (OverflowError)",
         ("policy", "sample", "exp", "--set", "gamma=10", "--steps", "500"),
         needles=("policy exp", "OverflowError", "lr_at(")),
    Case("plugin-lr-at-raises", "a plugin policy whose lr_at raises",
         ("policy", "sample", "boom", "--steps", "5"), plugins=("boom.py",), needles=("policy boom", "lr_at(2)")),
    Case("plugin-negative-lr", "a plugin's negative LR printed by policy sample",
         ("policy", "sample", "negative", "--steps", "5"), plugins=("negative.py",),
         needles=("policy negative", "negative LR", "step 2")),
    Case("spec-deep", "a spec nested 500 deep (RecursionError)", (*_SPEC_CMD, "{dir}/deep.json"),
         files={"deep.json": '{"sequence": [' * 500 + '{"name": "fixed"}' + "]}" * 500},
         needles=("deep.json", "nests deeper than")),
    Case("spec-duplicate-keys", "duplicate keys in spec files (last wins)", (*_SPEC_CMD, "{dir}/dup.json"),
         files={"dup.json": '{"name": "fixed", "name": "cosine"}'}, needles=("'name'", "more than once")),
    Case("spec-not-utf8", "a non-UTF-8 spec file", (*_SPEC_CMD, "{dir}/latin1.json"),
         files={"latin1.json": b'{"name": "fix\xe9d"}'}, needles=("not UTF-8", "latin1.json")),
    Case("spec-dev-zero", "/dev/zero as a spec file is read until memory runs out", (*_SPEC_CMD, "/dev/zero"),
         needles=("/dev/zero", "is a device")),
    Case("spec-long-key", "100 KB lines for long keys", (*_SPEC_CMD, "{dir}/key.json"),
         files={"key.json": json.dumps({"name": "fixed", "params": {"k" * 100_000: 1}})},
         needles=("unknown parameter",)),
    Case("spec-long-value", "100 KB lines for long values", (*_SPEC_CMD, "{dir}/value.json"),
         files={"value.json": json.dumps({"name": "x" * 100_000})}, needles=("unknown policy", "characters")),
    Case("tune-unknown-tuner-param", "tune --set tuner.family=nosuch (KeyError)",
         ("tune", "--task", "digits-mlp", "--set", "tuner.family=nosuch", "--trials", "1", "--budget-steps", "5"),
         needles=("family",)),
    Case("tune-lr-range-point", "--lr-range A,A ignored",
         ("tune", "--task", "digits-mlp", "--lr-range", "0.01,0.01", "--trials", "1", "--budget-steps", "5"),
         needles=("--lr-range", "LOW < HIGH")),
    Case("run-threads", "unbounded trial-file fields (threads 1e6)",
         ("run", "--task", "digits-mlp", "--policy", "fixed", "--steps", "3", "--threads", "1000000", "--no-db"),
         needles=("threads", "1024")),
    Case("run-read-only-db", "run trains, then dies with PermissionError, result lost; says 'recorded as trial X' "
         "when the record went elsewhere",
         ("run", "--task", "digits-mlp", "--policy", "fixed", "--steps", "3", "--db", "{dir}/ro.json", "--json"),
         code=3, setup=_read_only_database, max_line=1200,
         needles=("could not record trial", "read-only", "lrbench db import", "--db")),
    Case("trial-max-grad-norm-inf", "Infinity for max_grad_norm", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(max_grad_norm=float("inf"))},
         needles=("max_grad_norm", "finite")),
    Case("trial-eps-nan", "NaN for eps", ("{dir}/t.json",), module="lrbench_gui.trainer", expect="trainer-error",
         files={"t.json": _trial(optimizer={"eps": float("nan")})}, needles=("optimizer.eps", "finite")),
    Case("trial-weight-decay-inf", "Infinity for weight_decay", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(optimizer={"weight_decay": float("inf")})},
         needles=("optimizer.weight_decay",)),
    Case("trial-betas", "out-of-range betas", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(optimizer={"betas": [0.9, float("inf")]})},
         needles=("optimizer.betas",)),
    Case("trial-optimizer-lr", "an lr in the trial file's optimizer", ("{dir}/t.json",),
         module="lrbench_gui.trainer", expect="trainer-error", files={"t.json": _trial(optimizer={"lr": 1e9})},
         needles=("optimizer.lr", "unknown field")),
    Case("trial-threads", "threads 1e6 in a trial file", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(threads=1_000_000)}, needles=("threads", "1024")),
    Case("trial-id-slash", "trial_id with '/'", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(trial_id="../../etc/passwd")}, needles=("trial_id",)),
    Case("trial-study-id", "a study_id that is not a safe id", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(study_id="a/b")}, needles=("study_id",)),
    Case("trial-batch-size", "unbounded batch size", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": _trial(batch_size=10**12)}, needles=("batch_size",)),
    Case("trial-duplicate-keys", "duplicate keys in a trial file", ("{dir}/t.json",), module="lrbench_gui.trainer",
         expect="trainer-error", files={"t.json": '{"task": "digits-mlp", "task": "digits-cnn", "policy": {}}'},
         needles=("'task'", "more than once")),
    Case("trial-deep-policy", "a trial file's policy 10,000 deep (RecursionError, no end event)", ("{dir}/t.json",),
         module="lrbench_gui.trainer", expect="trainer-error", files={"t.json": _deep_policy(10_000)},
         needles=("nests deeper than",)),
    Case("trial-dev-zero", "/dev/zero as a trial file", ("/dev/zero",), module="lrbench_gui.trainer",
         expect="trainer-error", needles=("is a device",)),
    Case("trial-missing-task", "lrbench: error: task for a record missing task", ("{dir}/t.json",),
         module="lrbench_gui.trainer", expect="trainer-error",
         files={"t.json": json.dumps({k: v for k, v in BASE_TRIAL.items() if k != "task"})},
         needles=("task: required",)),
    Case("tune-resume-missing-task", "lrbench: error: task for a record missing task",
         ("tune", "--resume", "s-notask"), setup=_study_without_task, needles=("s-notask", "task: required")),
    Case("trainer-negative-lr", "lr_at results checked finite and non-negative in the trainer", ("{dir}/t.json",),
         module="lrbench_gui.trainer", expect="trainer-error", code=1, plugins=("negative.py",),
         files={"t.json": _trial(policy={"name": "negative", "params": {"lr": 0.01}}, budget={"steps": 5})},
         needles=("negative LR", "step 2")),
    Case("recorder-second-end", "a second end event overriding the first", expect="call",
         check=_second_end_is_ignored),
    Case("recorder-non-finite-lr", "a trial whose protocol carries a non-finite LR (\"inf\") is refused by the "
         "database and the study crashes, losing it", expect="call", check=_non_finite_points_are_kept_out),
    Case("tune-json-ray", "--json under --backend ray is not JSON (Ray's banner on stdout)",
         ("tune", "--task", "digits-mlp", "--tuner", "grid", "--set", "tuner.points=1", "--policies", "fixed",
          "--budget-steps", "5", "--backend", "ray", "--json"), expect="json", slow=True, timeout=300),
]


def _env(folder: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRBENCH_")}
    env.update(LRBENCH_DATA_DIR=str(folder / "data"), LRBENCH_DB=str(folder / "data" / "policies.json"),
               LRBENCH_PLUGINS_DIR=str(folder / "plugins"), LRBENCH_LOAD_PLUGINS="", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_case(case: Case, folder: Path) -> tuple[bool, str]:
    """Run one case in ``folder`` (made if missing): (holds, what happened in one line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "plugins").mkdir(exist_ok=True)
    for name in case.plugins:
        (folder / "plugins" / name).write_text(PLUGINS[name])
    for name, content in case.files.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    if case.setup is not None:
        case.setup(folder)
    if case.expect == "call":
        assert case.check is not None
        problem = case.check(folder)
        return problem is None, problem or "holds"
    argv = [a.replace("{dir}", str(folder)) for a in case.argv]
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", case.module, *argv], capture_output=True, text=True,
                              env=_env(folder, case.env), cwd=folder, timeout=case.timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return False, f"did not end within {case.timeout:.0f} s"
    seconds = time.monotonic() - t0
    problem = _judge(case, proc)
    return problem is None, (problem or "holds") + f" ({seconds:.1f} s)"


def _judge(case: Case, proc: subprocess.CompletedProcess) -> str | None:
    err, out = proc.stderr, proc.stdout
    if "Traceback" in err or "Traceback" in out:
        return f"a traceback (exit {proc.returncode}): {err.strip().splitlines()[-1][:200] if err.strip() else ''}"
    if case.expect == "json":
        if proc.returncode != 0:
            return f"exit {proc.returncode}: {err.strip()[-300:]}"
        try:
            json.loads(out)
        except ValueError:
            return f"stdout is not one JSON document: {out[:120]!r}"
        missing = [n for n in case.needles if n not in err]
        return f"stderr lacks {missing}: {err[-300:]!r}" if missing else None
    if proc.returncode != case.code:
        return f"exit {proc.returncode}, wanted {case.code}: {err.strip()[-300:]!r}"
    if case.expect == "error":
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage:")]
        if len(lines) != 1 or not lines[0].startswith("lrbench: error: "):
            return f"stderr is not one 'lrbench: error:' line ({len(lines)} lines): {err[:300]!r}"
        if len(lines[0]) > case.max_line:
            return f"the error line is {len(lines[0]):,} characters"
        missing = [n for n in case.needles if n not in lines[0]]
        return f"the line lacks {missing}: {lines[0][:300]!r}" if missing else None
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            return f"stdout has a line that is not an event: {line[:120]!r}"
    if len(events) < 2 or events[-1].get("type") != "end" or events[-1].get("status") != "failed":
        return f"the events do not end with a failed end: {[e.get('type') for e in events]}"
    if events[-2].get("type") != "error":
        return "no error event before the end"
    message = str(events[-2].get("message"))
    if len(message) > 600:
        return f"the error message is {len(message):,} characters"
    missing = [n for n in case.needles if n not in message]
    return f"the error lacks {missing}: {message[:300]!r}" if missing else None
