"""Study kinds carry their own metadata: ``lrbench study KIND`` flags come from each tuner's
schema with its defaults, the old per-kind commands still parse to the same parameters, a
third-party kind written into the plugins folder gets a working command and a GUI form without
any CLI or GUI code, the form's command line parses back to the same study, and the range test's
record hook keeps the database's LR-range query working (a real study, real subprocesses)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.tuning.kinds import command_line, format_value, study_config, tuner_flags

BUILTIN_KINDS = ["grid", "random", "bayes", "halving", "range-test", "value-range", "horizon", "path-switch",
                 "merge"]


def _help(capsys, argv: list[str]) -> str:
    from lrbench_gui.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


def _flag_sections(text: str) -> dict[str, str]:
    """Each option's help text (whitespace collapsed), keyed by every flag it lists."""
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=  -)", text):
        if not block.startswith("  -"):
            continue  # the usage and description
        head = block.strip().split("  ")[0]
        flat = " ".join(block.split())
        for flag in re.findall(r"--[a-z0-9-]+", head):
            out.setdefault(flag, flat)
    return out


@pytest.mark.parametrize("kind", BUILTIN_KINDS)
def test_study_help_shows_every_parameter_with_its_params_default(capsys, registry, kind):
    cls = registry.tuner(kind)
    defaults = cls.Params().model_dump(mode="json")
    sections = _flag_sections(_help(capsys, ["study", kind, "--help"]))
    assert len(tuner_flags(cls)) == len(defaults)
    for name, default in defaults.items():
        flag = "--" + name.replace("_", "-")
        assert flag in sections, (kind, flag)
        assert f"(default: {format_value(default)}" in sections[flag], (kind, flag, sections[flag])
        if isinstance(default, bool):
            assert "--no-" + flag[2:] in sections[flag]
    assert "--task" in sections and "--resume" in sections and "--json" in sections


def test_horizon_params_hold_the_defaults_users_saw(capsys, registry):
    p = registry.tuner("horizon").Params()
    assert (p.horizons, p.lr_min, p.lr_max) == ([448, 896, 1792], 3.5e-3, 2.8e-2)
    text = " ".join(_help(capsys, ["horizon", "--help"]).split())  # the alias shows the same flags
    assert "(default: 448,896,1792)" in text and "(default: 0.0035)" in text and "(default: 0.028)" in text
    assert "--batch-size N (default: 8)" in text and "(default: 1792); this kind may derive it" in text


