"""``lrbench policy``: list, show, sample, plot and export LR policies."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lrbench_gui.core.export import TARGETS, export_policy
from lrbench_gui.core.params import clip, describe
from lrbench_gui.core.registry import UnknownName
from lrbench_gui.core.spec import (JsonFileError, PolicySpec, ScheduleError, Spec, SpecError, build_schedule,
                                   loads_bounded, parse_assignment, parse_spec, read_json_file, spec_label)
from lrbench_gui.cli import CliError, print_json

__all__ = ["add_parser", "parse_set", "resolve_spec"]


def parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is read as JSON when it parses (numbers, lists, booleans),
    as a string otherwise (a value that opens a list or an object must be valid JSON)."""
    out: dict[str, Any] = {}
    for item in items:
        try:
            key, value = parse_assignment(item)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        out[key] = value
    return out


def _load_spec_file(path: str) -> Any:
    try:
        return read_json_file(path, "spec file")
    except JsonFileError as exc:
        raise CliError(str(exc)) from None


def resolve_spec(name: str | None, spec_file: str | None, sets: list[str]) -> Spec:
    """The spec the user named: a policy name, a JSON file, or inline JSON, with ``--set`` on top."""
    if bool(name) == bool(spec_file):
        raise CliError("give a policy NAME or --spec FILE (one of the two)")
    where = ""
    if spec_file:
        obj, where = _load_spec_file(spec_file), spec_file
    elif name.lstrip().startswith("{"):
        try:
            obj = loads_bounded(name, "inline spec")
        except JsonFileError as exc:
            raise CliError(str(exc)) from None
    elif name.endswith(".json"):
        obj, where = _load_spec_file(name), name
    else:
        obj = {"name": name, "params": {}}
    overrides = parse_set(sets)
    if overrides:
        if not isinstance(obj, dict) or "sequence" in obj:
            raise CliError("--set applies to a single policy; edit the spec file to change a composition")
        obj = {**obj, "params": {**(obj.get("params") or {}), **overrides}}
    try:
        return parse_spec(obj, _registry())
    except SpecError as exc:
        raise CliError(f"{clip(where) + ': ' if where else ''}{exc}") from None


def _lrs(spec: Spec, steps: int, trace: Any = None) -> list[float]:
    """Every step's LR, each finite and >= 0, or one line naming the policy and the step; a
    reactive policy is fed ``trace`` (a :class:`~lrbench_gui.core.reactive.Trace`) when given."""
    try:
        schedule = build_schedule(spec, steps, _registry())
        if trace is not None and schedule.reactive:
            from lrbench_gui.core.reactive import drive

            lrs = drive(schedule, trace, steps)
            _lrs.switches = schedule.switches()  # type: ignore[attr-defined]
            return lrs
        return schedule.checked_lrs()
    except ScheduleError as exc:
        raise CliError(str(exc)) from None


