"""Render the docs' screenshots of the window: ``policies.png``, ``plugins.png``, and, from a
real run of the demo study (about a minute on a CPU), ``study.png``, ``live.png`` and
``results.png`` (and ``results-lr.png``, the metric against the LR); then the Methods panel's three views, ``methods-horizon.png``,
``methods-path-switch.png`` and ``methods-merge.png``, from the summaries of real horizon,
path-switch and merge studies: the benches' full runs saved in ``docs/figures/<kind>-summary.json``
when present, else the small ones in ``tests/data/methods`` (running those studies takes far
longer than the demo: their records are written into the throwaway database instead).

Every shot is taken twice, in the light theme (``NAME.png``) and the dark one
(``NAME-dark.png``), from the same state; ``run.png`` and ``watch.png`` (two terminal runs the
Watch panel follows) complete the set of panels. A PNG over 200 KB is stored with a 256-colour
palette. Run under a real X server so fonts and styles are what users see::

    xvfb-run -a -s "-screen 0 1700x1100x24" env QT_QPA_PLATFORM=xcb \\
        python docs/screenshots/make_screenshots.py [--out docs/screenshots] [--no-study] [--methods-only]

It uses a throwaway data folder and a plugins folder holding one example third-party plugin
and one that fails to import, so the Plugins panel shows both cases.
"""

from __future__ import annotations

import argparse
import json
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


def wait_for(app, signal, timeout_s: float) -> tuple:
    """Run the event loop until ``signal`` fires (its arguments) or the timeout (None)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    got: list = []

    def fired(*args) -> None:
        got.append(args)
        loop.quit()

    signal.connect(fired)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(fired)
    return got[0] if got else None


#: the most bytes a screenshot may take in the repository
MAX_BYTES = 200_000


def _save(window, filename: Path) -> bool:
    """The window as a PNG; one over :data:`MAX_BYTES` is saved again with a 256-colour palette."""
    if not window.grab().save(str(filename)):
        return False
    if filename.stat().st_size > MAX_BYTES:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with the docs' tools
            return True
        from lrbench_gui.qt.identity import PALETTE

        with Image.open(filename) as image:
            rgb = image.convert("RGB")
        # 240 colours fitted to the picture plus the trials' own 16, so a swatch keeps its exact colour
        fitted = rgb.quantize(256 - len(PALETTE), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        colours = fitted.getpalette()[: 3 * (256 - len(PALETTE))]
        colours += [int(c[i:i + 2], 16) for c in PALETTE for i in (1, 3, 5)]
        palette = Image.new("P", (1, 1))
        palette.putpalette(colours)
        rgb.quantize(palette=palette, dither=Image.Dither.NONE).save(filename, optimize=True)
    return True


def grab(window, app, name: str, filename: Path) -> bool:
    """``name``'s panel as ``filename`` in the light theme, then as ``NAME-dark.png`` in the dark."""
    from lrbench_gui.qt.settings_dialog import apply_theme

    window.show_panel(name)
    settle(app, 300)
    ok = _save(window, filename)
    dark = filename.with_name(filename.stem + "-dark" + filename.suffix)
    apply_theme("dark", window)
    settle(app, 300)
    ok = ok and _save(window, dark)
    apply_theme("light", window)
    settle(app, 100)
    for f in (filename, dark):
        print(f if ok else f"could not write {f}", file=sys.stdout if ok else sys.stderr)
    return ok


def start_terminal_runs(env: dict) -> list:
    """Two short ``lrbench run`` trials in terminals of their own, which the Watch panel follows."""
    import subprocess

    runs = []
    for policy, lr in (("cosine", "0.01"), ("step", "0.03")):
        runs.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("lrbench")), "run", "--task", "digits-mlp", "--policy", policy,
             "--set", f"policy.lr={lr}", "--steps", "150", "--threads", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return runs


def study_shots(window, app, out: Path) -> bool:
    """Run the real demo study, then render the Study, Live and Results panels."""
    study, live, results = window.study_panel, window.live_panel, window.results_panel
    if not study.demo_btn.isEnabled():
        print("the demo study cannot run here (are the tuner plugins installed?); skipping its screenshots",
              file=sys.stderr)
        return True
    study.run_demo()
    if wait_for(app, window.study_controller.studyFinished, 300) is None:
        print("the demo study did not finish in 5 minutes", file=sys.stderr)
        return False
    settle(app, 500)
    # the finished study: every curve, the ranking with the best trial selected (its curves
    # highlighted, its details and log below)
    ranking = window.study_controller.ranking()
    if ranking:
        live._select_ranking(ranking[0]["trial"])
    if not grab(window, app, "Live", out / "live.png"):
        return False

    # the Study panel after the run: the demo in the form, the study under Recent studies
    study.refresh_studies()
    wait_for(app, study.studiesLoaded, 10)
    if study.studies_table.rowCount():
        study.studies_table.selectRow(0)
    if not grab(window, app, "Study", out / "study.png"):
        return False

    # Results: the study's trials, the best three overlaid (LR, loss, evaluation curves), the
    # study's details; then the metric against the LR per family (results-lr.png)
    results.refresh()
    wait_for(app, results.refreshed, 10)
    results.set_filter("digits-mlp")
    best: list[str] = []  # the best trial of each of three families, for contrast
    families: set[str] = set()
    for row in ranking:
        if row.get("value") is not None and row["family"] not in families and len(best) < 3:
            best.append(row["trial"])
            families.add(row["family"])
    results.select_trials(best)
    wait_for(app, results.curvesShown, 10)
    results.recommend_for("digits-mlp", 5)
    wait_for(app, results.recommended, 10)
    results.views.show_view(results.views.curves)
    if not grab(window, app, "Results", out / "results.png"):
        return False
    results.views.show_view(results.views.lr_view)
    return grab(window, app, "Results", out / "results-lr.png")


