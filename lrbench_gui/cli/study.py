"""``lrbench study KIND ...``: one command for every study kind (every registered tuner), its
flags generated from the tuner's parameter schema by :mod:`lrbench_gui.core.tuning.kinds`.

``lrbench study`` lists the kinds; ``lrbench study KIND --help`` shows the kind's parameters with
their defaults and the study flags. ``lrbench horizon``, ``lrbench path-switch``, ``lrbench merge``
and ``lrbench range-test`` are aliases of ``lrbench study KIND`` (their old flags are the
parameters' flags). The study runs on the one study driver
(:func:`lrbench_gui.core.tuning.driver.run_study`), is recorded in the database and resumes with
``--resume``; the summary is printed as the kind's table (``--json``: as JSON) and ``-o`` draws
its figure (:mod:`lrbench_gui.cli.method_plots`).

The kind's parser is built when the command runs (the registry is loaded then, not for every
``lrbench`` command), so these sub-commands hand their arguments on unparsed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from lrbench_gui.cli import CliError, open_db, print_json, registry
from lrbench_gui.cli.tune import (StudyProgress, _study_defaults, placement_line, resumed_trainer_settings, split_sets,
                                  trainer_settings)

__all__ = ["add_parser", "kind_parser", "config_from_argv", "run_kind", "ALIASES"]

#: ``lrbench NAME`` -> the study kind it runs
ALIASES = {"horizon": "horizon", "path-switch": "path-switch", "merge": "merge", "range-test": "range-test"}
#: a prefix no argument starts with: the sub-command takes every argument as it is
_NO_PREFIX = "\x00"


def _passthrough(sub: argparse._SubParsersAction, name: str, help: str, **defaults: Any) -> None:
    p = sub.add_parser(name, help=help, add_help=False, prefix_chars=_NO_PREFIX)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd, **defaults)


def add_parser(sub: argparse._SubParsersAction) -> None:
    _passthrough(sub, "study", "run a study of one kind: lrbench study lists the kinds, lrbench study KIND "
                 "--help its flags", kind=None)
    for alias, kind in ALIASES.items():
        _passthrough(sub, alias, f"the same as: lrbench study {kind}", kind=kind)


def _cmd(args: argparse.Namespace) -> int:
    reg = registry()
    argv = list(args.argv)
    if args.kind is None:
        if not argv or argv[0] in ("-h", "--help"):
            print(kinds_text(reg))
            return 0
        kind, argv, prog = argv[0], argv[1:], f"lrbench study {argv[0]}"
    else:
        kind, prog = args.kind, f"lrbench {args.command}"
    return run_kind(reg, kind, argv, prog)


def kinds_text(registry: Any) -> str:
    """The study kinds with their titles, for ``lrbench study``."""
    lines = ["usage: lrbench study KIND [flags]   (lrbench study KIND --help: its flags and defaults)", "",
             "study kinds:"]
    names = sorted(registry.tuners)
    width = max([len(n) for n in names] or [4])
    aliases = {kind: alias for alias, kind in ALIASES.items()}
    for name in names:
        cls = registry.tuner(name)
        alias = f"  (also: lrbench {aliases[name]})" if name in aliases else ""
        lines.append(f"  {name:<{width}}  {cls.title or cls.summary}{alias}")
    return "\n".join(lines)


def _tuner_class(registry: Any, kind: str) -> Any:
    from lrbench_gui.core.registry import UnknownName

    try:
        return registry.tuner(kind)
    except (UnknownName, KeyError):
        raise CliError(f"unknown study kind {kind!r} (kinds: {', '.join(sorted(registry.tuners))})") from None


# kind-specific extras: flags that are not tuner parameters, and what they do


def _checkpoints_of(db: Any, trial_id: str) -> tuple[dict[str, Any], list[str]]:
    rec = db.get(trial_id, "trials")
    if rec is None:
        raise CliError(f"no trial {trial_id!r} in {db.path} (lrbench db list trials shows them)")
    files = [c for c in (rec.get("extra") or {}).get("checkpoints") or [] if str(c).endswith(".safetensors")]
    files = [c for c in files if Path(c).is_file()]
    if len(files) < 2:
        raise CliError(f"trial {trial_id} has {len(files)} checkpoint file(s) on this machine; merging needs two "
                       "(run it with checkpoints, e.g. lrbench run ... --checkpoint-every 128)")
    return rec, files


def _merge_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("merge: which checkpoints, where the model goes")
    g.add_argument("--trial", help="a trial in the database whose checkpoints to merge (instead of --later/--earlier)")
    g.add_argument("--pair", type=int, default=-1, help="which checkpoint of --trial is the later one (default: -1, "
                   "the last)")
    g.add_argument("--out", metavar="DIR", help="copy the merged model folder here")


def _merge_before(args: argparse.Namespace, db: Any, params: dict[str, Any], fields: dict[str, Any]) -> None:
    """``--trial``: the checkpoints, the task and its parameters from that trial's record."""
    if args.trial:
        rec, files = _checkpoints_of(db, args.trial)
        try:
            later = files[args.pair]
        except IndexError:
            raise CliError(f"--pair {args.pair}: trial {args.trial} has {len(files)} checkpoints") from None
        i = files.index(later)
        if i == 0:
            raise CliError(f"--pair {args.pair} is the first checkpoint: it has no earlier neighbour")
        params.update(later=later, earlier=files[i - 1])
        fields["task"] = fields.get("task") or rec["task"]
        inherited = {k: v for k, v in (rec.get("task_params") or {}).items()
                     if k not in ("init_from", "version_schedule", "version_steps")}
        fields["task_params"] = {**inherited, **fields.get("task_params", {})}
    elif not (params.get("later") and params.get("earlier")):
        raise CliError("say which checkpoints: --trial TRIAL_ID [--pair -1], or --later FILE --earlier FILE")


