"""Study kinds on the command line: the one mapping between a tuner's parameter schema and the
flags of ``lrbench study KIND``, in both directions.

A study kind is a tuner class; everything about it sits on the class (``title``, ``hint``,
``study_defaults``, ``budget_steps``, ``uses_space``, ``view``) and in its ``Params`` schema,
whose defaults are *the* defaults. From that:

* :func:`add_tuner_flags` gives an ``argparse`` parser one flag per parameter (``lr_min`` ->
  ``--lr-min``; a bool is ``--x/--no-x``; lists are comma-separated; the help is the
  parameter's description and its default), and :func:`tuner_params_from_args` reads them back;
* :func:`study_config` builds the study the CLI and the app's "New..." form both start;
* :func:`command_line` writes the ``lrbench study KIND ...`` line of a study (only what differs
  from the defaults), which the CLI parses back to the same study.

No per-kind table lives here or in the CLI or the GUI: a third-party tuner gets its flags, its
form and its command line from its schema.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from typing import Any, Iterable

from lrbench_gui.core.params import ParamInfo, describe, validate_params
from lrbench_gui.core.tuner import Tuner

__all__ = [
    "Flag",
    "flag_name",
    "format_value",
    "parse_value",
    "tuner_flags",
    "add_tuner_flags",
    "tuner_params_from_args",
    "kind_defaults",
    "default_name",
    "study_config",
    "command_line",
    "missing_files",
    "parse_evaluator",
    "parse_evaluators",
    "format_evaluator",
    "STUDY_FIELDS",
]

#: the ``StudyConfig`` fields that the study flags of ``lrbench study KIND`` set
STUDY_FIELDS = ("task", "task_params", "batch_size", "optimizer", "seed", "parallel", "name", "budget_steps",
                "eval_every", "method", "policies", "trials", "trial_backend", "gpus_per_trial", "device",
                "precision", "grad_accum", "zero_stage", "metric", "evaluators")
#: the trainer's study fields and their flags (``lrbench_gui.cli.tune.add_trainer_flags``); the
#: user's DeepSpeed config is a file (``--deepspeed-config FILE``), so no command line carries it
_TRAINER_FLAGS = (("trial_backend", "--trainer"), ("gpus_per_trial", "--gpus-per-trial"), ("device", "--device"),
                  ("precision", "--precision"), ("grad_accum", "--grad-accum"), ("zero_stage", "--zero-stage"))
_DEST = "tuner:"  # argparse dest prefix of a tuner parameter's flag


@dataclass(frozen=True)
class Flag:
    """One tuner parameter as a command-line flag."""

    param: str
    flag: str
    kind: str  # ParamInfo.kind
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    unit: str = ""

    @property
    def dest(self) -> str:
        return _DEST + self.param

    def text(self, value: Any) -> list[str]:
        """The arguments that give this parameter ``value``."""
        if self.kind == "bool":
            return [self.flag if value else "--no-" + self.flag[2:]]
        return [self.flag, format_value(value)]


def flag_name(name: str) -> str:
    """``lr_min`` -> ``--lr-min``."""
    return "--" + name.replace("_", "-")


def format_value(value: Any) -> str:
    """A value as a flag takes it: ``448,896,1792``, ``0.0035``, ``1e-6``, ``cosine``."""
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        text = format(value, ".10g")
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
        return text
    return str(value)


def parse_value(kind: str, text: str) -> Any:
    """A flag's text as the parameter's type; ``ValueError`` that says what was expected."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "int_list":
            return [int(x) for x in text.split(",") if x.strip()]
        if kind == "float_list":
            return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "int_list": "whole numbers separated by commas",
                    "float_list": "numbers separated by commas"}[kind]
        raise ValueError(f"{text!r}: expected {expected}") from None
    return text


def _help(info: ParamInfo) -> str:
    text = info.description.strip()
    unit = f" {info.unit}" if info.unit and info.kind in ("int", "float") else ""
    default = format_value(info.default) if info.default != "" else "none"
    text = f"{text} (default: {default}{unit})"
    return text.replace("%", "%%")  # argparse formats help with %


def tuner_flags(cls: type[Tuner]) -> list[Flag]:
    """The flags of ``cls``'s parameters, in the schema's order."""
    return [Flag(i.name, flag_name(i.name), i.kind, i.default, _help(i), i.choices, i.unit)
            for i in describe(cls.Params)]


