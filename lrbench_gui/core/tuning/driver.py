"""The study driver: runs a :class:`~lrbench_gui.core.tuning.study.Study` to its end on this
thread, over local trial slots or Ray, saving the study record as it goes.

The one loop for every blocking caller: ``lrbench tune``, ``lrbench study KIND``, the benches
and tests. The desktop app drives the same study state machine from Qt signals instead
(:mod:`lrbench_gui.qt.study_controller`), because its GUI thread must never block.
"""

from __future__ import annotations

from typing import Any, Callable

from lrbench_gui.core.records import StudyStatus
from lrbench_gui.core.runs.protocol import Event

__all__ = ["run_study", "make_scheduler", "study_slots"]


def study_slots(config: Any, inventory: Any = None) -> Any:
    """The :class:`~lrbench_gui.core.runs.gpus.SlotPlan` of a local study: one group of
    ``gpus_per_trial`` GPUs per slot (1 when there are GPUs and the device is not cpu), at most
    ``parallel`` of them; CPU workers when there is no GPU. ``inventory`` defaults to this host's
    (:func:`~lrbench_gui.core.runs.gpus.detect_gpus`); ``GpuError`` (one line) when the GPUs
    cannot meet the per-trial count."""
    from lrbench_gui.core.runs.gpus import detect_gpus, plan_slots

    inventory = detect_gpus() if inventory is None else inventory
    return plan_slots(inventory, per_trial=config.gpus_per_trial or None, parallel=config.parallel,
                      device=config.device)


def make_scheduler(study: Any, on_event: Callable[[str, Event], bool], on_finished: Callable[[str, dict], None],
                   inventory: Any = None, on_started: Callable[[str, Any], None] | None = None) -> Any:
    """The scheduler the study's config asks for: local slots (:func:`study_slots`), or Ray Tune."""
    cfg = study.config
    if cfg.backend == "ray":
        from lrbench_gui.core.runs.ray_backend import RayScheduler

        return RayScheduler(cfg, on_event=on_event, on_finished=on_finished, feeder=study.next_trials)
    from lrbench_gui.core.runs.runner import LocalScheduler

    plan = study_slots(cfg, inventory)
    return LocalScheduler(plan.slots, on_event=on_event, on_finished=on_finished, feeder=study.next_trials,
                          registry=study.registry, warm=cfg.warm, on_started=on_started)


def run_study(study: Any, on_progress: Callable[[Any], None] | None = None,
              on_event: Callable[[str, Event], Any] | None = None, live: str | None = None) -> StudyStatus:
    """Drive ``study`` until its tuner is done (or Ctrl-C), storing every trial as it finishes.

    ``on_progress(study)`` runs after every finished trial, ``on_event(trial_id, event)`` for
    every protocol event (the live view of a caller). On ``KeyboardInterrupt`` the running
    trials are cancelled and recorded, the study is saved as stopped, and the interrupt is
    raised again. Returns the study's final status.

    ``live`` (e.g. ``"lrbench tune"``) mirrors each local trial into the live folder under that
    source, so an open app's Watch panel follows it and can stop it
    (:mod:`lrbench_gui.core.runs.live`).
    """
    from lrbench_gui.core.runs.live import LiveMirrors

    mirrors = LiveMirrors(live) if live else None
    study.save(StudyStatus.RUNNING)

    def event(trial_id: str, ev: Event) -> bool:
        if on_event is not None:
            on_event(trial_id, ev)
        keep = mirrors.event(trial_id, ev) if mirrors is not None else True
        return study.on_event(trial_id, ev) and keep

    def finished(trial_id: str, record: dict) -> None:
        if mirrors is not None:
            mirrors.finished(trial_id, str(record.get("status")))
        study.on_finished(trial_id, record)
        study.save(StudyStatus.RUNNING)
        if on_progress is not None:
            on_progress(study)

    sched = make_scheduler(study, event, finished, on_started=mirrors.started if mirrors is not None else None)
    try:
        sched.run()
    except KeyboardInterrupt:
        study.stop()
        sched.cancel_all()
        sched.run()
        study.save(StudyStatus.STOPPED)
        raise
    finally:
        if mirrors is not None:
            mirrors.close_all()
    status = StudyStatus.FINISHED if study.tuner.done() else StudyStatus.STOPPED
    study.save(status)
    return status
