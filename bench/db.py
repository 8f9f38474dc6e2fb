"""Benchmark of the policy database against naive TinyDB use.

    python bench/db.py            # full: 10,000 trials x 1,000-point LR and loss curves
    python bench/db.py --quick    # 1,000 trials; well under 2 minutes

Measures, on a fresh temporary folder: building a database in one batch, exporting it, importing
the export into an empty database (the 5 s target), the file size (100 MB), reopening it (2 s),
a recommendation query on a cold database (200 ms), that a re-export of the imported
database is byte-identical, and the cost of adding one trial (its own batch, as a study does)
to the full database: appended to the write-ahead journal (the 20 ms target) next to a whole
rewrite of the file (what every add cost before the journal), measured in the same run. The baseline is TinyDB used naively in the same process: the default
``JSONStorage``, one ``insert`` per trial, curves as JSON number lists. It is quadratic, so it
runs on at most ``--naive-trials`` trials and is extrapolated to the full count by fitting the
per-insert time as a + b*n (said so in the output as ``naive_extrapolated``).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lrbench_gui.core.db import PolicyDB  # noqa: E402
from lrbench_gui.core.db.curves import unpack  # noqa: E402
from lrbench_gui.core.db.query import recommend  # noqa: E402
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial  # noqa: E402

TASKS = 4
STUDIES = 10


def _trials(n: int, points: int) -> tuple[list[dict], list[dict]]:
    studies = [synthetic_study(f"study{s}", task=f"task{s % TASKS}") for s in range(STUDIES)]
    trials = []
    for i in range(n):
        s = i % STUDIES
        trials.append(synthetic_trial(i, study=f"study{s}", task=f"task{s % TASKS}", points=points))
    return studies, trials


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _naive(trials: list[dict], folder: Path) -> dict:
    """TinyDB as its README shows it: default JSONStorage, one insert per record, plain lists."""
    from tinydb import Query, TinyDB

    path = folder / "naive.json"
    db = TinyDB(path)
    table = db.table("trials")
    per_insert = []
    for t in trials:
        doc = dict(t)
        doc["curves"] = {}
        for name, c in t["curves"].items():
            steps, values = unpack(c)
            doc["curves"][name] = {"steps": steps.tolist(), "values": values.astype(float).tolist()}
        t0 = time.perf_counter()
        table.insert(doc)
        per_insert.append(time.perf_counter() - t0)
    db.close()
    size = path.stat().st_size
    t0 = time.perf_counter()
    db = TinyDB(path)
    docs = db.table("trials").all()
    reopen = time.perf_counter() - t0
    assert len(docs) == len(trials)
    db.close()
    db = TinyDB(path)
    t0 = time.perf_counter()
    found = db.table("trials").search(Query().task == trials[0]["task"])
    recommend(found, trials[0]["task"], k=5)
    query = time.perf_counter() - t0
    db.close()
    return {"n": len(trials), "per_insert": per_insert, "import_s": sum(per_insert), "bytes": size, "reopen_s": reopen, "recommend_s": query}


def _extrapolate(naive: dict, n_full: int) -> dict:
    """Per-insert time fitted as a + b*k (k = records already there), summed to n_full."""
    k = np.arange(len(naive["per_insert"]), dtype=float)
    times = np.array(naive["per_insert"])
    tail = len(k) // 5  # skip the first fifth: warm-up noise dominates there
    b, a = np.polyfit(k[tail:], times[tail:], 1)
    ks = np.arange(n_full, dtype=float)
    scale = n_full / naive["n"]
    return {
        "import_s": float(np.sum(np.maximum(a + b * ks, 0))),
        "bytes": naive["bytes"] * scale,
        "reopen_s": naive["reopen_s"] * scale,
        "recommend_s": naive["recommend_s"] * scale,
    }


def _add_one(path: Path, registry, n: int, points: int) -> dict:
    """One trial at a time into the database of ``n`` trials: journaled, then rewritten."""
    extra = [synthetic_trial(n + j, study="study0", task="task0", points=points) for j in range(25)]
    db = PolicyDB(path, registry=registry)
    journaled = [_timed(db.add_trial, t)[1] for t in extra[:20]]
    assert db.stats()["journal_bytes"] > 0, "the adds should have gone to the journal"
    reopen = statistics.median(_timed(PolicyDB, path, registry=registry)[1] for _ in range(3))
    _, compact = _timed(db.compact)
    rewrite_db = PolicyDB(path, registry=registry, journal_after=1 << 62)  # the file is always rewritten
    rewritten = [_timed(rewrite_db.add_trial, t)[1] for t in extra[20:]]
    assert rewrite_db.stats()["journal_bytes"] == 0
    assert len(PolicyDB(path, registry=registry).trials()) == n + len(extra)
    return {
        "add_one_ms": statistics.median(journaled) * 1000,
        "add_one_max_ms": max(journaled) * 1000,
        "add_one_runs": len(journaled),
        "add_one_rewrite_ms": statistics.median(rewritten) * 1000,
        "add_one_rewrite_runs": len(rewritten),
        "reopen_journal_s": reopen,
        "compact_s": compact,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 trials, naive baseline on 150")
    ap.add_argument("--trials", type=int, help="trials (default 10,000; 1,000 with --quick)")
    ap.add_argument("--points", type=int, default=1000, help="points per curve (default 1,000)")
    ap.add_argument("--naive-trials", type=int, help="trials for the naive baseline (default 300; 150 with --quick)")
    ap.add_argument("--keep", metavar="DIR", help="keep the files in DIR instead of a temporary folder")
    args = ap.parse_args(argv)
    n = args.trials or (1000 if args.quick else 10_000)
    n_naive = min(n, args.naive_trials or (150 if args.quick else 300))

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lrbench-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    figures: dict = {"bench": "db", "mode": "quick" if args.quick else "full", "trials": n, "points": args.points}
    try:
        from lrbench_gui.plugins import load_plugins

        registry = load_plugins(None)
        (studies, trials), gen_s = _timed(_trials, n, args.points)
        print(f"generated {n} trials x 2 curves x {args.points} points in {gen_s:.1f} s")

        src = PolicyDB(folder / "source.json", registry=registry)
        with src.batch():
            src.add_many("studies", studies)
            _, figures["bulk_add_s"] = _timed(src.add_many, "trials", trials)
        print(f"bulk add (one batch): {figures['bulk_add_s']:.2f} s")

        export = folder / "export.json"
        info, figures["export_s"] = _timed(src.export, export)
        figures["export_mb"] = info["bytes"] / 1e6
        info_gz, figures["export_gz_s"] = _timed(src.export, folder / "export.json.gz")
        figures["export_gz_mb"] = info_gz["bytes"] / 1e6
        print(f"export: {figures['export_s']:.2f} s, {figures['export_mb']:.1f} MB (gzip {figures['export_gz_s']:.2f} s, {figures['export_gz_mb']:.1f} MB)")

        # Import into an empty database, three times (a fresh file each time): the median, and
        # the process CPU time, which other programs on the machine do not inflate.
        walls, cpus = [], []
        for attempt in range(3):
            dst_path = folder / f"imported{attempt}.json"
            dst = PolicyDB(dst_path, registry=registry)
            c0 = time.process_time()
            report, wall = _timed(dst.import_file, export)
            cpus.append(time.process_time() - c0)
            walls.append(wall)
            assert report.added["trials"] == n, report.summary()
        figures["import_s"] = statistics.median(walls)
        figures["import_runs_s"] = walls
        figures["import_cpu_s"] = statistics.median(cpus)
        figures["file_mb"] = dst_path.stat().st_size / 1e6
        print(f"import into an empty database: {figures['import_s']:.2f} s (median of 3; CPU {figures['import_cpu_s']:.2f} s); file {figures['file_mb']:.1f} MB")
        _, figures["import_again_s"] = _timed(dst.import_file, export)
        print(f"import again (all skipped): {figures['import_again_s']:.2f} s")

        reopen_times = [_timed(PolicyDB, dst_path, registry=registry)[1] for _ in range(3)]
        figures["reopen_s"] = statistics.median(reopen_times)
        print(f"reopen: {figures['reopen_s']:.2f} s (median of 3)")
        reopened = PolicyDB(dst_path, registry=registry)
        rec, t_first = _timed(reopened.recommend, "task0", k=5)
        assert rec["results"], rec
        repeats = [_timed(PolicyDB(dst_path, registry=registry).recommend, f"task{i % TASKS}", k=5)[1] for i in range(3)]
        figures["recommend_ms"] = t_first * 1000
        figures["recommend_cold_median_ms"] = statistics.median(repeats) * 1000
        _, t_cached = _timed(reopened.recommend, "task0", k=5)
        figures["recommend_cached_ms"] = t_cached * 1000
        _, t_range = _timed(reopened.lr_range, "task0")
        figures["lr_range_ms"] = t_range * 1000
        figures["trials_per_task"] = len(reopened.trials(task="task0"))
        print(
            f"recommend over {figures['trials_per_task']} trials: {figures['recommend_ms']:.0f} ms cold "
            f"(median of 3 more cold: {figures['recommend_cold_median_ms']:.0f} ms), {figures['recommend_cached_ms']:.1f} ms cached; "
            f"lr_range {figures['lr_range_ms']:.0f} ms"
        )

        again = folder / "export2.json"
        reopened.export(again)
        figures["roundtrip_identical"] = again.read_bytes() == export.read_bytes()
        print(f"re-export byte-identical: {figures['roundtrip_identical']}")
        del src, dst, reopened

        figures.update(_add_one(folder / "source.json", registry, n, args.points))
        print(
            f"add one trial at {n} trials: {figures['add_one_ms']:.1f} ms appended to the journal (median of {figures['add_one_runs']}; "
            f"max {figures['add_one_max_ms']:.1f} ms), {figures['add_one_rewrite_ms']:.0f} ms rewriting the file (median of "
            f"{figures['add_one_rewrite_runs']}); reopen with the journal {figures['reopen_journal_s']:.2f} s, "
            f"folding it in (compact) {figures['compact_s']:.2f} s"
        )

        n_plain = min(n, 1000)
        plain_doc = {"format": "lrbench-db-export", "version": 1, "studies": studies, "trials": []}
        for t in trials[:n_plain]:
            d = dict(t)
            d["curves"] = {}
            for name, c in t["curves"].items():
                s, v = unpack(c)
                d["curves"][name] = {"steps": s.tolist(), "values": v.astype(float).tolist()}
            plain_doc["trials"].append(d)
        plain = folder / "plain.json"
        plain.write_text(json.dumps(plain_doc))
        del plain_doc
        _, t_plain = _timed(PolicyDB(folder / "plain-db.json", registry=registry).import_file, plain)
        figures["import_plain_trials"] = n_plain
        figures["import_plain_s"] = t_plain
        figures["import_plain_mb"] = plain.stat().st_size / 1e6
        print(f"import of {n_plain} trials written as plain JSON number lists (another tool's form): {t_plain:.2f} s, {figures['import_plain_mb']:.0f} MB")

        naive = _naive(trials[:n_naive], folder)
        ext = _extrapolate(naive, n)
        figures["naive_trials_measured"] = naive["n"]
        figures["naive_measured"] = {k: naive[k] for k in ("import_s", "bytes", "reopen_s", "recommend_s")}
        figures["naive_extrapolated"] = n > naive["n"]
        figures["naive_import_s"] = ext["import_s"]
        figures["naive_file_mb"] = ext["bytes"] / 1e6
        figures["naive_reopen_s"] = ext["reopen_s"]
        figures["naive_recommend_ms"] = ext["recommend_s"] * 1000
        figures["ratio_import"] = ext["import_s"] / figures["import_s"]
        figures["ratio_file"] = ext["bytes"] / 1e6 / figures["file_mb"]
        figures["ratio_reopen"] = ext["reopen_s"] / figures["reopen_s"]
        figures["ratio_recommend"] = ext["recommend_s"] * 1000 / figures["recommend_ms"]
        how = f"extrapolated from {naive['n']} trials" if figures["naive_extrapolated"] else "measured"
        print(
            f"naive TinyDB ({how}): import {ext['import_s']:.1f} s (x{figures['ratio_import']:.0f}), "
            f"file {figures['naive_file_mb']:.0f} MB (x{figures['ratio_file']:.1f}), reopen {ext['reopen_s']:.2f} s "
            f"(x{figures['ratio_reopen']:.1f}), recommend {figures['naive_recommend_ms']:.0f} ms (x{figures['ratio_recommend']:.1f})"
        )
        if not args.quick:
            figures["targets_met"] = {
                "import_under_5s": figures["import_s"] < 5,
                "reopen_under_2s": figures["reopen_s"] < 2,
                "recommend_under_200ms": figures["recommend_ms"] < 200,
                "file_under_100mb": figures["file_mb"] < 100,
                "add_one_trial_under_20ms": figures["add_one_ms"] <= 20,
            }
        figures["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        figures["python"] = platform.python_version()
        figures["cpus"] = os.cpu_count()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    def rounded(v):
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, list):
            return [rounded(x) for x in v]
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return v

    print(json.dumps(rounded(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
