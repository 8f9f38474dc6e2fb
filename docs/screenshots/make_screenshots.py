"""Render the docs' screenshots of the window: ``policies.png`` and ``plugins.png``.

Run under a real X server so fonts and styles are what users see::

    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \\
        python docs/screenshots/make_screenshots.py [--out docs/screenshots]

It uses a throwaway data folder and a plugins folder holding one example third-party plugin
and one that fails to import, so the Plugins panel shows both cases.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
from pathlib import Path

EXAMPLE_PLUGIN = textwrap.dedent(
    '''
    """An example third-party policy plugin."""
    from lrbench_gui.core.params import Params, param
    from lrbench_gui.core.policy import Policy
    from lrbench_gui.hookspecs import hookimpl

    __version__ = "0.3.0"


    class HalfLife(Policy):
        name = "half_life"
        summary = "Halve the learning rate every half_life steps"
        family = "research"

        class Params(Params):
            lr: float = param(0.001, "Initial learning rate.", gt=0, log=True)
            half_life: int = param(250, "Steps for the LR to halve.", ge=1, unit="steps")

        def lr_at(self, step):
            return self.params.lr * 0.5 ** (step / self.params.half_life)


    @hookimpl
    def register_policies(register):
        register(HalfLife)
    '''
)
BROKEN_PLUGIN = "import lrbench_missing_dependency  # an optional dependency that is not installed\n"


def settle(app, ms: int = 150) -> None:
    """Run the event loop for ``ms`` milliseconds (layouts, debounced redraws, paints)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--size", default="1360x860", help="window size WxH")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="lrbench-shots-"))
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "half_life.py").write_text(EXAMPLE_PLUGIN)
    (plugins / "needs_extra.py").write_text(BROKEN_PLUGIN)
    os.environ["LRBENCH_DATA_DIR"] = str(tmp / "data")
    os.environ["LRBENCH_PLUGINS_DIR"] = str(plugins)
    os.environ["LRBENCH_LOAD_PLUGINS"] = ""

    from lrbench_gui.qt.app import create_app
    from lrbench_gui.qt.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    window.resize(width, height)
    window.show()
    settle(app, 300)

    panel = window.policy_panel
    # Two pinned policies to compare against...
    panel.load_spec({"name": "cosine", "params": {"lr": 1e-3, "warmup_steps": 100, "min_lr": 1e-5}}, total_steps=1000)
    panel.redraw()
    panel.pin_current()
    panel.load_spec({"name": "wsd", "params": {"lr": 1e-3, "warmup_steps": 100, "decay_steps": 250}})
    panel.redraw()
    panel.pin_current()
    # ... and a composition being edited: a warmup-then-constant stage followed by exponential decay.
    panel.load_spec(
        {
            "sequence": [
                {"name": "constant_warmup", "params": {"lr": 1e-3, "warmup_steps": 50}},
                {"name": "exp", "params": {"lr": 8e-4, "gamma": 0.995}},
            ],
            "boundaries": [400],
        },
        total_steps=1000,
    )
    panel.select_segment(1)
    panel.redraw()
    settle(app, 300)
    panel.show_readout(520)
    settle(app, 100)

    args.out.mkdir(parents=True, exist_ok=True)
    shots = {"policies.png": "Policies", "plugins.png": "Plugins"}
    for filename, name in shots.items():
        window.show_panel(name)
        settle(app, 250)
        target = args.out / filename
        if not window.grab().save(str(target)):
            print(f"could not write {target}", file=sys.stderr)
            return 1
        print(target)
    window.close()
    window.deleteLater()
    settle(app, 50)
    return 0


if __name__ == "__main__":
    sys.exit(main())
