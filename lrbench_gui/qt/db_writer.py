"""Database writes off the GUI thread.

:class:`DbWriter` owns one worker thread; :meth:`DbWriter.write_trial` queues a record and
returns at once. The worker opens the database, adds the record (atomic write, file lock) and
reports back through signals. A record that cannot be written is saved beside the database as
``unsaved-trial-ID.json`` so nothing is lost, and the signal says where.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

__all__ = ["DbWriter"]


class _Worker(QObject):
    done = Signal(str, str)  # trial_id, ""
    failed = Signal(str, str)  # trial_id, message

    def __init__(self, db_path: Path | None) -> None:
        super().__init__()
        self.db_path = db_path

    @Slot(dict)
    def write(self, record: dict[str, Any]) -> None:
        from lrbench_gui.core.db import DatabaseError, PolicyDB

        trial_id = str(record.get("id"))
        try:
            PolicyDB(self.db_path).add_trial(record, replace=True)
        except (DatabaseError, OSError, ValueError) as exc:
            folder = Path(self.db_path).parent if self.db_path else Path.cwd()
            spare = folder / f"unsaved-trial-{trial_id}.json"
            try:
                spare.write_text(json.dumps(record))
                where = f"; the trial was saved to {spare}"
            except OSError:
                where = ""
            self.failed.emit(trial_id, f"could not record trial {trial_id}: {exc}{where}")
            return
        self.done.emit(trial_id, "")


class DbWriter(QObject):
    """Queue records for the database; writes happen on a worker thread, in order."""

    # a record was stored: (trial_id)
    written = Signal(str)
    # a record could not be stored (it was saved beside the database): (trial_id, message)
    failed = Signal(str, str)
    _submit = Signal(dict)

    def __init__(self, db_path: Path | str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from lrbench_gui.core.paths import default_db_path

        self.db_path = Path(db_path) if db_path else default_db_path()
        self.thread: QThread | None = None  # started on the first write
        self.worker: _Worker | None = None

    def _start(self) -> None:
        self.thread = QThread()
        self.thread.setObjectName("lrbench-db-writer")
        self.worker = _Worker(self.db_path)
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.write)
        self.worker.done.connect(lambda tid, _: self.written.emit(tid))
        self.worker.failed.connect(self.failed)
        self.thread.start()
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.close)

    def write_trial(self, record: dict[str, Any]) -> None:
        if self.thread is None:
            self._start()
        self._submit.emit(record)

    def close(self) -> None:
        """Finish the queued writes and stop the thread."""
        if self.thread is not None and self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()