class _Converter:
    """An argparse ``type`` for one parameter kind (its name shows in argparse's messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.__name__ = kind

    def __call__(self, text: str) -> Any:
        try:
            return parse_value(self.kind, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


def add_tuner_flags(parser: argparse.ArgumentParser, cls: type[Tuner]) -> list[Flag]:
    """Give ``parser`` one flag per parameter of ``cls`` (a group titled by the tuner); a flag
    left out of the command line is absent from the parsed namespace."""
    flags = tuner_flags(cls)
    group = parser.add_argument_group(f"{cls.name} parameters ({cls.__name__}.Params)")
    for f in flags:
        if f.kind == "bool":
            group.add_argument(f.flag, dest=f.dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f.help)
        elif f.kind == "choice":
            group.add_argument(f.flag, dest=f.dest, choices=list(f.choices), default=argparse.SUPPRESS, help=f.help)
        else:
            metavar = {"int_list": "N,N,...", "float_list": "X,X,...", "int": "N", "float": "X"}.get(
                f.kind, "FILE" if f.unit == "file" else "TEXT")
            group.add_argument(f.flag, dest=f.dest, type=_Converter(f.kind), default=argparse.SUPPRESS,
                               metavar=metavar, help=f.help)
    return flags


def tuner_params_from_args(cls: type[Tuner], args: argparse.Namespace) -> dict[str, Any]:
    """The tuner parameters given on the command line (flags left out are left out)."""
    given = vars(args)
    return {f.param: given[f.dest] for f in tuner_flags(cls) if f.dest in given}


def missing_files(cls: type[Tuner], tuner_params: dict[str, Any]) -> list[str]:
    """The problems of the parameters declared as files (``unit="file"``) that name no file here:
    said before a study starts, rather than by its first trial."""
    from pathlib import Path

    out = []
    for info in describe(cls.Params):
        value = tuner_params.get(info.name)
        if info.unit == "file" and isinstance(value, str) and value and not Path(value).is_file():
            out.append(f"{info.name}: file {value} does not exist")
    return out


def kind_defaults(cls: type[Tuner]) -> dict[str, Any]:
    """The study settings of ``cls``'s studies when the user gives none: ``StudyConfig``'s
    defaults under the kind's own ``study_defaults``."""
    from lrbench_gui.core.tuning.study import StudyConfig

    fields = StudyConfig.model_fields
    base = {k: fields[k].get_default(call_default_factory=True) for k in STUDY_FIELDS if k in fields}
    base["task"] = None
    return {**base, **json.loads(json.dumps(dict(cls.study_defaults)))}


def default_name(cls: type[Tuner], task: str | None) -> str:
    return f"{cls.name} on {task}"


def study_config(cls: type[Tuner], tuner_params: dict[str, Any], fields: dict[str, Any]) -> Any:
    """The :class:`~lrbench_gui.core.tuning.study.StudyConfig` of a ``cls`` study: the kind's
    defaults, then ``fields`` (``None`` values are left out, so is ``db``; ``optimizer`` and
    ``task_params`` merge into the defaults), the run length the kind decides (:meth:`Tuner.budget_steps`) and
    the validated ``tuner_params``. ``ValueError`` (a :class:`~lrbench_gui.core.params.ParamError`
    or pydantic's) when something is invalid."""
    from lrbench_gui.core.tuning.study import StudyConfig

    params = validate_params(cls.Params, dict(tuner_params), where=f"tuner {cls.name}")
    defaults = kind_defaults(cls)
    given = {k: v for k, v in fields.items() if v is not None and k != "db"}  # where it is stored: not the study
    obj = {**defaults, **given}
    for key in ("optimizer", "task_params"):
        obj[key] = {**(defaults.get(key) or {}), **(given.get(key) or {})}
    budget = cls.budget_steps(params)
    if budget is not None:
        wanted = given.get("budget_steps")
        if wanted is not None and int(wanted) != int(budget):
            raise ValueError(f"{cls.name} decides its run length from its parameters ({budget} steps); "
                             f"budget_steps {wanted} does not apply")
        obj["budget_steps"] = max(1, int(budget))
    if not cls.uses_space:  # it plans its own trials: no policy search space, one "trial" of budget
        obj["policies"], obj["trials"] = ["fixed"], 1
    if not obj.get("task"):
        raise ValueError("choose a task")
    obj["name"] = obj.get("name") or default_name(cls, obj["task"])
    obj["tuner"], obj["tuner_params"] = cls.name, params.model_dump(mode="json")
    return StudyConfig.model_validate(obj)


