"""Importing an export document: what it would add, skip, keep or replace, and what it refuses.

An import is all or nothing, in two steps that :meth:`PolicyDB.import_file
<lrbench_gui.core.db.policy_db.PolicyDB.import_file>` runs: :func:`validate_import` checks every
field of every record of the document (no database needed), then :func:`plan_import` decides,
against the database as it is under the write lock, what each record does. Both collect their
refusals in one :class:`ImportReport`, so the user sees every problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from lrbench_gui.core.db.document import Problem
from lrbench_gui.core.db.fields import FieldError
from lrbench_gui.core.db.storage import DatabaseError
from lrbench_gui.core.db.validate import TABLES, normalize_record
from lrbench_gui.core.registry import Registry

__all__ = ["ImportReport", "ImportRefused", "MAX_PROBLEMS", "MAX_DOCUMENT_POINTS", "ON_CONFLICT", "validate_import", "plan_import", "TABLE_WORD", "curve_points_claimed"]

MAX_PROBLEMS = 50  # an import stops collecting refusals after this many
#: curve points one document may hold, counted from the records before any curve is decoded:
#: a packed curve of 100,000 equal values is ~700 bytes, so a 12 MB file could otherwise ask
#: for billions of points (minutes of decoding). A 10,000-trial export holds 20 million.
MAX_DOCUMENT_POINTS = 100_000_000
ON_CONFLICT = ("refuse", "keep", "replace")
TABLE_WORD = {"studies": "study", "trials": "trial", "policies": "policy"}

#: validated records of a document: table -> [(index in the file, record)]
Validated = dict[str, list[tuple[int, dict[str, Any]]]]


def _per_table() -> dict[str, int]:
    return {t: 0 for t in TABLES}


@dataclass
class ImportReport:
    """What an import added, skipped (already present), kept or replaced, and refused.

    ``unknown_policies`` names the policies whose parameters were checked only as free-form
    JSON: those the database's registry does not have, or every policy when it has none.
    """

    file: str
    dry_run: bool
    added: dict[str, int] = field(default_factory=_per_table)
    skipped: dict[str, int] = field(default_factory=_per_table)
    kept: dict[str, int] = field(default_factory=_per_table)
    replaced: dict[str, int] = field(default_factory=_per_table)
    refused: list[Problem] = field(default_factory=list)
    unknown_policies: list[str] = field(default_factory=list)
    added_ids: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in TABLES})
    backup: str | None = None
    truncated: bool = False  # more refusals than MAX_PROBLEMS were found

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "added": self.added,
            "skipped": self.skipped,
            "kept": self.kept,
            "replaced": self.replaced,
            "refused": [p.to_json() for p in self.refused],
            "refused_truncated": self.truncated,
            "unknown_policies": self.unknown_policies,
            "backup": self.backup,
        }

    def summary(self) -> str:
        """The report in plain words, a few lines."""
        def counts(d: dict[str, int]) -> str:
            parts = [f"{n} {TABLE_WORD[t] if n == 1 else t}" for t, n in d.items() if n]
            return ", ".join(parts) or "nothing"

        verb = "would add" if self.dry_run else "added"
        lines = []
        if self.refused:
            more = " (and more)" if self.truncated else ""
            lines.append(f"Refused: {len(self.refused)} problem(s){more}; nothing was written.")
            lines.extend(f"  {p}" for p in self.refused[:10])
            if len(self.refused) > 10:
                lines.append(f"  ... {len(self.refused) - 10} more")
        else:
            lines.append(f"{'Dry run: ' if self.dry_run else ''}{verb} {counts(self.added)}.")
            lines.append(f"Skipped (already here, same content): {counts(self.skipped)}.")
            if any(self.kept.values()):
                lines.append(f"Kept the local version of: {counts(self.kept)}.")
            if any(self.replaced.values()):
                lines.append(f"{'Would replace' if self.dry_run else 'Replaced'}: {counts(self.replaced)}.")
        if self.unknown_policies:
            lines.append(
                "Policies not installed here (stored as they are, not checked beyond their structure): "
                + ", ".join(self.unknown_policies)
            )
        if self.backup:
            lines.append(f"Backup of the previous database: {self.backup}")
        return "\n".join(lines)


class ImportRefused(DatabaseError):
    """An import that was refused as a whole; ``report.refused`` lists every problem found."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        first = str(report.refused[0]) if report.refused else "refused"
        more = len(report.refused) - 1
        super().__init__(first + (f" (and {more} more problem{'s' if more > 1 else ''}{'+' if report.truncated else ''})" if more > 0 else ""))


