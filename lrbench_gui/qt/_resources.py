"""Where the app's icons and style sheet live.

In a source checkout (and an editable install) they are in ``resources/`` at the repository root;
``LRBENCH_RESOURCES`` points elsewhere (a frozen app, a system package). A missing file is not an
error: the app then runs with Qt's defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtGui import QIcon

__all__ = ["resources_dir", "resource", "icon", "style_sheet"]


def resources_dir() -> Path:
    env = os.environ.get("LRBENCH_RESOURCES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "resources"


def resource(*parts: str) -> Path | None:
    """The path of a resource file, or None when it is not there."""
    path = resources_dir().joinpath(*parts)
    return path if path.is_file() else None


def icon(name: str) -> QIcon:
    """``resources/icons/<name>.svg`` as an icon (an empty icon when missing)."""
    path = resource("icons", f"{name}.svg")
    return QIcon(str(path)) if path is not None else QIcon()


def style_sheet(name: str = "style.qss") -> str:
    path = resource(name)
    try:
        return path.read_text(encoding="utf-8") if path is not None else ""
    except OSError:
        return ""
