"""The Results panel: the policy database's trials, their curves, recommendations, and sharing.

Trials sit in a sortable, filterable table (policy, metric and value first); below it, the
study being analysed (with its tuner's confidence) and the recommendations (the policies of a
task ranked, what LR range worked). Beside it, the analysis views of :mod:`lrbench_gui.qt.results`:
the selected trials' curves (LR, loss, evaluation curves) and side-by-side comparison, and, over
the selected trials' studies (or one study, or only the selection), the metric against the LR per
family with the range test, against any searched parameter, parallel coordinates and parameter
importance. Export and Import share studies with other databases; an import always shows its
dry-run summary first and states any refusal in plain words.

Every database call runs on the window's :class:`~lrbench_gui.qt.db_jobs.DatabaseJobs` (a
panel made on its own gets a queue of its own), so opening a large database, an import or an
export never blocks the window, and they take their turn with the studies' writes; results come
back as signals. Tests drive the panel through :meth:`refresh`, :meth:`export_to`,
:meth:`import_from` and :meth:`recommend_for` and wait on the signals; only the buttons open
dialogs.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QTabWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core import analysis
from lrbench_gui.core.db import ImportRefused, PolicyDB
from lrbench_gui.core.db.storage import backup_dir
from lrbench_gui.core.registry import Registry
from lrbench_gui.qt.db_jobs import DatabaseJobs
from lrbench_gui.qt.results import ResultsViews, StudyDetails
from lrbench_gui.qt.results.views import SCOPE_SELECTED, SCOPE_SELECTION
from lrbench_gui.qt.results_actions import ResultsActions, import_question
from lrbench_gui.qt.results_filter import AnnotationEditor, ResultsFilter
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["DatabasePanel", "TrialTableModel", "MAX_OVERLAY"]

MAX_OVERLAY = 12

# (header, row key, numeric): the policy, metric and value first, so a narrow table shows them
_COLUMNS = [
    ("ID", "id", False),
    ("Policy", "label", False),  # short but telling the trials apart (core.labels); in full on hover
    ("Metric", "metric", False),
    ("Value", "value", True),
    ("Status", "status", False),
    ("Study", "study", False),
    ("Task", "task", False),
    ("Steps", "steps", True),
    ("Tokens", "tokens", True),
    ("Seconds", "seconds", True),
]
SORT_ROLE = Qt.ItemDataRole.UserRole
ID_ROLE = Qt.ItemDataRole.UserRole + 1


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short_labels(records: list[dict], registry: Registry | None) -> dict[str, str]:
    """Short labels that tell these trials apart (:func:`lrbench_gui.qt.identity.short_labels`)."""
    try:
        from lrbench_gui.qt.identity import short_labels
    except ImportError:  # pragma: no cover - identity.py is part of the app
        return {}
    return short_labels(records, registry)


class TrialTableModel(QAbstractTableModel):
    """Rows from :meth:`PolicyDB.trial_rows`; the sort role gives numbers as numbers."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _COLUMNS[section][0]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        _, key, numeric = _COLUMNS[index.column()]
        value = row.get(key)
        if key == "label" and not value:
            value = row.get("policy")  # rows made without PolicyDB.trial_rows
        if role == Qt.ItemDataRole.DisplayRole:
            return _fmt(value)
        if role == SORT_ROLE:
            if numeric:
                return float(value) if isinstance(value, (int, float)) else math.inf  # blanks sort last
            return "" if value is None else str(value)
        if role == ID_ROLE:
            return row["id"]
        if role == Qt.ItemDataRole.TextAlignmentRole and numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and key == "label":
            return f"{row.get('full_label') or row['policy']}\ncurves: {', '.join(row.get('curves') or []) or 'none'}"
        return None


