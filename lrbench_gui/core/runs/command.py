"""Command trials: the user's own training script run as a trial (docs/protocol.md, "Command trials").

A trial with ``command`` set runs that command instead of the trainer. This module is what both
runners (the CLI's :class:`~lrbench_gui.core.runs.process.TrialProcess` and the GUI's ``QtTrial``)
share about it: the placeholders of the command template (:func:`check_template` before anything
runs, :func:`fill_command` when the trial's folder is known), the files of the trial's folder and
the environment that points the script at them (:func:`command_env`), the stop file
(:func:`request_stop`, :func:`stop_grace`) and :class:`ReportTail`, which reads the report file's
new complete lines as the script appends them.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import string
from pathlib import Path
from typing import Any, Iterable

from lrbench_gui.core.params import clip
from lrbench_gui.core.runs.protocol import MAX_LINE

__all__ = ["COMMAND_TASK", "CommandError", "split_command", "join_command", "check_template", "fill_command",
           "prepare_command", "command_env", "request_stop", "stop_grace", "ReportTail", "TRIAL_FILE", "SPEC_FILE",
           "REPORT_FILE", "STOP_FILE", "NO_REPORT_NOTE", "PLACEHOLDERS"]

#: the built-in placeholder task of a command trial whose user names no other task
COMMAND_TASK = "command"
TRIAL_FILE, SPEC_FILE, REPORT_FILE, STOP_FILE = "trial.json", "policy.json", "report.jsonl", "stop"
#: the note of a command trial that reported nothing lrbench understands
NO_REPORT_NOTE = ("the script reported no steps or evaluations: add lrbench_gui.report.step(...) / .eval(...) "
                  "calls (docs/own-script.md)")
#: the plain placeholders; ``{policy.NAME}`` and ``{task.NAME}`` name a parameter
PLACEHOLDERS = ("lr", "steps", "seed", "out", "spec", "trial", "trial_id")
DEFAULT_STOP_GRACE = 30.0
_MAX_ARGS, _MAX_ARG = 4096, 65536
#: a run longer than this has its peak LR taken from this many evenly spread steps
_PEAK_SAMPLES = 20_001


class CommandError(ValueError):
    """A command template that cannot run: one line naming the problem."""


def split_command(command: str | Iterable[str]) -> list[str]:
    """The argv of ``command``: a list as given, one string split the way a POSIX shell would."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise CommandError(f"cannot split the command: {exc}") from None
    else:
        argv = list(command)
    if not argv:
        raise CommandError("the command is empty")
    if len(argv) > _MAX_ARGS or any(not isinstance(a, str) or len(a) > _MAX_ARG for a in argv):
        raise CommandError(f"the command must be at most {_MAX_ARGS} strings of at most {_MAX_ARG} characters")
    return argv


def _fields(arg: str) -> list[tuple[str, str, str, str | None]]:
    """``(literal, name, format_spec, conversion)`` of each part of one argument."""
    try:
        return [(lit, name or "", spec or "", conv) for lit, name, spec, conv in string.Formatter().parse(arg)]
    except ValueError as exc:
        raise CommandError(f"{clip(arg, 120)}: {exc} (write {{{{ and }}}} for literal braces)") from None


