"""The layering contracts: the core imports neither Qt nor torch, and nothing at start-up or plugin
discovery imports torch (the app must open in about a second)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken." in proc.stdout
    assert "never reaches for the process-wide one KEPT" in " ".join(proc.stdout.split())


def test_discovery_and_the_cli_do_not_import_torch_or_qt():
    code = (
        "import sys\n"
        "from lrbench_gui.cli import build_parser\n"
        "from lrbench_gui.plugins import get_registry\n"
        "from lrbench_gui.core.spec import sample\n"
        "build_parser(); reg = get_registry(); sample({'name': 'cosine'}, 10, reg)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'deepspeed', 'PySide6', 'pyqtgraph') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    env = {**os.environ, "LRBENCH_LOAD_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "none"
