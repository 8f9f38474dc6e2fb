"""Every export a click away (issue 17, part D), offscreen with a real database file: a study and a
selection of trials exported from the Results panel's actions and imported into a fresh database;
the policy code dialog's text against ``lrbench policy export``'s; the Run and Study forms'
command lines parsed back by the CLI's own parser to the same trial and study; the Recipes panel
filling those forms; checkpoints of a trial chosen for a merge; the import prompt's backup."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtGui import QGuiApplication  # noqa: E402

from lrbench_gui.core.db import PolicyDB  # noqa: E402
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial  # noqa: E402
from lrbench_gui.qt.export_dialog import PolicyCodeDialog  # noqa: E402

TIMEOUT = 20_000


@pytest.fixture
def db(tmp_path, registry):
    db = PolicyDB(tmp_path / "policies.json", registry=registry)
    with db.batch():
        db.add_study(synthetic_study("s1"))
        db.add_study(synthetic_study("s2", task="tinylm"))
        db.add_many("trials", [synthetic_trial(i, study="s1", points=50) for i in range(4)])
        db.add_many("trials", [synthetic_trial(i, study="s2", task="tinylm", points=50) for i in range(2)])
    return db


@pytest.fixture
def panel(qtbot, db):
    from lrbench_gui.qt.db_panel import DatabasePanel

    panel = DatabasePanel(db.path)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.refreshed, timeout=TIMEOUT):
        pass
    yield panel
    panel.shutdown()


def _import_counts(tmp_path, registry, path, name):
    fresh = PolicyDB(tmp_path / name, registry=registry)
    report = fresh.import_file(path)
    return report, fresh


def test_export_a_study_and_a_selection_then_import_them(qtbot, panel, db, tmp_path, registry):
    actions = panel.results_actions
    menu = actions.build_menu(["s1-t00001", "s2-t00000"])
    texts = [a.text() for a in menu.actions() if a.text()]
    assert texts[:3] == ["Export study s1…", "Export study s2…", "Export 2 selected trials…"]
    assert "Checkpoints and merge…" in texts and "Copy spec" not in texts  # one trial's actions need one trial
    one = [a.text() for a in actions.build_menu(["s1-t00001"]).actions()]
    assert "Copy spec" in one and "Policy code (DeepSpeed, HF, torch)…" in one
    # a right-click on a row that is not selected selects it and opens its menu
    panel.table.clearSelection()
    first = panel.visible_ids()[0]
    panel.table.customContextMenuRequested.emit(panel.table.visualRect(panel.proxy.index(0, 0)).center())
    assert panel.selected_ids() == [first] and actions.menu is not None
    assert any(a.text() == "Copy spec" for a in actions.menu.actions())
    actions.menu.close()

    study_file = tmp_path / "s1.json.gz"
    with qtbot.waitSignal(actions.exported, timeout=TIMEOUT) as done:
        actions.export_study("s1", study_file)
    assert done.args[0]["counts"] == {"studies": 1, "trials": 4, "policies": 0}
    assert "Exported study s1: 1 study and 4 trials" in panel.status_label.text()
    # the same bytes as the CLI's `lrbench db export --study s1 --no-policies`
    cli_file = tmp_path / "cli.json.gz"
    db.export(cli_file, study_ids=["s1"], include_policies=False)
    assert study_file.read_bytes() == cli_file.read_bytes()
    report, fresh = _import_counts(tmp_path, registry, study_file, "a.json")
    assert report.added["studies"] == 1 and report.added["trials"] == 4
    assert sorted(t["id"] for t in fresh.trials()) == [f"s1-t0000{i}" for i in range(4)]

    picked = tmp_path / "picked.json"
    with qtbot.waitSignal(actions.exported, timeout=TIMEOUT) as done:
        actions.export_trials(["s1-t00002", "s2-t00001"], picked)
    assert done.args[0]["counts"] == {"studies": 2, "trials": 2, "policies": 0}
    report, fresh = _import_counts(tmp_path, registry, picked, "b.json")
    assert report.added == {"studies": 2, "trials": 2, "policies": 0}
    from lrbench_gui.cli import main

    same = tmp_path / "same.json"
    assert main(["db", "export", "--db", str(db.path), "--trial", "s1-t00002", "--trial", "s2-t00001", "--no-policies",
                 "-o", str(same)]) == 0
    assert same.read_bytes() == picked.read_bytes()
    assert main(["db", "export", "--db", str(db.path), "--trial", "x", "--study", "s1", "-o", str(same)]) == 2
    assert fresh.get("s2-t00001")["curves"] == db.get("s2-t00001")["curves"]

    # validated on import like the whole-database export: a damaged selection is refused whole
    doc = json.loads(picked.read_text())
    doc["trials"][0]["status"] = "exploded"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    from lrbench_gui.core.db import ImportRefused

    with pytest.raises(ImportRefused, match="status"):
        PolicyDB(tmp_path / "c.json", registry=registry).import_file(bad)

    # an unknown trial says so, in the banner and the signal; nothing is written
    with qtbot.waitSignal(actions.failed, timeout=TIMEOUT) as failed:
        actions.export_trials(["nope"], tmp_path / "nope.json")
    assert "no trial 'nope'" in failed.args[0] and not (tmp_path / "nope.json").exists()


def test_copy_spec_policy_code_equals_the_cli_export(qtbot, panel, db, registry, capsys):
    from lrbench_gui.cli import main

    actions = panel.results_actions
    with qtbot.waitSignal(actions.specCopied, timeout=TIMEOUT):
        actions.copy_spec("s1-t00003")
    spec = db.get("s1-t00003")["policy"]
    assert json.loads(QGuiApplication.clipboard().text()) == spec

    with qtbot.waitSignal(actions.codeOpened, timeout=TIMEOUT) as opened:
        actions.open_code("s1-t00003")
    dialog = opened.args[0]
    steps = dialog.steps_spin.value()
    assert steps == db.get("s1-t00003")["budget"]["steps"]
    for target in ("deepspeed", "hf", "torch"):
        dialog.set_format(target)
        status = main(["policy", "export", json.dumps(spec), "--to", target, "--steps", str(steps)])
        out = capsys.readouterr()
        assert dialog.code().strip() == out.out.strip()
        assert (status == 3) == (dialog.code() == "")
        if not dialog.code():  # no equivalent: the dialog says what the CLI says
            assert out.err.strip() in dialog.note_text()
        else:
            assert dialog.note_text().startswith(("Exact", "Not exact"))
    dialog.set_format("spec")
    assert json.loads(dialog.code())["name"] == spec["name"]
    dialog.copy()
    assert QGuiApplication.clipboard().text() == dialog.code()
    dialog.close()


def _same(a: dict, b: dict, registry, drop: tuple[str, ...]) -> None:
    """Two configs as dicts, equal once ids are dropped and parameters filled with their defaults."""
    from lrbench_gui.core.spec import parse_spec

    a, b = (json.loads(json.dumps(x)) for x in (a, b))
    for x in (a, b):
        for key in drop:
            x.pop(key, None)
        task = registry.tasks[x["task"]].obj
        x["task_params"] = {**task.Params().model_dump(mode="json"), **x["task_params"]}
        if "policy" in x:
            x["policy"] = parse_spec(x["policy"], registry).to_json()
        if "tuner_params" in x:
            tuner = registry.tuners[x["tuner"]].obj
            x["tuner_params"] = {**tuner.Params().model_dump(mode="json"), **x["tuner_params"]}
    assert a == b


def test_run_form_command_line_parses_back_to_the_same_trial(qtbot, registry, tmp_path):
    import shlex

    from lrbench_gui.cli import build_parser
    from lrbench_gui.cli.run import build_trial
    from lrbench_gui.qt.run_panel import RunPanel

    panel = RunPanel(registry)
    qtbot.addWidget(panel)
    panel.task_combo.setCurrentText("digits-mlp")
    panel.policy_combo.setCurrentText("step")
    panel.policy_form.set_values({"lr": 0.2, "gamma": 0.5})
    panel.steps.setValue(120)
    panel.batch.setValue(16)
    panel.optimizer.setCurrentText("sgd")
    panel.precision.setCurrentText("bf16-mixed")
    panel.seed.setValue(3)
    panel.checkpoint_every.setValue(40)
    panel.command_line_db = lambda: tmp_path / "elsewhere.json"
    panel.command_line.refresh()
    line = panel.command_line.text()
    assert line.startswith("lrbench run --task digits-mlp --policy step --set policy.lr=0.2 --set policy.gamma=0.5")
    assert "--checkpoint-every 40" in line and f"--db {tmp_path / 'elsewhere.json'}" in line
    cfg = panel.build_trial()
    assert cfg.checkpoint_every == 40
    args = build_parser().parse_args(shlex.split(line)[1:])
    _same(cfg.model_dump(mode="json"), build_trial(args).model_dump(mode="json"), registry, ("trial_id",))
    panel.command_line.copy()
    assert QGuiApplication.clipboard().text() == line

    panel.policy_form.set_values({"lr": -1.0})  # an invalid form says why there is no line
    panel.command_line.refresh()
    assert panel.command_line.text() == "" and "No command line yet" in panel.command_line.note_text()


def test_study_form_command_line_parses_back_to_the_same_study(qtbot, registry, tmp_path):
    import shlex

    from lrbench_gui.cli import build_parser
    from lrbench_gui.cli.tune import make_study
    from lrbench_gui.qt.db_jobs import DatabaseJobs
    from lrbench_gui.qt.study.panel import StudyPanel
    from lrbench_gui.qt.study_controller import StudyController
    from lrbench_gui.qt.trial_runner import TrialRunner

    jobs = DatabaseJobs(tmp_path / "db.json", registry=registry)
    ctl = StudyController(TrialRunner(1, workdir=tmp_path / "trials"), jobs, registry)
    panel = StudyPanel(registry, ctl, jobs)
    qtbot.addWidget(panel)
    panel.task_combo.setCurrentText("digits-mlp")
    panel.tuner_combo.setCurrentText("grid")
    panel.set_policies(["cosine", "step"])
    panel.policy_choice.set_lr_range((1e-4, 0.1))
    panel.budget_steps.setValue(120)
    panel.trials.setValue(3)
    panel.parallel.setValue(2)
    panel.budget_box.seed.setValue(2)
    panel.metric_combo.setCurrentText("val_acc")
    panel.evaluators_edit.setText("heldout-loss")
    panel.name_edit.setText("my study")
    panel.command_line.refresh()
    line, note = panel.command_line.text(), panel.command_line.note_text()
    assert line.startswith("lrbench tune --task digits-mlp --tuner grid --policies ") and note == ""
    assert f"--db {tmp_path / 'db.json'}" in line
    config = panel.config()
    args = build_parser().parse_args(shlex.split(line)[1:])
    study = make_study(args, PolicyDB(tmp_path / "db.json", registry=registry))
    _same(config.model_dump(mode="json"), study.config.model_dump(mode="json"), registry, ("study_id",))

    # the per-policy LR ranges ride along as --override; what no flag carries is said, not dropped
    panel.set_policies(["cosine", "triangle2"], {"triangle2": (1e-3, 1e-2)})
    panel.command_line.refresh()
    line = panel.command_line.text()
    assert "--override 'triangle2.min_lr=[0.001,0.01]' --override 'triangle2.max_lr=[0.001,0.01]'" in line
    study = make_study(build_parser().parse_args(shlex.split(line)[1:]), PolicyDB(tmp_path / "db.json", registry=registry))
    _same(panel.config().model_dump(mode="json"), study.config.model_dump(mode="json"), registry, ("study_id",))
    # the checkpoints' spin box rides along as --checkpoint-every and parses back
    panel.budget_box.checkpoint_every.setValue(50)
    panel.command_line.refresh()
    line, note = panel.command_line.text(), panel.command_line.note_text()
    assert "--checkpoint-every 50" in line and note == ""
    study = make_study(build_parser().parse_args(shlex.split(line)[1:]), PolicyDB(tmp_path / "db.json", registry=registry))
    assert study.config.checkpoint_every == panel.config().checkpoint_every == 50
    jobs.close()


def test_window_recipes_fill_the_forms_and_checkpoints_open_a_merge(qtbot, settings_file, lrbench_env, registry, tmp_path):
    from PySide6.QtCore import QSettings

    from lrbench_gui.core.db.recipes import SEED_POLICIES
    from lrbench_gui.qt.main_window import MainWindow
    from lrbench_gui.qt.results_actions import trial_checkpoints

    # a trial that wrote two checkpoints (as the trainer names them), in the window's database
    folder = tmp_path / "trial" / "checkpoints"
    folder.mkdir(parents=True)
    paths = [folder / f"step-{n}.safetensors" for n in (40, 80)]
    for p in paths:
        p.write_bytes(b"{}")
    trial = synthetic_trial(0, study="s1", task="digits-mlp", points=20)
    trial["extra"] = {**trial.get("extra", {}), "checkpoints": [str(p) for p in paths] + [str(tmp_path / "model")]}
    store = PolicyDB(lrbench_env["db"], registry=registry)
    with store.batch():
        store.add_study(synthetic_study("s1", task="digits-mlp"))
        store.add_trial(trial)
    stored = store.get(trial["id"])
    assert [c.step for c in trial_checkpoints(stored)] == [40, 80]  # the model folder is not a checkpoint

    win = MainWindow(settings=QSettings(str(settings_file), QSettings.Format.IniFormat))
    win.confirm_close = lambda: True
    qtbot.addWidget(win)
    panel = win.recipes_panel
    assert win.panel_names()[-2:] == ["Recipes", "Plugins"]
    with qtbot.waitSignal(panel.loaded, timeout=TIMEOUT) as loaded:
        win.show_panel("Recipes")
        win.show()
    assert loaded.args == [len(SEED_POLICIES)]
    assert "saved" not in {panel.table.item(i, 1).text() for i in range(panel.table.rowCount())}
    panel.search.setText("vicuna")
    assert panel.visible_ids() == ["recipe:vicuna-7b"]
    panel.search.setText("")
    panel.kind_combo.setCurrentIndex(panel.kind_combo.findData("rule"))
    assert set(panel.visible_ids()) == {s["id"] for s in SEED_POLICIES if s["kind"] == "rule_of_thumb"}
    panel.kind_combo.setCurrentIndex(panel.kind_combo.findData("all"))

    # Use in Run: the recipe's policy, its warmup ratio as steps of the run's length, its optimizer
    assert panel.select("recipe:alpaca-7b")
    win.run_panel.steps.setValue(400)
    panel.run_button.click()
    assert win.current_panel() == "Run"
    run = win.run_panel
    spec = run.policy_spec()
    assert spec["name"] == "warmup_decay" and spec["params"]["warmup_num_steps"] == 12  # 3 % of 400
    assert spec["params"]["warmup_max_lr"] == pytest.approx(2e-5) and run.optimizer.currentText() == "adamw"
    assert "not a task here" in win.statusBar().currentMessage()

    # Use in Study: the family ticked, a decade either side of the recipe's LR
    assert panel.select("rule:sgd")
    panel.study_button.click()
    assert win.current_panel() == "Study"
    study = win.study_panel
    assert study.checked_policies() == ["fixed"] and study.policy_choice.lr_range() == pytest.approx((0.01, 1.0))
    assert study.budget_box.optimizer.currentText() == "sgd"

    # a range-only rule cannot fill the Run form: it says so and changes nothing
    assert panel.select("rule:transformer-finetuning")
    assert not panel.run_button.isEnabled() and not panel.code_button.isEnabled()

    # the Policies panel's spec box gains Policy code…
    assert win.policy_panel.spec_box.code_button.text() == "Policy code…"
    assert win.live_panel.code_button.text() == "Policy code…" and win.live_panel.show_policy_code() is None  # no study yet
    spec = win.policy_panel.current_spec()
    win.policy_panel.spec_box.code_button.click()
    dialog = win.policy_panel.spec_box.findChild(PolicyCodeDialog)
    assert dialog is not None and dialog.spec == spec and dialog.steps_spin.value() == win.policy_panel.total_steps()
    dialog.close()

    # Results: the trial's checkpoints, chosen for a merge, fill the Methods panel's merge form
    actions = win.results_panel.results_actions
    win.show_panel("Results")
    results = win.results_panel
    qtbot.waitUntil(lambda: trial["id"] in results.visible_ids(), timeout=TIMEOUT)
    results.select_trials([trial["id"]])
    view = actions.checkpoints_view
    results.side_tabs.setCurrentWidget(view)
    qtbot.waitUntil(view.merge_button.isEnabled, timeout=TIMEOUT)
    assert "step-40.safetensors" in view.text.toPlainText() and "model" not in view.text.toPlainText()
    with qtbot.waitSignal(actions.mergeRequested, timeout=TIMEOUT) as asked:
        actions.request_merge([trial["id"]], choose=False)
    assert asked.args[0]["tuner_params"] == {"later": str(paths[1]), "earlier": str(paths[0])}
    assert win.current_panel() == "Methods"
    form = win.methods_panel.current_widget()
    assert form.kind == "merge" and form.task_combo.currentText() == "digits-mlp"
    config = form.config()
    assert (config.tuner_params["later"], config.tuner_params["earlier"]) == (str(paths[1]), str(paths[0]))
    win.close()


@pytest.fixture
def settings_file(tmp_path):
    return tmp_path / "lrbench.ini"


def test_import_prompt_promises_only_the_backup_it_makes(qtbot, panel, db, tmp_path, registry, capsys):
    from lrbench_gui.cli import main
    from lrbench_gui.qt.db_panel import DatabasePanel
    from lrbench_gui.qt.results_actions import import_question

    other = PolicyDB(tmp_path / "other.json", registry=registry)
    other.add_study(synthetic_study("s9"))
    other.add_trial(synthetic_trial(0, study="s9", points=20))
    share = tmp_path / "s9.json"
    other.export(share, study_ids=["s9"], include_policies=False)

    # a database with no file yet: no backup is promised
    fresh = DatabasePanel(tmp_path / "fresh.json")
    qtbot.addWidget(fresh)
    with qtbot.waitSignal(fresh.importFinished, timeout=TIMEOUT) as checked:
        fresh.import_from(share, dry_run=True)
    assert checked.args[0]["db_exists"] is False
    assert "nothing to back up" in import_question(checked.args[0]) and "backup of" not in import_question(checked.args[0])
    fresh.shutdown()

    # a database with a file: the backup is promised, made, named, and listed by lrbench db stats
    with qtbot.waitSignal(panel.importFinished, timeout=TIMEOUT) as checked:
        panel.import_from(share, dry_run=True)
    question = import_question(checked.args[0])
    assert checked.args[0]["db_exists"] is True and f"taken first into {tmp_path / 'policies-backups'}" in question
    with qtbot.waitSignal(panel.importFinished, timeout=TIMEOUT) as imported:
        panel.import_from(share, dry_run=False)
    backup = imported.args[0]["backup"]
    assert backup and f"Backup of the previous database: {backup}" in imported.args[0]["summary"]
    assert main(["db", "stats", "--db", str(db.path)]) == 0
    assert f"backups:  1 in {tmp_path / 'policies-backups'}, latest {backup}" in capsys.readouterr().out


def test_a_record_keeps_the_latest_checkpoints(qtbot, registry):
    from lrbench_gui.core.runs.protocol import encode, parse_line
    from lrbench_gui.core.runs.recorder import TrialRecorder
    from lrbench_gui.core.runs.trial import load_trial
    from lrbench_gui.qt.results_actions import CheckpointDialog, merge_prefill, trial_checkpoints

    cfg = load_trial({"task": "digits-mlp", "policy": {"name": "fixed", "params": {"lr": 0.1}}, "budget": {"steps": 700},
                      "checkpoint_every": 10})
    rec = TrialRecorder(cfg)
    for n in range(10, 710, 10):  # 70 checkpoints: more than a record keeps
        rec.feed(parse_line(encode("checkpoint", cfg.trial_id, step=n, path=f"/x/step-{n:07d}.safetensors", lr=0.1)))
    rec.finish(0, [])
    record = rec.record()
    steps = [c.step for c in trial_checkpoints(record)]
    assert len(steps) == 64 and steps[-1] == 700  # the latest are kept: what a merge takes
    assert merge_prefill([record])["tuner_params"] == {"later": "/x/step-0000700.safetensors",
                                                       "earlier": "/x/step-0000690.safetensors"}
    with pytest.raises(ValueError, match="two checkpoints"):
        merge_prefill([{**record, "extra": {"checkpoints": []}}])
    # the chooser starts on the same two, and any two can be picked instead
    dialog = CheckpointDialog(trial_checkpoints(record), chosen=("/x/step-0000700.safetensors", "/x/step-0000690.safetensors"))
    qtbot.addWidget(dialog)
    assert dialog.chosen() == ("/x/step-0000700.safetensors", "/x/step-0000690.safetensors")
    dialog.earlier.setCurrentIndex(0)
    later, earlier = dialog.chosen()
    assert merge_prefill([record], later, earlier)["tuner_params"]["earlier"] == "/x/step-0000070.safetensors"
    with pytest.raises(ValueError, match="two different"):
        merge_prefill([record], later, later)
