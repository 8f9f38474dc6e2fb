"""``lrbench watch -- CMD ...``: run any command as one recorded trial.

The command runs as a command trial (docs/protocol.md, "Command trials"): it sees ``LRBENCH_TRIAL``
and the report file, its ``lrbench_gui.report`` calls stream a progress line on stderr as
``lrbench run`` does, and the trial is stored in the database when the command ends. Ctrl-C asks
the command to stop (its stop file); a second Ctrl-C sends it SIGTERM. The trial is mirrored into
the live folder, so an open app's Watch panel plots it and can stop it
(:mod:`lrbench_gui.core.runs.live`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from lrbench_gui.cli import CliError, open_db, registry
from lrbench_gui.core.runs.protocol import Event, encode

__all__ = ["add_parser", "build_watch_trial"]

EXIT_INTERRUPTED = 130


def build_watch_trial(args: argparse.Namespace) -> Any:
    """The command trial ``args`` describe, validated against the installed plugins."""
    from lrbench_gui.cli.policy import resolve_spec
    from lrbench_gui.core.runs.command import COMMAND_TASK, CommandError, split_command
    from lrbench_gui.core.runs.trial import TrialError, load_trial, validate_trial

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CliError("give the command to watch after --, e.g. lrbench watch -- python train.py")
    try:
        argv = split_command(argv)
    except CommandError as exc:
        raise CliError(f"command: {exc}") from None
    spec = resolve_spec(args.policy or (None if args.spec else "fixed"), args.spec, [])
    obj = {"task": args.task or COMMAND_TASK, "policy": spec.to_json(), "budget": {"steps": args.steps},
           "command": argv, "cwd": os.getcwd()}
    try:
        return validate_trial(load_trial(obj), registry())
    except TrialError as exc:
        raise CliError(str(exc)) from None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _cmd_watch(args: argparse.Namespace) -> int:
    from lrbench_gui.cli.run import ProgressBar
    from lrbench_gui.core.db import EXIT_RECOVERED
    from lrbench_gui.core.db.query import metric_mode
    from lrbench_gui.core.runs.process import GRACE_SECONDS
    from lrbench_gui.core.runs.live import LiveMirrors
    from lrbench_gui.core.runs.runner import LocalScheduler

    cfg = build_watch_trial(args)
    db = open_db(args.db, args.wait)
    bar: ProgressBar | None = None
    saved: dict[str, Any] = {}

    mirrors = LiveMirrors("lrbench watch")

    def on_event(trial_id: str, event: Event) -> bool:
        nonlocal bar
        if args.json:
            sys.stdout.write(encode(event.type, event.trial, **event.data) + "\n")
            sys.stdout.flush()
        else:
            if event.type in ("hello", "step") and bar is None:
                bar = ProgressBar(int(event.get("steps") or cfg.budget.steps or 1), f"watch/{cfg.trial_id}")
            if event.type == "step" and bar is not None:
                bar.update(int(event["step"]), _number(event.get("loss")), _number(event.get("lr")))
        return mirrors.event(trial_id, event)  # False: the app's Stop asked for it

    def on_log(trial_id: str, line: str) -> None:
        if not args.json:
            print(f"  | {line}", file=sys.stderr)

    def on_finished(trial_id: str, record: dict[str, Any]) -> None:
        if args.metric:
            record["objective"] = {"metric": args.metric, "mode": metric_mode(args.metric)}
        if args.name:
            record["extra"] = {**record.get("extra", {}), "name": args.name[:256]}
        saved["record"] = record
        saved["result"] = db.add_trial_or_recover(record)
        mirrors.finished(trial_id, record["status"])

    scheduler = LocalScheduler(1, on_event=on_event, on_log=on_log, on_finished=on_finished, registry=registry(),
                               on_started=mirrors.started)
    scheduler.submit(cfg)
    interrupted = False
    try:
        scheduler.run()
    except KeyboardInterrupt:
        interrupted = True
        print(f"stopping {cfg.trial_id} (its stop file is set; Ctrl-C again sends SIGTERM)", file=sys.stderr)
        scheduler.cancel_all()
        try:
            scheduler.run()
        except KeyboardInterrupt:
            for proc in scheduler.slots.handles():
                proc.terminate(GRACE_SECONDS)
            scheduler.run()
    finally:
        mirrors.close_all()
    if bar is not None:
        bar.close()
    record, result = saved["record"], saved["result"]
    status = record["status"]
    if not args.json:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(record["metrics"].items()))
        print(f"{status}: {' '.join(cfg.command)[:120]}; {metrics or 'no metrics'}")
        print(f"cost: {record['cost']['steps']} steps, {record['cost']['seconds']:.1f} s"
              + (f"; recorded as trial {cfg.trial_id} in {db.path}" if result.ok else ""))
        if status == "failed" or record.get("notes"):
            print(record.get("notes", ""), file=sys.stderr)
    if not result.ok:
        print(f"lrbench: error: {result.message()}", file=sys.stderr)
        return EXIT_RECOVERED
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if status == "completed" else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="run any command as one recorded trial (its lrbench_gui.report calls stream in)",
                       description="Run CMD as one command trial and record it: lrbench watch -- python train.py")
    p.add_argument("--db", metavar="PATH", help="the database file (default: $LRBENCH_DB or the data folder)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="how long the write waits for another writer's database lock (default: 60)")
    p.add_argument("--task", help="the task to record the trial under (default: command)")
    p.add_argument("--metric", metavar="NAME", help="the metric the trial is ranked by (default: val_loss)")
    p.add_argument("--policy", metavar="NAME", help="the policy the command follows, recorded with it (default: fixed)")
    p.add_argument("--spec", metavar="FILE", help="a policy spec file the command follows (report.lr_at reads it)")
    p.add_argument("--steps", type=int, default=100, help="the run's length in steps (report.trial()['steps'])")
    p.add_argument("--name", metavar="TEXT", help="a name kept with the trial")
    p.add_argument("--json", action="store_true", help="stream the trial's events as JSON lines on stdout")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")
    p.set_defaults(func=_cmd_watch)
