"""The policy database: records, batches, other writers, corruption, migration, export/import,
recommendations. Real TinyDB files in tmp_path; the registry of the built-in plugins."""

from __future__ import annotations

import gzip
import json

import pytest
from tinydb import TinyDB

from lrbench_gui.core.db import migrations
from lrbench_gui.core.db import (
    SCHEMA_VERSION,
    DatabaseCorrupt,
    DatabaseError,
    DatabaseTooNew,
    ImportRefused,
    PolicyDB,
    RecordInvalid,
)
from lrbench_gui.core.db.curves import unpack
from lrbench_gui.core.db.sample import synthetic_range_test, synthetic_study, synthetic_trial
from lrbench_gui.core.db.storage import list_backups
from lrbench_gui.core.db.recipes import SEED_POLICIES


@pytest.fixture
def db(tmp_path, registry):
    return PolicyDB(tmp_path / "policies.json", registry=registry)


def _fill(db: PolicyDB, n: int = 12, study: str = "s1", task: str = "digits") -> None:
    with db.batch():
        db.add_study(synthetic_study(study, task=task))
        db.add_many("trials", [synthetic_trial(i, study=study, task=task, points=200) for i in range(n)])


def test_fresh_database_is_seeded_and_created_on_first_write(db):
    assert not db.path.exists()
    assert {p["id"] for p in db.policies()} == {r["id"] for r in SEED_POLICIES}
    assert db.stats()["counts"] == {"studies": 0, "trials": 0, "policies": len(SEED_POLICIES)}
    assert not db.path.exists(), "reading must not create the file"
    db.add_study(synthetic_study())
    on_disk = json.loads(db.path.read_text())
    assert on_disk["_meta"]["1"]["schema"] == SCHEMA_VERSION
    assert len(on_disk["policies"]) == len(SEED_POLICIES) and len(on_disk["studies"]) == 1


def test_default_path_follows_lrbench_db(lrbench_env, registry):
    db = PolicyDB(registry=registry)
    assert db.path == lrbench_env["db"].absolute()


def test_added_record_is_normalized_hashed_and_packed(db):
    _fill(db, n=1)
    trial = db.get("s1-t00000")
    assert trial["_table"] == "trials"
    assert len(trial["hash"]) == 64
    assert trial["curves"]["loss"]["encoding"] == "varint-f32shuffle-zlib"
    steps, values = db.curves("s1-t00000")["loss"]
    assert len(steps) == 200 and steps[0] == 0 and values.dtype.name == "float32"
    assert trial["budget"] == {"steps": 10_000, "epochs": None, "tokens": None, "seconds": None}


def test_long_plain_curves_are_bounded_keeping_ends_and_extremes(db):
    db.add_study(synthetic_study())
    values = [1.0] * 5000
    values[1234] = 9.0  # a spike
    values[4321] = 0.01  # the best loss
    rec = synthetic_trial(0, points=10)
    rec["curves"] = {"loss": {"steps": list(range(5000)), "values": values}}
    db.add_trial(rec)
    steps, vals = db.curves(rec["id"])["loss"]
    assert len(steps) <= 1000
    assert steps[0] == 0 and steps[-1] == 4999
    assert 1234 in steps and 4321 in steps
    assert vals.max() == pytest.approx(9.0) and vals.min() == pytest.approx(0.01)


def test_adding_the_same_record_twice_is_a_no_op_and_a_different_one_is_refused(db):
    _fill(db, n=2)
    before = db.path.read_bytes()
    db.add_trial(synthetic_trial(0, points=200))
    assert db.path.read_bytes() == before
    changed = synthetic_trial(0, points=200)
    changed["metrics"]["eval_loss"] = 123.0
    with pytest.raises(RecordInvalid, match="already exists with different content"):
        db.add_trial(changed)
    assert db.path.read_bytes() == before
    db.add_trial(changed, replace=True)
    assert db.get("s1-t00000")["metrics"]["eval_loss"] == 123.0
    assert len(db.trials()) == 2


def test_invalid_record_names_the_record_and_field(db):
    db.add_study(synthetic_study())
    bad = synthetic_trial(3, points=20)
    bad["metrics"]["eval_loss"] = float("nan")
    with pytest.raises(RecordInvalid, match=r"trial 's1-t00003': field metrics\.eval_loss: must be a finite number"):
        db.add_trial(bad)
    orphan = synthetic_trial(4, study="nope", points=20)
    with pytest.raises(RecordInvalid, match="no study 'nope'"):
        db.add_trial(orphan)


