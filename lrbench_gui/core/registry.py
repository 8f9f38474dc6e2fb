"""The registry of everything plugins registered: policies, tuners, tasks and evaluators.

The host owns it and hands each plugin's hook a ``register`` callback bound to that plugin; the
callback validates the item (a subclass of the right base, a well-formed unique name, a schema
whose defaults validate) and records where it came from, so duplicates and bad schemas are
rejected in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lrbench_gui.core.evaluator import Evaluator
from lrbench_gui.core.params import Params, describe
from lrbench_gui.core.policy import Policy
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuner import Tuner

__all__ = ["Registry", "Registered", "PluginProblem", "RegistrationError", "KINDS", "require_registry"]

KINDS: dict[str, type] = {"policy": Policy, "tuner": Tuner, "task": Task, "evaluator": Evaluator}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


class RegistrationError(ValueError):
    """An item a plugin tried to register was refused; the message says why."""


@dataclass(frozen=True)
class Registered:
    """One registered item and its provenance."""

    kind: str
    name: str
    obj: type
    plugin: str
    source: str
    version: str

    @property
    def summary(self) -> str:
        return getattr(self.obj, "summary", "") or ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "source": self.source,
            "version": self.version,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class PluginProblem:
    """A plugin (or one item of it) that could not be used, with the reason in words."""

    plugin: str
    source: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "source": self.source, "error": self.message}


@dataclass
class Registry:
    """Items by kind and name, the plugins that provided them, and what went wrong."""

    items: dict[str, dict[str, Registered]] = field(default_factory=lambda: {k: {} for k in KINDS})
    problems: list[PluginProblem] = field(default_factory=list)
    plugins: dict[str, str] = field(default_factory=dict)  # plugin name -> source

    @property
    def policies(self) -> dict[str, Registered]:
        return self.items["policy"]

    @property
    def tuners(self) -> dict[str, Registered]:
        return self.items["tuner"]

    @property
    def tasks(self) -> dict[str, Registered]:
        return self.items["task"]

    @property
    def evaluators(self) -> dict[str, Registered]:
        return self.items["evaluator"]

    def policy(self, name: str) -> type[Policy]:
        """The policy class registered as ``name``; ``KeyError`` with suggestions otherwise."""
        return self._get("policy", name)

    def tuner(self, name: str) -> type[Tuner]:
        return self._get("tuner", name)

    def task(self, name: str) -> type[Task]:
        return self._get("task", name)

    def evaluator(self, name: str) -> type[Evaluator]:
        return self._get("evaluator", name)

    def _get(self, kind: str, name: str) -> Any:
        try:
            return self.items[kind][name].obj
        except KeyError:
            raise UnknownName(kind, name, sorted(self.items[kind])) from None

    def check(self, kind: str, obj: Any) -> None:
        """Raise :class:`RegistrationError` unless ``obj`` is a valid item of ``kind``."""
        base = KINDS[kind]
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise RegistrationError(f"expected a subclass of {base.__module__}.{base.__name__}, got {obj!r}")
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistrationError(
                f"{obj.__name__}.name must be lower case letters, digits, '_', '-' or '.', got {name!r}"
            )
        params = getattr(obj, "Params", None)
        if not (isinstance(params, type) and issubclass(params, Params)):
            raise RegistrationError(f"{name}: Params must subclass lrbench_gui.core.params.Params")
        if params.model_config.get("extra") != "forbid":
            raise RegistrationError(f"{name}: Params must forbid unknown keys (extra='forbid')")
        try:
            describe(params)
            params()
        except Exception as exc:  # the schema is the plugin's; any failure is its fault
            raise RegistrationError(f"{name}: invalid parameter schema: {exc}") from None
        if kind == "policy" and getattr(obj, "__abstractmethods__", None):
            raise RegistrationError(f"{name}: lr_at is not implemented")
        if kind == "evaluator":
            if getattr(obj, "__abstractmethods__", None):
                raise RegistrationError(f"{name}: evaluate is not implemented")
            metrics = getattr(obj, "metrics", None)
            if (not isinstance(metrics, dict) or not metrics
                    or not all(isinstance(k, str) and v in ("min", "max") for k, v in metrics.items())):
                raise RegistrationError(f"{name}: metrics must map each metric name to 'min' or 'max', got {metrics!r}")
        if not isinstance(getattr(obj, "version", None), str):
            raise RegistrationError(f"{name}: version must be a string")

    def add(self, kind: str, obj: Any, plugin: str, source: str) -> Registered:
        self.check(kind, obj)
        existing = self.items[kind].get(obj.name)
        if existing is not None:
            raise RegistrationError(
                f"duplicate {kind} name {obj.name!r}: already registered by plugin {existing.plugin!r}"
            )
        item = Registered(kind, obj.name, obj, plugin, source, obj.version)
        self.items[kind][obj.name] = item
        return item


def require_registry(registry: Any, what: str) -> "Registry":
    """``registry`` itself, or a ``TypeError`` that says how to get one: core never reaches for
    the process-wide registry; the edges (the CLI, the app, the trainer, ``lrbench_gui.api``)
    pass it."""
    if not isinstance(registry, Registry):
        raise TypeError(f"{what} needs the registry of installed plugins as an argument "
                        f"(lrbench_gui.api.load_registry() gives it), got {registry!r}")
    return registry


class UnknownName(KeyError):
    """A name that no plugin registered; the message lists the close and the known ones."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        self.kind, self.name = kind, name
        if len(known) <= 12:
            listing = f" (known: {', '.join(known) or 'none'})"
        else:  # a long list hides the hint; the CLI's list command shows them all
            command = {"policy": "lrbench policy list", "evaluator": "lrbench plugins"}.get(kind, "lrbench plugins")
            listing = f" ({len(known)} known: `{command}` lists them)"
        self.message = f"unknown {kind} {name!r}{hint}{listing}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