def curve_points_claimed(trials: Any) -> int:
    """How many curve points the trial records claim (a packed curve's ``n``, a plain curve's
    list length), without decoding anything."""
    total = 0
    for t in trials if isinstance(trials, list) else ():
        curves = t.get("curves") if isinstance(t, dict) else None
        for c in curves.values() if isinstance(curves, dict) else ():
            if not isinstance(c, dict):
                continue
            n = c.get("n") if "encoding" in c else c.get("steps")
            total += n if type(n) is int and n > 0 else (len(n) if isinstance(n, list) else 0)
    return total


def validate_import(doc: dict[str, Any], registry: Registry | None, report: ImportReport) -> Validated:
    """Every record of ``doc`` normalized; refusals (bad fields, ids twice in the file, more
    than :data:`MAX_DOCUMENT_POINTS` curve points in all) go to ``report``."""
    out: Validated = {t: [] for t in TABLES}
    unknown: set[str] = set()
    points = curve_points_claimed(doc.get("trials"))
    if points > MAX_DOCUMENT_POINTS:
        report.refused.append(Problem(
            report.file,
            f"field trials: the curves hold {points:,} points in all; the limit is {MAX_DOCUMENT_POINTS:,} "
            "per import (lrbench stores at most 1,000 a curve: downsample them, or split the file)",
        ))
        return out
    for table in TABLES:
        seen: dict[str, int] = {}
        for i, raw in enumerate(doc.get(table, [])):
            if len(report.refused) >= MAX_PROBLEMS:
                report.truncated = True
                report.unknown_policies = sorted(unknown)
                return out
            rid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
            try:
                n = normalize_record(table, raw, registry)
            except FieldError as exc:
                report.refused.append(Problem(report.file, exc.message, table, i, rid, exc.field))
                continue
            rid = n.record["id"]
            if rid in seen:
                report.refused.append(Problem(report.file, f"duplicate id: {table}[{seen[rid]}] has the same id", table, i, rid, "id"))
                continue
            seen[rid] = i
            unknown |= n.unknown_policies
            out[table].append((i, n.record))  # type: ignore[arg-type]
    report.unknown_policies = sorted(unknown)
    return out


def plan_import(
    records: Validated,
    docs: Callable[[str], dict[str, dict[str, Any]]],
    report: ImportReport,
    on_conflict: str,
    seed_ids: set[str],
) -> dict[str, Any]:
    """Decide what each validated record does against the stored ``docs(table)`` (doc id -> record).

    Returns ``{"new": {table: [records to insert]}, "remove": {table: [doc ids to remove]}}``
    and counts each decision in ``report``; a trial of an unknown study and a conflict under
    ``on_conflict="refuse"`` are refusals. A seed recipe always keeps the local version.
    """
    plan: dict[str, Any] = {"new": {t: [] for t in TABLES}, "remove": {t: [] for t in TABLES}}
    study_ids = {d["id"] for d in docs("studies").values()} | {r["id"] for _, r in records["studies"]}
    for table in TABLES:
        index = {doc["id"]: (int(doc_id), doc["hash"]) for doc_id, doc in docs(table).items()}
        for i, rec in records[table]:
            if table == "trials" and rec["study"] is not None and rec["study"] not in study_ids:
                report.refused.append(
                    Problem(report.file, f"no study {rec['study']!r} in the file or the database", table, i, rec["id"], "study")
                )
                continue
            found = index.get(rec["id"])
            if found is not None and found[1] == rec["hash"]:
                report.skipped[table] += 1
                continue
            if found is not None:
                if on_conflict == "keep" or (table == "policies" and rec["id"] in seed_ids):
                    report.kept[table] += 1
                    continue
                if on_conflict == "refuse":
                    report.refused.append(
                        Problem(
                            report.file,
                            "a record with this id is already in the database with different content "
                            "(choose --on-conflict keep or replace)",
                            table,
                            i,
                            rec["id"],
                            "id",
                        )
                    )
                    continue
                plan["remove"][table].append(found[0])
                report.replaced[table] += 1
            else:
                report.added[table] += 1
            report.added_ids[table].append(rec["id"])
            plan["new"][table].append(rec)
    return plan
