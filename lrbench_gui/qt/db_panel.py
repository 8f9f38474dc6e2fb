"""The Results panel: the policy database's trials, their curves, recommendations, and sharing.

Trials sit in a sortable, filterable table (task, policy, status, metric, cost); selecting
several overlays their LR and loss curves. The recommendations box ranks the policies of a task
and says what LR range worked. Export and Import share studies with other databases; an import
always shows its dry-run summary first and states any refusal in plain words.

Every database call runs on the panel's own one-thread pool, so opening a large database, an
import or an export never blocks the window; results come back as signals. Tests drive the
panel through :meth:`refresh`, :meth:`export_to`, :meth:`import_from` and
:meth:`recommend_for` and wait on the signals; only the buttons open dialogs.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Callable

import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QCoreApplication,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QRunnable,
    QSortFilterProxyModel,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
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

from lrbench_gui.core.db import DatabaseError, ImportRefused, PolicyDB
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["DatabasePanel", "TrialTableModel", "MAX_OVERLAY"]

MAX_OVERLAY = 12
_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f", "#7c3aed", "#b45309", "#0f766e", "#6b7280"]

# (header, row key, numeric)
_COLUMNS = [
    ("ID", "id", False),
    ("Study", "study", False),
    ("Task", "task", False),
    ("Policy", "policy", False),
    ("Status", "status", False),
    ("Metric", "metric", False),
    ("Value", "value", True),
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
        if role == Qt.ItemDataRole.ToolTipRole and key == "policy":
            return f"{row['policy']}\ncurves: {', '.join(row.get('curves') or []) or 'none'}"
        return None


class _Relay(QObject):
    """Carries a worker's result back to the GUI thread (queued connection)."""

    done = Signal(object)
    failed = Signal(object)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.fn = fn
        self.relay = relay

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI as a message
            self.relay.failed.emit(exc)
            return
        self.relay.done.emit(result)


