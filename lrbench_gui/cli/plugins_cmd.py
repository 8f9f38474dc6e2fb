"""``lrbench plugins``: every plugin, what it registered, and why a plugin failed to load."""

from __future__ import annotations

import argparse

from lrbench_gui.cli import print_json

__all__ = ["add_parser", "plugin_report"]


def plugin_report() -> dict:
    """Plugins, their items and their problems, as plain data (shared with the GUI's view)."""
    from lrbench_gui.core.paths import plugins_dir
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    items = [item.to_json() for kind in reg.items.values() for item in kind.values()]
    plugins = []
    for name, source in reg.plugins.items():
        mine = [i for i in items if i["plugin"] == name]
        plugins.append({"name": name, "source": source, "items": mine})
    return {
        "plugins_dir": str(plugins_dir()),
        "plugins": plugins,
        "items": items,
        "errors": [p.to_json() for p in reg.problems],
    }


def _cmd(args: argparse.Namespace) -> int:
    report = plugin_report()
    if args.json:
        print_json(report)
        return 0
    print(f"plugins folder: {report['plugins_dir']}")
    for plugin in report["plugins"]:
        print(f"{plugin['name']}  [{plugin['source']}]")
        for item in plugin["items"]:
            print(f"    {item['kind']:<9} {item['name']:<18} v{item['version']}  {item['summary']}")
        if not plugin["items"]:
            print("    (registered nothing)")
    if report["errors"]:
        print(f"\n{len(report['errors'])} problem(s):")
        for err in report["errors"]:
            print(f"  {err['plugin']}  [{err['source']}]\n    {err['error']}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list plugins, what they registered and their load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)