def check_template(command: Iterable[str], policy_params: dict[str, set[str]] | None = None,
                   task_params: set[str] | None = None) -> list[str]:
    """The placeholders ``command`` uses; :class:`CommandError` for an unknown one or bad braces.

    With ``policy_params`` (each searched family's parameter names) a ``{policy.NAME}`` must name
    a parameter of every family; with ``task_params`` a ``{task.NAME}`` must be one of them."""
    used: list[str] = []
    for arg in command:
        for _, name, _, conv in _fields(arg):
            if not name and conv is None:
                continue
            what = f"{{{clip(name, 80)}}} in {clip(arg, 120)!r}"
            if conv is not None:
                raise CommandError(f"{what}: '!' conversions are not placeholders (write {{{{ and }}}} for braces)")
            kind, dot, param = name.partition(".")
            if not dot and name in PLACEHOLDERS:
                pass
            elif dot and kind == "policy" and param.isidentifier():
                missing = sorted(f for f, names in (policy_params or {}).items() if param not in names)
                if missing:
                    raise CommandError(f"{what}: {param} is not a parameter of policy {', '.join(missing)}")
            elif dot and kind == "task" and param.isidentifier():
                if task_params is not None and param not in task_params:
                    raise CommandError(f"{what}: the task has no parameter {param}"
                                       + (f" (it has {', '.join(sorted(task_params))})" if task_params else ""))
            else:
                raise CommandError(f"{what}: unknown placeholder; use {', '.join('{%s}' % p for p in PLACEHOLDERS)}, "
                                   "{policy.NAME} or {task.NAME} ({{ and }} are literal braces)")
            used.append(name)
    return used


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def peak_lr(policy: dict[str, Any], steps: int, registry: Any) -> float:
    """The largest LR of ``policy`` over a run of ``steps`` steps (compositions included)."""
    from lrbench_gui.core.spec import build_schedule

    schedule = build_schedule(policy, steps, registry)
    if steps <= _PEAK_SAMPLES:
        points: Iterable[int] = range(steps)
    else:
        points = sorted({round(i * (steps - 1) / (_PEAK_SAMPLES - 1)) for i in range(_PEAK_SAMPLES)})
    return max(schedule.checked_lr(s) for s in points)


def fill_command(config: Any, workdir: Path, registry: Any = None) -> list[str]:
    """The argv of a command trial, its placeholders filled from the trial and its folder.

    ``registry`` is needed for ``{lr}`` and ``{policy.NAME}`` (the policy is built to read them);
    :class:`CommandError` (one line) when a placeholder has no value for this trial."""
    folder = Path(workdir).resolve()
    steps = config.budget.steps
    values: dict[str, Any] = {"seed": config.seed, "out": folder, "spec": folder / SPEC_FILE,
                              "trial": folder / TRIAL_FILE, "trial_id": config.trial_id}
    if steps is not None:
        values["steps"] = steps
    spec_params: dict[str, Any] | None = None
    out = []
    for arg in split_command(config.command):
        check_template([arg])
        parts = []
        for literal, name, fmt, _ in _fields(arg):
            parts.append(literal)
            if not name:
                continue
            kind, _, param = name.partition(".")
            if name in ("lr", "steps") and steps is None:
                raise CommandError(f"{{{name}}} needs a budget in steps (this trial's budget is "
                                   f"{config.budget.model_dump(exclude_none=True)})")
            if name == "lr" and "lr" not in values:
                if registry is None:
                    raise CommandError("{lr}: the runner was given no plugin registry to build the policy with")
                try:
                    values["lr"] = peak_lr(config.policy, max(1, steps), registry)
                except ValueError as exc:
                    raise CommandError(f"{{lr}}: {clip(str(exc), 300)}") from None
            if kind == "policy":
                if spec_params is None:
                    spec_params = _policy_params(config.policy, registry)
                if param not in spec_params:
                    raise CommandError(f"{{{name}}}: the trial's policy {config.policy.get('name', 'composition')} "
                                       f"has no parameter {param}")
                value = spec_params[param]
            elif kind == "task":
                if param not in config.task_params:
                    raise CommandError(f"{{{name}}}: the trial sets no task parameter {param}")
                value = config.task_params[param]
            else:
                value = values[name]
            try:
                parts.append(format(value, fmt) if fmt else _text(value))
            except (ValueError, TypeError) as exc:
                raise CommandError(f"{{{name}:{clip(fmt, 40)}}}: {exc}") from None
        out.append("".join(parts))
    return out


