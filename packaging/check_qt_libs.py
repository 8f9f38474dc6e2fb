"""Check that the system libraries Qt's X11 (xcb) platform plugin needs are installed.

``make run`` runs it before starting the app: on a stock Debian or Ubuntu machine PySide6's wheel
brings Qt itself, but not ``libxcb-cursor0`` and a few other X11 libraries, and without them the
app dies at start with "Could not load the Qt platform plugin xcb". This script asks the dynamic
linker (``ldd``) which libraries of the plugin are missing and prints the one ``apt-get install``
line that adds them; exit status 1 then, 0 when nothing is missing or the check does not apply
(not Linux, no ``ldd``, or a platform other than xcb chosen with ``QT_QPA_PLATFORM``).

Standard library only, so it runs before anything else is known to work::

    .venv/bin/python packaging/check_qt_libs.py
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: the Debian/Ubuntu package of each library the xcb plugin and Qt's GUI library load
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}


def qt_files() -> list[Path]:
    """The xcb platform plugin and the Qt libraries it loads, in the PySide6 installed here."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(list(spec.submodule_search_locations)[0]) / "Qt"
    names = ["plugins/platforms/libqxcb.so", "lib/libQt6XcbQpa.so.6", "lib/libQt6Gui.so.6"]
    return [qt / n for n in names if (qt / n).is_file()]


def missing_libraries(files: list[Path]) -> list[str]:
    """The library names ``ldd`` reports "not found" for any of ``files``."""
    out: list[str] = []
    for path in files:
        try:
            text = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for name in re.findall(r"^\s*(\S+)\s*=>\s*not found", text, flags=re.MULTILINE):
            if name not in out and not name.startswith("libQt6") and not name.startswith("libicu"):
                out.append(name)
    return out


def install_line(missing: list[str]) -> str:
    """The apt-get line that adds the packages of ``missing`` (unknown names as they are)."""
    packages = list(dict.fromkeys(PACKAGES.get(n, n) for n in missing))
    return "sudo apt-get install -y " + " ".join(packages)


def main() -> int:
    platform = os.environ.get("QT_QPA_PLATFORM", "xcb").split(":")[0]
    if not sys.platform.startswith("linux") or platform not in ("", "xcb") or shutil.which("ldd") is None:
        return 0
    files = qt_files()
    if not files:
        print("lrbench: PySide6 is not installed in this environment: run make install", file=sys.stderr)
        return 1
    missing = missing_libraries(files)
    if not missing:
        return 0
    print(f"lrbench: Qt's X11 plugin needs system libraries that are missing: {', '.join(missing)}.\n"
          f"Install them with:\n\n    {install_line(missing)}\n\n"
          "then run make run again (docs: README.md, 'Run the app').", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
