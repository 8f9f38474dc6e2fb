"""Install layers: the base install (no extras) is what a training node needs, with no Qt.

pyproject's base dependencies hold no PySide6, pyqtgraph, matplotlib or torch; and in a fresh
interpreter where those imports fail (a blocker on ``sys.meta_path``, installed before anything
else is imported), the report API, the integrations, the CLI and the exported torch code of a
composed policy all work, and ``lrbench-gui`` says in one line which extra it needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSITION = {
    "sequence": [
        {"name": "warmup", "params": {"warmup_max_lr": 0.05, "warmup_num_steps": 10, "warmup_type": "linear"}},
        {"name": "cosine", "params": {"lr": 0.05}},
    ],
    "boundaries": [10],
}

BLOCKER = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in this install)", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def run_without(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which importing any of ``blocked`` fails."""
    source = BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=180, cwd=ROOT)


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_base_dependencies_hold_no_gui_and_no_training_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = _names(project["dependencies"])
    assert not base & {"pyside6", "pyside6-essentials", "pyqtgraph", "matplotlib", "torch", "transformers"}
    extras = project["optional-dependencies"]
    assert {"pyside6-essentials", "pyqtgraph"} <= _names(extras["gui"])
    assert "matplotlib" in _names(extras["plot"]) and "torch" in _names(extras["train"])
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    installed = re.search(r'pip install --quiet -e "\.\[([a-z,]+)\]"', make)
    assert installed and set(installed.group(1).split(",")) == set(extras), "make run/test install every extra"


def test_report_integrations_and_the_cli_work_without_qt_or_torch():
    out = run_without({"PySide6", "pyqtgraph", "matplotlib", "torch", "transformers"}, """
        import json, sys
        from lrbench_gui import report
        from lrbench_gui.integrations import build_schedule
        from lrbench_gui.cli import main
        assert report.active() is False
        print(json.dumps(build_schedule(COMPOSITION, 20).lrs()))
        sys.stdout.flush()
        code = main(["policy", "sample", "cosine", "--steps", "3", "--set", "lr=0.1", "--json"])
        blocked = sorted(m for m in sys.modules if m.partition(".")[0] in {"PySide6", "pyqtgraph", "torch"})
        print(code, blocked)
    """.replace("COMPOSITION", repr(COMPOSITION)))
    assert out.returncode == 0, out.stderr
    first, samples, last = out.stdout.splitlines()
    assert len(json.loads(first)) == 20
    assert json.loads(samples)[0] == 0.1 and len(json.loads(samples)) == 3
    assert last == "0 []"


def test_the_exported_torch_code_of_a_composition_runs_without_qt(tmp_path):
    spec = tmp_path / "composed.json"
    spec.write_text(json.dumps(COMPOSITION))
    export = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "policy", "export", "--spec", str(spec),
                             "--to", "torch", "--steps", "30"], capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    assert "from lrbench_gui.integrations import" in export.stdout
    out = run_without({"PySide6", "pyqtgraph", "matplotlib"}, """
        import sys, torch
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        exec(compile(EXPORTED, "exported.py", "exec"))
        seen = []
        for _ in range(30):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        from lrbench_gui.integrations import build_schedule
        assert seen == build_schedule(COMPOSITION, 30).lrs(), seen
        print("ok", sorted(m for m in sys.modules if m.partition(".")[0] in {"PySide6", "pyqtgraph"}))
    """.replace("EXPORTED", repr(export.stdout)).replace("COMPOSITION", repr(COMPOSITION)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok []"


def test_the_app_without_pyside6_says_which_extra_to_install():
    out = run_without({"PySide6", "pyqtgraph"}, """
        import sys
        from lrbench_gui.qt.app import main
        sys.exit(main([]))
    """)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "lrbench-gui: the app needs PySide6: pip install \"lrbench-gui[gui]\""]


def test_a_plot_without_matplotlib_says_which_extra_to_install(tmp_path):
    out = run_without({"matplotlib"}, f"""
        import sys
        from lrbench_gui.cli import main
        sys.exit(main(["policy", "plot", "cosine", "-o", {str(tmp_path / "p.png")!r}]))
    """)
    assert out.returncode != 0 and not (tmp_path / "p.png").exists()
    assert 'pip install "lrbench-gui[plot]"' in out.stderr and "Traceback" not in out.stderr
