"""What the Results panel does with a study or a selection of trials: its context menu.

Right-click a trial (or select several, then right-click): *Export study…* (the study and all its
trials), *Export N selected trials…* (those trials with their studies' records, so the file
imports on its own), *Copy spec*, *Policy code…* (the trial's policy as a DeepSpeed block, HF
TrainingArguments fields or torch code: :class:`~lrbench_gui.qt.export_dialog.PolicyCodeDialog`),
*Checkpoints and merge…* (the trainer checkpoints the trials wrote, two of them chosen as the
later and the earlier of a ``merge`` study, whose form opens filled in the Methods panel) and
*Copy trial ids*.

Exports go through :meth:`PolicyDB.export <lrbench_gui.core.db.policy_db.PolicyDB.export>` on the
window's database thread, so they are atomic and deterministic like the whole-database export and
import with the same validation (``lrbench db export --study ID`` / ``--trial ID`` write the same
bytes). Tests call :meth:`ResultsActions.export_study`, :meth:`~ResultsActions.export_trials`,
:meth:`~ResultsActions.copy_spec`, :meth:`~ResultsActions.open_code` and
:meth:`~ResultsActions.request_merge` and wait on the signals; only the menu opens dialogs.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QWidget,
)

__all__ = ["ResultsActions", "CheckpointsView", "Checkpoint", "trial_checkpoints", "checkpoints_html", "merge_prefill",
           "open_merge_form", "import_question", "export_name", "CheckpointDialog"]

EXPORT_FILTER = "lrbench export (*.json.gz *.json)"
_STEP = re.compile(r"step-(\d+)\.safetensors$")


def export_name(study_ids: list[str] | None = None, trial_ids: list[str] | None = None) -> str:
    """The suggested file name of an export."""
    if study_ids and len(study_ids) == 1:
        return f"{_safe(study_ids[0])}.lrbench.json.gz"
    if trial_ids:
        return f"{len(trial_ids)}-trials.lrbench.json.gz" if len(trial_ids) > 1 else f"{_safe(trial_ids[0])}.lrbench.json.gz"
    return "lrbench-export.json.gz"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]", "_", text)[:80] or "export"


def import_question(report: dict[str, Any]) -> str:
    """The import prompt after a dry run: the summary, then what happens to the database first.
    ``report`` is the panel's dry-run report; ``db_exists``/``backup_dir`` say whether there is a
    file to back up (a database nothing was written to yet has none, so no backup is promised)."""
    if report.get("db_exists", True):
        where = f" into {report['backup_dir']}" if report.get("backup_dir") else ""
        first = (f"A backup of the database file is taken first{where} (lrbench db stats lists the backups; "
                 "the import's summary names it).")
    else:
        first = "The database has no file yet (nothing was stored in it so far), so there is nothing to back up first."
    return f"{report['summary']}\n\nImport these records now? {first}"


@dataclass(frozen=True)
class Checkpoint:
    """One trainer checkpoint a trial wrote (its record's ``extra.checkpoints``)."""

    trial: str
    task: str
    path: str
    step: int | None
    exists: bool
    resumable: bool  # the optimizer state is beside it (step-N.resume/state.json)

    def label(self) -> str:
        step = f"step {self.step}" if self.step is not None else Path(self.path).name
        missing = "" if self.exists else " (file missing)"
        return f"{self.trial} · {step}{missing}"


def trial_checkpoints(record: dict[str, Any]) -> list[Checkpoint]:
    """The ``.safetensors`` checkpoints of a trial record (a saved model folder is not one a
    merge takes), in step order."""
    extra = record.get("extra") if isinstance(record.get("extra"), dict) else {}
    out = []
    for raw in extra.get("checkpoints") or []:
        path = str(raw)
        if not path.endswith(".safetensors"):
            continue
        m = _STEP.search(path)
        p = Path(path)
        out.append(Checkpoint(str(record.get("id")), str(record.get("task")), path, int(m.group(1)) if m else None,
                              p.is_file(), (p.with_suffix(".resume") / "state.json").is_file()))
    return sorted(out, key=lambda c: (c.step is None, c.step or 0))


def checkpoints_html(record: dict[str, Any]) -> str:
    """The checkpoints of a trial as a few lines for a details pane ("" when it has none)."""
    found = trial_checkpoints(record)
    if not found:
        return ""
    rows = "".join(f"<li>{html.escape(c.label())}: <code>{html.escape(c.path)}</code></li>" for c in found)
    return f"<b>{html.escape(str(record.get('id')))}</b>: {len(found)} checkpoint{'s' if len(found) != 1 else ''}<ul>{rows}</ul>"


def merge_prefill(records: list[dict[str, Any]], later: str | None = None, earlier: str | None = None) -> dict[str, Any]:
    """What the ``merge`` form needs to merge two checkpoints of ``records``: ``{"task",
    "task_params", "tuner_params": {"later", "earlier"}}``. Without ``later``/``earlier``: the
    last two checkpoints of one trial, or the last of each of two trials (the one further along
    is the later). ``ValueError`` in one line when there are not two checkpoints of one task."""
    checkpoints = [c for r in records for c in trial_checkpoints(r)]
    if len(checkpoints) < 2:
        raise ValueError("a merge needs two checkpoints: run the trial with checkpoints (the Run panel's "
                         "Checkpoint every, or lrbench run --checkpoint-every N)")
    tasks = {c.task for c in checkpoints}
    if len(tasks) > 1:
        raise ValueError(f"the checkpoints are of different tasks ({', '.join(sorted(tasks))}): a merge averages "
                         "two checkpoints of the same model")
    if later is None or earlier is None:
        last_each = [[c for c in checkpoints if c.trial == r.get("id")][-1:] for r in records]
        picks = [c for group in last_each for c in group]
        if len(picks) < 2:
            picks = checkpoints[-2:]
        picks = sorted(picks[-2:], key=lambda c: c.step or 0)
        earlier, later = picks[0].path, picks[1].path
    if later == earlier:
        raise ValueError("choose two different checkpoints")
    record = next((r for r in records if any(c.path == later for c in trial_checkpoints(r))), records[0])
    return {"task": record.get("task"), "task_params": dict(record.get("task_params") or {}),
            "tuner_params": {"later": later, "earlier": earlier}}


def open_merge_form(methods_panel: Any, prefill: dict[str, Any]) -> Any:
    """Show the Methods panel's ``merge`` form filled from :func:`merge_prefill`; returns the form."""
    form = methods_panel.new_study("merge")
    form.set_values(prefill["tuner_params"], task=prefill.get("task"), task_params=prefill.get("task_params"))
    return form


class CheckpointDialog(QDialog):
    """The checkpoints of the chosen trials, and which two to merge (later and earlier)."""

    def __init__(self, checkpoints: list[Checkpoint], parent: QWidget | None = None, *,
                 chosen: tuple[str, str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Checkpoints and merge")
        self.resize(640, 360)
        form = QFormLayout(self)
        listing = QPlainTextEdit(self)
        listing.setReadOnly(True)
        listing.setPlainText("\n".join(f"{c.label()}{'  [resumable]' if c.resumable else ''}\n    {c.path}" for c in checkpoints)
                             or "These trials wrote no checkpoints.")
        form.addRow(listing)
        self.later = QComboBox(self)
        self.earlier = QComboBox(self)
        for c in checkpoints:
            self.later.addItem(c.label(), c.path)
            self.earlier.addItem(c.label(), c.path)
        if chosen is not None:  # merge_prefill's choice
            self.later.setCurrentIndex(max(0, self.later.findData(chosen[0])))
            self.earlier.setCurrentIndex(max(0, self.earlier.findData(chosen[1])))
        form.addRow("Later (theta_t)", self.later)
        form.addRow("Earlier (theta_t-1)", self.earlier)
        hint = QLabel("Merge opens the Methods panel's merge form with these two; it searches the weight between them.", self)
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #6b7280;")
        form.addRow(hint)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.merge_button = buttons.addButton("Merge…", QDialogButtonBox.ButtonRole.AcceptRole)
        self.merge_button.setEnabled(len(checkpoints) >= 2)
        copy = buttons.addButton("Copy paths", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText("\n".join(c.path for c in checkpoints)))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def chosen(self) -> tuple[str, str]:
        return str(self.later.currentData()), str(self.earlier.currentData())


class CheckpointsView(QWidget):
    """The checkpoints of the selected trials, and *Merge…* (the Results panel's Checkpoints tab)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        from PySide6.QtWidgets import QPushButton, QTextBrowser, QVBoxLayout

        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.text = QTextBrowser(self)
        layout.addWidget(self.text, 1)
        self.merge_button = QPushButton("Merge two of them…", self)
        self.merge_button.setToolTip("Choose the later and the earlier checkpoint, then the Methods panel's merge form opens")
        layout.addWidget(self.merge_button)
        self.checkpoints: list[Checkpoint] = []
        self.show_records([])

    def show_records(self, records: list[dict[str, Any]]) -> None:
        self.checkpoints = [c for r in records for c in trial_checkpoints(r)]
        parts = [checkpoints_html(r) for r in records]
        body = "".join(p for p in parts if p)
        if not records:
            body = "<p>Select trials to see the checkpoints they wrote.</p>"
        elif not body:
            body = ("<p>The selected trials wrote no checkpoints. Run one with checkpoints: the Run panel's "
                    "<i>Checkpoint every</i>, or <code>lrbench run --checkpoint-every N</code>.</p>")
        self.text.setHtml(body)
        self.merge_button.setEnabled(len(self.checkpoints) >= 2)


class ResultsActions(QObject):
    """The context menu of ``panel``'s trial table (a :class:`~lrbench_gui.qt.db_panel.DatabasePanel`)."""

    #: an export of a study or a selection finished: {"path", "bytes", "counts", "what"}
    exported = Signal(dict)
    #: an action failed; carries the reason in one line (also shown in the panel's banner)
    failed = Signal(str)
    #: a trial's spec is on the clipboard: (trial id)
    specCopied = Signal(str)
    #: the policy code dialog of a trial opened: (the dialog)
    codeOpened = Signal(object)
    #: the user chose two checkpoints to merge: merge_prefill's dict (the window opens the merge form)
    mergeRequested = Signal(dict)

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.panel = panel
        self.menu: QMenu | None = None
        table = panel.table
        table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        table.customContextMenuRequested.connect(self._menu_at)
        #: the "Checkpoints" tab beside the panel's details (when it has tabs): the selected trials'
        #: checkpoints, read when the tab is shown, and Merge…
        self.checkpoints_view: CheckpointsView | None = None
        tabs = getattr(panel, "side_tabs", None)
        if tabs is not None:
            self.checkpoints_view = CheckpointsView(tabs)
            tabs.addTab(self.checkpoints_view, "Checkpoints")
            self.checkpoints_view.merge_button.clicked.connect(lambda: self.request_merge(panel.selected_ids()))
            table.selectionModel().selectionChanged.connect(lambda *_: self._update_checkpoints())
            tabs.currentChanged.connect(lambda *_: self._update_checkpoints())
        self._checkpoint_request = 0

    # The menu.

    def _row(self, trial_id: str) -> dict[str, Any]:
        return next((r for r in self.panel.model.rows if r["id"] == trial_id), {})

    def build_menu(self, ids: list[str]) -> QMenu:
        """The menu for the trials ``ids`` (the selection), as the right-click shows it."""
        menu = QMenu(self.panel.table)
        studies = list(dict.fromkeys(s for s in (self._row(t).get("study") for t in ids) if s))
        for sid in studies[:5]:
            menu.addAction(f"Export study {sid}…", lambda s=sid: self._export_study_dialog(s))
        n = len(ids)
        menu.addAction(f"Export {n} selected trial{'s' if n != 1 else ''}…", lambda: self._export_trials_dialog(ids))
        menu.addSeparator()
        if n == 1:
            menu.addAction("Copy spec", lambda: self.copy_spec(ids[0]))
            menu.addAction("Policy code (DeepSpeed, HF, torch)…", lambda: self.open_code(ids[0]))
        menu.addAction("Checkpoints and merge…", lambda: self.request_merge(ids))
        menu.addSeparator()
        menu.addAction("Copy trial id" + ("s" if n != 1 else ""),
                       lambda: QGuiApplication.clipboard().setText("\n".join(ids)))
        return menu

    def _menu_at(self, pos: QPoint) -> None:
        table = self.panel.table
        index = table.indexAt(pos)
        if index.isValid() and not table.selectionModel().isRowSelected(index.row(), index.parent()):
            from lrbench_gui.qt.db_panel import ID_ROLE  # here: db_panel imports this module

            tid = index.siblingAtColumn(0).data(ID_ROLE)
            self.panel.select_trials([tid])
        ids = self.panel.selected_ids()
        if not ids:
            return
        self.menu = self.build_menu(ids)
        self.menu.popup(table.viewport().mapToGlobal(pos))

    def _update_checkpoints(self) -> None:
        view = self.checkpoints_view
        if view is None or not view.isVisible():
            return
        ids = self.panel.selected_ids()[:12]
        self._checkpoint_request += 1
        request = self._checkpoint_request
        if not ids:
            view.show_records([])
            return

        def load(db: Any) -> list[dict[str, Any]]:
            return [{"id": r["id"], "task": r.get("task"), "extra": {"checkpoints": (r.get("extra") or {}).get("checkpoints") or []}}
                    for r in (db.get(t, "trials") for t in ids) if r is not None]

        def done(records: list[dict[str, Any]]) -> None:
            if request == self._checkpoint_request:
                view.show_records(records)

        self._submit(load, done)

    # Exports.

    def _ask_path(self, title: str, name: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.panel, title, name, EXPORT_FILTER)
        return path

    def _export_study_dialog(self, study_id: str) -> None:
        path = self._ask_path(f"Export study {study_id}", export_name([study_id]))
        if path:
            self.export_study(study_id, path)

    def _export_trials_dialog(self, ids: list[str]) -> None:
        path = self._ask_path(f"Export {len(ids)} trial(s)", export_name(None, ids))
        if path:
            self.export_trials(ids, path)

    def export_study(self, study_id: str, path: str | Path) -> None:
        """Write study ``study_id`` and its trials to ``path`` on the database thread."""
        self._export(str(path), f"study {study_id}", lambda db, p: db.export(p, study_ids=[study_id], include_policies=False))

    def export_trials(self, trial_ids: list[str], path: str | Path) -> None:
        """Write the trials ``trial_ids`` (with their studies' records) to ``path``."""
        n = len(trial_ids)
        self._export(str(path), f"{n} trial{'s' if n != 1 else ''}",
                     lambda db, p: db.export(p, trial_ids=list(trial_ids), include_policies=False))

    def _export(self, path: str, what: str, job: Callable[[Any, str], dict]) -> None:
        self.panel.status_label.setText(f"Exporting {what} to {path}…")

        def done(info: dict) -> None:
            c = info["counts"]
            text = (f"Exported {what}: {c['studies']} stud{'y' if c['studies'] == 1 else 'ies'} and "
                    f"{c['trials']} trial{'s' if c['trials'] != 1 else ''} to {info['path']}.")
            self.panel.status_label.setText(text)
            self.panel.banner.show_message(text, "info")
            self.exported.emit({**info, "what": what})

        self._submit(lambda db: job(db, path), done)

    def _submit(self, fn: Callable[[Any], Any], done: Callable[[Any], None]) -> None:
        def failed(message: str) -> None:
            self.panel.status_label.setText("")
            self.panel.banner.show_message(message, "error")
            self.failed.emit(message)

        self.panel.jobs.submit(fn, done, failed)

    # One trial's policy.

    def _with_record(self, trial_id: str, then: Callable[[dict[str, Any]], None]) -> None:
        def load(db: Any) -> dict[str, Any]:
            record = db.get(trial_id, "trials")
            if record is None:
                raise KeyError(f"no trial {trial_id!r} in {db.path}")
            return record

        self._submit(load, then)

    def copy_spec(self, trial_id: str) -> None:
        """Put the trial's policy spec (JSON) on the clipboard."""
        def done(record: dict[str, Any]) -> None:
            QGuiApplication.clipboard().setText(json.dumps(record["policy"], indent=2))
            self.panel.status_label.setText(f"Copied the spec of trial {trial_id}.")
            self.specCopied.emit(trial_id)

        self._with_record(trial_id, done)

    def open_code(self, trial_id: str) -> None:
        """Open the policy code dialog of the trial's policy, for the trial's run length."""
        from lrbench_gui.qt.export_dialog import PolicyCodeDialog

        def done(record: dict[str, Any]) -> None:
            steps = (record.get("budget") or {}).get("steps") or (record.get("cost") or {}).get("steps") or 1000
            registry = self.panel.jobs.registry
            if registry is None:
                from lrbench_gui.plugins import get_registry

                registry = get_registry()
            dialog = PolicyCodeDialog(record["policy"], int(steps), registry, self.panel, title=f"trial {trial_id}")
            dialog.finished.connect(dialog.deleteLater)
            dialog.open()
            self.codeOpened.emit(dialog)

        self._with_record(trial_id, done)

    # Checkpoints.

    def request_merge(self, trial_ids: list[str], *, choose: bool = True) -> None:
        """Read the trials' checkpoints; with ``choose`` the user picks two in a dialog, else the
        defaults of :func:`merge_prefill`; ``mergeRequested`` carries the choice."""
        ids = list(trial_ids)

        def load(db: Any) -> list[dict[str, Any]]:
            return [r for r in (db.get(t, "trials") for t in ids) if r is not None]

        def done(records: list[dict[str, Any]]) -> None:
            found = [c for r in records for c in trial_checkpoints(r)]
            later = earlier = None
            if choose:
                try:
                    default = merge_prefill(records)["tuner_params"]
                    chosen = (default["later"], default["earlier"])
                except ValueError:
                    chosen = None
                dialog = CheckpointDialog(found, self.panel, chosen=chosen)
                if dialog.exec() != QDialog.DialogCode.Accepted:
                    return
                later, earlier = dialog.chosen()
            try:
                prefill = merge_prefill(records, later, earlier)
            except ValueError as exc:
                self.panel.banner.show_message(str(exc), "warning")
                self.failed.emit(str(exc))
                return
            self.mergeRequested.emit(prefill)

        self._submit(load, done)
