"""Tags and notes on trials and studies: stored, validated, kept when a study saves itself again,
exported and imported with the records, filtered and grouped, and edited from the CLI."""

from __future__ import annotations

import json

import pytest

from lrbench_gui.cli import main
from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.policy_db import RecordInvalid
from lrbench_gui.core.db.query import filter_rows, group_rows
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial


@pytest.fixture
def db(lrbench_env, registry):
    db = PolicyDB(registry=registry)  # the default database (LRBENCH_DB), which the CLI opens too
    with db.batch():
        db.add_study(synthetic_study("s1"))
        db.add_many("trials", [synthetic_trial(i, study="s1", points=20) for i in range(3)])
    return db


def test_tags_and_notes_are_stored_validated_and_survive_a_resave_and_an_export(db, tmp_path, registry):
    trial = db.records("trials")[0]["id"]
    assert db.set_tags(trial, ["baseline", "lr-sweep", "baseline"]) == ["baseline", "lr-sweep"]
    assert db.set_note("s1", "the demo study\nsecond line") == "the demo study\nsecond line"
    for bad, why in ((["two words"], "no spaces"), (["pruned"], "set by lrbench"), ([""], "no spaces")):
        with pytest.raises(ValueError, match=why):
            db.set_tags(trial, bad)
    with pytest.raises(RecordInvalid, match="no trial, study or recipe 'nope'"):
        db.set_note("nope", "x")
    with pytest.raises(RecordInvalid, match="limit is 20000"):
        db.set_note(trial, "x" * 20_001)
    assert db.get(trial)["tags"] == ["baseline", "lr-sweep"]  # a refused edit changed nothing

    # a tag lrbench set itself stays whatever the user gives
    with db.batch():
        rec = {k: v for k, v in db.get(trial).items() if k not in ("_table", "hash")}
        db.add_trial({**rec, "tags": ["interrupted"], "notes": ""}, replace=True)
    assert db.get(trial)["tags"] == ["interrupted", "baseline", "lr-sweep"]  # the rerun kept the user's
    assert db.set_tags(trial, ["keep"]) == ["interrupted", "keep"]

    # the study saves its record again as it ends (no tags, no notes): the user's stay
    db.add_study({**synthetic_study("s1"), "status": "finished"}, replace=True)
    assert db.get("s1")["notes"] == "the demo study\nsecond line" and db.get("s1")["status"] == "finished"

    out = tmp_path / "share.json"
    db.export(out, ["s1"])
    other = PolicyDB(tmp_path / "other.json", registry=registry)
    other.import_file(out)
    assert other.get(trial)["tags"] == ["interrupted", "keep"]
    assert other.get("s1")["notes"] == "the demo study\nsecond line"

    rows = db.trial_rows()
    assert [r["id"] for r in filter_rows(rows, tag="keep")] == [trial]
    assert filter_rows(rows, text="KEEP") == filter_rows(rows, tag="keep")
    groups = group_rows(rows, "tag")
    assert [r["id"] for r in groups["keep"]] == [trial] and len(groups[""]) == 2
    assert set(group_rows(rows, "family")) == {r["family"] for r in rows}
    with pytest.raises(ValueError, match="group by one of"):
        group_rows(rows, "colour")


def test_cli_tag_and_note(db, capsys):
    trial = db.records("trials")[1]["id"]
    assert main(["db", "tag", trial, "baseline", "best"]) == 0
    assert capsys.readouterr().out.strip() == f"{trial}: baseline, best"
    assert main(["db", "tag", trial, "--remove", "best", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": trial, "tags": ["baseline"]}
    assert main(["db", "tag", trial, "no good"]) == 2
    assert "no spaces" in capsys.readouterr().err
    assert main(["db", "note", trial, "try a lower LR"]) == 0
    capsys.readouterr()
    assert main(["db", "note", trial]) == 0
    assert capsys.readouterr().out.strip() == "try a lower LR"
    assert main(["db", "list", "--tag", "baseline", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [trial]
