"""Report your own training script's progress to lrbench: a few calls, stdlib only.

    from lrbench_gui import report

    for step in range(steps):
        ...
        report.step(step, loss=loss.item(), lr=optimizer.param_groups[0]["lr"])
        if report.should_stop():   # the tuner pruned this trial, or the user cancelled it
            break
    report.eval(step, val_loss=val_loss)

When lrbench runs the script (``lrbench tune --cmd``, ``lrbench watch``) its environment names
the trial file (``LRBENCH_TRIAL``), the report file the runner tails (``LRBENCH_REPORT``) and the
stop file (``LRBENCH_STOP``); each call appends one protocol line (docs/protocol.md) to the
report file, never to stdout, so the script's own prints cannot corrupt it. Outside lrbench
(``LRBENCH_TRIAL`` and ``LRBENCH_REPORT`` unset) every call is a silent no-op, so the same script
runs anywhere. With a trial but no report file named, lines go to stdout, which the runner also
reads. With only ``LRBENCH_REPORT`` set (a script lrbench did not start), lines go to that file,
under the trial id ``LRBENCH_TRIAL_ID`` or the file's name, and the desktop app can follow it
(File > Follow a trial file...).

Importing this module loads only the standard library (no torch, Qt, numpy or pydantic), so it
costs nothing on a training node; :func:`lr_at` imports lrbench's policies on its first call.
Writes are flushed per call and safe from several threads.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import threading
import time
from typing import IO, Any

from lrbench_gui._names import file_trial_id

__all__ = ["active", "trial", "lr_at", "step", "eval", "switch", "should_stop", "end"]

PROTOCOL_VERSION = 1  # lrbench_gui.core.runs.protocol.PROTOCOL_VERSION (tests keep them equal)
END_STATUSES = ("completed", "stopped", "diverged", "failed")
_RESERVED = frozenset({"v", "type", "trial", "wall", "time", "metrics"})
_MAX_TRIAL_BYTES = 8 << 20

_lock = threading.RLock()
_state: dict[str, Any] = {}


def _env() -> tuple[str, str, str, str]:
    get = os.environ.get
    return get("LRBENCH_TRIAL", ""), get("LRBENCH_REPORT", ""), get("LRBENCH_STOP", ""), get("LRBENCH_TRIAL_ID", "")


def _current() -> dict[str, Any]:
    """This process's reporting state, started afresh when the environment names another trial."""
    key = _env()
    if _state.get("key") != key:
        _close()
        _state.clear()
        _state.update(key=key, hello=False, start=time.monotonic(), last={})
    return _state


def active() -> bool:
    """Whether this script reports: lrbench runs it (``LRBENCH_TRIAL`` is set), or its lines go to
    a report file someone follows (``LRBENCH_REPORT`` is set)."""
    return bool(os.environ.get("LRBENCH_TRIAL") or os.environ.get("LRBENCH_REPORT"))




def _load_trial(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data = fh.read(_MAX_TRIAL_BYTES + 1)
    if len(data) > _MAX_TRIAL_BYTES:
        raise ValueError(f"larger than {_MAX_TRIAL_BYTES >> 20} MiB")
    obj = json.loads(data.decode("utf-8"))
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def trial() -> dict[str, Any] | None:
    """The trial lrbench runs: ``trial_id``, ``policy`` (the spec JSON), ``steps`` (the budget,
    None when it is not given in steps), ``seed``, ``out`` (the trial's folder: the folder of the
    trial file, the command template's ``{out}``) and ``task_params``; None outside lrbench. A trial file that cannot be read raises RuntimeError."""
    with _lock:
        state = _current()
        path = state["key"][0]
        if not path:
            return None
        if "trial" not in state:
            try:
                obj = _load_trial(path)
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"LRBENCH_TRIAL={path}: cannot read the trial file: {exc}") from None
            budget = obj.get("budget") if isinstance(obj.get("budget"), dict) else {}
            state["trial"] = {
                "trial_id": state["key"][3] or str(obj.get("trial_id", "")),
                "policy": obj.get("policy"),
                "steps": budget.get("steps"),
                "seed": obj.get("seed", 0),
                "out": os.path.dirname(os.path.abspath(path)),
                "task_params": obj.get("task_params") or {},
            }
        return dict(state["trial"])


