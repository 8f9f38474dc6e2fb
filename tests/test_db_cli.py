"""``lrbench db``: every sub-command, human and JSON output, --db and LRBENCH_DB, exit status 2."""

from __future__ import annotations

import json

import pytest

from lrbench_gui.cli import main
from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_range_test, synthetic_study, synthetic_trial
from lrbench_gui.core.db.recipes import SEED_POLICIES


@pytest.fixture
def filled(lrbench_env, registry):
    """The default database (LRBENCH_DB) with a study of 9 trials and a range test."""
    db = PolicyDB(registry=registry)
    with db.batch():
        db.add_study(synthetic_study())
        db.add_many("trials", [synthetic_trial(i, points=50) for i in range(9)])
        db.add_trial(synthetic_range_test("rt1"))
    return db


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_path_follows_lrbench_db_and_db_flag(lrbench_env, tmp_path, capsys):
    rc, out, _ = run(capsys, "db", "path")
    assert rc == 0 and out.startswith(str(lrbench_env["db"])) and "not created yet" in out
    rc, out, _ = run(capsys, "db", "path", "--db", str(tmp_path / "x.json"), "--json")
    assert json.loads(out) == {"path": str(tmp_path / "x.json"), "exists": False}


def test_stats_on_a_fresh_database_does_not_create_it(lrbench_env, capsys):
    rc, out, _ = run(capsys, "db", "stats", "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["counts"]["policies"] == len(SEED_POLICIES) and not stats["exists"]
    assert not lrbench_env["db"].exists()


def test_stats_and_list(filled, capsys):
    rc, out, _ = run(capsys, "db", "stats")
    assert rc == 0 and "1 studies, 10 trials" in out and "digits (10)" in out
    rc, out, _ = run(capsys, "db", "list", "--limit", "3")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "TASK", "POLICY", "STATUS"] and len(lines) == 5 and "7 more" in lines[-1]
    rc, out, _ = run(capsys, "db", "list", "--json", "--limit", "0", "--status", "completed")
    rows = json.loads(out)
    assert len(rows) == 10 and {"id", "task", "policy", "status", "value", "steps", "seconds"} <= set(rows[0])
    rc, out, _ = run(capsys, "db", "list", "policies", "--json")
    assert {p["id"] for p in json.loads(out)} == {p["id"] for p in SEED_POLICIES}
    alpaca = next(p for p in json.loads(out) if p["id"] == "recipe:alpaca-7b")
    assert alpaca["warmup_ratio"] == 0.03 and alpaca["scheduler"] == "WarmupDecayLR" and alpaca["source"]["url"]
    rc, out, _ = run(capsys, "db", "list", "studies")
    assert "s1" in out and out.splitlines()[1].split()[-1] == "10"


def test_show(filled, capsys):
    rc, out, _ = run(capsys, "db", "show", "s1-t00002")
    assert rc == 0 and '"loss": "50 points, steps 0..9999' in out
    rc, out, _ = run(capsys, "db", "show", "s1-t00002", "--json", "--curves")
    record = json.loads(out)
    assert record["_table"] == "trials" and len(record["curves"]["lr"]["values"]) == 50
    rc, out, _ = run(capsys, "db", "show", "rule:adam", "--json")
    assert json.loads(out)["lr"] == 1e-3
    rc, _, err = run(capsys, "db", "show", "nope")
    assert rc == 2 and "no record with id 'nope'" in err


def test_recommend(filled, capsys):
    rc, out, _ = run(capsys, "db", "recommend", "--task", "digits", "--k", "2")
    assert rc == 0 and "Top 2 policies for 'digits' by eval_loss" in out
    assert "LR range from 1 range test(s)" in out
    rc, out, _ = run(capsys, "db", "recommend", "--task", "digits", "--json")
    data = json.loads(out)
    assert [r["rank"] for r in data["recommend"]["results"]] == list(range(1, 6))
    assert data["lr_range"]["suggested"] is not None
    rc, out, _ = run(capsys, "db", "recommend", "--task", "unknown")
    assert rc == 0 and "No completed trials" in out and "digits" in out
    rc, _, err = run(capsys, "db", "recommend", "--task", "digits", "--k", "0")
    assert rc == 2 and "--k" in err


def test_export_import_round_trip_through_the_cli(filled, tmp_path, capsys):
    out_file = tmp_path / "share.json.gz"
    rc, out, _ = run(capsys, "db", "export", "--study", "s1", "-o", str(out_file))
    assert rc == 0 and "1 studies, 10 trials" in out
    other = tmp_path / "other.json"
    rc, out, _ = run(capsys, "db", "import", str(out_file), "--db", str(other), "--dry-run")
    assert rc == 0 and "would add 1 study, 10 trials" in out and not other.exists()
    rc, out, _ = run(capsys, "db", "import", str(out_file), "--db", str(other), "--json")
    report = json.loads(out)
    assert rc == 0 and report["added"]["trials"] == 10 and report["ok"]
    again = tmp_path / "again.json.gz"
    run(capsys, "db", "export", "--study", "s1", "-o", str(again), "--db", str(other))
    assert again.read_bytes() == out_file.read_bytes()
    rc, _, err = run(capsys, "db", "export", "--study", "zzz", "-o", str(tmp_path / "z.json"))
    assert rc == 2 and "no study 'zzz'" in err


def test_backup(filled, tmp_path, capsys):
    rc, out, _ = run(capsys, "db", "backup", "--json")
    made = json.loads(out)["backup"]
    assert rc == 0 and "policies-backups" in made
    rc, out, _ = run(capsys, "db", "backup", "-o", str(tmp_path / "copy.json"))
    assert rc == 0 and (tmp_path / "copy.json").read_bytes() == filled.path.read_bytes()
    rc, _, err = run(capsys, "db", "backup", "--db", str(tmp_path / "none.json"))
    assert rc == 2 and "nothing to back up" in err


def test_corrupt_database_is_a_clean_error(lrbench_env, capsys):
    lrbench_env["db"].write_text("{oops")
    rc, out, err = run(capsys, "db", "stats")
    assert rc == 2 and err.count("\n") == 1 and "cannot be read" in err and "Traceback" not in err
    assert lrbench_env["db"].read_text() == "{oops"


def test_helpers_for_other_commands(tmp_path):
    import argparse

    from lrbench_gui.cli.db import add_db_argument, open_db_from_args

    parser = argparse.ArgumentParser()
    add_db_argument(parser, wait=True)
    args = parser.parse_args(["--db", str(tmp_path / "mine.json"), "--wait", "1.5"])
    db = open_db_from_args(args)
    assert db.path == tmp_path / "mine.json" and db._lock.timeout == 1.5