def test_known_policy_with_bad_params_is_refused_unknown_policy_is_kept(db):
    db.add_study(synthetic_study())
    bad = synthetic_trial(0, points=20)
    bad["policy"] = {"name": "cosine", "params": {"lr": -1.0}}
    with pytest.raises(RecordInvalid, match=r"policy\.params\.lr"):
        db.add_trial(bad)
    colleague = synthetic_trial(1, points=20)
    colleague["policy"] = {"sequence": [{"name": "warmup", "params": {"warmup_num_steps": 10}}, {"name": "their_fancy_policy", "params": {"gamma": 0.5}}], "boundaries": [10]}
    db.add_trial(colleague)
    assert db.get(colleague["id"])["policy"]["sequence"][1]["name"] == "their_fancy_policy"


def test_a_failed_batch_writes_nothing_and_forgets_its_changes(db):
    _fill(db, n=2)
    before = db.path.read_bytes()
    with pytest.raises(RuntimeError):
        with db.batch():
            db.add_trial(synthetic_trial(7, points=20))
            assert db.get("s1-t00007") is not None
            raise RuntimeError("boom")
    assert db.path.read_bytes() == before
    assert db.get("s1-t00007") is None


def test_batch_writes_the_file_once(db, monkeypatch):
    from lrbench_gui.core.db import storage as db_storage

    writes = []
    real = db_storage.atomic_write_bytes
    monkeypatch.setattr(db_storage.AtomicJSONStorage, "flush", lambda self: (writes.append(1), real(self.path, self.serialize()), setattr(self, "dirty", False)))
    with db.batch():
        db.add_study(synthetic_study())
        for i in range(5):
            db.add_trial(synthetic_trial(i, points=20))
    assert len(writes) == 1
    assert len(PolicyDB(db.path, registry=db.registry).trials()) == 5


def test_two_handles_never_lose_each_others_records(tmp_path, registry):
    a = PolicyDB(tmp_path / "p.json", registry=registry)
    b = PolicyDB(tmp_path / "p.json", registry=registry)
    a.add_study(synthetic_study())
    b.add_trial(synthetic_trial(1, points=20))  # b must see a's study first
    a.add_trial(synthetic_trial(2, points=20))  # a must see b's trial before writing
    fresh = PolicyDB(tmp_path / "p.json", registry=registry)
    assert sorted(t["id"] for t in fresh.trials()) == ["s1-t00001", "s1-t00002"]
    assert sorted(t["id"] for t in a.trials()) == sorted(t["id"] for t in b.trials())


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b'{"_meta": {"1": {"schema": 1}}, "trials": {"1": {"id": "x"', "not valid JSON"),
        (b"[1, 2, 3]", "JSON object of tables"),
        (b'{"trials": [1, 2]}', "not a TinyDB table"),
        (b'{"_meta": {"1": {"schema": 1}}, "trials": {"1": {"v": NaN}}}', "NaN"),
        (b'{"trials": {"1": {"id": "\xff"}}}', "UTF-8"),
    ],
)
def test_corrupt_database_is_refused_naming_the_latest_backup(tmp_path, registry, content, reason):
    path = tmp_path / "p.json"
    db = PolicyDB(path, registry=registry)
    _fill(db, n=1)
    backup = db.backup()
    path.write_bytes(content)
    with pytest.raises(DatabaseCorrupt) as info:
        PolicyDB(path, registry=registry)
    message = str(info.value)
    assert reason in message and str(path) in message and str(backup) in message
    assert path.read_bytes() == content, "a corrupt file is never replaced"


def test_corrupt_database_without_backups_says_so(tmp_path, registry):
    path = tmp_path / "p.json"
    path.write_text('{"trials": ')
    with pytest.raises(DatabaseCorrupt, match="There is no backup"):
        PolicyDB(path, registry=registry)


def test_corruption_seen_by_an_open_handle_blocks_writes(db):
    _fill(db, n=1)
    db.path.write_text("{broken")
    with pytest.raises(DatabaseCorrupt):
        db.add_trial(synthetic_trial(5, points=20))
    assert db.path.read_text() == "{broken"