def _trial_quiet(state: dict[str, Any]) -> dict[str, Any]:
    """The trial for a report line: an unreadable trial file must not stop the training."""
    try:
        return trial() or {}
    except RuntimeError as exc:
        if not state.get("warned"):
            state["warned"] = True
            print(f"lrbench report: {exc}", file=sys.stderr)
        return {"trial_id": state["key"][3]}


def lr_at(step: int) -> float | None:
    """The LR of the trial's policy (compositions included) at ``step`` over the trial's steps;
    None outside lrbench. A policy that reacts to a metric (``reduce_on_plateau``, a sequence's
    ``switch``) is fed by :func:`step`'s ``loss`` and :func:`eval`'s metrics, and the step lines
    say where it changed the LR."""
    with _lock:
        state = _current()
        if not state["key"][0]:
            return None
        schedule = state.get("schedule")
        if schedule is None:
            info = trial() or {}
            if not info.get("steps"):
                raise RuntimeError("lr_at needs a trial whose budget is given in steps")
            from lrbench_gui.core.spec import build_schedule
            from lrbench_gui.plugins import get_registry

            schedule = state["schedule"] = build_schedule(info["policy"], int(info["steps"]), get_registry())
    return float(schedule.lr_at(int(step)))


def _finite(obj: Any) -> Any:
    """NaN and infinities as the protocol's strings; numbers-like (a tensor, numpy) as floats."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    value = float(obj)
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _whole(value: Any, what: str) -> int:
    number = int(value)
    if number != value or number < 0:
        raise ValueError(f"{what} must be a whole number >= 0 (got {value!r})")
    return number


def _stream(state: dict[str, Any]) -> IO[str] | None:
    if "stream" not in state:
        path = state["key"][1]
        try:
            state["stream"] = open(path, "a", buffering=1, encoding="utf-8") if path else sys.__stdout__
        except OSError as exc:
            print(f"lrbench report: cannot write LRBENCH_REPORT={path}: {exc}", file=sys.stderr)
            state["stream"] = None
    return state["stream"]


def _emit(type_: str, **fields: Any) -> None:
    """Append one protocol line (after the trial's ``hello`` on the first one); no-op outside lrbench."""
    with _lock:
        state = _current()
        if not (state["key"][0] or state["key"][1]):
            return
        info = _trial_quiet(state) if state["key"][0] else {}
        lines = []
        if not state["hello"]:
            state["hello"] = True
            state["start"] = time.monotonic()
            lines.append(("hello", {"pid": os.getpid(), "device": "script", "world_size": 1,
                                    "steps": info.get("steps")}))
        if type_ == "step":
            fields["wall"] = fields["time"] = _wall(state)
        lines.append((type_, fields))
        stream = _stream(state)
        if stream is None:
            return
        trial_id = info.get("trial_id") or state["key"][3] or (file_trial_id(state["key"][1]) if not state["key"][0] else "")
        text = "".join(json.dumps({"v": PROTOCOL_VERSION, "type": t, "trial": trial_id, **_finite(f)},
                                  allow_nan=False) + "\n" for t, f in lines)
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as exc:
            print(f"lrbench report: cannot write the report: {exc}", file=sys.stderr)
            state["stream"] = None


def _wall(state: dict[str, Any]) -> float:
    """Seconds since the hello (``time`` too: the name the trainer's step events use)."""
    return round(time.monotonic() - state["start"], 6) if state["hello"] else 0.0


def step(step: int, loss: Any = None, lr: Any = None, **counts: Any) -> None:
    """Report optimizer step ``step`` (0-based): its loss and the LR it used (numbers, tensors or
    None), and cumulative counts such as ``tokens=`` and ``samples=``."""
    if not active():
        return
    bad = _RESERVED.intersection(counts)
    if bad:
        raise TypeError(f"report.step: {', '.join(sorted(bad))} cannot be a count")
    number = _whole(step, "step")
    with _lock:
        state = _current()
        fields = {"step": number, "lr": None if lr is None else float(lr),
                  "loss": None if loss is None else float(loss), "tokens": 0, "samples": 0, **counts}
        state["last"] = {"step": number, "tokens": fields["tokens"], "samples": fields["samples"]}
        waiting = state.setdefault("switches", {})  # a reactive policy's switches due by this step
        why = "; ".join(waiting.pop(k) for k in sorted(waiting) if k <= number) or state.pop("switch", None)
        if why:
            fields["switch"] = why
        _emit("step", **fields)
        if loss is not None:
            _feed(state, number, loss=fields["loss"])


def eval(step: int, **metrics: Any) -> None:  # noqa: A001 - the name the docs promise
    """Report an evaluation at ``step``: ``report.eval(step, val_loss=..., val_acc=...)``, where
    ``step`` is the 0-based index of the last optimizer step done (as lrbench's trainer counts:
    an evaluation after the first 50 steps is at step 49), so a reactive policy moves the LR of
    the very next step."""
    if not active():
        return
    number = _whole(step, "step")
    _emit("eval", step=number, metrics={str(k): v for k, v in metrics.items()})
    with _lock:
        _feed(_current(), number, metrics=metrics)


def switch(reason: str = "the LR changed") -> None:
    """Say that your own scheduler (torch's ``ReduceLROnPlateau``, say) changed the LR: the next
    :func:`step` line carries ``reason``, and the trial's record lists the switch at that step
    (policies that :func:`lr_at` follows report their switches themselves)."""
    if not active():
        return
    with _lock:
        _current()["switch"] = str(reason)[:300] or "the LR changed"


def _feed(state: dict[str, Any], number: int, **values: Any) -> None:
    """A reactive policy behind :func:`lr_at` observes the loss or the metrics; its new switches
    wait for the step line of the step they take effect at."""
    schedule = state.get("schedule")
    if schedule is None or not getattr(schedule, "reactive", False):
        return
    try:
        metrics = {str(k): float(v) for k, v in (values.get("metrics") or {}).items()}
        loss = values.get("loss")
        schedule.feed(number, loss=None if loss is None else float(loss), metrics=metrics or None)
    except (TypeError, ValueError) as exc:
        print(f"lrbench report: the policy could not observe step {number}: {exc}", file=sys.stderr)
        return
    waiting = state.setdefault("switches", {})
    found = schedule.switches()
    for sw in found[state.get("switches_seen", 0):]:
        waiting[int(sw["step"])] = str(sw["reason"])
    state["switches_seen"] = len(found)


def should_stop() -> bool:
    """True once lrbench asks this trial to stop (pruned, cancelled, the study stopped): finish the
    current step and exit; the trial is recorded as stopped (or pruned). False outside lrbench."""
    path = os.environ.get("LRBENCH_STOP", "")
    if not path and not os.environ.get("LRBENCH_TRIAL") and os.environ.get("LRBENCH_REPORT"):
        path = os.environ["LRBENCH_REPORT"] + ".stop"  # a followed file: the app's Cancel creates this
    return bool(path) and active() and os.path.exists(path)


def end(status: str = "completed", **metrics: Any) -> None:
    """Optional: end the trial with ``status`` and final ``metrics``. Without it, lrbench records
    the trial from the exit status and the last :func:`eval`."""
    if not active():
        return
    if status not in END_STATUSES:
        raise ValueError(f"status must be one of {', '.join(END_STATUSES)} (got {status!r})")
    with _lock:
        state = _current()
        last = state["last"]
        cost = {"steps": last.get("step", -1) + 1, "tokens": last.get("tokens", 0),
                "samples": last.get("samples", 0), "seconds": _wall(state)}
        _emit("end", status=status, metrics={str(k): v for k, v in metrics.items()}, cost=cost)


def _close() -> None:
    stream = _state.get("stream")
    if stream is not None and stream is not sys.__stdout__:
        try:
            stream.close()
        except OSError:
            pass
    _state.pop("stream", None)


atexit.register(_close)
