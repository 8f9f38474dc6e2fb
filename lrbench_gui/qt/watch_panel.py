"""The Watch panel: trials running outside the app, followed live.

``lrbench run``, ``lrbench tune`` and ``lrbench watch -- CMD`` in a terminal mirror each trial they
run into the live folder (:mod:`lrbench_gui.core.runs.live`); a script started by nobody can
write its report file anywhere (``LRBENCH_REPORT=run.jsonl``) and be followed with "Follow a
report file...". This panel polls them on a timer (bounded reads, on the GUI thread: a poll reads
at most a few MB), plots every trial's LR and loss as they stream, and "Stop trial" creates the
trial's stop file, which the process running it honours (it is then recorded as stopped by that
process, not by the app: the terminal's ``lrbench`` stores what it runs).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.records import spec_label
from lrbench_gui.core.runs.live import Followed, LiveWatcher, live_dir, request_stop
from lrbench_gui.qt.identity import trial_colour
from lrbench_gui.qt.live_plot import LivePlot
from lrbench_gui.qt.widgets import STATUS_COLORS, MessageBanner

__all__ = ["WatchPanel"]

_COLUMNS = ("Trial", "Source", "Status", "Step", "Loss", "LR", "Metric")


def _num(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4g}" if math.isfinite(value) else "-"
    return ""


class WatchPanel(QWidget):
    """Trials from the live folder and followed report files; see the module docstring."""

    # a trial appeared: (trial id)
    trialSeen = Signal(str)

    def __init__(self, folder: Path | None = None, interval_ms: int = 500, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.watcher = LiveWatcher(folder)
        self.folder = folder
        self.rows: dict[str, int] = {}
        self.banner = MessageBanner(self)
        where = folder if folder is not None else live_dir()
        self.title = QLabel("Trials running outside the app: <b>lrbench run</b>, <b>lrbench tune</b> and "
                            "<b>lrbench watch -- CMD</b> in a terminal appear here as they run.")
        self.title.setWordWrap(True)
        self.hint = QLabel(f"Followed folder: {where}. A script lrbench did not start: set "
                           "LRBENCH_REPORT=FILE.jsonl, call lrbench_gui.report, then Follow a report file.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #6b7280;")
        self.follow_btn = QPushButton("Follow a report file...")
        self.follow_btn.clicked.connect(self._follow_clicked)
        self.stop_btn = QPushButton("Stop trial")
        self.stop_btn.setToolTip("Ask the selected trial to stop (its stop file); the process running it records it")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop_selected)
        self.clear_btn = QPushButton("Clear ended")
        self.clear_btn.clicked.connect(self.clear_ended)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.plot = LivePlot(self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.follow_btn)
        buttons.addWidget(self.stop_btn)
        buttons.addWidget(self.clear_btn)
        buttons.addStretch(1)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(buttons)
        top_layout.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.plot)
        split.setSizes([300, 500])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.banner)
        layout.addWidget(self.title)
        layout.addWidget(self.hint)
        layout.addWidget(split, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.poll_seconds = 0.0
        self.poll()

    # following

    def follow(self, path: str | Path) -> Followed:
        """Follow a report file (a script writing protocol lines that nothing mirrors)."""
        item = self.watcher.follow(path)
        self._row(item)
        self.poll()
        return item

    def _follow_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Follow a report file", str(Path.home()),
                                              "Report files (*.jsonl *.json);;All files (*)")
        if path:
            self.follow(path)

    def poll(self) -> None:
        """Read what the followed trials wrote since the last poll; plot it, update the table."""
        started = time.monotonic()
        try:
            news = self.watcher.poll()
        except OSError as exc:  # the folder went away: say it once, keep what is shown
            self.banner.show_message(f"Cannot read the live folder: {exc}", "warning")
            return
        for trial_id, events in news.items():
            item = self.watcher.trials[trial_id]
            self._row(item)
            for event in events:
                if event.type == "step":
                    self.plot.append(trial_id, event["step"], event["lr"], event["loss"])
                    if isinstance(event.get("switch"), str):  # a reactive policy changed the LR here
                        self.plot.mark_switch(trial_id, event["step"], event["lr"], event["switch"])
        for item in self.watcher.trials.values():
            self._row(item)
        self._selection_changed()
        self.poll_seconds = time.monotonic() - started

    def _row(self, item: Followed) -> None:
        row = self.rows.get(item.trial_id)
        if row is None:
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.rows[item.trial_id] = row
            self.plot.add_trial(item.trial_id, item.label, trial_colour(item.trial_id))  # as in Live and Results
            self.trialSeen.emit(item.trial_id)
        steps = f"{item.last_step + 1 if item.last_step is not None else 0}" + (f" / {item.steps}" if item.steps else "")
        metric = ""
        if item.metrics:
            key = next((k for k in ("val_loss", "val_acc", "accuracy") if k in item.metrics), next(iter(item.metrics)))
            metric = f"{key} {_num(item.metrics[key])}"
        policy = item.meta.get("policy")
        label = f"{item.label} · {spec_label(policy, _registry())}" if isinstance(policy, dict) else item.label
        self.plot.set_label(item.trial_id, label)  # the legend names the policy too
        values = (label, item.source, item.status, steps, _num(item.last_loss), _num(item.last_lr), metric)
        for col, text in enumerate(values):
            cell = self.table.item(row, col)
            if cell is None:
                cell = QTableWidgetItem()
                cell.setData(Qt.ItemDataRole.UserRole, item.trial_id)
                command = item.meta.get("command")
                if col == 0 and isinstance(command, list):
                    cell.setToolTip(" ".join(map(str, command))[:500])
                self.table.setItem(row, col, cell)
            if cell.text() != text:
                cell.setText(text)
            if col == 2 and item.status in STATUS_COLORS:
                cell.setForeground(QColor(STATUS_COLORS[item.status]))

    def selected(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        ids = {r: t for t, r in self.rows.items()}
        return [ids[r] for r in rows if r in ids]

    def _selection_changed(self) -> None:
        items = [self.watcher.trials.get(t) for t in self.selected()]
        self.stop_btn.setEnabled(any(i is not None and i.running for i in items))

    def stop_selected(self) -> None:
        asked = [t for t in self.selected() if (i := self.watcher.trials.get(t)) and i.running and request_stop(i)]
        if asked:
            self.banner.show_message(f"Asked {', '.join(asked)} to stop; the process running it records it.", "info", 6000)

    def clear_ended(self) -> None:
        """Take ended trials out of the table and the plot (their records are wherever their
        process stored them)."""
        for trial_id in [t for t, i in self.watcher.trials.items() if not i.running]:
            self.watcher.forget(trial_id)
            self.plot.remove_trial(trial_id)
        self.table.setRowCount(0)
        self.rows = {}
        for item in self.watcher.trials.values():
            self._row(item)

    def running(self) -> int:
        return sum(1 for i in self.watcher.trials.values() if i.running)


def _registry():
    """The app's plugins (loaded once per process), so a label names the LR as every panel does."""
    from lrbench_gui.plugins import get_registry

    return get_registry()
