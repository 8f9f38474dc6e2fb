"""``lrbench db``: the policy database from the command line.

``path | stats | list | show ID | tag ID [TAG...] | note ID [TEXT] | recommend --task NAME |
export | import FILE | backup | compact``, each with ``--db PATH`` (default ``$LRBENCH_DB`` or the user data folder), ``--wait
SECONDS`` (how long a write waits for another writer's lock, saying so on stderr while it
waits) and ``--json``. Other commands that use the database take ``--db`` and ``--wait`` the
same way through :func:`add_db_argument` and :func:`open_db_from_args`, which hands the
database the installed plugins' registry (the CLI is an edge: the core never looks the
registry up itself). ``--db ''`` is refused, never read as "the default".
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

from lrbench_gui.core.db import DEFAULT_LOCK_TIMEOUT, DatabaseError, ImportRefused, PolicyDB
from lrbench_gui.core.db.curves import CurveError
from lrbench_gui.core.db.query import SYSTEM_TAGS, filter_rows, validate_tags
from lrbench_gui.core.paths import default_db_path
from lrbench_gui.core.records import TRIAL_STORED, curve_points
from lrbench_gui.cli import CliError, print_json

__all__ = ["add_parser", "add_db_argument", "open_db_from_args", "db_path_from_args"]


def add_db_argument(parser: argparse.ArgumentParser, *, wait: bool = False) -> None:
    """Add ``--db PATH`` (and, with ``wait``, ``--wait SECONDS`` for the write lock)."""
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="the database file (default: $LRBENCH_DB, else policies.json in the user data folder)",
    )
    if wait:
        parser.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_LOCK_TIMEOUT,
            metavar="SECONDS",
            help=f"how long to wait for another process writing the database (default {DEFAULT_LOCK_TIMEOUT:g})",
        )


def db_path_from_args(args: argparse.Namespace) -> Path:
    path = getattr(args, "db", None)
    if path is not None and not str(path).strip():
        raise CliError("--db: the database path is empty; give a file, or leave --db out for the default (lrbench db path)")
    return Path(path).expanduser() if path else default_db_path()


def open_db_from_args(args: argparse.Namespace) -> PolicyDB:
    """Open the database named by ``--db`` with the installed plugins' registry (so specs are
    checked by their policies' schemas); a database problem becomes a :class:`CliError`."""
    from lrbench_gui.plugins import get_registry

    path = db_path_from_args(args)
    wait = getattr(args, "wait", DEFAULT_LOCK_TIMEOUT)
    if wait is None or not wait >= 0 or wait == float("inf"):
        raise CliError(f"--wait: must be a number of seconds >= 0, got {wait}")
    try:
        return PolicyDB(path, registry=get_registry(), lock_timeout=wait)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None


def _handler(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ImportRefused:
            raise
        except (DatabaseError, KeyError, CurveError) as exc:
            raise CliError(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)) from None

    return run


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@_handler
def _cmd_path(args: argparse.Namespace) -> int:
    path = db_path_from_args(args).absolute()
    if args.json:
        print_json({"path": str(path), "exists": path.exists()})
    else:
        print(str(path) + ("" if path.exists() else "  (not created yet)"))
    return 0


@_handler
def _cmd_stats(args: argparse.Namespace) -> int:
    stats = open_db_from_args(args).stats()
    if args.json:
        print_json(stats)
        return 0
    print(f"database: {stats['path']}{'' if stats['exists'] else '  (not created yet)'}")
    print(f"size:     {stats['bytes']:,} bytes, schema {stats['schema']}")
    c = stats["counts"]
    print(f"records:  {c['studies']} studies, {c['trials']} trials, {c['policies']} policies and recipes")
    if stats["tasks"]:
        print("tasks:    " + ", ".join(f"{t} ({n})" for t, n in stats["tasks"].items()))
    if stats["statuses"]:
        print("status:   " + ", ".join(f"{s} {n}" for s, n in stats["statuses"].items()))
    latest = f", latest {stats['latest_backup']}" if stats["latest_backup"] else " (an import or a migration takes one first)"
    print(f"backups:  {stats['backups']} in {stats['backup_dir']}{latest}")
    return 0


