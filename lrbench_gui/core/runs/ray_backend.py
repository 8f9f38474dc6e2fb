"""Run a study's trials through Ray Tune, on an existing Ray cluster or a local Ray.

The same trainer subprocess runs on a Ray worker (``tune.with_resources``: CPUs and GPUs per
trial, fractions of a GPU allowed; the trainer's ``CUDA_VISIBLE_DEVICES`` is the GPU ids Ray
gave the worker, and the record's ``resources`` holds them); its protocol lines travel back on a ``ray.util.queue.Queue`` and reach the app's
callbacks on the driver's thread (a Tune callback drains the queue every loop), so the app sees
the same events, records the same trials and alone writes the database. The study's tuner stays
in charge through a Tune ``Searcher`` that asks it; a trial the tuner stops early is stopped by
a Tune stopper.
"""

from __future__ import annotations

import functools
import os
import queue as pyqueue
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from lrbench_gui.core.paths import data_dir
from lrbench_gui.core.runs.protocol import Event, parse_line
from lrbench_gui.core.runs.recorder import TrialRecorder
from lrbench_gui.core.runs.trial import TrialConfig

__all__ = ["RayScheduler", "ray_trial"]

#: the schedulers running in this (driver) process, by number: Tune pickles its searcher, stopper
#: and callbacks, so they carry only this number and find their scheduler here
_DRIVERS: dict[int, "RayScheduler"] = {}


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the trainer gets SIGTERM if the Ray worker that started it dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def assigned_gpus() -> str | None:
    """The GPU ids Ray gave this worker (``"0"``, ``"2,3"``; a fraction of a GPU is its id), as
    the trial's ``CUDA_VISIBLE_DEVICES``; None when it was given none."""
    import ray

    if not ray.is_initialized():  # not on a Ray worker (get_gpu_ids would start a Ray)
        return None
    try:
        ids = ray.get_gpu_ids()
    except Exception:  # noqa: BLE001 - a driver, not a worker
        ids = []
    if not ids:
        return None
    return ",".join(str(int(i)) if str(i).isdigit() else str(i) for i in ids)