#: the tuner parameters of the studies whose summaries are in tests/data/methods
METHOD_STUDIES = {
    "horizon": ("horizon: LR* at 40, 80 and 160 steps, 640 predicted",
                {"horizons": [40, 80, 160], "lr_min": 0.003, "lr_max": 0.012, "points": 3, "seeds": 1, "widen": 1,
                 "target_steps": 640, "check": True}),
    "path-switch": ("path switching: 3 versions of 40 steps",
                    {"versions": 3, "chunk_steps": 40, "lr": 0.007, "fractions": [0.25, 0.5], "branch_data": "both"}),
    "merge": ("merge: the last two checkpoints of a 120-step run", {"alpha": 0.0, "evaluations": 6, "grid": 11}),
}


#: the benches' studies (bench/horizon.py, path_switch.py, merge.py full runs), whose summaries are
#: saved as docs/figures/<kind>-summary.json: preferred when present
BENCH_STUDIES = {
    "horizon": ("horizon: 448-3584 steps, 7 LRs, 3 seeds (bench, full)",
                {"horizons": [448, 896, 1792, 3584], "lr_min": 0.00175, "lr_max": 0.014, "points": 7, "seeds": 3,
                 "warmup_steps": 45, "check": True, "target_steps": 14336}),
    "path-switch": ("path switching: 4 versions of 640 steps (bench, full)",
                    {"versions": 4, "chunk_steps": 640, "lr": 0.007, "fractions": [0.25, 0.5], "branch_data": "both"}),
    "merge": ("merge: constant LR, steps 1408 and 1536 (bench, full)", {"alpha": 0.0, "evaluations": 6, "grid": 21}),
}


def method_records() -> list[dict]:
    """Study records (as ``Study.study_record`` writes them) of the saved method summaries."""
    from lrbench_gui.core.tuning.study import StudyConfig

    data = Path(__file__).resolve().parents[2] / "tests" / "data" / "methods"
    figures = Path(__file__).resolve().parents[1] / "figures"
    records = []
    for kind, (name, params) in METHOD_STUDIES.items():
        bench = figures / f"{kind}-summary.json"
        if bench.is_file():
            name, params = BENCH_STUDIES[kind]
            summary = json.loads(bench.read_text())
        else:
            summary = json.loads((data / f"{kind}.json").read_text())
        if kind == "merge":
            params = {**params, "later": summary["later"], "earlier": summary["earlier"]}
        config = StudyConfig(name=name, task="tinylm-pretrain", task_params={"val_tokens": 4096}, tuner=kind,
                             tuner_params=params, policies=["fixed"], trials=1, parallel=2)
        records.append({
            "id": config.study_id, "name": name, "task": config.task, "task_params": config.task_params,
            "tuner": {"name": kind, "params": params}, "objective": {"metric": "val_loss", "mode": "min"},
            "budget": {"steps": config.budget_steps}, "status": "finished",
            "extra": {"config": config.model_dump(mode="json"), "summary": {"tuner": summary}},
        })
    return records


def methods_shots(window, app, out: Path) -> bool:
    """Write the method studies into the window's database, then render each one's view."""
    records = method_records()
    jobs = window.db_jobs
    jobs.submit(lambda db: [db.add_study(r, replace=True) for r in records])
    wait_for(app, jobs.drained, 10)
    panel = window.methods_panel
    window.show_panel("Methods")
    if wait_for(app, panel.studiesLoaded, 10) is None:
        print("the Methods panel did not list the studies", file=sys.stderr)
        return False
    for record in records:
        kind = record["tuner"]["name"]
        if not panel.select_study(record["id"]):
            print(f"the {kind} study is not listed in the Methods panel", file=sys.stderr)
            return False
        if not grab(window, app, "Methods", out / f"methods-{kind}.png"):
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    parser.add_argument("--no-study", action="store_true", help="skip the demo study and its three screenshots")
    parser.add_argument("--methods-only", action="store_true", help="only the Methods panel's three screenshots")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="lrbench-shots-"))
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / "half_life.py").write_text(EXAMPLE_PLUGIN)
    (plugins / "needs_extra.py").write_text(BROKEN_PLUGIN)
    os.environ["LRBENCH_DATA_DIR"] = str(tmp / "data")
    os.environ["LRBENCH_DB"] = str(tmp / "data" / "policies.json")
    os.environ["LRBENCH_PLUGINS_DIR"] = str(plugins)
    os.environ["LRBENCH_LOAD_PLUGINS"] = ""
    terminal_runs = [] if args.methods_only else start_terminal_runs(dict(os.environ))

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
    shots = {} if args.methods_only else {"policies.png": "Policies", "plugins.png": "Plugins", "run.png": "Run",
                                          "recipes.png": "Recipes"}
    for filename, name in shots.items():
        if name not in window.panel_names():
            continue
        if not grab(window, app, name, args.out / filename):
            return 1
    if terminal_runs:
        for run in terminal_runs:
            run.wait(timeout=300)
        settle(app, 2500)  # the Watch panel polls the live folder
        if not grab(window, app, "Watch", args.out / "watch.png"):
            return 1
    ok = args.no_study or args.methods_only or study_shots(window, app, args.out)
    if not (ok and methods_shots(window, app, args.out)):
        window.confirm_close = lambda: True
        window.close()
        return 1
    window.close()
    window.deleteLater()
    settle(app, 50)
    return 0


if __name__ == "__main__":
    sys.exit(main())