def test_newer_schema_is_refused(tmp_path, registry):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"_meta": {"1": {"schema": SCHEMA_VERSION + 1}}}))
    with pytest.raises(DatabaseTooNew, match="newer lrbench"):
        PolicyDB(path, registry=registry)


def test_plain_tinydb_file_is_migrated_after_a_backup(tmp_path, registry):
    path = tmp_path / "p.json"
    legacy = TinyDB(path)
    legacy.table("studies").insert({"id": "old", "name": "from a prototype"})
    legacy.table("trials").insert(
        {
            "id": "t1",
            "study": "old",
            "task": "digits",
            "policy": {"name": "fixed", "params": {"lr": 0.01}},
            "status": "completed",
            "metrics": {"eval_loss": 0.3},
            "curves": {"loss": {"steps": [0, 1, 2], "values": [2.0, 1.0, 0.5]}},
        }
    )
    legacy.table("notes").insert({"text": "kept as it is"})
    legacy.close()
    original = path.read_bytes()
    db = PolicyDB(path, registry=registry)
    assert db.schema == SCHEMA_VERSION
    backups = list_backups(path)
    assert len(backups) == 1 and backups[0].read_bytes() == original and "migrate-v0" in backups[0].name
    trial = db.get("t1")
    assert trial["curves"]["loss"]["encoding"] == "varint-f32shuffle-zlib" and len(trial["hash"]) == 64
    assert len(db.policies()) == len(SEED_POLICIES)
    on_disk = json.loads(path.read_text())
    assert on_disk["notes"] == {"1": {"text": "kept as it is"}}


def test_failed_migration_leaves_the_file(tmp_path, registry):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"trials": {"1": {"id": "t1", "task": "x", "status": "weird", "policy": {"name": "fixed"}}}}))
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match=r"trials record 1 \(id 't1'\): field status"):
        PolicyDB(path, registry=registry)
    assert path.read_bytes() == before


def test_registered_migrations_run_in_order(tmp_path, registry, monkeypatch):
    path = tmp_path / "p.json"
    PolicyDB(path, registry=registry).add_study(synthetic_study())
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)

    def bump(data):
        data["_meta"]["1"]["schema"] = SCHEMA_VERSION + 1
        data["_meta"]["1"]["migrated"] = True
        return data

    monkeypatch.setitem(migrations.MIGRATIONS, SCHEMA_VERSION, bump)
    db = PolicyDB(path, registry=registry)
    assert db.schema == SCHEMA_VERSION + 1
    assert json.loads(path.read_text())["_meta"]["1"]["migrated"] is True
    assert any(f"migrate-v{SCHEMA_VERSION}" in b.name for b in list_backups(path))


@pytest.mark.parametrize("name", ["share.json", "share.json.gz"])
def test_export_import_export_is_identical(tmp_path, registry, name):
    source = PolicyDB(tmp_path / "a.json", registry=registry)
    _fill(source, n=15, study="s1")
    _fill(source, n=5, study="s2", task="tinylm")
    source.add_trial(synthetic_range_test("rt1", study="s1"))
    first = tmp_path / name
    info = source.export(first, study_ids=["s1"])
    assert info["counts"]["studies"] == 1 and info["counts"]["trials"] == 16
    target = PolicyDB(tmp_path / "b.json", registry=registry)
    report = target.import_file(first)
    assert report.added["trials"] == 16 and report.added["studies"] == 1
    assert report.skipped["policies"] == len(SEED_POLICIES)
    second = tmp_path / ("again-" + name)
    target.export(second, study_ids=["s1"])
    assert second.read_bytes() == first.read_bytes()
    if name.endswith(".gz"):
        doc = json.loads(gzip.decompress(first.read_bytes()))
        assert doc["format"] == "lrbench-db-export" and doc["version"] == 1
    again = target.import_file(first)
    assert not any(again.added.values()) and again.skipped["trials"] == 16


def test_dry_run_reports_and_writes_nothing(tmp_path, db):
    _fill(db, n=3)
    export = tmp_path / "e.json"
    db.export(export)
    target = PolicyDB(tmp_path / "t.json", registry=db.registry)
    target.add_study(synthetic_study("mine"))
    before = target.path.read_bytes()
    report = target.import_file(export, dry_run=True)
    assert report.dry_run and report.added == {"studies": 1, "trials": 3, "policies": 0}
    assert "would add 1 study, 3 trials" in report.summary()
    assert target.path.read_bytes() == before
    assert list_backups(target.path) == []


