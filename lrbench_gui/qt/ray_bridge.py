"""A Ray study on its own thread, reported to the GUI through queued signals.

``RayScheduler.run`` blocks, so :class:`RayStudyDriver` runs it on a ``QThread`` of its own.
The study then lives on that thread until the run ends (the GUI never touches it meanwhile);
its trials, events, finished records and rankings come back as signals, which the
:class:`~lrbench_gui.qt.study_controller.StudyController` feeds into the same handlers as a
local study's.

Ray Tune pickles the scheduler's callbacks with its searcher, and a ``QObject`` cannot be
pickled, so the callbacks are module functions (pickled by reference) that find their driver by
number in :data:`_DRIVERS`.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from lrbench_gui.core.records import StudyStatus
from lrbench_gui.core.runs.protocol import Event
from lrbench_gui.core.runs.trial import TrialConfig
from lrbench_gui.qt.db_jobs import describe_error

if TYPE_CHECKING:
    from lrbench_gui.core.tuning.study import Study

__all__ = ["RayStudyDriver"]

_DRIVERS: dict[int, "RayStudyDriver"] = {}
_numbers = itertools.count(1)


def _feed(number: int, n: int) -> list[TrialConfig]:
    return _DRIVERS[number].feed(n)


def _event(number: int, trial_id: str, event: Event) -> bool:
    return _DRIVERS[number].on_event(trial_id, event)


def _finished(number: int, trial_id: str, record: dict) -> None:
    _DRIVERS[number].on_finished(trial_id, record)


def _log(number: int, trial_id: str, line: str) -> None:
    _DRIVERS[number].log.emit(trial_id, line)


class RayStudyDriver(QObject):
    """Runs a study through ``RayScheduler.run`` on the thread it was moved to (call :meth:`run`
    there); :meth:`cancel` is the one method the GUI thread calls while it runs."""

    # the tuner asked for a trial: (trial_id, TrialConfig)
    added = Signal(str, object)
    # a protocol event of a trial: (trial_id, Event)
    event = Signal(str, object)
    # a log line of a trial: (trial_id, line)
    log = Signal(str, str)
    # a trial ended and the study took it: (trial_id, stored record, study record, ranking)
    finished = Signal(str, dict, dict, list)
    # the run is over: (study status finished|stopped|failed, error message or "")
    ended = Signal(str, str)

    def __init__(self, study: Study) -> None:
        super().__init__()
        self.study = study
        self.scheduler: Any = None
        self.cancelled = False

    def feed(self, n: int) -> list[TrialConfig]:
        configs = self.study.next_trials(n)
        for cfg in configs:
            self.added.emit(cfg.trial_id, cfg)
        return configs

    def on_event(self, trial_id: str, event: Event) -> bool:
        keep = self.study.on_event(trial_id, event)
        self.event.emit(trial_id, event)
        return keep

    def on_finished(self, trial_id: str, record: dict) -> None:
        study = self.study
        study.on_finished(trial_id, record)
        self.finished.emit(trial_id, study.records[trial_id], study.study_record(StudyStatus.RUNNING), study.ranking())

    @Slot()
    def run(self) -> None:
        from lrbench_gui.core.runs.ray_backend import RayScheduler

        study = self.study
        number = next(_numbers)
        _DRIVERS[number] = self
        try:
            self.scheduler = RayScheduler(
                study.config, on_event=partial(_event, number), on_finished=partial(_finished, number),
                feeder=partial(_feed, number), on_log=partial(_log, number))
            if self.cancelled:
                self.scheduler.cancel_all()
            self.scheduler.run()
        except BaseException as exc:  # noqa: BLE001 - Ray's errors are many; the study is marked failed
            self.ended.emit(StudyStatus.FAILED.value, f"the Ray backend failed: {describe_error(exc)}")
            return
        finally:
            _DRIVERS.pop(number, None)
        done = study.tuner.done() and not study.stopped
        self.ended.emit((StudyStatus.FINISHED if done else StudyStatus.STOPPED).value, "")

    def cancel(self) -> None:
        """Stop asking for trials and stop the running ones."""
        self.cancelled = True
        self.study.stopped = True
        if self.scheduler is not None:
            self.scheduler.cancel_all()
