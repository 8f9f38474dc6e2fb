"""The plugin system: one pluggy PluginManager, entry points of group ``lrbench``, and the user
plugins folder.

One broken plugin never stops start-up. Each entry point and each file of the plugins folder is
loaded inside try/except; a plugin that fails to import, implements a misspelled hook, raises in
its hook, or registers a duplicate name or an invalid schema is recorded as a
:class:`~lrbench_gui.core.registry.PluginProblem` (shown by ``lrbench plugins`` and in the
window's plugin view) and skipped.

Environment:
    LRBENCH_PLUGINS_DIR: the user plugins folder (default: ``plugins/`` in the data folder).
    LRBENCH_LOAD_PLUGINS: comma-separated entry-point names of third-party plugins to load
        (empty: none). The built-ins and the plugins folder always load.
    LRBENCH_TRACE_PLUGINS: when set, print every hook call and its result to stderr.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import traceback
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from lrbench_gui import hookspecs
from lrbench_gui.core.paths import plugins_dir
from lrbench_gui.core.registry import PluginProblem, RegistrationError, Registry

__all__ = ["load_plugins", "get_registry", "reset_registry", "BUILTIN_PREFIX", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "lrbench"
BUILTIN_PREFIX = "lrbench_builtins"
_HOOKS = {"register_policies": "policy", "register_tuners": "tuner", "register_tasks": "task"}

_lock = threading.Lock()
_registry: Registry | None = None


def _short_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _trace(msg: str) -> None:
    if os.environ.get("LRBENCH_TRACE_PLUGINS"):
        print(f"[lrbench plugins] {msg}", file=sys.stderr)


def _load_file(path: Path) -> ModuleType:
    """Import a ``*.py`` file or a package folder from the user plugins folder."""
    stem = path.stem if path.is_file() else path.name
    mod_name = f"lrbench_user_plugins.{stem}"
    target = path / "__init__.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location(
        mod_name, target, submodule_search_locations=[str(path)] if path.is_dir() else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def _candidates(folder: Path | None) -> list[tuple[str, str, Any]]:
    """(plugin name, source, loader) for every entry point and every file in the folder."""
    out: list[tuple[str, str, Any]] = []
    wanted = os.environ.get("LRBENCH_LOAD_PLUGINS")
    allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
    seen = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.name)
        builtin = ep.value.split(":")[0].startswith(BUILTIN_PREFIX)
        if allow is not None and not builtin and ep.name not in allow:
            continue
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "entry point"
        source = f"builtin ({ep.value})" if builtin else f"{origin} ({ep.value})"
        out.append((ep.name, source, ep.load))
    if folder is not None and folder.is_dir():
        for path in sorted(folder.iterdir()):
            is_pkg = path.is_dir() and (path / "__init__.py").exists()
            if (path.suffix == ".py" and path.is_file() and not path.name.startswith("_")) or is_pkg:
                name = path.stem if path.is_file() else path.name
                out.append((f"user:{name}", str(path), lambda p=path: _load_file(p)))
    return out


def load_plugins(folder: Path | None | str = "default") -> Registry:
    """Load every plugin and run its hooks into a new :class:`Registry`.

    ``folder`` is the user plugins folder; ``"default"`` means :func:`plugins_dir`, None means
    none. Never raises for a plugin's fault: problems land in ``registry.problems``.
    """
    if folder == "default":
        folder = plugins_dir()
    folder = Path(folder) if folder is not None else None
    registry = Registry()
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)

    for name, source, loader in _candidates(folder):
        try:
            module = loader()
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything, even SystemExit
            registry.problems.append(PluginProblem(name, source, f"failed to import: {_short_error(exc)}"))
            continue
        try:
            pm.register(module, name=name)
            pm.check_pending()
        except Exception as exc:  # a misspelled hook or a bad hookimpl signature
            if pm.is_registered(module):
                pm.unregister(module)
            registry.problems.append(PluginProblem(name, source, f"invalid hook: {exc}"))
            continue
        registry.plugins[name] = source
        _trace(f"loaded {name} from {source}")

    for hook_name, kind in _HOOKS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            plugin = impl.plugin_name
            source = registry.plugins.get(plugin, "?")
            _run_hook(registry, kind, hook_name, impl.function, plugin, source)
    return registry


def _run_hook(registry: Registry, kind: str, hook_name: str, function: Any, plugin: str, source: str) -> None:
    added: list[str] = []

    def register(obj: Any) -> None:
        try:
            item = registry.add(kind, obj, plugin, source)
        except RegistrationError as exc:
            registry.problems.append(PluginProblem(plugin, source, f"{kind} refused: {exc}"))
            return
        added.append(item.name)

    _trace(f"calling {plugin}.{hook_name}")
    try:
        function(register=register)
    except BaseException as exc:  # noqa: BLE001
        for name in added:
            registry.items[kind].pop(name, None)
        registry.problems.append(PluginProblem(plugin, source, f"{hook_name} raised {_short_error(exc)}"))
        return
    _trace(f"{plugin}.{hook_name} registered {added}")


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = load_plugins()
        return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Forget (or replace) the process-wide registry; the next :func:`get_registry` reloads."""
    global _registry
    with _lock:
        _registry = registry