def test_import_takes_a_backup_and_conflicts_follow_on_conflict(tmp_path, db):
    _fill(db, n=3)
    export = tmp_path / "e.json"
    db.export(export)
    target = PolicyDB(tmp_path / "t.json", registry=db.registry)
    target.add_study(synthetic_study())
    mine = synthetic_trial(1, points=200)
    mine["notes"] = "my own run with the same id"
    target.add_trial(mine)
    before = target.path.read_bytes()
    with pytest.raises(ImportRefused) as info:
        target.import_file(export)
    assert "trials[1] (id 's1-t00001'): field id: a record with this id is already in the database" in str(info.value)
    assert target.path.read_bytes() == before
    kept = target.import_file(export, on_conflict="keep")
    assert kept.kept["trials"] == 1 and kept.added["trials"] == 2 and kept.skipped["studies"] == 1
    assert target.get("s1-t00001")["notes"] == "my own run with the same id"
    backups = list_backups(target.path)
    assert len(backups) == 1 and backups[0].read_bytes() == before
    replaced = target.import_file(export, on_conflict="replace")
    assert replaced.replaced["trials"] == 1
    assert target.get("s1-t00001")["notes"] == ""


def test_import_flags_policies_not_installed_here(tmp_path, db):
    db.add_study(synthetic_study())
    rec = synthetic_trial(0, points=20)
    rec["policy"] = {"name": "colleague_policy", "params": {"x": 1}}
    db.add_trial(rec)
    export = tmp_path / "e.json"
    db.export(export)
    target = PolicyDB(tmp_path / "t.json", registry=db.registry)
    report = target.import_file(export)
    assert report.unknown_policies == ["colleague_policy"]
    assert "not installed here" in report.summary()


def test_export_of_an_unknown_study_is_an_error(tmp_path, db):
    _fill(db, n=1)
    with pytest.raises(DatabaseError, match="no study 'nope'"):
        db.export(tmp_path / "x.json", study_ids=["nope"])
    assert not (tmp_path / "x.json").exists()


def test_recommend_ranks_policies_by_mean_metric_with_cost(db):
    db.add_study(synthetic_study())
    recs = []
    for i, (lr, losses) in enumerate([(1e-3, [0.22, 0.30]), (1e-2, [0.5]), (1e-4, [0.25, 0.26])]):
        for seed, loss in enumerate(losses):
            t = synthetic_trial(i, seed=seed, points=20)
            t["policy"] = {"name": "fixed", "params": {"lr": lr}}
            t["metrics"] = {"eval_loss": loss}
            t["cost"] = {"steps": 100 * (i + 1), "tokens": None, "seconds": 10.0 * (i + 1)}
            recs.append(t)
    failed = synthetic_trial(9, points=20)
    failed["status"] = "diverged"
    failed["metrics"] = {"eval_loss": 0.0}
    recs.append(failed)
    db.add_many("trials", recs)
    out = db.recommend("digits", k=2)
    assert out["metric"] == "eval_loss" and out["mode"] == "min" and out["considered"] == 5
    assert [r["label"] for r in out["results"]] == ["fixed(lr=0.0001)", "fixed(lr=0.001)"]
    top = out["results"][0]
    assert top["n"] == 2 and top["mean"] == pytest.approx(0.255) and top["best"] == 0.25
    assert top["cost"]["steps"] == 300 and top["mean_cost"]["seconds"] == 30.0
    assert db.recommend("nothing-here")["results"] == []


def test_recommend_prefers_the_model_family_and_falls_back(db):
    db.add_study(synthetic_study())
    a = synthetic_trial(0, points=20, family="llama")
    a["metrics"]["eval_loss"] = 0.9
    b = synthetic_trial(1, points=20, family="gpt-j")
    b["metrics"]["eval_loss"] = 0.1
    db.add_many("trials", [a, b])
    llama = db.recommend("digits", model_family="LLaMA")
    assert llama["scope"] == "task+model" and [r["best_trial"] for r in llama["results"]] == [a["id"]]
    other = db.recommend("digits", model_family="mistral")
    assert other["scope"].startswith("task (no trial matched") and other["results"][0]["best_trial"] == b["id"]