@_handler
def _cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise CliError(f"--limit: must be 0 (all rows) or more, got {args.limit}")
    db = open_db_from_args(args)
    limit = None if args.limit == 0 else args.limit
    if args.table == "trials":
        rows = db.trial_rows()
        rows = [
            r for r in rows
            if (args.task is None or r["task"] == args.task)
            and (args.study is None or r["study"] == args.study)
            and (args.status is None or r["status"] == args.status)
        ]
        rows = filter_rows(rows, tag=args.tag, family=args.family)
        rows.sort(key=lambda r: r["id"])
        total = len(rows)
        rows = rows[:limit]
        if args.json:
            print_json(rows)
            return 0
        _table(
            [[r["id"], r["task"], r["policy"], r["status"], r["metric"] or "-", _fmt(r["value"]), _fmt(r["steps"]), _fmt(r["seconds"])] for r in rows],
            ["ID", "TASK", "POLICY", "STATUS", "METRIC", "VALUE", "STEPS", "SECONDS"],
        )
    elif args.table == "studies":
        counts: dict[str, int] = {}
        for t in db.records("trials"):
            counts[t.get("study")] = counts.get(t.get("study"), 0) + 1
        rows = sorted(db.studies(), key=lambda s: s["id"])
        rows = [s for s in rows if args.task is None or s.get("task") == args.task]
        total = len(rows)
        rows = rows[:limit]
        if args.json:
            print_json([{k: s[k] for k in ("id", "name", "task", "status")} | {"trials": counts.get(s["id"], 0)} for s in rows])
            return 0
        _table([[s["id"], s["name"], s.get("task") or "-", s["status"], str(counts.get(s["id"], 0))] for s in rows], ["ID", "NAME", "TASK", "STATUS", "TRIALS"])
    else:
        rows = sorted(db.policies(), key=lambda p: p["id"])
        total = len(rows)
        rows = rows[:limit]
        if args.json:
            print_json([{k: p[k] for k in ("id", "name", "kind", "lr", "lr_range", "scheduler", "epochs", "warmup_ratio", "warmup_steps", "spec", "source")} for p in rows])
            return 0
        _table(
            [
                [p["id"], p["kind"], p["name"], _fmt(p["lr"]) if p["lr"] is not None else ("-".join(f"{x:g}" for x in p["lr_range"]) if p["lr_range"] else "-"), p["scheduler"] or "-", p["source"]["url"] or p["source"]["title"][:40]]
                for p in rows
            ],
            ["ID", "KIND", "NAME", "LR", "SCHEDULER", "SOURCE"],
        )
    if limit is not None and total > limit:
        print(f"({total - limit} more; --limit 0 shows all)")
    return 0


def _points(trial: str, name: str, curve: dict[str, Any]) -> list[tuple[int, float]]:
    try:
        return curve_points(curve)
    except Exception as exc:  # noqa: BLE001 - a hand-edited file: one line, not a traceback
        raise CliError(f"trial {trial!r}: field curves.{name}: cannot be decoded ({type(exc).__name__}: {str(exc)[:100]})") from None


def _curve_summary(points: list[tuple[int, float]]) -> str:
    if not points:
        return "0 points"
    values = [v for _, v in points]
    return f"{len(points)} points, steps {points[0][0]}..{points[-1][0]}, values {min(values):.4g}..{max(values):.4g}"


@_handler
def _cmd_show(args: argparse.Namespace) -> int:
    db = open_db_from_args(args)
    record = db.get(args.id)
    if record is None:
        raise CliError(f"no record with id {args.id!r} in {db.path}")
    curves = record.get("curves") or {}
    for name, c in curves.items():
        points = _points(args.id, name, c)
        if args.curves:
            curves[name] = {"steps": [s for s, _ in points], "values": [v for _, v in points]}
        elif not args.json:
            curves[name] = _curve_summary(points)
    if args.json:
        print_json(record)
    else:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0


