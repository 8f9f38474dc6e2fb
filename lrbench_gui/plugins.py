"""The plugin system: one pluggy PluginManager, entry points of group ``lrbench``, and the user
plugins folder.

One broken plugin never stops start-up. Each entry point and each file of the plugins folder is
loaded inside try/except; a plugin that fails to import, implements a misspelled hook, raises in
its hook, or registers a duplicate name or an invalid schema is recorded as a
:class:`~lrbench_gui.core.registry.PluginProblem` (shown by ``lrbench plugins`` and in the
window's plugin view) and skipped.

Nor does a slow or noisy one: while a plugin imports or runs its hooks, what it prints goes to
stderr (``--json`` output and the trial protocol stay clean), a plugin still loading after a few
seconds is named on stderr with the way to disable it, and a non-daemon thread it starts is
remembered so that the process entry points (``lrbench``, the trainer) do not wait for it at
exit (:func:`exit_if_plugin_threads`).

Environment:
    LRBENCH_PLUGINS_DIR: the user plugins folder (default: ``plugins/`` in the data folder).
    LRBENCH_LOAD_PLUGINS: comma-separated entry-point names of third-party plugins to load
        (empty: none). The built-ins and the plugins folder always load.
    LRBENCH_TRACE_PLUGINS: when set, print every hook call and its result to stderr.
    LRBENCH_PLUGIN_NOTICE: seconds a plugin may take to load before stderr names it (default 5).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import traceback
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pluggy

from lrbench_gui import hookspecs
from lrbench_gui.core.paths import plugins_dir
from lrbench_gui.core.registry import PluginProblem, RegistrationError, Registry

__all__ = ["load_plugins", "get_registry", "reset_registry", "BUILTIN_PREFIX", "ENTRY_POINT_GROUP",
           "stdout_to_stderr", "plugin_threads", "exit_if_plugin_threads"]

ENTRY_POINT_GROUP = "lrbench"
BUILTIN_PREFIX = "lrbench_builtins"
_HOOKS = {"register_policies": "policy", "register_tuners": "tuner", "register_tasks": "task",
          "register_evaluators": "evaluator"}

_lock = threading.Lock()
_registry: Registry | None = None
#: (plugin name, thread) for every non-daemon thread a plugin started while it loaded
_threads: list[tuple[str, threading.Thread]] = []


def _short_error(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _trace(msg: str) -> None:
    if os.environ.get("LRBENCH_TRACE_PLUGINS"):
        print(f"[lrbench plugins] {msg}", file=sys.stderr)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what is written to stdout, by Python code or by C code writing to file descriptor 1,
    to stderr while the block runs: stdout is reserved for JSON and the trial protocol."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    saved = None
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors 1 and 2 (a GUI without a console): Python's level only
        if saved is not None:
            os.close(saved)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _notice_after() -> float:
    try:
        return max(0.05, float(os.environ.get("LRBENCH_PLUGIN_NOTICE", "5")))
    except ValueError:
        return 5.0


@contextlib.contextmanager
def _watched(plugin: str, doing: str, disable: str) -> Iterator[None]:
    """Name a plugin on stderr every few seconds while it is still ``doing`` something, and
    remember the non-daemon threads it starts meanwhile."""
    before = set(threading.enumerate())
    done = threading.Event()
    stream = sys.stderr
    every = _notice_after()

    def notice() -> None:
        waited = 0.0
        while not done.wait(every):
            waited += every
            with contextlib.suppress(Exception):
                stream.write(f"lrbench: still {doing} plugin {plugin} ({round(waited, 1):g} s); disable it {disable}\n")
                stream.flush()

    watcher = threading.Thread(target=notice, name=f"lrbench-plugin-notice-{plugin}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        for t in threading.enumerate():
            if t not in before and t.is_alive() and not t.daemon:
                _threads.append((plugin, t))


def plugin_threads() -> list[tuple[str, threading.Thread]]:
    """(plugin, thread) for the non-daemon threads plugins started while loading, still alive."""
    return [(p, t) for p, t in _threads if t.is_alive()]


def exit_if_plugin_threads(status: int) -> None:
    """End the process now with ``status`` when a plugin left a non-daemon thread running.

    Python waits for every non-daemon thread before it exits, so one plugin's forgotten thread
    would keep every command from ending. Marking the thread daemon after it started is not
    possible, so the entry points call this last: it says which plugin, flushes the streams,
    runs the ``atexit`` handlers (which a normal exit runs only after those threads end) and
    leaves with ``os._exit``. Only the process entry points call it, never a library caller."""
    alive = plugin_threads()
    if not alive:
        return
    names = ", ".join(sorted({f"{p} ({t.name})" for p, t in alive}))
    with contextlib.suppress(Exception):
        sys.stderr.write(f"lrbench: not waiting for threads that plugins left running: {names}\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


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


def _candidates(folder: Path | None) -> list[tuple[str, str, Any, str]]:
    """(plugin name, source, loader, how to disable it) for every entry point and every file in
    the folder."""
    out: list[tuple[str, str, Any, str]] = []
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
        out.append((ep.name, source, ep.load, ep.name))
    if folder is not None and folder.is_dir():
        for path in sorted(folder.iterdir()):
            is_pkg = path.is_dir() and (path / "__init__.py").exists()
            if (path.suffix == ".py" and path.is_file() and not path.name.startswith("_")) or is_pkg:
                name = path.stem if path.is_file() else path.name
                out.append((f"user:{name}", str(path), lambda p=path: _load_file(p),
                            f"by moving {path.name} out of {folder}"))
    third_party = [c[3] for c in out if not c[1].startswith("builtin") and not c[0].startswith("user:")]
    for i, (name, source, loader, how) in enumerate(out):
        if source.startswith("builtin"):
            how = "(a built-in plugin: reinstall lrbench-gui)"
        elif not name.startswith("user:"):
            how = f"with LRBENCH_LOAD_PLUGINS={','.join(n for n in third_party if n != name)} (the plugins to load)"
        out[i] = (name, source, loader, how)
    return out


def load_plugins(folder: Path | None | str = "default") -> Registry:
    """Load every plugin and run its hooks into a new :class:`Registry`.

    ``folder`` is the user plugins folder; ``"default"`` means :func:`plugins_dir`, None means
    none. Never raises for a plugin's fault: problems land in ``registry.problems``.
    """
    if folder == "default":
        folder = plugins_dir()
    folder = Path(folder) if folder is not None else None
    with stdout_to_stderr():
        return _load(folder)


def _load(folder: Path | None) -> Registry:
    registry = Registry()
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    disable: dict[str, str] = {}

    for name, source, loader, how in _candidates(folder):
        disable[name] = how
        try:
            with _watched(name, "loading", how):
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
            with _watched(plugin, f"running {hook_name} of", disable.get(plugin, "")):
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
