"""What one study is and what it concluded: its kind, objective, trials, best trial and, where
its tuner says, how sure it is (``confidence``: the chance another point is better, the spread
over seeds)."""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QScrollArea, QWidget

from lrbench_gui.core.records import spec_label

__all__ = ["StudyDetails", "study_lines", "confidence_lines"]


def _num(v: Any, spec: str = ".4g") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _pct(v: Any) -> str:
    return f"{v:.0%}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def confidence_lines(conf: Any) -> list[str]:
    """The tuner's ``confidence`` in words; ``[]`` when there is none (older studies, tuners
    without a model). Unknown keys are listed as they are."""
    if not isinstance(conf, dict) or not conf:
        return []
    out = []
    known = {"best", "p_better_elsewhere", "p_better_asked", "predicted", "seed_spread", "model", "samples"}
    model = f" ({conf['model']}" + (f", {conf['samples']} samples)" if conf.get("samples") else ")") if conf.get("model") else ""
    if conf.get("p_better_elsewhere") is not None:
        out.append(f"chance another point is truly better: {_pct(conf['p_better_elsewhere'])}{model}")
    if conf.get("p_better_asked") is not None:
        out.append(f"chance another tried point is better: {_pct(conf['p_better_asked'])}")
    pred = conf.get("predicted")
    if isinstance(pred, dict) and pred.get("mean") is not None:
        out.append(f"the model's value at the best: {_num(pred.get('mean'))} ± {_num(pred.get('sd'), '.2g')}")
    spread = conf.get("seed_spread")
    if isinstance(spread, dict) and spread.get("runs"):
        out.append(f"over {spread['runs']} seeds: mean {_num(spread.get('mean'))}, sd {_num(spread.get('sd'), '.2g')}, "
                   f"range {_num(spread.get('range'), '.2g')}")
    elif "seed_spread" in conf:
        out.append("spread over seeds: not measured (the best point ran with one seed)")
    for k, v in conf.items():
        if k not in known and isinstance(v, (str, int, float)):
            out.append(f"{k}: {v}")
    return out or ["confidence: not enough trials for the model yet"]


def study_lines(study: dict[str, Any] | None, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(field, text) lines of a study record and its trials' analysis rows."""
    if not study:
        return []
    summary = (study.get("extra") or {}).get("summary") or {}
    tuner = study.get("tuner") or {}
    objective = study.get("objective") or {}
    mine = [r for r in rows if r.get("study") == study.get("id")]
    statuses = Counter(str(r["status"]) for r in mine)
    lines = [("study", f"{study.get('name') or study.get('id')} ({study.get('id')})"),
             ("kind", f"{tuner.get('name', '?')} on {study.get('task') or '?'}; {study.get('status', '?')}"),
             ("objective", f"{objective.get('metric', '?')} ({'lower' if objective.get('mode') != 'max' else 'higher'} is better)")]
    if mine:
        lines.append(("trials", f"{len(mine)} stored: " + ", ".join(f"{n} {s}" for s, n in statuses.most_common())))
    best = summary.get("best") if isinstance(summary.get("best"), dict) else None
    if best:
        label = spec_label(best["policy"]) if isinstance(best.get("policy"), dict) else best.get("family", "")
        lines.append(("best", f"{label}: {_num(best.get('value'))} ({best.get('trial', '')})"))
    if isinstance(summary.get("compute_steps"), (int, float)):
        lines.append(("compute", f"{int(summary['compute_steps'])} steps"))
    tuner_summary = summary.get("tuner") if isinstance(summary.get("tuner"), dict) else {}
    conf = summary.get("confidence", tuner_summary.get("confidence"))
    for text in confidence_lines(conf):
        lines.append(("confidence", text))
    return lines


class StudyDetails(QScrollArea):
    """The study the analysis views show, in a few lines."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.label = QLabel("Select a trial or a study to see its study here.", self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.label.setContentsMargins(6, 4, 6, 4)
        self.setWidget(self.label)
        self.lines: list[tuple[str, str]] = []

    def show_studies(self, studies: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
        blocks = []
        self.lines = []
        for study in studies:
            lines = study_lines(study, rows)
            self.lines += lines
            blocks.append("<table cellspacing=2>" + "".join(
                f"<tr><td valign=top><b>{html.escape(k)}</b>&nbsp;</td><td>{html.escape(v)}</td></tr>" for k, v in lines) + "</table>")
        self.label.setText("<hr>".join(blocks) if blocks else "These trials belong to no study.")

    def text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.lines)