@_handler
def _cmd_recommend(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise CliError(f"--k must be >= 1, got {args.k}")
    db = open_db_from_args(args)
    kw = {"model_family": args.model_family, "model_size": args.model_size, "metric": args.metric}
    rec = db.recommend(args.task, k=args.k, steps=args.steps, world_size=args.world_size, **kw)
    rng = db.lr_range(args.task, **kw)
    if args.json:
        print_json({"recommend": rec, "lr_range": rng})
        return 0
    if rec["metric"] is None:
        known = ", ".join(db.tasks()) or "none"
        print(f"No completed trials with a metric for task {args.task!r} (tasks in the database: {known}).")
    else:
        print(f"Top {len(rec['results'])} policies for {args.task!r} by {rec['metric']} ({'lower' if rec['mode'] == 'min' else 'higher'} is better), "
              f"from {rec['considered']} trials; scope: {rec['scope']}")
        _table(
            [
                [str(r["rank"]), r["label"], _fmt(r["mean"]), _fmt(r["best"]), str(r["n"]), _fmt(r["cost"].get("steps")), _fmt(r["cost"].get("tokens")), _fmt(r["cost"].get("seconds")), r["best_trial"]]
                for r in rec["results"]
            ],
            ["#", "POLICY", "MEAN", "BEST", "N", "STEPS", "TOKENS", "SECONDS", "BEST TRIAL"],
        )
        print(f"Comparable trials only: {rec['group_text']}")
        others = [g for g in rec["groups"] if not g["chosen"]]
        if others:
            print(f"Not pooled with them ({len(others)} other group(s); pick one with --steps, --world-size, --model-family, --model-size):")
            for g in others[:5]:
                print(f"  {g['trials']} trial(s): {g['text']}")
    if rng["suggested"]:
        lo, hi = rng["suggested"]
        print(f"LR range from {len(rng['range_tests'])} range test(s): {lo:.3g} to {hi:.3g}")
    ft = rng["from_trials"]
    if ft:
        print(f"Peak LR of the {ft['n']} trial(s) within {ft['tolerance']:.0%} of the best {ft['metric']}: {ft['lr_min']:.3g} to {ft['lr_max']:.3g}")
    return 0


@_handler
def _cmd_export(args: argparse.Namespace) -> int:
    if args.study and args.trial:
        raise CliError("--study and --trial: export whole studies or a selection of trials, not both")
    db = open_db_from_args(args)
    info = db.export(args.output, study_ids=args.study or None, trial_ids=args.trial or None,
                     include_policies=not args.no_policies)
    if args.json:
        print_json(info)
    else:
        c = info["counts"]
        print(f"wrote {info['path']}: {c['studies']} studies, {c['trials']} trials, {c['policies']} policies ({info['bytes']:,} bytes)")
    return 0


@_handler
def _cmd_import(args: argparse.Namespace) -> int:
    db = open_db_from_args(args)
    source = "/dev/stdin" if args.file == "-" else args.file
    try:
        report = db.import_file(source, dry_run=args.dry_run, on_conflict=args.on_conflict)
    except ImportRefused as exc:
        if args.json:
            print_json(exc.report.to_json())
        else:
            print(exc.report.summary())
        raise CliError(f"import refused: {exc}") from None
    if args.json:
        print_json(report.to_json())
    else:
        print(report.summary())
    return 0


@_handler
def _cmd_tag(args: argparse.Namespace) -> int:
    db = open_db_from_args(args)
    record = db.get(args.id)
    if record is None:
        raise CliError(f"no trial, study or recipe {args.id!r} in {db.path} (lrbench db list shows the ids)")
    tags = list(record.get("tags") or [])
    if args.tags or args.remove or args.clear:
        mine = [] if args.clear else [t for t in tags if t not in SYSTEM_TAGS and t not in (args.remove or [])]
        try:
            tags = db.set_tags(args.id, mine + [t for t in validate_tags(args.tags) if t not in mine])
        except ValueError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json({"id": args.id, "tags": tags})
    else:
        print(f"{args.id}: {', '.join(tags) if tags else '(no tags)'}")
    return 0


@_handler
def _cmd_note(args: argparse.Namespace) -> int:
    db = open_db_from_args(args)
    record = db.get(args.id)
    if record is None:
        raise CliError(f"no trial, study or recipe {args.id!r} in {db.path} (lrbench db list shows the ids)")
    notes = record.get("notes") or ""
    if args.text is not None or args.clear:
        text = "" if args.clear else (sys.stdin.read() if args.text == "-" else args.text)
        notes = db.set_note(args.id, text.rstrip("\n") if args.text == "-" else text)
    if args.json:
        print_json({"id": args.id, "notes": notes})
    else:
        print(notes if notes else f"{args.id}: (no notes)")
    return 0


@_handler
def _cmd_backup(args: argparse.Namespace) -> int:
    db = open_db_from_args(args)
    made = db.backup(args.output)
    if args.json:
        print_json({"backup": str(made), "bytes": made.stat().st_size})
    else:
        print(f"backed up {db.path} to {made}")
    return 0


@_handler
def _cmd_compact(args: argparse.Namespace) -> int:
    db = open_db_from_args(args)
    folded = db.compact()
    info = {"path": str(db.path), "folded_journal": folded, "bytes": db.stats()["bytes"]}
    if args.json:
        print_json(info)
    else:
        print(f"{'folded the journal into' if folded else 'nothing to fold into'} {db.path} ({info['bytes']:,} bytes)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="the policy database: stats, list, show, tag, note, recommend, export, import, backup, compact")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True

    def cmd(name: str, help: str, func: Callable, *, wait: bool = True) -> argparse.ArgumentParser:
        q = dsub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        add_db_argument(q, wait=wait)
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(func=func)
        return q

    cmd("path", "print the database's path", _cmd_path, wait=False)
    cmd("stats", "counts, size, tasks and backups", _cmd_stats)

    q = cmd("list", "list trials, studies or policies", _cmd_list)
    q.add_argument("table", nargs="?", default="trials", choices=("trials", "studies", "policies"))
    q.add_argument("--task", help="only this task")
    q.add_argument("--study", metavar="ID", help="only this study's trials")
    q.add_argument("--status", choices=[s.value for s in TRIAL_STORED], help="only trials with this status")
    q.add_argument("--tag", metavar="TAG", help="only trials with this tag")
    q.add_argument("--family", metavar="POLICY", help="only trials of this policy family (cosine, step...; composition)")
    q.add_argument("--limit", type=int, default=50, metavar="N", help="at most N rows (0: all; default 50)")

    q = cmd("show", "one record (trial, study or policy) by id", _cmd_show)
    q.add_argument("id", metavar="ID")
    q.add_argument("--curves", action="store_true", help="include the curves' points")

    q = cmd("recommend", "the top policies for a task, and the LR range that worked", _cmd_recommend)
    q.add_argument("--task", required=True, metavar="NAME")
    q.add_argument("--k", type=int, default=5, metavar="N", help="how many policies (default 5)")
    q.add_argument("--model-family", metavar="NAME", help="prefer trials of this model family (llama, gpt-j...)")
    q.add_argument("--model-size", metavar="SIZE", help="prefer trials of this model size (7B...)")
    q.add_argument("--metric", metavar="NAME", help="rank by this metric (default: the trials' objective)")
    q.add_argument("--steps", type=int, metavar="N", help="only trials with this budget in steps (default: the largest group of comparable trials)")
    q.add_argument("--world-size", type=int, metavar="N", help="only trials that ran on this many processes")

    q = cmd("export", "write studies, trials and policies to one JSON document (.gz: gzipped)", _cmd_export)
    q.add_argument("--study", action="append", metavar="ID", help="only this study and its trials (repeatable)")
    q.add_argument("--trial", action="append", metavar="ID",
                   help="only this trial, with its study's record (repeatable; not with --study)")
    q.add_argument("-o", "--output", required=True, metavar="FILE")
    q.add_argument("--no-policies", action="store_true", help="leave the policies and recipes out")

    q = cmd("import", "import an export document, all or nothing, after validating every field", _cmd_import)
    q.add_argument("file", metavar="FILE", help="the document (.gz: gzipped; - or /dev/stdin: read from a pipe)")
    q.add_argument("--dry-run", action="store_true", help="validate and report; write nothing")
    q.add_argument(
        "--on-conflict",
        choices=("refuse", "keep", "replace"),
        default="refuse",
        help="a record whose id is here with different content: refuse the import (default), keep ours, or replace it",
    )

    q = cmd("tag", "show or change the tags of a trial, study or recipe", _cmd_tag)
    q.add_argument("id", metavar="ID")
    q.add_argument("tags", nargs="*", metavar="TAG", help="tags to add (letters, digits and _ . : / + @ -)")
    q.add_argument("--remove", action="append", metavar="TAG", help="a tag to take off (repeatable)")
    q.add_argument("--clear", action="store_true", help="take off every tag of yours first (lrbench's own stay)")

    q = cmd("note", "show or replace the notes of a trial, study or recipe", _cmd_note)
    q.add_argument("id", metavar="ID")
    q.add_argument("text", nargs="?", metavar="TEXT", help="the new notes (-: read them from stdin)")
    q.add_argument("--clear", action="store_true", help="clear the notes")

    q = cmd("backup", "copy the database file now", _cmd_backup)
    q.add_argument("-o", "--output", metavar="FILE", help="where (default: the backup folder beside the database)")

    cmd("compact", "fold the write-ahead journal into the database file", _cmd_compact)
