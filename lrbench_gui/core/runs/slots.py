"""The slot queue: which queued trial starts on which slot, for every scheduler.

A slot is a CPU worker or a set of GPUs (a ``CUDA_VISIBLE_DEVICES`` value). The queue knows the
pending trials and which slot and GPUs each running trial holds; it starts nothing itself. A
slot is free only when none of its GPUs is held, so a GPU never serves two trials at once, even
when the slots change while trials run (the GUI's Run panel and a study share one queue). The CLI's
:class:`~lrbench_gui.core.runs.runner.LocalScheduler` (subprocesses and threads) and the GUI's
``TrialRunner`` (QProcesses) both place trials through it, so both honour slots, cancel a
queued trial and record it the same way.

:class:`TrialScheduler` is the protocol every scheduler meets (local, Qt, Ray);
:class:`BlockingScheduler` adds the ``run()`` loop that the study driver calls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, Iterator, Protocol, TypeVar, runtime_checkable

from lrbench_gui.core.records import TrialRecord
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.trial import TrialConfig

__all__ = ["SlotQueue", "Placement", "TrialScheduler", "BlockingScheduler", "cancelled_record", "slot_ids"]

H = TypeVar("H")


@runtime_checkable
class TrialScheduler(Protocol):
    """What a study's driver may ask of any scheduler."""

    def submit(self, config: TrialConfig) -> None:
        """Queue a trial; it starts when a slot is free."""

    def cancel(self, trial_id: str) -> None:
        """Stop one trial: a queued one is recorded as stopped at once, a running one is sent
        SIGTERM (and SIGKILL after a grace period) and recorded when its process ends."""

    def cancel_all(self) -> None:
        """Cancel every queued and running trial and take no more from the feeder."""


@runtime_checkable
class BlockingScheduler(TrialScheduler, Protocol):
    def run(self) -> dict[str, TrialRecord]:
        """Run until nothing is queued or running (and the feeder, if any, has nothing more);
        the callbacks fire on the caller's thread. Returns the finished trials' records."""


def slot_ids(slots: int | list[str]) -> list[str | None]:
    """``slots`` as one entry per slot: None for a CPU worker, else its GPU ids (``"0"``, ``"2,3"``)."""
    if isinstance(slots, (list, tuple)):
        if not slots:
            raise ValueError("at least one slot is needed")
        return [str(s) for s in slots]
    return [None] * max(1, int(slots))


def _ids(gpus: str | None) -> set[str]:
    return {g.strip() for g in gpus.split(",") if g.strip()} if gpus else set()


def cancelled_record(config: TrialConfig) -> TrialRecord:
    """The record of a trial cancelled before it started."""
    rec = TrialRecorder(config)
    rec.finish(None, [], cancelled=True)
    return rec.record()


@dataclass
class Placement:
    """A queued trial given a slot: start it there, then tell the queue with :meth:`SlotQueue.started`."""

    config: TrialConfig
    slot: int
    gpus: str | None


class SlotQueue(Generic[H]):
    """Pending trials in order, and the slot and handle (a process object) of each running one."""

    def __init__(self, slots: int | list[str] = 1) -> None:
        self.slot_ids = slot_ids(slots)
        self.pending: deque[TrialConfig] = deque()
        self.running: dict[str, tuple[H | None, int]] = {}
        #: the GPU ids each running trial holds (a slot's ids when it was placed)
        self.held: dict[str, str | None] = {}

    def set_slots(self, slots: int | list[str]) -> None:
        """Change the slots; running trials keep theirs, new placements use the new ones."""
        self.slot_ids = slot_ids(slots)

    def submit(self, config: TrialConfig) -> None:
        self.pending.append(config)

    def free(self) -> int:
        """Slots that nothing holds or waits for: how many more trials a feeder may give."""
        return max(0, len(self.slot_ids) - len(self.running) - len(self.pending))

    def place(self) -> Iterator[Placement]:
        """Pop queued trials onto free slots, in order; each is marked running (its handle is
        set by :meth:`started`)."""
        # a CPU trial holds its slot; a GPU trial holds its GPUs, whatever slot they are in now
        busy = {slot for tid, (_, slot) in self.running.items() if not self.held.get(tid)}
        taken = {g for gpus in self.held.values() for g in _ids(gpus)}
        for slot, gpus in enumerate(self.slot_ids):
            if not self.pending:
                return
            if slot in busy or taken & _ids(gpus):
                continue
            config = self.pending.popleft()
            self.running[config.trial_id] = (None, slot)
            self.held[config.trial_id] = gpus
            busy.add(slot)
            taken |= _ids(gpus)
            yield Placement(config, slot, gpus)

    def started(self, trial_id: str, handle: H) -> None:
        _, slot = self.running[trial_id]
        self.running[trial_id] = (handle, slot)

    def handle(self, trial_id: str) -> H | None:
        entry = self.running.get(trial_id)
        return entry[0] if entry else None

    def handles(self) -> list[H]:
        return [h for h, _ in self.running.values() if h is not None]

    def finished(self, trial_id: str) -> H | None:
        """The trial left its slot; returns its handle (None if it was not running)."""
        entry = self.running.pop(trial_id, None)
        self.held.pop(trial_id, None)
        return entry[0] if entry else None

    def unqueue(self, trial_id: str) -> TrialConfig | None:
        """Take a queued trial out; None if it is not queued."""
        for i, cfg in enumerate(self.pending):
            if cfg.trial_id == trial_id:
                del self.pending[i]
                return cfg
        return None

    def is_busy(self) -> bool:
        return bool(self.running or self.pending)

    def slot_of(self, trial_id: str) -> tuple[int, str | None] | None:
        """The slot index and GPU ids of a running trial (the ids it was given, even if the
        slots changed since)."""
        entry = self.running.get(trial_id)
        if entry is None:
            return None
        return entry[1], self.held.get(trial_id)

    def __len__(self) -> int:
        return len(self.pending) + len(self.running)

    def describe(self) -> dict[str, Any]:
        return {"slots": list(self.slot_ids), "pending": [c.trial_id for c in self.pending],
                "running": {t: s for t, (_, s) in self.running.items()}, "gpus": dict(self.held)}
