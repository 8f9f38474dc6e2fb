"""Issue 12's reliability cases outside the database, one test each: every bad input refused in
one line, every hostile plugin survived, every odd event recorded. The table is
``bench/_reliability_cases.py``, shared with ``bench/reliability.py`` (which counts how many hold),
so the suite and the bench can never disagree on what a case is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _reliability_cases import CASES, run_case  # noqa: E402

#: cases another test already runs in full, so the suite starts Ray once for them, not twice:
#: tune-json-ray is tests/test_study.py's Ray study, run as `lrbench tune --backend ray --json`
COVERED_ELSEWHERE = {"tune-json-ray"}


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else []) for c in CASES
             if c.name not in COVERED_ELSEWHERE]
)
def test_case_holds(case, tmp_path):
    holds, detail = run_case(case, tmp_path / "case")
    assert holds, f"{case.name} ({case.issue}): {detail}"


def test_every_case_has_a_distinct_name_and_says_what_it_checks():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert all(c.issue and (c.needles or c.check or c.expect == "json") for c in CASES)