def test_study_without_a_kind_lists_every_kind_with_its_title(capsys, registry):
    from lrbench_gui.cli import main

    assert main(["study"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN_KINDS:
        cls = registry.tuner(name)
        assert re.search(rf"^  {re.escape(name)} +{re.escape(cls.display_title())}", out, re.M), name
    assert "(also: lrbench horizon)" in out
    assert main(["study", "nope"]) == 2
    assert "unknown study kind 'nope'" in capsys.readouterr().err


def test_old_flags_of_the_aliases_map_to_the_parameters(registry, tmp_path):
    from lrbench_gui.cli.study import config_from_argv

    db = PolicyDB(registry=registry)
    h = config_from_argv(registry, "horizon", shlex.split(
        "--horizons 4,8 --points 3 --seeds 1 --widen 0 --batch-size 4 --lr-min 3e-3 --lr-max 1.2e-2 --check "
        "--set task.d_model=32"), db)
    assert (h.tuner_params["horizons"], h.tuner_params["points"], h.tuner_params["check"]) == ([4, 8], 3, True)
    assert (h.budget_steps, h.batch_size, h.parallel, h.task_params) == (8, 4, 2, {"d_model": 32})
    assert h.optimizer == {"weight_decay": 0.1, "betas": [0.9, 0.95]} and h.name == "horizon on tinylm-pretrain"
    ps = config_from_argv(registry, "path-switch", ["--versions", "2", "--chunk-steps", "6", "--no-scratch",
                                                    "--no-continued", "--fractions", "0.25,0.5"], db)
    assert ps.budget_steps == 6 and ps.batch_size == 16
    assert {k: ps.tuner_params[k] for k in ("scratch", "continued", "fractions")} == {
        "scratch": False, "continued": False, "fractions": [0.25, 0.5]}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"")
    b.write_bytes(b"")
    m = config_from_argv(registry, "merge", ["--later", str(b), "--earlier", str(a), "--no-write", "--grid", "5"], db)
    assert (m.tuner_params["write"], m.tuner_params["grid"], m.budget_steps) == (False, 5, 1)
    rt = config_from_argv(registry, "range-test", ["--task", "digits-mlp", "--steps", "150", "--start-lr", "1e-5"], db)
    assert (rt.budget_steps, rt.tuner_params["steps"], rt.tuner_params["start_lr"]) == (150, 150, 1e-5)
    assert config_from_argv(registry, "range-test", ["--task", "digits-mlp"], db).budget_steps == 200


def test_cli_refuses_what_the_schema_refuses(registry):
    from lrbench_gui.cli import main

    assert main(["study", "horizon", "--points", "99"]) == 2  # le=40
    assert main(["study", "horizon", "--horizons", "4,x"]) == 2
    assert main(["study", "horizon", "--policy", "cosin"]) == 2
    assert main(["study", "horizon", "--budget-steps", "5"]) == 2  # horizon decides its run length
    assert main(["study", "merge", "--later", "/nope.safetensors", "--earlier", "/nope2.safetensors"]) == 2


def test_command_line_round_trips_through_the_cli_parser(registry, tmp_path):
    from lrbench_gui.cli.study import config_from_argv

    cls = registry.tuner("horizon")
    params = {"horizons": [40, 80, 160], "check": True, "policy": "linear", "warmup": 0.1}
    fields = {"task": "tinylm-pretrain", "task_params": {"val_tokens": 4096}, "seed": 3, "parallel": 4,
              "batch_size": 8, "name": "my study", "db": str(tmp_path / "x y.json")}
    line = command_line(cls, params, fields)
    assert line.startswith("lrbench study horizon --horizons 40,80,160 --policy linear --warmup 0.1 --check ")
    assert "--batch-size" not in line and "--task" not in line  # the kind's defaults
    argv = shlex.split(line)
    got = config_from_argv(registry, "horizon", argv[3:], PolicyDB(registry=registry))
    want = study_config(cls, params, fields)
    assert got.model_dump(exclude={"study_id"}) == want.model_dump(exclude={"study_id"})
    assert command_line(cls, {}, {}) == "lrbench study horizon"


MYKIND = '''
    """A third party's study kind: a few short fixed-LR runs, planned from its own schema."""
    from typing import Literal

    from lrbench_gui.core.params import Params, param
    from lrbench_gui.core.tuner import TrialRequest, Tuner
    from lrbench_gui.hookspecs import hookimpl


    class MyKind(Tuner):
        name = "mykind"
        summary = "Fixed-LR runs at a few LRs"
        title = "My LR probe"
        hint = "Runs the fixed policy at each LR of lrs."
        uses_space = False
        view = "summary"
        study_defaults = {"task": "digits-mlp", "batch_size": 16, "parallel": 2}

        class Params(Params):
            lrs: list[float] = param([0.01, 0.1], "LRs to run.")
            steps: int = param(20, "Steps of each run.", ge=1, unit="steps")
            shape: Literal["flat", "bumpy"] = param("flat", "Ignored; a choice for the schema.")
            verbose: bool = param(True, "Say more.")
            note: str = param("", "A note kept in the summary.")

        @classmethod
        def budget_steps(cls, params):
            return params.steps

        def __init__(self, params, space=None, objective=None, budget=None, seed=0):
            super().__init__(params, space, objective, budget, seed)
            self.asked, self.results = 0, {}

        def ask(self):
            if self.asked >= len(self.params.lrs):
                return None
            lr = self.params.lrs[self.asked]
            self.asked += 1
            return TrialRequest(key=f"m{self.asked - 1}", policy={"name": "fixed", "params": {"lr": lr}},
                                steps=self.params.steps, point={"lr": lr},
                                tags={"asked_after_tells": len(self.results)})

        def tell(self, result):
            self.results[result.key] = result.value

        def done(self):
            return self.asked >= len(self.params.lrs) and len(self.results) == self.asked

        def summary_json(self):
            return {"tuner": self.name, "values": self.results, "note": self.params.note}


    @hookimpl
    def register_tuners(register):
        register(MyKind)
'''


@pytest.fixture
def mykind(lrbench_env):
    (lrbench_env["plugins"] / "mykind.py").write_text(textwrap.dedent(MYKIND))
    from lrbench_gui.plugins import get_registry, reset_registry

    reset_registry()
    registry = get_registry()
    assert "mykind" in registry.tuners, registry.problems
    return registry


def _lrbench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrbench_gui.cli", *argv], capture_output=True, text=True,
                          timeout=300)


