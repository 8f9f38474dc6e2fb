"""The GUI's one database job queue: one worker thread, one open database per path, in order.

Only the app process writes the database, and never on the GUI thread. Every panel hands its
database work to the window's :class:`DatabaseJobs`: ``submit(fn, on_done, on_failed)`` queues
``fn(db)``, where ``db`` is the :class:`~lrbench_gui.core.db.PolicyDB` of the queue's current
path, opened on the worker the first time and kept (a later job reads only what another process
changed since, not the whole file again). Jobs run in submission order, so a study's record
always lands before its trials, and the callbacks run on the GUI thread.

:meth:`DatabaseJobs.write_trial` is the one way a finished trial reaches the database, for the
Run panel's trials and the studies' alike: a record that cannot be written (the database is
unreadable, locked past the wait, read-only, the disk is full) goes to a recovery file
(:mod:`lrbench_gui.core.db.recovery`: beside the database, else in the data folder, else in the
temporary folder), and ``on_failed`` gets one line that says where and the ``lrbench db import``
command that adds it. Nothing trained is lost.
"""

from __future__ import annotations

import itertools
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

if TYPE_CHECKING:
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.records import StudyRecord, TrialRecord
    from lrbench_gui.core.registry import Registry

__all__ = ["DatabaseJobs", "describe_error"]


def describe_error(exc: BaseException) -> str:
    """An exception in one line of plain words; the type is named only for a programming error
    (``KeyError: 'lr'``), whose message alone says nothing."""
    text = str(exc).strip()
    if not text or isinstance(exc, (KeyError, TypeError, AttributeError, NameError, AssertionError)):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text.splitlines()[0]


_RECOVERED = "\x00recovered:"


class _Recovered(Exception):
    """A write that went to a recovery file: its message is the recovery's one line."""

    def __init__(self, message: str) -> None:
        super().__init__(_RECOVERED + message)


def _stop_thread(thread: QThread, worker: QObject) -> None:
    try:
        if thread.isRunning():
            thread.quit()
            thread.wait()
    except RuntimeError:  # already deleted on the C++ side
        pass


class _Worker(QObject):
    """Lives on the jobs thread: keeps one open database per path and runs the jobs in order."""

    # a job returned: (job id, result)
    jobDone = Signal(int, object)
    # a job raised: (job id, message in words)
    jobFailed = Signal(int, str)

    def __init__(self) -> None:
        super().__init__()
        self._dbs: dict[Path, PolicyDB] = {}

    def _open(self, path: Path, registry: Registry | None) -> PolicyDB:
        from lrbench_gui.core.db import PolicyDB

        key = Path(path).expanduser().absolute()
        db = self._dbs.get(key)
        if db is None or (registry is not None and db.registry is not registry):
            db = PolicyDB(key, registry=registry)  # a failure is not kept: the next job tries again
            self._dbs[key] = db
        return db

    @Slot(int, object)
    def run(self, job_id: int, job: Any) -> None:
        if job is None:  # the last job: every job queued before it has run
            QThread.currentThread().quit()
            return
        path, registry, fn, recover = job
        try:
            result = fn(self._open(path, registry))
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the GUI as a message
            message = describe_error(exc)
            if recover is not None:
                message = recover(path, message)
            self.jobFailed.emit(job_id, message)
            return
        self.jobDone.emit(job_id, result)