def test_lr_range_from_range_tests_and_good_trials(db):
    db.add_study(synthetic_study())
    db.add_trial(synthetic_range_test("rt1", best_lr=1e-3))
    db.add_trial(synthetic_range_test("rt2", best_lr=2e-3))
    good = []
    for i, (lr, loss) in enumerate([(3e-4, 0.200), (1e-3, 0.195), (1e-2, 0.9)]):
        t = synthetic_trial(i, points=20)
        t["curves"] = {}
        t["policy"] = {"name": "fixed", "params": {"lr": lr}}
        t["metrics"] = {"eval_loss": loss}
        good.append(t)
    db.add_many("trials", good)
    out = db.lr_range("digits")
    assert len(out["range_tests"]) == 2
    lo, hi = out["suggested"]
    assert 1e-5 < lo < hi and 5e-4 < hi < 4e-3
    assert out["from_trials"]["lr_min"] == pytest.approx(3e-4) and out["from_trials"]["lr_max"] == pytest.approx(1e-3)


def test_a_range_test_without_metrics_is_read_like_the_range_test_tuner_reads_it(db):
    """One range-test reader: the database's suggestion is the analyser's lr_range."""
    from lrbench_gui.core.tuning.range_analysis import analyze_range_test

    db.add_study(synthetic_study())
    rec = synthetic_range_test("rt", best_lr=1e-3)
    db.add_trial(rec)
    expected = analyze_range_test(rec["curves"]["lr"]["values"], rec["curves"]["loss"]["values"])["lr_range"]
    (found,) = db.lr_range("digits")["range_tests"]
    assert [found["lower"], found["upper"]] == pytest.approx(expected, rel=1e-5)
    assert expected[0] < 1e-3 < expected[1] * 1.5


def test_backup_copies_and_keeps_the_newest(db, monkeypatch):
    from lrbench_gui.core.db import storage as db_storage

    with pytest.raises(DatabaseError, match="no database file"):
        db.backup()
    assert not db.path.exists()
    _fill(db, n=1)
    monkeypatch.setattr(db_storage, "KEEP_BACKUPS", 3)
    made = [db.backup() for _ in range(5)]
    kept = list_backups(db.path)
    assert all(b.read_bytes() == db.path.read_bytes() for b in kept)
    assert kept == made[-3:]
    assert db.latest_backup() == made[-1]


def test_stale_temp_files_are_removed_by_the_next_writer(db):
    _fill(db, n=1)
    stale = db.path.parent / f".{db.path.name}.abc123.tmp"
    stale.write_text("half a database")
    db.add_trial(synthetic_trial(1, points=20))
    assert not stale.exists()


def test_curves_round_trip_through_the_store(db):
    db.add_study(synthetic_study())
    rec = synthetic_trial(0, points=50, packed=False)
    db.add_trial(rec)
    steps, values = db.curves(rec["id"])["loss"]
    assert steps.tolist() == rec["curves"]["loss"]["steps"]
    assert values.astype(float).tolist() == pytest.approx(rec["curves"]["loss"]["values"], rel=1e-6)
    lr_steps, _ = unpack(db.get(rec["id"])["curves"]["lr"])
    assert lr_steps.tolist() == rec["curves"]["lr"]["steps"]
    with pytest.raises(KeyError):
        db.curves("missing")


def _doc_blocks(lang: str) -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
    parts = text.split(f"```{lang}\n")[1:]
    return [p.split("```")[0] for p in parts]


def test_format_doc_examples_are_right(tmp_path, db):
    """docs/format.md: its packing recipe and its minimal document work as written."""
    import numpy as np

    from lrbench_gui.core.db.curves import normalize_curve

    namespace: dict = {}
    exec(next(b for b in _doc_blocks("python") if "def pack" in b), namespace)  # our own docs
    steps = [0, 3, 200, 70_000, 2**40]
    values = [2.5, 1.0, 0.5, 0.25, 1e-8]
    curve = normalize_curve(namespace["pack"](steps, values))
    assert curve.steps.tolist() == steps and curve.values.tolist() == np.float32(values).tolist()
    minimal = next(b for b in _doc_blocks("json") if '"sweep-1"' in b)
    (tmp_path / "minimal.json").write_text(minimal)
    report = db.import_file(tmp_path / "minimal.json")
    assert report.added == {"studies": 1, "trials": 1, "policies": 0}
    assert db.recommend("digits")["results"][0]["best_trial"] == "sweep-1-a"