def ray_trial(config: dict[str, Any], events: Any = None) -> None:
    """The Tune trainable: run one trial's trainer subprocess on this worker and stream it back."""
    import subprocess
    import tempfile

    from ray import tune

    from lrbench_gui.core.runs.gpus import trial_resources
    from lrbench_gui.core.runs.process import trainer_command, trial_env
    from lrbench_gui.core.runs.trial import load_trial, write_trial

    cfg = load_trial(config["trial"])
    workdir = Path(tempfile.mkdtemp(prefix=f"lrbench-{cfg.trial_id}-"))
    cfg = cfg.model_copy(update={"output_dir": str(workdir)})
    gpus = assigned_gpus()
    events.put((cfg.trial_id, "resources", trial_resources(cfg, gpus)))
    cmd = trainer_command(cfg, write_trial(cfg, workdir / "trial.json"), gpus)
    tail: deque[str] = deque(maxlen=60)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=workdir, env=trial_env(cfg, gpus), preexec_fn=_set_pdeathsig)
    import threading

    def read_err() -> None:
        for raw in proc.stderr:
            tail.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

    t = threading.Thread(target=read_err, daemon=True)
    t.start()
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            events.put((cfg.trial_id, "line", line))
            ev = parse_line(line)
            if ev is not None and ev.type == "eval":
                metrics = {k: v for k, v in (ev.get("metrics") or {}).items() if isinstance(v, (int, float))}
                tune.report({"step": int(ev["step"]), **metrics})
        code = proc.wait()
        t.join(timeout=5)
        events.put((cfg.trial_id, "exit", (code, list(tail))))
        tune.report({"done": True, "exit_code": code})
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class RayScheduler:
    """The :class:`~lrbench_gui.core.runs.slots.BlockingScheduler` protocol over Ray Tune: Tune
    owns the loop and the workers (``max_concurrent_trials`` = the study's ``parallel``), so the
    slot queue here is Tune's; submitted trials are served before the feeder's."""

    def __init__(
        self,
        study_config: Any,
        on_event: Callable[[str, Event], bool | None] | None = None,
        on_finished: Callable[[str, dict[str, Any]], None] | None = None,
        feeder: Callable[[int], list[TrialConfig]] | None = None,
        on_log: Callable[[str, str], None] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.cfg = study_config
        self.on_event = on_event
        self.on_finished = on_finished
        self.on_log = on_log
        self.feeder = feeder
        self.workdir = workdir or data_dir() / "ray"
        self.recorders: dict[str, TrialRecorder] = {}
        self.tune_ids: dict[str, str] = {}  # tune trial id -> lrbench trial id
        self.exited: dict[str, tuple[int, list[str]]] = {}
        self.to_stop: set[str] = set()
        self.settled: set[str] = set()
        self.records: dict[str, dict[str, Any]] = {}
        self.cancelled = False
        self.started_ray = False
        self.submitted: list[TrialConfig] = []

    # Called by Tune on the driver.

    def _suggest(self, tune_id: str) -> dict[str, Any] | None | str:
        from ray.tune.search import Searcher

        if self.cancelled:
            return Searcher.FINISHED
        configs = [self.submitted.pop(0)] if self.submitted else (self.feeder(1) if self.feeder else [])
        if not configs:
            running = len(self.recorders) - len(self.settled)
            return None if running > 0 else Searcher.FINISHED
        cfg = configs[0]
        self.tune_ids[tune_id] = cfg.trial_id
        self.recorders[cfg.trial_id] = TrialRecorder(cfg)
        return {"trial": cfg.model_dump(mode="json")}

    def _drain(self, events: Any, wait_for: str | None = None, timeout: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if wait_for is not None and wait_for in self.exited:  # the Drain callback had it already
                return
            try:
                left = deadline - time.monotonic()
                trial_id, kind, payload = events.get(block=wait_for is not None and left > 0,
                                                     timeout=max(left, 0.01))
            except (pyqueue.Empty, Exception):  # ray's Queue raises its own Empty
                if wait_for is None or wait_for in self.exited or time.monotonic() >= deadline:
                    return
                continue
            rec = self.recorders.get(trial_id)
            if rec is None:
                continue
            if kind == "line":
                ev = parse_line(payload)
                if ev is not None and ev.trial == trial_id:
                    rec.feed(ev)
                    if self.on_event and self.on_event(trial_id, ev) is False:
                        self.to_stop.add(trial_id)
                elif payload.strip():
                    rec.log(payload)
                    if self.on_log:
                        self.on_log(trial_id, payload)
            elif kind == "resources":
                rec.resources = dict(payload)
            elif kind == "exit":
                self.exited[trial_id] = payload
            if wait_for is not None and wait_for in self.exited:
                return

    def _complete(self, events: Any, tune_id: str, error: bool) -> None:
        trial_id = self.tune_ids.get(tune_id)
        if trial_id is None or trial_id in self.settled:
            return
        self._drain(events, wait_for=trial_id, timeout=10.0)
        code, tail = self.exited.get(trial_id, (None, []))
        rec = self.recorders[trial_id]
        if error and code is None:
            rec.errors.append("the Ray worker running this trial failed")
        rec.finish(code, tail, cancelled=trial_id in self.to_stop or self.cancelled)
        self.settled.add(trial_id)
        record = rec.record()
        self.records[trial_id] = record
        if self.on_finished:
            self.on_finished(trial_id, record)

    # The scheduler interface.

    def run(self) -> dict[str, dict[str, Any]]:
        import ray
        from ray import tune
        from ray.util.queue import Queue

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if not ray.is_initialized():
            if self.cfg.ray_address:
                ray.init(address=self.cfg.ray_address, include_dashboard=False, log_to_driver=False)
            else:
                cpus = max(2, int(self.cfg.parallel * self.cfg.cpus_per_trial))
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, **_local_gpus())
                self.started_ray = True
        events = Queue()
        self.events = events
        key = id(self)
        _DRIVERS[key] = self
        searcher, drain, stopper = _Searcher(key), _Drain(key), _Stopper(key)
        resources = {"cpu": self.cfg.cpus_per_trial, "gpu": self.cfg.gpus_per_trial}
        trainable = tune.with_resources(tune.with_parameters(ray_trial, events=events), resources)
        self.workdir.mkdir(parents=True, exist_ok=True)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1,
                                        max_concurrent_trials=self.cfg.parallel),
            run_config=tune.RunConfig(name=f"lrbench-{self.cfg.study_id}", storage_path=str(self.workdir),
                                      callbacks=[drain], stop=stopper, verbose=0),
        )
        try:
            tuner.fit()
        finally:
            _DRIVERS.pop(key, None)
            events.shutdown()
            if self.started_ray:
                ray.shutdown()
        return self.records

    def submit(self, config: TrialConfig) -> None:
        self.submitted.append(config)

    def cancel(self, trial_id: str) -> None:
        """A queued trial is recorded as stopped; a running one is stopped by Tune's stopper."""
        for cfg in list(self.submitted):
            if cfg.trial_id == trial_id:
                self.submitted.remove(cfg)
                from lrbench_gui.core.runs.slots import cancelled_record

                record = cancelled_record(cfg)
                self.records[trial_id] = record
                if self.on_finished:
                    self.on_finished(trial_id, record)
                return
        self.to_stop.add(trial_id)

    def cancel_all(self) -> None:
        self.cancelled = True