def parse_evaluator(text: str) -> dict[str, Any]:
    """``NAME[:key=value,...]`` (``--evaluator``'s text) as ``{"name": NAME, "params": {...}}``: a
    value is JSON when it parses, else a string, and may hold commas when the next part is not
    ``key=`` (``tasks=arc_easy,hellaswag``). ``ValueError`` (one line) for a malformed one."""
    import re

    from lrbench_gui.core.params import clip
    from lrbench_gui.core.spec import parse_assignment

    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{clip(text)!r}: expected NAME or NAME:key=value,... (lrbench plugins lists the names)")
    params: dict[str, Any] = {}
    for part in [p for p in re.split(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*=)", rest) if p.strip()] if rest else []:
        key, value = parse_assignment(part, f"{name}:")
        params[key] = value
    return {"name": name, "params": params}


def parse_evaluators(text: str) -> list[dict[str, Any]]:
    """Evaluators separated by ``;`` (``multiple-choice:path=builtin:tinylm-mc; heldout-loss``),
    each as :func:`parse_evaluator` reads it: the Study panel's *Evaluators* line."""
    return [parse_evaluator(part.strip()) for part in text.split(";") if part.strip()]


def format_evaluator(spec: dict[str, Any]) -> str:
    """``{"name": ..., "params": {...}}`` as :func:`parse_evaluator` reads it back."""
    params = spec.get("params") or {}
    parts = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items()]
    return str(spec["name"]) + (":" + ",".join(parts) if parts else "")


def _sets(prefix: str, values: dict[str, Any]) -> list[str]:
    out = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out += ["--set", f"{prefix}.{key}={text}"]
    return out


def command_line(cls: type[Tuner], tuner_params: dict[str, Any], study_fields: dict[str, Any],
                 extra: Iterable[str] = ()) -> str:
    """The ``lrbench study KIND ...`` command of a ``cls`` study, with only what differs from the
    defaults: the tuner parameters (validated first), the study fields (``task``, ``task_params``
    (all given ones), ``batch_size``, ``optimizer``, ``seed``, ``parallel``, ``name``,
    ``budget_steps`` when the kind does not decide it, ``method``/``policies``/``trials`` when it
    searches a space, the trainer's (``trial_backend``, ``gpus_per_trial``, ``device``,
    ``precision``, ``grad_accum``, ``zero_stage``), ``metric``, ``evaluators`` and ``db``), then
    ``extra`` arguments as they are."""
    params = validate_params(cls.Params, dict(tuner_params), where=f"tuner {cls.name}").model_dump(mode="json")
    base = cls.Params().model_dump(mode="json")
    args = ["lrbench", "study", cls.name]
    for f in tuner_flags(cls):
        if params[f.param] != base[f.param]:
            args += f.text(params[f.param])
    d = kind_defaults(cls)
    fields = {k: v for k, v in study_fields.items() if v is not None}
    task = fields.get("task")
    if task and task != d.get("task"):
        args += ["--task", str(task)]
    args += _sets("task", fields.get("task_params") or {})
    optimizer = dict(fields.get("optimizer") or {})
    default_optimizer = d.get("optimizer") or {}
    if "name" in optimizer and optimizer["name"] != default_optimizer.get("name"):
        args += ["--optimizer", str(optimizer.pop("name"))]
    args += _sets("optim", {k: v for k, v in optimizer.items() if k != "name" and default_optimizer.get(k) != v})
    flags = [("batch_size", "--batch-size"), ("seed", "--seed"), ("parallel", "--parallel")]
    if cls.budget_steps(cls.Params.model_validate(params)) is None:
        flags.append(("budget_steps", "--budget-steps"))
    if cls.uses_space:
        flags += [("method", "--method"), ("trials", "--trials")]
        if "policies" in fields and list(fields["policies"]) != list(d.get("policies") or []):
            args += ["--policies", ",".join(fields["policies"])]
    for key, flag in [*flags, *_TRAINER_FLAGS]:
        if key in fields and fields[key] != d.get(key):
            args += [flag, format_value(fields[key])]
    if fields.get("metric") and fields["metric"] != d.get("metric"):
        args += ["--metric", str(fields["metric"])]
    for spec in fields.get("evaluators") or []:
        args += ["--evaluator", format_evaluator(spec)]
    name = fields.get("name")
    if name and name != default_name(cls, task or d.get("task")):
        args += ["--name", str(name)]
    if fields.get("db"):
        args += ["--db", str(fields["db"])]
    return shlex.join([*args, *extra])