def _policy_params(policy: dict[str, Any], registry: Any) -> dict[str, Any]:
    """The parameters of a single-policy spec, defaults filled in."""
    if "sequence" in policy or "name" not in policy:
        raise CommandError("{policy.NAME} needs a single policy, not a composition")
    if registry is None:
        return dict(policy.get("params") or {})
    from lrbench_gui.core.spec import SpecError, parse_spec

    try:
        parsed = parse_spec(policy, registry)
    except SpecError as exc:
        raise CommandError(f"policy: {clip(str(exc), 300)}") from None
    return parsed.params.model_dump(mode="json")


def prepare_command(config: Any, workdir: Path, registry: Any = None) -> list[str]:
    """Write the policy spec beside the trial file, clear what an earlier run of this trial left
    (its stop file, its report), and return the filled command."""
    folder = Path(workdir)
    command = fill_command(config, folder, registry)
    (folder / SPEC_FILE).write_text(json.dumps(config.policy, indent=2), encoding="utf-8")
    (folder / STOP_FILE).unlink(missing_ok=True)
    (folder / REPORT_FILE).write_bytes(b"")
    return command


def command_env(config: Any, workdir: Path) -> dict[str, str]:
    """The variables that point a script at its trial: the trial file, the report, the stop file."""
    folder = Path(workdir).resolve()
    return {"LRBENCH_TRIAL": str(folder / TRIAL_FILE), "LRBENCH_REPORT": str(folder / REPORT_FILE),
            "LRBENCH_STOP": str(folder / STOP_FILE), "LRBENCH_TRIAL_ID": config.trial_id}


def request_stop(workdir: Path) -> None:
    """Ask the script to stop: create its stop file (``report.should_stop()`` turns true)."""
    try:
        (Path(workdir) / STOP_FILE).touch()
    except OSError:
        pass  # the runner still sends SIGTERM after the grace period


def stop_grace() -> float:
    """Seconds a stopped script has to exit by itself: ``$LRBENCH_STOP_GRACE``, 30 by default."""
    raw = os.environ.get("LRBENCH_STOP_GRACE", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_STOP_GRACE
    except ValueError:
        return DEFAULT_STOP_GRACE
    return value if math.isfinite(value) and value >= 0 else DEFAULT_STOP_GRACE


class ReportTail:
    """The new complete lines of an append-only report file, each call to :meth:`read`.

    A line longer than the protocol's bound is skipped whole; a file that shrank (a new run of the
    trial) is read again from its start. ``final=True`` also returns a last line without newline."""

    def __init__(self, path: Path, chunk: int = 4 << 20) -> None:
        self.path = Path(path)
        self.offset = 0
        self.chunk = chunk
        self._partial = b""
        self._skipping = False
        self._more = False

    def read(self, final: bool = False) -> list[str]:
        lines = self._read(final)
        while final and self._more:
            lines += self._read(final)
        return lines

    def _read(self, final: bool) -> list[str]:
        self._more = False
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset:
                    self.offset, self._partial, self._skipping = 0, b"", False
                fh.seek(self.offset)
                data = fh.read(self.chunk)
        except OSError:
            return []
        self.offset += len(data)
        self._more = len(data) == self.chunk
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        lines = []
        for piece in pieces:
            if self._skipping:
                self._skipping = False
                continue
            lines.append(piece.decode("utf-8", errors="replace"))
        if len(self._partial) > MAX_LINE:
            self._partial, self._skipping = b"", True
        if final and not self._more and self._partial and not self._skipping:
            lines.append(self._partial.decode("utf-8", errors="replace"))
            self._partial = b""
        return [line for line in lines if line.strip()]


def join_command(argv: Iterable[str]) -> str:
    """``argv`` as one line a shell splits back to it, placeholders left readable (``{lr}``, not
    ``'{lr}'``)."""
    import re

    safe = re.compile(r"[\w@%+=:,./{}-]+")
    return " ".join(a if safe.fullmatch(a) else shlex.quote(a) for a in argv)
