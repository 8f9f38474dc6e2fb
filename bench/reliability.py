"""How many of issue 12's reliability cases (outside the database) hold.

Runs every case of ``bench/_reliability_cases.py`` (the table ``tests/test_reliability.py``
tests, one case per line of the issue: bad inputs refused in one line, hostile plugins survived,
odd trainer events recorded), each in a temporary folder of its own, and prints one line per
case, ``holds`` or ``FAILS`` and what happened.

Usage: python bench/reliability.py [--quick] [--only NAME[,NAME...]]
``--quick`` leaves out the slow cases (a real Ray cluster). Writes nothing into the repository.
The last line is one JSON object: {"cases": N, "hold": M, "fail": [...], "skipped": [...], "seconds": S}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # the bench writes nothing into the repository
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _reliability_cases import CASES, run_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out the slow cases")
    parser.add_argument("--only", help="comma-separated case names")
    args = parser.parse_args(argv)
    wanted = {n.strip() for n in args.only.split(",")} if args.only else None
    cases = [c for c in CASES if wanted is None or c.name in wanted]
    skipped = [c.name for c in cases if args.quick and c.slow]
    failed: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lrbench-reliability-") as tmp:
        for i, case in enumerate(c for c in cases if c.name not in skipped):
            try:
                holds, detail = run_case(case, Path(tmp) / f"{i:02d}-{case.name}")
            except Exception as exc:  # a case that breaks the harness is a failing case, not a crash
                holds, detail = False, f"the case raised {type(exc).__name__}: {str(exc)[:200]}"
            if not holds:
                failed.append(case.name)
            print(f"{'holds' if holds else 'FAILS'}  {case.name:<26} {detail}", flush=True)
    for name in skipped:
        print(f"skip   {name:<26} slow (left out by --quick)")
    ran = len(cases) - len(skipped)
    print(json.dumps({"cases": ran, "hold": ran - len(failed), "fail": failed, "skipped": skipped,
                      "seconds": round(time.monotonic() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
