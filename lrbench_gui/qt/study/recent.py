"""The database's recent studies: a table to resume or reload one, and the banner that offers to
resume the newest unfinished study."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.records import STUDY_RESUMABLE, TRIAL_REPLAYED, StudyStatus
from lrbench_gui.core.tuning.study import INTERRUPTED
from lrbench_gui.qt.plot_style import themed
from lrbench_gui.qt.widgets import STUDY_STATUS_COLORS

__all__ = ["RecentStudies", "ResumeBanner", "load_recent", "UNFINISHED"]

#: studies the panel offers to resume: the resumable ones, and a failed one (after its plugin's fix)
UNFINISHED = frozenset({*STUDY_RESUMABLE, StudyStatus.FAILED})


def planned_of(study: dict[str, Any]) -> Any:
    """The trials a stored study plans: the count its tuner gave (``extra.planned``), else the
    configuration's trial budget (a study recorded before the count was kept)."""
    extra = study.get("extra") or {}
    planned = extra.get("planned")
    if isinstance(planned, int) and not isinstance(planned, bool) and planned > 0:
        return planned
    return (extra.get("config") or {}).get("trials", "?")


def load_recent(db: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The newest studies (a replaced record goes to the end: newest first), each with ``_done``,
    its trials that a resume would replay (not the interrupted ones, which it runs again). Runs
    on the jobs thread."""
    out = []
    for s in list(reversed(db.studies()))[:limit]:
        done = len([t for t in db.trials(study=s["id"])
                    if t.get("status") in TRIAL_REPLAYED and INTERRUPTED not in (t.get("tags") or [])])
        out.append({**s, "_done": done})
    return out


class ResumeBanner(QFrame):
    """"Unfinished study: ... Resume it where it stopped?" with Resume and Not now."""

    #: Fires when Resume is pressed; carries the study id.
    resumeRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resumeBanner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.resume_label = QLabel(self)
        self.resume_label.setWordWrap(True)
        self.resume_btn = QPushButton("Resume", self)
        self.resume_btn.setToolTip("Replay the finished trials from the database and run the rest")
        self.resume_btn.clicked.connect(lambda: self.resumeRequested.emit(self.resume_btn.property("study_id") or ""))
        dismiss = QPushButton("Not now", self)
        dismiss.setFlat(True)
        dismiss.clicked.connect(self.hide)
        layout.addWidget(self.resume_label, 1)
        layout.addWidget(self.resume_btn)
        layout.addWidget(dismiss)
        self.hide()

    def offer(self, unfinished: list[dict[str, Any]], busy: bool) -> None:
        """Offer the first of ``unfinished`` (hide when there is none)."""
        if not unfinished:
            self.hide()
            return
        first = unfinished[0]
        cfg = (first.get("extra") or {}).get("config") or {}
        more = len(unfinished) - 1
        self.resume_label.setText(
            f"<b>Unfinished study:</b> {first.get('name') or first['id']} ({first.get('status')}, "
            f"{first['_done']} of {planned_of(first)} trials done)."
            + (f" {more} more unfinished in Recent studies." if more > 0 else "")
            + " Resume it where it stopped?")
        self.resume_btn.setProperty("study_id", first["id"])
        self.resume_btn.setEnabled(not busy)
        self.show()

    def theme_changed(self, dark: bool) -> None:
        bg, border, fg = ("#1b2a3d", "#35557d", "#cfe1f7") if dark else ("#e8f1fb", "#b9d2ef", "#1d3f6e")
        self.setStyleSheet(f"QFrame#resumeBanner {{ background: {bg}; border: 1px solid {border}; border-radius: 4px; }}"
                           f"QFrame#resumeBanner QLabel {{ color: {fg}; }}")


class RecentStudies(QGroupBox):
    """The recent studies: name, task, method and tuner, status, trials done, best value."""

    #: Fires on Resume selected (or a double-click); carries the study record.
    resumeRequested = Signal(dict)
    #: Fires on Load into the form; carries the study record.
    loadRequested = Signal(dict)
    #: Fires on Refresh.
    refreshRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Recent studies", parent)
        self.studies: list[dict[str, Any]] = []
        #: the id of the study that runs now (never offered for resume), and whether one runs
        self.running: Callable[[], str | None] = lambda: None
        table = self.studies_table = QTableWidget(0, 6, self)
        table.setHorizontalHeaderLabels(["Study", "Task", "Method", "Status", "Trials", "Best"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.horizontalHeader().setStretchLastSection(True)
        table.setWordWrap(False)
        table.verticalHeader().setDefaultSectionSize(24)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        table.itemSelectionChanged.connect(self.update_buttons)
        table.itemDoubleClicked.connect(lambda *_: self._resume_selected())
        self.resume_selected_btn = QPushButton("Resume selected", self)
        self.resume_selected_btn.clicked.connect(self._resume_selected)
        self.load_selected_btn = QPushButton("Load into the form", self)
        self.load_selected_btn.setToolTip("Fill the form with the selected study's settings, to run it again or vary it")
        self.load_selected_btn.clicked.connect(self._load_selected)
        refresh = QPushButton("Refresh", self)
        refresh.clicked.connect(lambda: self.refreshRequested.emit())
        layout = QVBoxLayout(self)
        layout.addWidget(table, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.resume_selected_btn)
        buttons.addWidget(self.load_selected_btn)
        buttons.addStretch(1)
        buttons.addWidget(refresh)
        layout.addLayout(buttons)
        self.update_buttons()

    def resumable(self) -> list[dict[str, Any]]:
        """The unfinished studies that can be resumed now, newest first."""
        running = self.running()
        return [s for s in self.studies if s.get("status") in UNFINISHED and s["id"] != running
                and (s.get("extra") or {}).get("config")]

    def show_studies(self, studies: list[dict[str, Any]]) -> None:
        self.studies = studies
        table = self.studies_table
        table.setRowCount(len(studies))
        bold = QFont()
        bold.setBold(True)
        for i, s in enumerate(studies):
            extra = s.get("extra") or {}
            cfg = extra.get("config") or {}
            value = ((extra.get("summary") or {}).get("best") or {}).get("value")
            metric = (s.get("objective") or {}).get("metric") or ""
            cells = [
                s.get("name") or s["id"],
                s.get("task") or "",
                f"{cfg.get('method', '?')} · {(s.get('tuner') or {}).get('name', '?')}",
                s.get("status", ""),
                f"{s['_done']} / {planned_of(s)}",
                f"{metric} {value:.4g}" if isinstance(value, (int, float)) else "",
            ]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(Qt.ItemDataRole.UserRole, s["id"])
                if j == 0:
                    item.setToolTip(s["id"])
                if j == 3:
                    item.setForeground(QBrush(QColor(STUDY_STATUS_COLORS.get(s.get("status", ""), themed("#111827")))))
                    item.setFont(bold)
                table.setItem(i, j, item)
        table.resizeColumnToContents(3)
        self.update_buttons()

    def selected(self) -> dict[str, Any] | None:
        items = self.studies_table.selectedItems()
        if not items:
            return None
        sid = items[0].data(Qt.ItemDataRole.UserRole)
        return next((s for s in self.studies if s["id"] == sid), None)

    def update_buttons(self) -> None:
        s = self.selected()
        self.resume_selected_btn.setEnabled(bool(s) and self.running() is None and s in self.resumable())
        self.load_selected_btn.setEnabled(bool(s) and bool((s.get("extra") or {}).get("config")))

    def _resume_selected(self) -> None:
        s = self.selected()
        if s is not None and self.running() is None and s in self.resumable():
            self.resumeRequested.emit(s)

    def _load_selected(self) -> None:
        s = self.selected()
        if s is not None:
            self.loadRequested.emit(s)
