"""``lrbench-gui``: start the desktop app.

Start-up stays light: Qt, pyqtgraph, numpy and the plugins' modules, never torch (tasks import
it inside the trial process). ``--screenshot PATH`` renders the window once it is shown and
quits, for the docs; ``--panel NAME`` opens a panel other than Policies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lrbench_gui import __version__

__all__ = ["main", "create_app", "parse_args"]

APP_NAME = "lrbench"
ORG_NAME = "lrbench"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the rest (Qt's own, such as ``-platform``) for QApplication."""
    parser = argparse.ArgumentParser(prog="lrbench-gui", description="The lrbench desktop workbench.")
    parser.add_argument("--panel", metavar="NAME", help="open this panel first (Policies, Plugins, ...)")
    parser.add_argument(
        "--screenshot", metavar="PATH", type=Path, help="save a PNG of the window once it is shown, then quit"
    )
    parser.add_argument(
        "--size", metavar="WxH", default=None, help="window size, e.g. 1360x860 (useful with --screenshot)"
    )
    parser.add_argument("--theme", choices=["light", "dark"], help="this session's theme (default: the saved one)")
    parser.add_argument("--version", action="version", version=f"lrbench-gui {__version__}")
    return parser.parse_known_args(sys.argv[1:] if argv is None else argv)


def create_app(qt_args: list[str] | None = None):
    """The QApplication (the existing one if any), named for QSettings, styled and with its icon."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from lrbench_gui.qt._resources import icon, style_sheet

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "lrbench-gui", *(qt_args or [])])
        app.setStyle("Fusion")
        hints = app.styleHints()
        if hasattr(hints, "setColorScheme"):  # Qt 6.8+: the plot and style sheet are light
            hints.setColorScheme(Qt.ColorScheme.Light)
        app.setStyleSheet(style_sheet())
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationDisplayName("lrbench")
    app.setApplicationVersion(__version__)
    app.setWindowIcon(icon("lrbench"))
    if hasattr(app, "setDesktopFileName"):
        app.setDesktopFileName("lrbench-gui")
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lrbench-gui`` script; returns the exit status."""
    args, qt_args = parse_args(argv)
    size = None
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            size = (w, h)
        except ValueError:
            print(f"lrbench-gui: --size wants WIDTHxHEIGHT, got {args.size!r}", file=sys.stderr)
            return 2

    try:
        from PySide6.QtCore import QSettings, QTimer
        import pyqtgraph  # noqa: F401
    except ImportError as exc:  # the base install has no Qt: the app is the [gui] extra
        print(f'lrbench-gui: the app needs {exc.name or "PySide6"}: pip install "lrbench-gui[gui]"', file=sys.stderr)
        return 1

    app = create_app(qt_args)
    from lrbench_gui.plugins import get_registry
    from lrbench_gui.qt.main_window import MainWindow

    registry = get_registry()
    # A screenshot must not depend on (or change) the user's saved window geometry.
    settings = None if args.screenshot else QSettings()
    window = MainWindow(registry, settings=settings)
    if args.theme:
        from lrbench_gui.qt.settings_dialog import apply_theme

        apply_theme(args.theme, window)
    if size:
        window.resize(*size)
    if args.panel:
        try:
            window.show_panel(args.panel)
        except KeyError as exc:
            print(f"lrbench-gui: {exc.args[0]}", file=sys.stderr)
            window.deleteLater()  # not close(): that would save this never-shown window's geometry
            return 2
    window.show()

    status = {"code": 0}
    if args.screenshot is not None:
        target: Path = args.screenshot

        def grab() -> None:
            window.policy_panel.redraw()
            if not window.grab().save(str(target)):
                print(f"lrbench-gui: could not write {target}", file=sys.stderr)
                status["code"] = 1
            else:
                print(target)
            window.close()
            app.quit()

        # After the first paint: layouts settled and the curve computed.
        QTimer.singleShot(300, grab)
    code = app.exec()
    window.deleteLater()
    return status["code"] or int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