class DatabaseJobs(QObject):
    """Database work on one worker thread, in the order it was submitted.

    ``db_path`` is the database the jobs use (default: ``$LRBENCH_DB`` or the data folder's);
    ``registry`` validates the specs of what is written (default: the app's plugins). The
    thread starts with the first job; :meth:`close` runs every queued job, then stops it.
    """

    # a job finished, after its callback ran: (job id)
    jobFinished = Signal(int)
    # every submitted job has finished
    drained = Signal()
    _submit = Signal(int, object)

    def __init__(self, db_path: Path | str | None = None, parent: QObject | None = None, *,
                 registry: Registry | None = None) -> None:
        super().__init__(parent)
        from lrbench_gui.core.paths import default_db_path

        self.db_path = Path(db_path) if db_path else default_db_path()
        self.registry = registry
        self.thread: QThread | None = None
        self.worker: _Worker | None = None
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable[[Any], None] | None, Callable[[str], None] | None]] = {}
        self._closed = False

    def set_db_path(self, path: Path | str) -> None:
        """Later jobs use the database at ``path`` (jobs already queued keep theirs)."""
        self.db_path = Path(path)

    def set_registry(self, registry: Registry) -> None:
        """Later jobs validate with ``registry`` (after a plugin reload)."""
        self.registry = registry

    def submit(self, fn: Callable[[PolicyDB], Any], on_done: Callable[[Any], None] | None = None,
               on_failed: Callable[[str], None] | None = None) -> int:
        """Queue ``fn(db)``; ``on_done(result)`` or ``on_failed(message)`` follows on the GUI
        thread. Returns the job's number (0: dropped, the queue is closed)."""
        return self._queue(fn, on_done, on_failed, None)

    def write_trial(self, record: TrialRecord | dict[str, Any], study_record: StudyRecord | dict[str, Any] | None = None,
                    on_done: Callable[[str], None] | None = None,
                    on_failed: Callable[[str], None] | None = None) -> int:
        """Store a finished trial (after its study's record, when given).

        ``on_done`` gets the trial id. A trial that cannot be stored is kept in a recovery file
        (see :mod:`lrbench_gui.core.db.recovery`) and ``on_failed`` gets one line: ``could not
        record trial ID in DB: why. Saved it to FILE; to add it: lrbench db import FILE ...``."""
        trial_id = str(record.get("id"))
        registry = self.registry

        def write(db: PolicyDB) -> str:
            from lrbench_gui.core.db.recovery import write_or_recover

            if study_record is not None:
                db.add_study_or_recover(dict(study_record), replace=True)
            result = write_or_recover(db, "trials", [dict(record)], replace=True, with_studies=[study_record])
            if not result.ok:
                raise _Recovered(result.message())
            return trial_id

        def recover(path: Path, message: str) -> str:
            from lrbench_gui.core.db.recovery import write_or_recover

            if message.startswith(_RECOVERED):
                return message[len(_RECOVERED):]
            # the database could not even be opened: the same recovery file, by path
            result = write_or_recover(path, "trials", [dict(record)], replace=True, with_studies=[study_record],
                                      registry=registry)
            return result.message()

        return self._queue(write, on_done, on_failed, recover)

    def pending(self) -> int:
        """Jobs submitted whose callbacks have not run yet."""
        return len(self._callbacks)

    def _queue(self, fn: Callable[[Any], Any], on_done: Callable[[Any], None] | None,
               on_failed: Callable[[str], None] | None, recover: Callable[[Path, str], str] | None) -> int:
        if self._closed:
            return 0  # the window is closing: late work (a refresh) is dropped
        if self.registry is None:
            from lrbench_gui.plugins import get_registry

            self.registry = get_registry()  # the app's, resolved here on the GUI thread
        if self.thread is None:
            self._start()
        job_id = next(self._ids)
        self._callbacks[job_id] = (on_done, on_failed)
        self._submit.emit(job_id, (self.db_path, self.registry, fn, recover))
        return job_id

    def _start(self) -> None:
        self.thread = QThread()
        self.thread.setObjectName("lrbench-db-jobs")
        self.worker = _Worker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self.worker.jobDone.connect(self._done)
        self.worker.jobFailed.connect(self._failed)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.start()
        # a queue dropped without close() (a panel made and forgotten) must not leave Qt to destroy
        # a running QThread, which aborts the process: stop it when this object is collected
        weakref.finalize(self, _stop_thread, self.thread, self.worker)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.close)  # never leave the thread running at exit

    def _done(self, job_id: int, result: Any) -> None:
        on_done, _ = self._callbacks.pop(job_id, (None, None))
        if on_done is not None:
            on_done(result)
        self._settled(job_id)

    def _failed(self, job_id: int, message: str) -> None:
        _, on_failed = self._callbacks.pop(job_id, (None, None))
        if on_failed is not None:
            on_failed(message)
        self._settled(job_id)

    def _settled(self, job_id: int) -> None:
        self.jobFinished.emit(job_id)
        if not self._callbacks:
            self.drained.emit()

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Run every queued job, stop the thread, then deliver the results still on their way."""
        if self._closed:
            return
        self._closed = True
        if self.thread is not None and self.thread.isRunning():
            self._submit.emit(-1, None)
            self.thread.wait()
        QCoreApplication.sendPostedEvents(self)  # the queued jobDone/jobFailed of the last jobs