def _merge_after(study: Any, summary: dict[str, Any], args: argparse.Namespace) -> None:
    """``--out``: copy the merged model there; write its ``merge-report.json``."""
    if args.out and summary.get("model_dir"):
        dest = Path(args.out)
        if dest.exists() and any(dest.iterdir()):
            raise CliError(f"--out {dest} exists and is not empty; the merged model stays in {summary['model_dir']}")
        shutil.copytree(summary["model_dir"], dest, dirs_exist_ok=True)
        summary["model_dir"] = str(dest)
    if summary.get("model_dir"):
        report = Path(summary["model_dir"]) / "merge-report.json"
        tmp = report.with_suffix(".tmp")
        tmp.write_text(json.dumps({"study": study.config.study_id, **summary}, indent=2))
        tmp.replace(report)


#: kind -> (add its flags, before the study is built, after it ran)
_EXTRAS: dict[str, tuple[Callable, Callable, Callable]] = {"merge": (_merge_flags, _merge_before, _merge_after)}


# the parser


def _study_flags(p: argparse.ArgumentParser, cls: Any, taken: set[str]) -> None:
    from lrbench_gui.core.tuner import Tuner
    from lrbench_gui.core.tuning.kinds import kind_defaults

    d = kind_defaults(cls)
    g = p.add_argument_group("study")

    def add(*names: str, **kw: Any) -> None:
        free = [n for n in names if n not in taken]  # a tuner parameter's flag wins (range-test's --steps)
        if free:
            g.add_argument(*free, default=kw.pop("default", None), **kw)
            taken.update(free)

    add("--task", help=f"the task (default: {d['task']})" if d.get("task") else "the task (required)")
    derived = cls.budget_steps(cls.Params())
    decides = getattr(cls.budget_steps, "__func__", None) is not Tuner.budget_steps.__func__
    add("--budget-steps", "--steps", dest="budget_steps", type=int, metavar="N",
        help=f"steps of one full trial (default: {derived or d['budget_steps']})"
        + ("; this kind may derive it from its parameters" if decides else ""))
    add("--batch-size", type=int, metavar="N", help=f"(default: {d['batch_size']})")
    add("--optimizer", choices=["adamw", "adam", "sgd"],
        help=f"(default: {(d.get('optimizer') or {}).get('name', 'adamw')})")
    add("--seed", type=int, metavar="N", help=f"(default: {d['seed']})")
    add("--parallel", type=int, metavar="N",
        help="trials side by side (default: one per GPU slot, else "
             f"{d['parallel']}; never more than the GPU slots)")
    if cls.uses_space:
        add("--policies", help="comma-separated policy families to search (default: "
            f"{','.join(d.get('policies') or [])})")
        add("--method", choices=["single", "compose", "cost"], help=f"(default: {d['method']})")
        add("--trials", type=int, metavar="N",
            help=f"trials (full-length equivalents) the tuner may use (default: {d['trials']})")
    from lrbench_gui.cli.tune import add_trainer_flags

    add_trainer_flags(add)
    add("--metric", metavar="NAME", help="the metric to rank by (default: the task's), e.g. an evaluator's mc_acc; "
        "its direction is the task's or the evaluator's")
    add("--evaluator", action="append", metavar="NAME[:k=v,...]",
        help="run this evaluator at every evaluation of every trial (repeatable; lrbench plugins lists them), "
             "e.g. multiple-choice:path=builtin:tinylm-mc")
    add("--set", action="append", default=[], metavar="task.K=V|tuner.K=V|optim.K=V",
        help="a task, tuner or optimizer setting (repeatable)")
    add("--name", help=f"a name for the study (default: '{cls.name} on TASK')")
    add("--db", metavar="PATH", help="the database file (default: $LRBENCH_DB or the data folder)")
    add("--wait", type=float, default=None, metavar="SECONDS",
        help="how long a write waits for another writer's database lock (default: 60); past it the records go to a recovery file")
    add("--resume", metavar="STUDY_ID", help="resume an interrupted study from the database")
    add("-o", "--output", metavar="PNG", help="write the study's figure")
    add("--json", action="store_true", default=False, help="print the summary as JSON")