class DatabasePanel(QWidget):
    """The database view; give it a :class:`PolicyDB`, or a path to open on the worker thread."""

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

    def __init__(self, db: PolicyDB | str | Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._db: PolicyDB | None = db if isinstance(db, PolicyDB) else None
        self._db_path = None if isinstance(db, PolicyDB) else (Path(db) if db is not None else None)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one database operation at a time, in order
        self._relays: set[_Relay] = set()
        self._curve_request = itertools.count()
        self._latest_curve_request = -1
        self._confirm_import: str | None = None  # a path whose dry run the user started from the button
        self._interactive_failure = False
        self._closed = False
        self._build()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)  # never leave the worker running at exit
        self.refresh()

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

        split = QSplitter(Qt.Orientation.Horizontal, self)
        self.model = TrialTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView(split)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)

        right = QSplitter(Qt.Orientation.Vertical, split)
        self.lr_plot = self._plot(right, "Learning rate", log_y=True)
        self.loss_plot = self._plot(right, "Loss", log_y=False)

        box = QGroupBox("Recommendations", right)
        bl = QVBoxLayout(box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Task:", box))
        self.task_combo = QComboBox(box)
        self.task_combo.setEditable(True)
        self.task_combo.setMinimumWidth(140)
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
        bl.addWidget(self.rec_table)
        self.range_label = QLabel("", box)
        self.range_label.setWordWrap(True)
        bl.addWidget(self.range_label)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)
        self.status_label = QLabel("", self)
        layout.addWidget(self.status_label)

        self.filter_edit.textChanged.connect(self.set_filter)
        self.refresh_button.clicked.connect(self.refresh)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.import_button.clicked.connect(self._on_import_clicked)
        self.recommend_button.clicked.connect(lambda: self.recommend_for(self.task_combo.currentText().strip(), self.k_spin.value()))
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.importFinished.connect(self._after_import)
        self.importRefused.connect(self._after_refusal)
        self.operationFailed.connect(self._after_failure)

    def _plot(self, parent: QWidget, title: str, *, log_y: bool) -> pg.PlotWidget:
        plot = pg.PlotWidget(parent, background="w")
        plot.setTitle(title, color="#374151", size="10pt")
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setLabel("bottom", "step")
        plot.setLogMode(x=False, y=log_y)
        plot.addLegend(offset=(8, 8))
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        return plot

    # The worker.

    def _submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None], on_failed: Callable[[BaseException], None] | None = None) -> None:
        if self._closed:
            return
        relay = _Relay()
        self._relays.add(relay)

        def done(result: Any) -> None:
            self._relays.discard(relay)
            if not self._closed:
                on_done(result)

        def failed(exc: Any) -> None:
            self._relays.discard(relay)
            if self._closed:
                return
            if on_failed is not None:
                on_failed(exc)
            else:
                self.operationFailed.emit(self._describe(exc))

        relay.done.connect(done, Qt.ConnectionType.QueuedConnection)
        relay.failed.connect(failed, Qt.ConnectionType.QueuedConnection)
        self._pool.start(_Job(fn, relay))

    @staticmethod
    def _describe(exc: BaseException) -> str:
        if isinstance(exc, (DatabaseError, ValueError, OSError)):
            return str(exc)
        return f"{type(exc).__name__}: {exc}"

    def _database(self) -> PolicyDB:
        """The database, opened on first use (on the worker thread)."""
        if self._db is None:
            self._db = PolicyDB(self._db_path)
        return self._db

    @property
    def db(self) -> PolicyDB | None:
        return self._db

    def is_busy(self) -> bool:
        return bool(self._relays)

    def shutdown(self) -> None:
        """Finish the running operation and stop the worker thread; the panel ignores late results."""
        if self._closed:
            return
        self._pool.waitForDone()
        self._closed = True
        self._pool.clear()

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    # Public operations.

    def refresh(self) -> None:
        """Reload the trial table (and the task list) from the database."""

        def load() -> tuple[list[dict], dict[str, int]]:
            db = self._database()
            return db.trial_rows(), db.tasks()

        def show(result: tuple[list[dict], dict[str, int]]) -> None:
            rows, tasks = result
            self.model.set_rows(rows)
            current = self.task_combo.currentText()
            self.task_combo.blockSignals(True)
            self.task_combo.clear()
            self.task_combo.addItems(list(tasks))
            if current:
                self.task_combo.setCurrentText(current)
            self.task_combo.blockSignals(False)
            path = self._db.path if self._db is not None else ""
            self.status_label.setText(f"{len(rows)} trials in {path}")
            self.refreshed.emit(len(rows))

        self._submit(load, show)

    def set_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)

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

    def selected_ids(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.proxy.index(r, 0).data(ID_ROLE) for r in rows]

    def export_to(self, path: str | Path, study_ids: list[str] | None = None) -> None:
        """Export to ``path`` on the worker; ``exportFinished`` or ``operationFailed`` follows."""
        target = str(path)
        self.status_label.setText(f"Exporting to {target}…")
        self._submit(lambda: self._database().export(target, study_ids), self._export_done)

    def import_from(self, path: str | Path, dry_run: bool = True, on_conflict: str = "refuse") -> None:
        """Import ``path`` (a dry run by default) on the worker.

        ``importFinished`` carries the report; a refusal comes as ``importRefused`` with every
        problem listed; an unreadable database as ``operationFailed``.
        """
        source = str(path)
        self.status_label.setText(f"{'Checking' if dry_run else 'Importing'} {source}…")

        def failed(exc: BaseException) -> None:
            if isinstance(exc, ImportRefused):
                report = exc.report.to_json()
                report["summary"] = exc.report.summary()
                self.importRefused.emit(report)
            else:
                self.operationFailed.emit(self._describe(exc))

        def done(report: Any) -> None:
            out = report.to_json()
            out["summary"] = report.summary()
            self.importFinished.emit(out)

        self._submit(lambda: self._database().import_file(source, dry_run=dry_run, on_conflict=on_conflict), done, failed)

    def recommend_for(self, task: str, k: int = 5) -> None:
        """Rank the task's policies on the worker; ``recommended`` carries the result."""
        if not task:
            self.banner.show_message("Choose a task to recommend policies for.", "warning")
            return

        def work() -> dict:
            db = self._database()
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
            report["summary"] + "\n\nImport these records now? A backup of the database is taken first.",
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
        request = next(self._curve_request)
        self._latest_curve_request = request

        def load() -> list[tuple[str, dict]]:
            db = self._database()
            return [(tid, db.curves(tid)) for tid in ids]

        def draw(result: list[tuple[str, dict]]) -> None:
            if request != self._latest_curve_request:
                return  # a newer selection is on its way
            self._draw_curves(result)

        self._submit(load, draw)

    def _draw_curves(self, result: list[tuple[str, dict]]) -> None:
        for plot in (self.lr_plot, self.loss_plot):
            plot.clear()
            if plot.plotItem.legend is not None:
                plot.plotItem.legend.clear()
        for (tid, curves), color in zip(result, itertools.cycle(_COLORS)):
            pen = pg.mkPen(color, width=1.6)
            if "lr" in curves:
                steps, values = curves["lr"]
                positive = values > 0  # the LR axis is logarithmic
                self.lr_plot.plot(steps[positive], values[positive], pen=pen, name=tid)
            if "loss" in curves:
                steps, values = curves["loss"]
                self.loss_plot.plot(steps, values, pen=pen, name=tid)
        self.curvesShown.emit([tid for tid, _ in result])

    def plotted_ids(self) -> list[str]:
        """The trial ids whose curves are drawn in the loss plot now."""
        return [item.name() for item in self.loss_plot.plotItem.listDataItems()]

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
