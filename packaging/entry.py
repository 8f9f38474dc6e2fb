"""The frozen app's entry point: ``lrbench-gui``, plus the one command a frozen app cannot run.

The GUI starts trials as ``sys.executable -m lrbench_gui.trainer TRIAL_FILE``; in a frozen app
``sys.executable`` is this program, which has no torch. Such a call is handed to the Python that
``LRBENCH_PYTHON`` names (an environment with ``lrbench-gui`` and torch installed), or fails with
a message the runner records in the trial's stderr tail, instead of opening a second window.
"""

import os
import sys


def _run_trainer_elsewhere(args: list[str]) -> int:
    python = os.environ.get("LRBENCH_PYTHON")
    if not python:
        print(
            "lrbench-gui (frozen): trials need a Python environment with lrbench-gui and torch; "
            "set LRBENCH_PYTHON to its interpreter (e.g. ~/venvs/lrbench/bin/python).",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ)
    # The bootloader points LD_LIBRARY_PATH at the bundle; the other Python must not load our libs.
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    else:
        env.pop("LD_LIBRARY_PATH", None)
    try:
        os.execve(python, [python, "-m", "lrbench_gui.trainer", *args], env)
    except OSError as exc:
        print(f"lrbench-gui (frozen): cannot run LRBENCH_PYTHON={python}: {exc}", file=sys.stderr)
        return 2
    return 0  # not reached


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:2] == ["-m", "lrbench_gui.trainer"]:
        sys.exit(_run_trainer_elsewhere(argv[2:]))
    from lrbench_gui.qt.app import main

    sys.exit(main())