def _local_gpus() -> dict[str, Any]:
    """``num_gpus`` for a local Ray on a host whose GPUs ``LRBENCH_GPUS`` simulates (Ray finds
    real ones itself, and keeps to the app's ``CUDA_VISIBLE_DEVICES``): Ray then places trials on
    them and gives each its ids, as the local slots do."""
    from lrbench_gui.core.runs.gpus import GpuError, detect_gpus

    try:
        inventory = detect_gpus()
    except GpuError:
        return {}
    return {"num_gpus": len(inventory)} if inventory.simulated else {}


def _driver(key: int) -> RayScheduler | None:
    return _DRIVERS.get(key)


@functools.lru_cache(maxsize=1)
def _tune_classes() -> tuple[type, type, type]:
    from ray.tune import Callback
    from ray.tune.search import Searcher
    from ray.tune.stopper import Stopper

    class Searcher_(Searcher):
        """Asks the study's tuner (through the scheduler's feeder) for each new Tune trial."""

        def __init__(self, key: int) -> None:
            super().__init__()
            self.key = key

        def suggest(self, trial_id: str):
            driver = _driver(self.key)
            return Searcher.FINISHED if driver is None else driver._suggest(trial_id)

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            driver = _driver(self.key)
            if driver is not None:
                driver._complete(driver.events, trial_id, error)

    class Drain_(Callback):
        """Every loop of Tune's controller: hand the queued events to the app's callbacks."""

        def __init__(self, key: int) -> None:
            self.key = key

        def on_step_begin(self, iteration, trials, **info) -> None:
            driver = _driver(self.key)
            if driver is not None:
                driver._drain(driver.events)

    class Stopper_(Stopper):
        """Stops a trial its tuner pruned, or every trial when the study is cancelled."""

        def __init__(self, key: int) -> None:
            self.key = key

        def __call__(self, trial_id: str, result: dict) -> bool:
            driver = _driver(self.key)
            if driver is None:
                return True
            driver._drain(driver.events)
            return driver.cancelled or driver.tune_ids.get(trial_id) in driver.to_stop

        def stop_all(self) -> bool:
            driver = _driver(self.key)
            return driver is None or driver.cancelled

    return Searcher_, Drain_, Stopper_


def _Searcher(key: int):  # noqa: N802 - builds Tune classes lazily, so importing this module needs no Ray
    return _tune_classes()[0](key)


def _Drain(key: int):  # noqa: N802
    return _tune_classes()[1](key)


def _Stopper(key: int):  # noqa: N802
    return _tune_classes()[2](key)