def _trace(against: str | None, steps: int, quiet: bool = False) -> Any:
    """What ``--against`` names: a synthetic loss curve (``plateaus``, the default), a JSON file
    (a trial record, or a list of per-step losses), or a trial id in the database."""
    from lrbench_gui.core.reactive import SYNTHETIC, Trace

    name = against or "plateaus"
    if not against and not quiet:
        print("# reactive policy: drawn against the synthetic 'plateaus' loss curve (--against to pick another)",
              file=sys.stderr)
    if name in SYNTHETIC:
        return Trace.synthetic(name, steps)
    try:
        if name.endswith(".json") or Path(name).is_file():
            obj = _load_spec_file(name)
            if isinstance(obj, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
                return Trace(obj, {k: {"*": float(v)} for k, v in enumerate(obj)}, Path(name).name)
            if isinstance(obj, dict) and isinstance(obj.get("curves"), dict):
                return Trace.of_record(obj)
            raise CliError(f"--against {clip(name)}: expected a trial record (with curves) or a list of losses")
        from lrbench_gui.cli import open_db

        record = open_db(None).get(name, "trials")
    except ValueError as exc:
        raise CliError(f"--against {clip(name)}: {exc}") from None
    if record is None:
        raise CliError(f"--against {clip(name)}: not a synthetic curve ({', '.join(SYNTHETIC)}), a JSON file or a "
                       "trial id in the database")
    try:
        return Trace.of_record(dict(record))
    except ValueError as exc:
        raise CliError(f"--against {clip(name)}: {exc}") from None


def _reactive(spec: Spec) -> bool:
    try:
        return build_schedule(spec, 1, _registry()).reactive
    except (ScheduleError, ValueError):
        return False


def _registry() -> Any:
    from lrbench_gui.plugins import get_registry

    return get_registry()


def _spec_args(p: argparse.ArgumentParser, steps_required: bool = False) -> None:
    p.add_argument("name", nargs="?", metavar="NAME", help="a policy name, a spec .json file or inline JSON")
    p.add_argument("--spec", metavar="FILE", help="a policy spec file (JSON; compositions allowed)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a parameter (repeatable)")
    p.add_argument("--steps", type=int, required=steps_required, metavar="N", help="the run's total steps")


def _steps(args: argparse.Namespace, spec: Spec, default: int | None = None) -> int:
    steps = args.steps if args.steps is not None else default
    if steps is None:
        raise CliError("--steps N is required: this policy's curve depends on the run's length")
    if steps < 1:
        raise CliError(f"--steps must be >= 1, got {steps}")
    if steps > 10_000_000:
        raise CliError(f"--steps {steps} is too many to sample (at most 10,000,000)")
    return steps


def _cmd_list(args: argparse.Namespace) -> int:
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    rows = []
    for name, item in sorted(reg.policies.items()):
        cls = item.obj
        if args.family and cls.family != args.family:
            continue
        rows.append(
            {
                "name": name,
                "family": cls.family,
                "summary": cls.summary,
                "params": [p.name for p in describe(cls.Params)],
                "plugin": item.plugin,
                "version": item.version,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['family']:<9}  {r['summary']}  ({', '.join(r['params'])})")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    try:
        item = reg.policies[args.name] if args.name in reg.policies else reg.policy(args.name)
    except UnknownName as exc:
        raise CliError(str(exc) if len(args.name) <= 200 else f"unknown policy {clip(args.name)}") from None
    cls = item.obj
    info = {
        "name": item.name,
        "summary": cls.summary,
        "family": cls.family,
        "reference": cls.reference,
        "uses_total_steps": cls.uses_total_steps,
        "plugin": item.plugin,
        "source": item.source,
        "version": item.version,
        "params": [p.to_json() for p in describe(cls.Params)],
    }
    if args.json:
        print_json(info)
        return 0
    print(f"{item.name}: {cls.summary}")
    if cls.reference:
        print(f"  reproduces: {cls.reference}")
    print(f"  family {cls.family}, version {item.version}, from {item.plugin}")
    print("  parameters:")
    for p in describe(cls.Params):
        extra = ", ".join(x for x in (p.bounds_text(), "log scale" if p.log else "", p.unit) if x)
        choices = f" one of {', '.join(p.choices)}" if p.choices else ""
        print(f"    {p.name} ({p.kind}{choices}) = {p.default!r}{f'  [{extra}]' if extra else ''}")
        if p.description:
            print(f"        {p.description}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.name, args.spec, args.set)
    steps = _steps(args, spec)
    lrs = _lrs(spec, steps, _trace(args.against, steps) if _reactive(spec) else None)
    if args.json:
        json.dump(lrs, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("".join(f"{v!r}\n" for v in lrs))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    specs = []
    if args.name or not args.spec:
        specs.append(resolve_spec(args.name, None, args.set))
    for f in args.spec or []:
        specs.append(resolve_spec(None, f, args.set if not args.name and len(args.spec) == 1 else []))
    steps = _steps(args, specs[0], default=1000)
    from lrbench_gui.cli.method_plots import _plt

    plt = _plt()
    reactive = [_reactive(spec) for spec in specs]
    trace = _trace(args.against, steps) if any(reactive) else None
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for spec, react in zip(specs, reactive):
        _lrs.switches = []  # type: ignore[attr-defined]
        lrs = _lrs(spec, steps, trace if react else None)
        line, = ax.plot(range(steps), lrs, label=spec_label(spec, _registry()), linewidth=1.6)
        for sw in _lrs.switches:  # type: ignore[attr-defined]
            ax.axvline(sw["step"], color=line.get_color(), linestyle=":", linewidth=1.0, alpha=0.8)
    if trace is not None and trace.loss:  # what the reactive policies were fed, on its own axis
        loss_ax = ax.twinx()
        loss_ax.plot(range(min(steps, len(trace.loss))), trace.loss[:steps], color="0.6", linewidth=1.0,
                     label=trace.label)
        loss_ax.set_ylabel(trace.label, color="0.45")
    if args.log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(args.title or "Learning-rate policy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    out = Path(args.output)
    try:
        fig.savefig(out)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot write {out}: {exc}") from None
    finally:
        plt.close(fig)
    print(f"wrote {out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    spec = resolve_spec(args.name, args.spec, args.set)
    uses_total = not isinstance(spec, PolicySpec) or _uses_total(spec)
    steps = _steps(args, spec, default=None if uses_total else 1)
    _lrs(spec, min(steps, 100_000))  # a policy that breaks at some step is refused, not exported
    result = export_policy(spec, args.to, steps, _registry())
    if args.json:
        print_json(
            {"target": result.target, "exact": result.exact, "native": result.native, "note": result.note,
             "text": result.text}
        )
        return 0 if result.text else 3
    if not result.text:
        print(result.note, file=sys.stderr)
        return 3
    sys.stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")
    if result.note:
        print(f"# note: {result.note}", file=sys.stderr)
    if not result.exact:
        print("# warning: not exact: the framework's scheduler differs from the policy", file=sys.stderr)
    return 0


def _uses_total(spec: PolicySpec) -> bool:
    from lrbench_gui.plugins import get_registry

    return bool(get_registry().policy(spec.name).uses_total_steps)


_AGAINST = ("a reactive policy (reduce_on_plateau, a sequence's switch) is fed this loss curve: plateaus (default), "
            "decay or noisy (synthetic), a trial record .json or a list of losses, or a trial id in the database")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="list, show, sample, plot and export LR policies")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION")
    psub.required = True

    q = psub.add_parser("list", help="every registered policy")
    q.add_argument("--family", help="only this family (classic, cyclic, restart, llm, deepspeed...)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_list)

    q = psub.add_parser("show", help="a policy's parameter schema")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_show)

    q = psub.add_parser("sample", help="the LR at steps 0..N-1, one per line")
    _spec_args(q, steps_required=True)
    q.add_argument("--json", action="store_true", help="print one JSON list")
    q.add_argument("--against", metavar="CURVE", help=_AGAINST)
    q.set_defaults(func=_cmd_sample)

    q = psub.add_parser("plot", help="draw one or more policies to an image")
    q.add_argument("name", nargs="?", metavar="NAME", help="a policy name, a spec .json file or inline JSON")
    q.add_argument("--spec", action="append", metavar="FILE", help="a spec file; repeat to overlay several")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    q.add_argument("--steps", type=int, metavar="N", help="the run's total steps (default 1000)")
    q.add_argument("--log", action="store_true", help="log-scale LR axis")
    q.add_argument("--title")
    q.add_argument("-o", "--output", required=True, metavar="FILE", help="image file (.png, .svg, .pdf)")
    q.add_argument("--against", metavar="CURVE", help=_AGAINST)
    q.set_defaults(func=_cmd_plot)

    q = psub.add_parser(
        "export",
        help="print the equivalent DeepSpeed scheduler block, HF TrainingArguments fields, or torch code",
        description="Exit status 3 when the target has no equivalent (the message says what to use instead).",
    )
    _spec_args(q)
    q.add_argument("--to", required=True, choices=TARGETS)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_export)