class DatabasePanel(QWidget):
    """The database view of ``db`` (a path, or a :class:`PolicyDB` for its path; default: the
    jobs' database), read and written through ``jobs`` (default: a queue of its own, validating
    with ``registry``)."""

    # The trial table was (re)loaded; carries the number of trials.
    refreshed = Signal(int)
    # An export finished; carries {"path", "bytes", "counts"}.
    exportFinished = Signal(dict)
    # An import or its dry run finished without refusal; carries the report's JSON plus "summary".
    importFinished = Signal(dict)
    # An import was refused; carries the report's JSON plus "summary" (nothing was written).
    importRefused = Signal(dict)
    # Opening the database, an export or an import failed; carries the reason in plain words.
    operationFailed = Signal(str)
    # Recommendations were computed; carries {"recommend": ..., "lr_range": ...}.
    recommended = Signal(dict)
    # The curves of the selected trials were drawn; carries their ids.
    curvesShown = Signal(list)
    # The across-trial views got their rows; carries {"trials": n, "studies": [ids], "range_tests": n}.
    analysisShown = Signal(dict)

    def __init__(self, db: PolicyDB | str | Path | None = None, parent: QWidget | None = None, *,
                 jobs: DatabaseJobs | None = None, registry: Registry | None = None) -> None:
        super().__init__(parent)
        path = db.path if isinstance(db, PolicyDB) else db
        self._own_jobs = jobs is None
        if jobs is None:
            if registry is None and isinstance(db, PolicyDB):
                registry = db.registry
            jobs = DatabaseJobs(path, self, registry=registry)
        elif path is not None:
            jobs.set_db_path(path)
        self.jobs = jobs
        self._busy = 0
        self._curve_request = itertools.count()
        self._latest_curve_request = -1
        self._latest_analysis_request = -1
        self._analysis_key: tuple | None = None
        self._studies: list[tuple[str, str]] = []
        self._confirm_import: str | None = None  # a path whose dry run the user started from the button
        self._interactive_failure = False
        self._closed = False
        self._loaded = False
        self._build()
        if self._own_jobs:
            self.refresh()  # a panel on its own loads now; the window's loads when first shown

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if not self._split_moved:  # the table wide enough for ID, policy, metric and value (~420 px)
            width = self.split.width()
            left = max(min(420, width // 2), min(int(width * 0.4), width - 520))
            self.split.setSizes([left, width - left])

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._loaded:
            self.refresh()
        elif self._analysis_key is None:
            self._load_analysis()  # trials arrived while another panel was shown

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.banner = MessageBanner(self)
        layout.addWidget(self.banner)

        bar = QHBoxLayout()
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter trials by any column: task, policy, status...")
        self.filter_edit.setClearButtonEnabled(True)
        bar.addWidget(self.filter_edit, 1)
        self.refresh_button = QPushButton("Refresh", self)
        self.export_button = QPushButton("Export…", self)
        self.export_button.setToolTip("Write the studies, trials and policies to a file to share (.json or .json.gz)")
        self.import_button = QPushButton("Import…", self)
        self.import_button.setToolTip("Import an export file; shows what it would add before writing anything")
        for b in (self.refresh_button, self.export_button, self.import_button):
            bar.addWidget(b)
        layout.addLayout(bar)
        self._all_rows: list[dict[str, Any]] = []
        self.results_filter = ResultsFilter(self)  # task, family, status, tag; group by
        layout.addWidget(self.results_filter)

        # the table (and the study / recommendations below it) | the analysis views; neither side
        # collapses, and the views start with the larger share
        self.split = split = QSplitter(Qt.Orientation.Horizontal, self)
        split.setChildrenCollapsible(False)
        left = QSplitter(Qt.Orientation.Vertical, split)
        left.setChildrenCollapsible(False)
        self.left_split = left
        self.model = TrialTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView(left)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(140)
        self.table.setWordWrap(False)  # one line a trial; the full text is in the tooltip and the details
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        for col, width in enumerate((120, 146, 64, 64, 80, 110, 90, 60, 70, 70)[: len(_COLUMNS)]):
            self.table.setColumnWidth(col, width)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)

        self.side_tabs = QTabWidget(left)
        self.side_tabs.setDocumentMode(True)
        self.study_details = StudyDetails(self.side_tabs)
        self.side_tabs.addTab(self.study_details, "Study")
        box = QWidget(self.side_tabs)
        self.side_tabs.addTab(box, "Recommendations")
        self.annotations = AnnotationEditor(self.jobs, self.side_tabs)  # the selected trial's tags and notes
        self.side_tabs.addTab(self.annotations, "Tags && notes")
        bl = QVBoxLayout(box)
        bl.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        row.addWidget(QLabel("Task:", box))
        self.task_combo = QComboBox(box)
        self.task_combo.setEditable(True)
        self.task_combo.setMinimumWidth(80)
        row.addWidget(self.task_combo, 1)
        row.addWidget(QLabel("Top", box))
        self.k_spin = QSpinBox(box)
        self.k_spin.setRange(1, 50)
        self.k_spin.setValue(5)
        row.addWidget(self.k_spin)
        self.recommend_button = QPushButton("Recommend", box)
        row.addWidget(self.recommend_button)
        bl.addLayout(row)
        self.rec_table = QTableWidget(0, 7, box)
        self.rec_table.setHorizontalHeaderLabels(["#", "Policy", "Mean", "Best", "Trials", "Steps", "Seconds"])
        self.rec_table.verticalHeader().setVisible(False)
        self.rec_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.rec_table.horizontalHeader().setStretchLastSection(True)
        bl.addWidget(self.rec_table, 1)
        self.range_label = QLabel("", box)
        self.range_label.setWordWrap(True)
        bl.addWidget(self.range_label)
        self.side_tabs.setMinimumHeight(120)
        left.addWidget(self.table)
        left.addWidget(self.side_tabs)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        left.setSizes([420, 260])

        self.views = ResultsViews(split)  # its views make their plots when first shown
        split.addWidget(left)
        split.addWidget(self.views)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([420, 640])
        self._split_moved = False  # until the user drags the handle, resizing keeps the table's columns in view
        split.splitterMoved.connect(lambda *_: setattr(self, "_split_moved", True))
        layout.addWidget(split, 1)
        self.status_label = QLabel("", self)
        layout.addWidget(self.status_label)

        self.filter_edit.textChanged.connect(self.set_filter)
        self.results_filter.changed.connect(self._apply_filters)
        self.annotations.saved.connect(lambda _id: self.refresh())
        self.refresh_button.clicked.connect(self.refresh)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.import_button.clicked.connect(self._on_import_clicked)
        self.recommend_button.clicked.connect(lambda: self.recommend_for(self.task_combo.currentText().strip(), self.k_spin.value()))
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.views.scopeChanged.connect(self._load_analysis)
        self.importFinished.connect(self._after_import)
        self.importRefused.connect(self._after_refusal)
        self.operationFailed.connect(self._after_failure)
        #: the table's context menu: export a study or a selection, policy code, checkpoints and merge
        self.results_actions = ResultsActions(self)

    # The jobs.

    def _submit(self, fn: Callable[[PolicyDB], Any], on_done: Callable[[Any], None],
                on_failed: Callable[[str], None] | None = None) -> None:
        if self._closed:
            return
        self._busy += 1

        def done(result: Any) -> None:
            self._busy -= 1
            if not self._closed:
                on_done(result)

        def failed(message: str) -> None:
            self._busy -= 1
            if not self._closed:
                (on_failed or self.operationFailed.emit)(message)

        self.jobs.submit(fn, done, failed)

    def is_busy(self) -> bool:
        return self._busy > 0

    def shutdown(self) -> None:
        """Ignore late results from now on; a queue of the panel's own finishes its jobs and stops."""
        if self._closed:
            return
        self._closed = True
        if self._own_jobs:
            self.jobs.close()

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    # Public operations.

    def refresh(self) -> None:
        """Reload the trial table (and the task list) from the database."""
        self._loaded = True

        def load(db: PolicyDB) -> tuple[list[dict], dict[str, int], Path, list[tuple[str, str]]]:
            studies = [(s["id"], str(s.get("name") or s["id"])) for s in reversed(db.studies())]  # newest first
            return db.trial_rows(), db.tasks(), db.path, studies

        def show(result: tuple[list[dict], dict[str, int], Path, list[tuple[str, str]]]) -> None:
            rows, tasks, path, studies = result
            self._all_rows = rows
            self.results_filter.set_rows(rows)
            self._apply_filters()
            self._studies = studies
            self._analysis_key = None  # the records may have changed: the views load again
            self.views.set_studies(studies)
            current = self.task_combo.currentText()
            self.task_combo.blockSignals(True)
            self.task_combo.clear()
            self.task_combo.addItems(list(tasks))
            if current:
                self.task_combo.setCurrentText(current)
            self.task_combo.blockSignals(False)
            self.status_label.setText(f"{len(rows)} trials in {path}")
            self._load_analysis()
            self.refreshed.emit(len(rows))

        self._submit(load, show)

    def set_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)

    def _apply_filters(self) -> None:
        """The table shows the rows the filter bar lets through, group after group."""
        self.model.set_rows(self.results_filter.ordered(self._all_rows))

    def visible_ids(self) -> list[str]:
        """Trial ids in the table's current order, after the filter."""
        return [self.proxy.index(r, 0).data(ID_ROLE) for r in range(self.proxy.rowCount())]

    def select_trials(self, ids: list[str]) -> None:
        """Select these trials in the table (their curves are then drawn)."""
        wanted = set(ids)
        sel = self.table.selectionModel()
        sel.clearSelection()
        selection = QItemSelection()
        for r in range(self.proxy.rowCount()):
            idx = self.proxy.index(r, 0)
            if idx.data(ID_ROLE) in wanted:
                selection.select(idx, self.proxy.index(r, self.proxy.columnCount() - 1))
        sel.select(selection, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
        if not selection.isEmpty():
            self.table.scrollTo(selection.indexes()[0], QAbstractItemView.ScrollHint.PositionAtCenter)  # in view

    def selected_ids(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.proxy.index(r, 0).data(ID_ROLE) for r in rows]

    def export_to(self, path: str | Path, study_ids: list[str] | None = None) -> None:
        """Export to ``path`` on the worker; ``exportFinished`` or ``operationFailed`` follows."""
        target = str(path)
        self.status_label.setText(f"Exporting to {target}…")
        self._submit(lambda db: db.export(target, study_ids), self._export_done)

    def import_from(self, path: str | Path, dry_run: bool = True, on_conflict: str = "refuse") -> None:
        """Import ``path`` (a dry run by default) on the worker.

        ``importFinished`` carries the report; a refusal comes as ``importRefused`` with every
        problem listed; an unreadable database as ``operationFailed``.
        """
        source = str(path)
        self.status_label.setText(f"{'Checking' if dry_run else 'Importing'} {source}…")

        def work(db: PolicyDB) -> tuple[bool, dict]:
            try:
                report = db.import_file(source, dry_run=dry_run, on_conflict=on_conflict)
            except ImportRefused as exc:
                report = exc.report
                refused = True
            else:
                refused = False
            # whether there is a file to back up, for the prompt (a fresh database has none yet)
            where = {"db_exists": db.exists, "backup_dir": str(backup_dir(db.target))}
            return refused, {**report.to_json(), "summary": report.summary(), **where}

        def done(result: tuple[bool, dict]) -> None:
            refused, report = result
            (self.importRefused if refused else self.importFinished).emit(report)

        self._submit(work, done)

    def recommend_for(self, task: str, k: int = 5) -> None:
        """Rank the task's policies on the worker; ``recommended`` carries the result."""
        if not task:
            self.banner.show_message("Choose a task to recommend policies for.", "warning")
            return

        def work(db: PolicyDB) -> dict:
            return {"recommend": db.recommend(task, k=k), "lr_range": db.lr_range(task)}

        self._submit(work, self._show_recommendations)

    # Results on the GUI thread.

    def _export_done(self, info: dict) -> None:
        self._interactive_failure = False
        c = info["counts"]
        text = f"Exported {c['studies']} studies, {c['trials']} trials and {c['policies']} policies to {info['path']}."
        self.status_label.setText(text)
        self.banner.show_message(text, "info")
        self.exportFinished.emit(info)

    def _after_import(self, report: dict) -> None:
        self._interactive_failure = False
        if report["dry_run"]:
            self.status_label.setText(f"Checked {report['file']}.")
            if self._confirm_import == report["file"]:
                self._confirm_import = None
                self._ask_to_import(report)
            return
        self.status_label.setText(f"Imported {report['file']}.")
        self.banner.show_message(report["summary"], "info")
        self.refresh()

    def _ask_to_import(self, report: dict) -> None:
        if not any(report["added"].values()) and not any(report["replaced"].values()):
            QMessageBox.information(self, "Nothing to import", report["summary"])
            return
        answer = QMessageBox.question(
            self,
            "Import",
            import_question(report),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.import_from(report["file"], dry_run=False)

    def _after_refusal(self, report: dict) -> None:
        self._interactive_failure = False
        self.status_label.setText(f"Refused {report['file']}; nothing was written.")
        self.banner.show_message(report["summary"], "error")
        if self._confirm_import == report["file"]:
            self._confirm_import = None
            QMessageBox.warning(self, "Import refused", report["summary"])

    def _after_failure(self, message: str) -> None:
        self.status_label.setText("")
        self.banner.show_message(message, "error")
        if self._interactive_failure:
            self._interactive_failure = False
            QMessageBox.warning(self, "Database", message)

    def _show_recommendations(self, result: dict) -> None:
        rec, rng = result["recommend"], result["lr_range"]
        rows = rec["results"]
        self.rec_table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = [str(r["rank"]), r["label"], _fmt(r["mean"]), _fmt(r["best"]), str(r["n"]), _fmt(r["cost"].get("steps")), _fmt(r["cost"].get("seconds"))]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j == 1:
                    item.setToolTip(f"best trial {r['best_trial']}; mean cost {r['mean_cost']}")
                self.rec_table.setItem(i, j, item)
        lines = []
        if rec["metric"] is None:
            lines.append(f"No completed trials with a metric for {rec['task']!r}.")
        else:
            lines.append(f"Ranked by mean {rec['metric']} ({'lower' if rec['mode'] == 'min' else 'higher'} is better) over {rec['considered']} trials.")
        if rng["suggested"]:
            lines.append(f"LR range from {len(rng['range_tests'])} range test(s): {rng['suggested'][0]:.3g} to {rng['suggested'][1]:.3g}.")
        if rng["from_trials"]:
            ft = rng["from_trials"]
            lines.append(f"Peak LR of the {ft['n']} trial(s) within {ft['tolerance']:.0%} of the best: {ft['lr_min']:.3g} to {ft['lr_max']:.3g}.")
        self.range_label.setText("\n".join(lines))
        self.recommended.emit(result)

    def _on_selection(self, *_: Any) -> None:
        ids = self.selected_ids()[:MAX_OVERLAY]
        one = next((r for r in self.model.rows if len(ids) == 1 and r["id"] == ids[0]), None)
        self.annotations.show_record(one["id"] if one else None, (one or {}).get("tags") or [], (one or {}).get("notes") or "")
        request = next(self._curve_request)
        self._latest_curve_request = request

        def load(db: PolicyDB) -> tuple[list[tuple[str, dict, dict]], dict[str, str]]:
            records = [r for r in (db.get(tid, "trials") for tid in ids) if r is not None]
            rows = {r["id"]: r for r in analysis.analysis_rows(records, db.registry)}
            return [(tid, rows[tid], db.curves(tid)) for tid in ids if tid in rows], _short_labels(records, db.registry)

        def draw(result: tuple[list[tuple[str, dict, dict]], dict[str, str]]) -> None:
            if request != self._latest_curve_request:
                return  # a newer selection is on its way
            items, labels = result
            self.views.set_selection(items, labels)
            self.curvesShown.emit([tid for tid, _, _ in items])

        self._submit(load, draw)
        self._load_analysis()

    def _analysis_scope(self) -> tuple[str, tuple[str, ...]]:
        """What the across-trial views analyse now: ("trials", ids) or ("studies", ids)."""
        scope = self.views.scope()
        ids = self.selected_ids()
        if scope == SCOPE_SELECTED:
            return "trials", tuple(ids)
        if scope != SCOPE_SELECTION:
            return "studies", (scope,)
        wanted = set(ids)
        studies = tuple(dict.fromkeys(r["study"] for r in self.model.rows if r["id"] in wanted and r.get("study")))
        if not studies and ids:  # trials of no study (run on their own): those trials
            return "trials", tuple(ids)
        if not studies:  # nothing selected: the newest study with trials in the table
            have = {r.get("study") for r in self.model.rows}
            studies = tuple(sid for sid, _ in self._studies if sid in have)[:1]
        return "studies", studies

    def _load_analysis(self, *_: Any) -> None:
        """Load the rows of what the across-trial views analyse (on the worker), unless they are
        the ones shown; ``analysisShown`` follows. In a shown window whose current panel is
        another, it waits until this one is shown (a study stores a trial every few seconds)."""
        if not self.isVisible() and self.window().isVisible():
            self._analysis_key = None
            return
        kind, ids = self._analysis_scope()
        key = (kind, ids)
        if key == self._analysis_key:
            return
        self._analysis_key = key
        request = next(self._curve_request)
        self._latest_analysis_request = request

        def load(db: PolicyDB) -> dict[str, Any]:
            if kind == "trials":
                trials = [t for t in (db.get(tid, "trials") for tid in ids) if t is not None]
                study_ids = list(dict.fromkeys(t["study"] for t in trials if t.get("study")))
            else:
                study_ids = list(ids)
                trials = [t for sid in study_ids for t in db.trials(study=sid)]
            tests: dict[str, dict] = {}
            for task in dict.fromkeys(t.get("task") for t in trials):
                for t in db.trials(task=task):
                    if t.get("kind") == "range_test":
                        tests.setdefault(t["id"], t)
            studies = [s for s in (db.get(sid, "studies") for sid in study_ids) if s is not None]
            return {"rows": analysis.analysis_rows(trials, db.registry), "range_tests": analysis.range_tests(tests.values()),
                    "studies": studies}

        def show(result: dict[str, Any]) -> None:
            if request != self._latest_analysis_request:
                return
            self.views.set_analysis(result["rows"], result["range_tests"])
            self.study_details.show_studies(result["studies"], result["rows"])
            self.analysisShown.emit({"trials": len(result["rows"]), "studies": [s["id"] for s in result["studies"]],
                                     "range_tests": len(result["range_tests"])})

        self._submit(load, show)

    @property
    def lr_plot(self) -> Any:
        """The Curves view's LR plot (one named curve per trial)."""
        return self.views.curves.lr_plot

    @property
    def loss_plot(self) -> Any:
        """The Curves view's training-loss plot (one named curve per trial)."""
        return self.views.curves.loss_plot

    def plotted_ids(self) -> list[str]:
        """The trial ids whose curves are drawn in the loss plot now."""
        names = [item.name() for item in self.loss_plot.plotItem.listDataItems()]
        return list(dict.fromkeys(n for n in names if n))  # the faint raw curves have no name

    # The buttons' dialogs.

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the database", "lrbench-export.json.gz", "lrbench export (*.json.gz *.json)")
        if path:
            self._interactive_failure = True
            self.export_to(path)

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import into the database", "", "lrbench export (*.json *.json.gz *.gz);;All files (*)")
        if path:
            self._confirm_import = path
            self._interactive_failure = True
            self.import_from(path, dry_run=True)
