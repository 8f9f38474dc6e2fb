"""The Results panel's filter bar (task, family, status and tag choices, a text box, a group-by
choice) and the editor of a trial's or study's tags and notes.

The matching is :func:`lrbench_gui.core.db.query.filter_rows` (Qt-free); the filter bar only
holds the choices and says when they change. The editor writes through the window's
:class:`~lrbench_gui.qt.db_jobs.DatabaseJobs` (``PolicyDB.set_tags`` / ``set_note``), and a bad
tag is answered in its own line, nothing written."""

from __future__ import annotations

from typing import Any, Iterable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from lrbench_gui.core.db.query import ROW_GROUPS, filter_rows, group_rows

__all__ = ["ResultsFilter", "AnnotationEditor"]

_ANY = "any"
_FIELDS = (("task", "Task"), ("family", "Family"), ("status", "Status"), ("tag", "Tag"))


class ResultsFilter(QWidget):
    """Filters for rows of :func:`lrbench_gui.core.db.query.trial_row`. Call :meth:`set_rows`
    with all rows (it fills the choices, keeping the chosen ones), :meth:`apply` for the rows
    that pass, and :meth:`groups` for them grouped; ``changed`` fires on any change."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.combos: dict[str, QComboBox] = {}
        for key, title in _FIELDS:
            combo = QComboBox(self)
            combo.addItem(_ANY)
            combo.setToolTip(f"Show only the trials of this {title.lower()}")
            combo.setMinimumContentsLength(6)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.currentIndexChanged.connect(self.changed)
            layout.addWidget(QLabel(title, self))
            layout.addWidget(combo, 1)
            self.combos[key] = combo
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("id, study, policy or tag contains…")
        self.text.setClearButtonEnabled(True)
        self.text.textChanged.connect(self.changed)
        layout.addWidget(self.text, 2)
        layout.addWidget(QLabel("Group", self))
        self.group_by = QComboBox(self)
        self.group_by.addItems(["none", *ROW_GROUPS])
        self.group_by.setToolTip("Group the table's rows by task, policy family, status, tag or study")
        self.group_by.currentIndexChanged.connect(self.changed)
        layout.addWidget(self.group_by)

    def set_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Offer the tasks, families, statuses and tags of ``rows``; a choice that is still
        offered stays chosen."""
        rows = list(rows)
        values = {
            "task": {r.get("task") for r in rows},
            "family": {r.get("family") for r in rows},
            "status": {r.get("status") for r in rows},
            "tag": {t for r in rows for t in r.get("tags") or []},
        }
        for key, combo in self.combos.items():
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(_ANY)
            combo.addItems(sorted(str(v) for v in values[key] if v))
            index = combo.findText(current)
            combo.setCurrentIndex(max(index, 0))
            combo.blockSignals(False)

    def choices(self) -> dict[str, str | None]:
        """The filters chosen, as :func:`filter_rows` keywords (None: any)."""
        out: dict[str, str | None] = {k: (c.currentText() if c.currentIndex() > 0 else None) for k, c in self.combos.items()}
        out["text"] = self.text.text() or None
        return out

    def set_choice(self, key: str, value: str | None) -> None:
        """Choose ``value`` for ``key`` (task, family, status, tag; None: any), or the text."""
        if key == "text":
            self.text.setText(value or "")
            return
        combo = self.combos[key]
        combo.setCurrentIndex(max(combo.findText(value), 0) if value else 0)

    def apply(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return filter_rows(rows, **self.choices())

    def grouping(self) -> str | None:
        """The group-by choice (a :data:`ROW_GROUPS` key), None for none."""
        return None if self.group_by.currentIndex() == 0 else self.group_by.currentText()

    def groups(self, rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """The rows that pass, grouped (one group ``""`` when no grouping is chosen)."""
        passed = self.apply(rows)
        by = self.grouping()
        return group_rows(passed, by) if by else {"": passed}

    def ordered(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows that pass, group after group, each a copy with its ``group`` (by tag, a row
        with two tags is listed in both groups)."""
        return [{**row, "group": name} for name, members in self.groups(rows).items() for row in members]


class AnnotationEditor(QWidget):
    """Tags (space or comma separated) and notes of one record, saved through ``jobs``;
    ``saved`` carries the record's id once both are stored, ``failed`` the one line why not."""

    saved = Signal(str)
    failed = Signal(str)

    def __init__(self, jobs: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.record_id: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Tags", self))
        self.tags_edit = QLineEdit(self)
        self.tags_edit.setPlaceholderText("baseline, best-so-far …")
        row.addWidget(self.tags_edit, 1)
        self.save_button = QPushButton("Save", self)
        self.save_button.setToolTip("Store these tags and notes with the record (exported with it)")
        row.addWidget(self.save_button)
        layout.addLayout(row)
        self.notes_edit = QPlainTextEdit(self)
        self.notes_edit.setPlaceholderText("Notes on this trial or study")
        self.notes_edit.setMaximumHeight(80)
        layout.addWidget(self.notes_edit)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.save_button.clicked.connect(self.save)
        self.show_record(None)

    def show_record(self, record_id: str | None, tags: Iterable[str] = (), notes: str = "") -> None:
        """Edit the tags and notes of ``record_id`` (None: nothing to edit); the tags lrbench
        sets itself are shown but not editable."""
        from lrbench_gui.core.db.query import SYSTEM_TAGS

        self.record_id = record_id
        tags = list(tags)
        self._system = [t for t in tags if t in SYSTEM_TAGS]
        self.tags_edit.setText(", ".join(t for t in tags if t not in SYSTEM_TAGS))
        self.notes_edit.setPlainText(notes or "")
        self.message.setText(f"set by lrbench: {', '.join(self._system)}" if self._system else "")
        for w in (self.tags_edit, self.notes_edit, self.save_button):
            w.setEnabled(record_id is not None)

    def tags(self) -> list[str]:
        return [t for t in self.tags_edit.text().replace(",", " ").split() if t]

    def save(self) -> int:
        """Store the tags and notes; returns the job's number (0: nothing to save or refused)."""
        from lrbench_gui.core.db.query import validate_tags

        record_id = self.record_id
        if record_id is None:
            return 0
        try:
            tags = validate_tags(self.tags())
        except ValueError as exc:
            self.message.setText(str(exc))
            self.failed.emit(str(exc))
            return 0
        notes = self.notes_edit.toPlainText()

        def write(db: Any) -> str:
            db.set_tags(record_id, tags)
            db.set_note(record_id, notes)
            return record_id

        def done(rid: str) -> None:
            self.message.setText("Saved.")
            self.saved.emit(rid)

        def failed(message: str) -> None:
            self.message.setText(message)
            self.failed.emit(message)

        return self.jobs.submit(write, done, failed)