def kind_parser(cls: Any, prog: str) -> argparse.ArgumentParser:
    """The parser of ``lrbench study KIND``: the tuner's parameters, its extras, the study flags."""
    from lrbench_gui.cli import _Parser
    from lrbench_gui.core.tuning.kinds import add_tuner_flags

    import textwrap

    paragraphs = [cls.summary or cls.display_title(), *([cls.hint] if cls.hint else [])]
    description = "\n\n".join(textwrap.fill(text, 100) for text in paragraphs)
    p = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags = add_tuner_flags(p, cls)
    taken = {f.flag for f in flags} | {"--no-" + f.flag[2:] for f in flags if f.kind == "bool"}
    if cls.name in _EXTRAS:
        _EXTRAS[cls.name][0](p)
    _study_flags(p, cls, taken)
    return p


def _first_lines(exc: Exception) -> str:
    lines = str(exc).splitlines()
    return lines[0] + ("; " + " ".join(x.strip() for x in lines[1:3]) if len(lines) > 1 else "")


def _evaluator(text: str) -> dict[str, Any]:
    from lrbench_gui.core.tuning.kinds import parse_evaluator

    try:
        return parse_evaluator(text)
    except ValueError as exc:
        raise CliError(f"--evaluator {exc}") from None


def _config(cls: Any, args: argparse.Namespace, db: Any) -> Any:
    from lrbench_gui.core.tuning.kinds import missing_files, study_config, tuner_params_from_args
    from lrbench_gui.core.tuning.study import StudyConfig, resume_config

    if getattr(args, "resume", None):
        found = db.get(args.resume, "studies") if db is not None else None
        if found is None:
            raise CliError(f"no study {args.resume!r} in {getattr(db, 'path', 'the database')} "
                           "(lrbench db list shows the studies)")
        trainer = trainer_settings(args)
        here = resumed_trainer_settings(trainer, found, args.resume)
        here.update(_study_defaults(here, getattr(args, "parallel", None), "local", None))
        try:  # the execution settings are this command line's, never the stored record's
            config = resume_config(found, parallel=here.pop("parallel", getattr(args, "parallel", None)), **here)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if config.tuner != cls.name:
            raise CliError(f"study {args.resume} is a {config.tuner} study, not {cls.name}")
        return config
    sets = split_sets(getattr(args, "set", []) or [])
    params = {**tuner_params_from_args(cls, args), **sets["tuner"]}
    optimizer = {**({"name": args.optimizer} if getattr(args, "optimizer", None) else {}), **sets["optim"]}
    fields: dict[str, Any] = {
        "task": getattr(args, "task", None), "task_params": sets["task"], "optimizer": optimizer,
        "batch_size": getattr(args, "batch_size", None), "seed": getattr(args, "seed", None),
        "parallel": getattr(args, "parallel", None), "name": getattr(args, "name", None),
        "budget_steps": getattr(args, "budget_steps", None), "method": getattr(args, "method", None),
        "trials": getattr(args, "trials", None), "metric": getattr(args, "metric", None),
        "evaluators": [_evaluator(text) for text in getattr(args, "evaluator", None) or []] or None,
    }
    fields.update(trainer_settings(args))
    fields.update(_study_defaults(fields, fields["parallel"], "local", None))
    if getattr(args, "policies", None):
        fields["policies"] = [x.strip() for x in args.policies.split(",") if x.strip()]
    if cls.name in _EXTRAS:
        _EXTRAS[cls.name][1](args, db, params, fields)
    missing = missing_files(cls, params)
    if missing:
        raise CliError("; ".join(missing))
    if not fields["task"] and not cls.study_defaults.get("task"):
        raise CliError("--task NAME is required (or --resume STUDY_ID)")
    try:
        return study_config(cls, params, fields)
    except ValueError as exc:  # a ParamError or pydantic's ValidationError: it names the field
        raise CliError(_first_lines(exc)) from None


