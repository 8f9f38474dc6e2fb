"""The headless ``lrbench`` command: a thin layer over the core.

Each sub-module adds its sub-commands with ``add_parser(subparsers)`` and sets ``func`` on its
parser; a handler returns an exit status. User errors raise :class:`CliError` and end with exit
status 2 and one line on stderr that names the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from lrbench_gui import __version__

__all__ = ["main", "CliError", "print_json", "open_db", "registry", "SUBCOMMAND_MODULES"]

#: Sub-command modules of this package, each with ``add_parser(subparsers)``.
SUBCOMMAND_MODULES = ["plugins_cmd", "policy", "run", "tune", "watch", "db", "study"]


class CliError(Exception):
    """A problem with what the user asked for: printed as ``lrbench: error: ...``, exit 2."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def registry() -> Any:
    """The installed plugins' registry: the CLI is an edge, the one place that builds it."""
    from lrbench_gui.plugins import get_registry

    return get_registry()


def open_db(path: str | None, wait: float | None = None, **kw: Any) -> Any:
    """The policy database at ``path`` (default: ``$LRBENCH_DB`` or the data folder), validating
    with the installed plugins; writes wait ``wait`` seconds for another writer's lock (default:
    the database's). A database problem is a one-line :class:`CliError`."""
    import math

    from lrbench_gui.core.db import DatabaseError, PolicyDB

    if path is not None and not str(path).strip():
        raise CliError("--db: give a file path (an empty one would mean the default database)")
    if wait is not None:
        if not (isinstance(wait, (int, float)) and math.isfinite(wait) and wait >= 0):
            raise CliError(f"--wait: must be a number of seconds >= 0, got {wait}")
        kw["lock_timeout"] = float(wait)
    try:
        return PolicyDB(path, registry=registry(), **kw)
    except DatabaseError as exc:
        raise CliError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: same shape, exit 2
        self.print_usage(sys.stderr)
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="lrbench", description="Choose and tune learning-rate policies from the command line.")
    parser.add_argument("--version", action="version", version=f"lrbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # a sub-command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lrbench`` command. Called as the process entry point (no ``argv``), it does not wait
    at exit for a non-daemon thread a plugin left running (:func:`~lrbench_gui.plugins.exit_if_plugin_threads`)."""
    try:
        status = _main(argv)
    except SystemExit as exc:  # --help, --version
        status = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
        _exit_if_plugin_threads(argv, status)
        raise
    _exit_if_plugin_threads(argv, status)
    return status


def _exit_if_plugin_threads(argv: Sequence[str] | None, status: int) -> None:
    if argv is None and "lrbench_gui.plugins" in sys.modules:
        sys.modules["lrbench_gui.plugins"].exit_if_plugin_threads(status)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        status = args.func(args)
    except CliError as exc:
        print(f"lrbench: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("lrbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
