"""Every kind of bad import is refused with exit status 2, a message naming the file, the record
and the field, and the database left byte for byte as it was."""

from __future__ import annotations

import base64
import gzip
import json
import pathlib
import pickle
import zlib

import pytest

from lrbench_gui.cli import main as cli_main
from lrbench_gui.core.db import document as db_format
from lrbench_gui.core.db import ImportRefused, PolicyDB
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial


@pytest.fixture
def setup(tmp_path, registry):
    """A database with data in it, and a valid export (plain JSON, curves as number lists)."""
    db = PolicyDB(tmp_path / "policies.json", registry=registry)
    with db.batch():
        db.add_study(synthetic_study("local"))
        db.add_trial(synthetic_trial(0, study="local", points=20))
    doc = {
        "format": "lrbench-db-export",
        "version": 1,
        "studies": [synthetic_study("s1")],
        "trials": [synthetic_trial(i, study="s1", points=20, packed=False) for i in range(3)],
        "policies": [],
    }
    return db, doc


def _write(tmp_path, doc=None, raw: bytes | None = None, name: str = "bad.json") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(raw if raw is not None else json.dumps(doc).encode())
    return path


def _refused(db: PolicyDB, path: pathlib.Path, capsys, *fragments: str) -> str:
    """Import via the API and the CLI; both refuse, name the file and the fragments, write nothing."""
    before = db.path.read_bytes()
    with pytest.raises(ImportRefused) as info:
        db.import_file(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    capsys.readouterr()
    rc = cli_main(["db", "import", str(path), "--db", str(db.path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("lrbench: error: import refused: ") and err.count("\n") == 1, err
    assert str(path) in err and "Traceback" not in err
    dry = cli_main(["db", "import", str(path), "--dry-run", "--json", "--db", str(db.path)])
    out = capsys.readouterr().out
    assert dry == 2 and json.loads(out)["ok"] is False
    assert db.path.read_bytes() == before, "the database changed"
    assert not list(db.path.parent.glob("policies-backups/*")), "no backup for a refused import"
    return message


def _mutated(doc, fn):
    doc = json.loads(json.dumps(doc))
    fn(doc)
    return doc


RECORD_CASES = [
    ("wrong type", lambda d: d["trials"][1]["metrics"].update(eval_loss="low"), "trials[1] (id 's1-t00001')", "field metrics.eval_loss", "must be a finite number, got a string"),
    ("seed a string", lambda d: d["trials"][0].update(seed="7"), "trials[0]", "field seed", "whole number"),
    ("missing task", lambda d: d["trials"][2].pop("task"), "trials[2]", "field task", "missing required field"),
    ("missing study name", lambda d: d["studies"][0].pop("name"), "studies[0] (id 's1')", "field name", "missing required field"),
    ("unknown field", lambda d: d["trials"][0].update(colour="red"), "trials[0]", "field colour", "unknown field"),
    ("bad status", lambda d: d["trials"][0].update(status="great"), "trials[0]", "field status", "must be one of"),
    ("note too long", lambda d: d["trials"][1].update(notes="x" * 20_001), "trials[1]", "field notes", "the limit is 20000"),
    ("string too long", lambda d: d["trials"][1]["task_params"].update(path="y" * 5000), "trials[1]", "field task_params.path", "the limit is 4096"),
    ("id too long", lambda d: d["trials"][1].update(id="t" * 200), "trials[1] (id 'tttt", "...'): field id", "the limit is 128"),
    ("curve too long", lambda d: d["trials"][0]["curves"].update(loss={"steps": list(range(100_001)), "values": [1.0] * 100_001}), "trials[0]", "field curves.loss.steps", "the limit is 100000"),
    ("curve lengths differ", lambda d: d["trials"][0]["curves"]["loss"]["values"].pop(), "trials[0]", "field curves.loss.values", "has 19 points but steps has 20"),
    ("steps go back", lambda d: d["trials"][0]["curves"]["lr"]["steps"].__setitem__(5, 0), "trials[0]", "field curves.lr.steps[5]", "must be greater than the step before"),
    ("a bool in a curve", lambda d: d["trials"][0]["curves"]["lr"]["values"].__setitem__(2, True), "trials[0]", "field curves.lr.values[2]", "a boolean"),
    ("too many curves", lambda d: d["trials"][0]["curves"].update({f"c{i}": {"steps": [0], "values": [1.0]} for i in range(9)}), "trials[0]", "field curves", "the limit is 8"),
    ("bad spec param", lambda d: d["trials"][2].update(policy={"name": "cosine", "params": {"lr": "fast"}}), "trials[2]", "field policy.params.lr", ""),
    ("bad spec structure", lambda d: d["trials"][2].update(policy={"sequence": [{"name": "fixed"}], "boundaries": [5]}), "trials[2]", "field policy.boundaries", ""),
    ("nested too deep", lambda d: d["trials"][0].update(extra={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}), "trials[0]", "field extra.a.b.c.d.e.f.g.h", "8 levels"),
    ("a record that is not an object", lambda d: d["trials"].__setitem__(1, 5), "trials[1]", "must be an object", ""),
    ("orphan trial", lambda d: d["trials"][0].update(study="elsewhere"), "trials[0]", "field study", "no study 'elsewhere'"),
    ("bad time", lambda d: d["trials"][0]["provenance"].update(created="yesterday"), "trials[0]", "field provenance.created", "ISO 8601"),
    ("bad lr range", lambda d: d["policies"].append({"id": "p1", "name": "x", "kind": "recipe", "source": {"title": "me"}, "lr_range": [1e-3, 1e-5]}), "policies[0] (id 'p1')", "field lr_range[1]", "must be >="),
]


@pytest.mark.parametrize("case", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_bad_record_is_refused(tmp_path, setup, capsys, case):
    db, doc = setup
    _, fn, *fragments = case
    _refused(db, _write(tmp_path, _mutated(doc, fn)), capsys, *[f for f in fragments if f])


def test_every_problem_is_reported_not_just_the_first(tmp_path, setup):
    db, doc = setup

    def two(d):
        d["trials"][0]["seed"] = "x"
        d["trials"][2]["status"] = "??"

    with pytest.raises(ImportRefused) as info:
        db.import_file(_write(tmp_path, _mutated(doc, two)))
    fields = [(p.index, p.field) for p in info.value.report.refused]
    assert fields == [(0, "seed"), (2, "status")]
    assert "and 1 more problem" in str(info.value)


def test_duplicate_ids_in_the_file(tmp_path, setup, capsys):
    db, doc = setup

    def dup(d):
        d["trials"][2]["id"] = d["trials"][0]["id"]

    _refused(db, _write(tmp_path, _mutated(doc, dup)), capsys, "trials[2] (id 's1-t00000')", "field id", "duplicate id: trials[0] has the same id")


def test_hash_mismatch_after_an_edit(tmp_path, setup, capsys):
    db, _ = setup
    good = tmp_path / "good.json"
    db.export(good)
    doc = json.loads(good.read_text())
    doc["trials"][0]["metrics"]["eval_loss"] = 0.001  # edited by hand, hash left as it was
    _refused(db, _write(tmp_path, doc), capsys, "trials[0] (id 'local-t00000')", "field hash", "changed after export")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('"eval_loss": NaN', "got NaN"),
        ('"eval_loss": Infinity', "got Infinity"),
        ('"eval_loss": -Infinity', "got -Infinity"),
        ('"eval_loss": 1e999', "got inf"),
    ],
)
def test_non_finite_numbers(tmp_path, setup, capsys, text, fragment):
    db, doc = setup
    raw = json.dumps(doc).replace('"eval_loss": ' + json.dumps(doc["trials"][1]["metrics"]["eval_loss"]), text, 1)
    assert text in raw
    _refused(db, _write(tmp_path, raw=raw.encode()), capsys, "trials[1]", "field metrics.eval_loss", fragment)


def test_non_finite_curve_value(tmp_path, setup, capsys):
    db, doc = setup
    raw = json.dumps(doc)
    first = json.dumps(doc["trials"][0]["curves"]["loss"]["values"][3])
    raw = raw.replace(f", {first},", ", NaN,", 1)
    _refused(db, _write(tmp_path, raw=raw.encode()), capsys, "trials[0]", "field curves.loss.values[3]", "got NaN")


def test_duplicate_keys_in_an_object(tmp_path, setup, capsys):
    db, doc = setup
    raw = json.dumps(doc).replace('"task": "digits"', '"task": "digits", "task": "other"', 1)
    _refused(db, _write(tmp_path, raw=raw.encode()), capsys, "studies[0]", "names the key 'task' more than once")


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
        (lambda raw: raw.replace(b'"format"', b"'format'", 1), "not valid JSON: Expecting property name"),
        (lambda raw: b"[]", "must hold a JSON object"),
        (lambda raw: raw.replace(b'"version": 1', b'"version": 99'), "unknown format version 99"),
        (lambda raw: raw.replace(b'"version": 1', b'"version": "1"'), "unknown format version '1'"),
        (lambda raw: raw.replace(b'"lrbench-db-export"', b'"something-else"'), "is not an lrbench export"),
        (lambda raw: raw.replace(b'"policies": []', b'"policies": [], "surprise": 1'), "field surprise: unknown top-level field"),
        (lambda raw: raw.replace(b'"policies": []', b'"policies": {}'), "field policies: must be a list"),
        (lambda raw: b'{"studies": [{"id": "\xff"}]}', "not UTF-8"),
    ],
    ids=["truncated", "invalid", "not an object", "unknown version", "version a string", "not an export", "unknown top-level", "table not a list", "not utf-8"],
)
def test_bad_document(tmp_path, setup, capsys, mutate, fragment):
    db, doc = setup
    raw = mutate(json.dumps(doc).encode())
    _refused(db, _write(tmp_path, raw=raw), capsys, fragment)


def test_truncated_json_says_so(tmp_path, setup):
    db, doc = setup
    raw = json.dumps(doc).encode()
    with pytest.raises(ImportRefused, match=r"truncated\?"):
        db.import_file(_write(tmp_path, raw=raw[:-3]))


def test_gzip_that_is_not(tmp_path, setup, capsys):
    db, doc = setup
    _refused(db, _write(tmp_path, doc, name="bad.json.gz"), capsys, "is named .gz but is not a gzip file")


def test_truncated_gzip(tmp_path, setup, capsys):
    db, doc = setup
    raw = gzip.compress(json.dumps(doc).encode())
    _refused(db, _write(tmp_path, raw=raw[: len(raw) // 2], name="bad.json.gz"), capsys, "is not a valid gzip file")


def test_corrupted_gzip(tmp_path, setup, capsys):
    db, doc = setup
    raw = bytearray(gzip.compress(json.dumps(doc).encode()))
    raw[len(raw) // 2] ^= 0xFF
    _refused(db, _write(tmp_path, raw=bytes(raw), name="bad.json.gz"), capsys, "is not a valid gzip file")


def test_decompressed_size_bomb(tmp_path, setup, capsys, monkeypatch):
    db, _ = setup
    monkeypatch.setattr(db_format, "MAX_DOCUMENT_BYTES", 2 * 1024 * 1024)
    bomb = gzip.compress(b'{"format": "lrbench-db-export", "version": 1, "trials": [' + b" " * (16 * 1024 * 1024) + b"]}")
    assert len(bomb) < 100_000
    _refused(db, _write(tmp_path, raw=bomb, name="bomb.json.gz"), capsys, "decompresses to more than 2097152 bytes")


def test_compression_ratio_bomb(tmp_path, setup, capsys, monkeypatch):
    db, _ = setup
    monkeypatch.setattr(db_format, "GZIP_RATIO_AFTER", 1024 * 1024)
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    _refused(db, _write(tmp_path, raw=bomb, name="bomb.gz"), capsys, "decompresses more than 200 times its size")


def test_plain_file_over_the_size_limit(tmp_path, setup, capsys, monkeypatch):
    db, doc = setup
    monkeypatch.setattr(db_format, "MAX_DOCUMENT_BYTES", 1000)
    _refused(db, _write(tmp_path, doc), capsys, "the limit is 1000")


def test_zlib_bomb_inside_a_packed_curve(tmp_path, setup, capsys):
    db, doc = setup
    bomb = base64.b64encode(zlib.compress(b"\0" * (10 * 1024 * 1024))).decode()

    def packed(d):
        d["trials"][0]["curves"]["loss"] = {"encoding": "varint-f32shuffle-zlib", "n": 3, "steps": base64.b64encode(zlib.compress(b"\0\1\1")).decode(), "values": bomb}

    _refused(db, _write(tmp_path, _mutated(doc, packed)), capsys, "trials[0]", "field curves.loss.values", "does not decode")


def test_bad_base64_in_a_packed_curve(tmp_path, setup, capsys):
    db, doc = setup

    def packed(d):
        d["trials"][0]["curves"]["loss"] = {"encoding": "varint-f32shuffle-zlib", "n": 3, "steps": "!!!", "values": "AAAA"}

    _refused(db, _write(tmp_path, _mutated(doc, packed)), capsys, "field curves.loss.steps", "not valid base64")


def test_nothing_in_an_import_is_unpickled_or_executed(tmp_path, setup, capsys):
    db, _ = setup
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    for name, raw in [("evil.json", pickle.dumps(Payload())), ("evil.json.gz", gzip.compress(pickle.dumps(Payload())))]:
        _refused(db, _write(tmp_path, raw=raw, name=name), capsys)
    code = json.dumps({"format": "lrbench-db-export", "version": 1, "trials": [{"id": "__import__('os').system('touch x')"}]})
    _refused(db, _write(tmp_path, raw=code.encode(), name="code.json"), capsys, "trials[0]")
    assert not marker.exists()
    assert not (pathlib.Path.cwd() / "x").exists()


def test_missing_file(tmp_path, setup, capsys):
    db, _ = setup
    _refused(db, tmp_path / "absent.json", capsys, "cannot be read")