def config_from_argv(registry: Any, kind: str, argv: list[str], db: Any = None) -> Any:
    """The study config ``lrbench study KIND argv...`` would start (nothing runs)."""
    cls = _tuner_class(registry, kind)
    return _config(cls, kind_parser(cls, f"lrbench study {kind}").parse_args(argv), db)


def run_kind(registry: Any, kind: str, argv: list[str], prog: str) -> int:
    """Parse ``argv`` for ``kind``, run the study to its end, print its table or JSON; exit status
    1 when every trial failed (the first one's reason on stderr)."""
    from lrbench_gui.cli.method_plots import FIGURES, print_summary
    from lrbench_gui.core.registry import UnknownName
    from lrbench_gui.core.tuning.driver import run_study
    from lrbench_gui.core.tuning.study import Study

    cls = _tuner_class(registry, kind)
    args = kind_parser(cls, prog).parse_args(argv)
    db = open_db(args.db, getattr(args, "wait", None))
    config = _config(cls, args, db)
    try:
        study = Study(config, registry=registry, db=db)
    except (UnknownName, ValueError) as exc:
        raise CliError(str(exc).splitlines()[0]) from None
    if args.resume:
        study.resume()
        r = study.resumed
        print(f"resuming study {config.study_id}: {r['completed']} completed trials kept"
              + (f", {r['rerun']} interrupted trials to run again" if r["rerun"] else ""), file=sys.stderr)
    text, warning = placement_line(config)
    if warning:
        print(f"lrbench: warning: {warning}", file=sys.stderr)
    print(text, file=sys.stderr)
    progress = StudyProgress(args.json)
    try:
        run_study(study, on_progress=progress, on_event=lambda tid, ev: progress.event(study, tid, ev),
                  live=f"lrbench study {study.config.tuner}")
    except KeyboardInterrupt:
        progress.close()
        print(f"stopped; resume with: {prog} --resume {config.study_id}", file=sys.stderr)
        raise
    progress.close()
    from lrbench_gui.cli.tune import EXIT_RECOVERED, all_failed, report_recovered

    if report_recovered(study):  # the study ran; some records are in recovery files
        return EXIT_RECOVERED

    failure = all_failed(study)
    summary = study.tuner.summary_json()
    overall = study.summary()  # what every study kind reports besides its tuner's own figures
    summary.update({k: overall[k] for k in ("train_seconds", "eval_seconds", "eval_share") if k in overall})
    if failure is not None:
        if args.json:
            print_json({"study": config.study_id, **summary, "error": f"every trial failed; the first: {failure}"})
        print(f"lrbench: error: every trial of study {config.study_id} failed; the first: {failure}",
              file=sys.stderr)
        return 1
    if cls.name in _EXTRAS:
        _EXTRAS[cls.name][2](study, summary, args)
    figure = FIGURES.get(cls.view)
    if args.output:
        if figure is None:
            raise CliError(f"the {kind} study has no figure (its summary is in the database: lrbench db show "
                           f"{config.study_id})")
        figure(study, summary, args.output, f"{cls.display_title()} on {config.task}")
    if args.json:
        print_json({"study": config.study_id, **summary})
        return 0
    print_summary(cls.view, study, summary)
    if summary.get("eval_share") is not None:
        print(f"{100 * summary['eval_share']:.0f} % of the trials' time went to evaluating "
              f"({summary['eval_seconds']:.1f} of {summary['eval_seconds'] + summary['train_seconds']:.1f} s)")
    for warning in summary.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"\nstudy {config.study_id} recorded in {db.path}" + (f"; figure: {args.output}" if args.output else ""))
    return 0