def test_a_plugin_kind_gets_its_command_without_cli_code(mykind):
    out = _lrbench("study", "mykind", "--help")
    assert out.returncode == 0, out.stderr
    sections = _flag_sections(out.stdout)
    assert "(default: 0.01,0.1)" in sections["--lrs"] and "(default: 20 steps)" in sections["--steps"]
    assert "{flat,bumpy}" in sections["--shape"] and "--no-verbose" in sections["--verbose"]
    assert "(default: digits-mlp)" in sections["--task"] and "--budget-steps" in sections  # --steps is the kind's
    assert "My LR probe" in _lrbench("study").stdout

    run = _lrbench("study", "mykind", "--lrs", "0.05", "--steps", "10", "--note", "hello", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["note"] == "hello" and list(summary["values"]) == ["m0"]
    (study,) = PolicyDB(registry=mykind).studies()
    assert study["extra"]["config"]["budget_steps"] == 10 and study["name"] == "mykind on digits-mlp"


def test_a_plugin_kind_gets_a_gui_form_whose_command_parses_back(qtbot, mykind, lrbench_env):
    from lrbench_gui.cli.study import config_from_argv
    from lrbench_gui.qt.methods import MethodsPanel, SummaryView
    from lrbench_gui.qt.study_controller import DatabaseJobs

    jobs = DatabaseJobs(lrbench_env["db"])
    try:
        panel = MethodsPanel(mykind, None, jobs)
        qtbot.addWidget(panel)
        assert panel.kinds() == ["horizon", "path-switch", "merge", "mykind"]
        assert [a.text() for a in panel.new_menu.actions()][-1] == "mykind: My LR probe…"
        form = panel.new_study("mykind")
        assert form.task_combo.currentText() == "digits-mlp" and form.batch.value() == 16
        assert not form.steps.isEnabled() and form.steps.value() == 20  # the kind decides it
        form.tuner_form.editor("lrs").setText("0.02, 0.2, 2")
        form.tuner_form.editor("verbose").setChecked(False)
        form.tuner_form.editor("note").setText("a b")
        form.tuner_form.editor("steps").setValue(30)
        form.seed.setValue(5)
        config = form.config()
        assert config.tuner_params["lrs"] == [0.02, 0.2, 2.0] and config.budget_steps == 30
        form.update_command()
        argv = shlex.split(form.command_edit.toPlainText())
        assert argv[:3] == ["lrbench", "study", "mykind"] and "--no-verbose" in argv
        back = config_from_argv(mykind, "mykind", argv[3:], PolicyDB(registry=mykind))
        assert back.model_dump(exclude={"study_id"}) == config.model_dump(exclude={"study_id"})

        view = panel.view("mykind")
        assert isinstance(view, SummaryView)
        view.set_summary({"tuner": "mykind", "values": {"m0": 0.5}, "note": "n"})
        assert view.tree.topLevelItemCount() == 3
    finally:
        jobs.close()


def test_range_test_record_hook_keeps_the_lr_range_query_working(registry, lrbench_env):
    run = _lrbench("range-test", "--task", "digits-mlp", "--steps", "120", "--start-lr", "1e-5", "--end-lr", "10",
                   "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["lr_range"] and summary["chosen"]
    db = PolicyDB(lrbench_env["db"], registry=registry)
    (trial,) = db.trials(study=summary["study"])
    assert trial["kind"] == "range_test"
    assert (trial["metrics"]["lr_min"], trial["metrics"]["lr_max"]) == tuple(summary["lr_range"])
    assert trial["extra"]["range_test"]["chosen"] == summary["chosen"] and "curve" not in trial["extra"]["range_test"]
    rng = db.lr_range("digits-mlp")
    assert rng["range_tests"] == [{"trial": trial["id"], "lower": summary["lr_min"], "upper": summary["lr_max"]}]
    assert rng["suggested"] == [summary["lr_min"], summary["lr_max"]]


def test_the_defaults_table_of_docs_methods_is_what_the_params_say(registry):
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z-]+)` \| `([^`]+)`", doc, re.M)}
    assert sorted(rows) == ["horizon", "merge", "path-switch"]
    for kind, text in rows.items():
        flags = {f.flag: f for f in tuner_flags(registry.tuner(kind))}
        args = text.split()
        i = 0
        while i < len(args):
            flag = args[i]
            name = flag if flag in flags else "--" + flag[5:]  # --no-check
            f = flags[name]
            if f.kind == "bool":
                assert (flag == f.flag) == f.default, (kind, flag)
                i += 1
            else:
                if args[i + 1] != "FILE":
                    assert args[i + 1] == format_value(f.default), (kind, flag)
                i += 2
        assert len({a for a in args if a.startswith("--")}) == len(flags), kind  # every parameter is listed
