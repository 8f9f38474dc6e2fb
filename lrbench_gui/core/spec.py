"""Policy specs: the JSON form of a policy or a composition of policies.

A spec is either one policy::

    {"name": "cosine", "params": {"lr": 0.001, "warmup_steps": 10}}

or a sequence whose segments each restart their own clock at a step boundary::

    {"sequence": [{"name": "warmup", ...}, {"name": "cosine", ...}], "boundaries": [100]}

Segment ``i`` runs from ``boundaries[i-1]`` (0 for the first) to ``boundaries[i]`` (the run's end
for the last); inside it the segment's policy sees step ``step - start`` and a run of
``end - start`` steps. Boundaries are step numbers, or all shares of the run (``[0.05]``: the
first 5 % of the run, ``round(0.05 x steps)``), which keep their place at any run length. A
sequence with a ``switch`` (``{"sequence": [...], "boundaries": [...], "switch": {"monitor":
"loss", "patience": 5, ...}}``, LRBench's ChangeLROnPlateau) also moves to its next segment
when the monitored metric plateaus (:mod:`lrbench_gui.core.reactive`); a boundary is then the
latest step its segment may end at. Specs nest. :func:`parse_spec` validates everything and names the exact
place of a problem (``sequence[1].params.lr: must be > 0``); the parsed spec's :meth:`to_json`
writes every parameter out (defaults included), so a stored spec means the same curve even if a
plugin's defaults change, and ``parse_spec(s.to_json()).to_json() == s.to_json()``.

Spec and trial files come from users and other machines, so :func:`read_json_file` reads them
bounded (size, UTF-8, nesting depth checked before any object is built, duplicate keys refused),
and a :class:`Schedule` reports a policy that raises or gives a non-finite or negative LR as a
:class:`ScheduleError` naming the policy and the step.
"""

from __future__ import annotations

import json
import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from lrbench_gui.core.jsonio import MAX_JSON_STRING, MAX_JSON_VALUES, JSONScanner, parse_bounded, read_json_bounded
from lrbench_gui.core.jsonio import JSONBoundsError as JsonFileError
from lrbench_gui.core.params import ParamError, Params, clip, validate_params
from lrbench_gui.core.policy import Policy
from lrbench_gui.core.reactive import MAX_SWITCHES, Feed, PlateauParams, PlateauRule
from lrbench_gui.core.registry import Registry, UnknownName, require_registry

__all__ = [
    "PolicySpec",
    "SequenceSpec",
    "Spec",
    "SpecError",
    "parse_spec",
    "build_schedule",
    "Schedule",
    "sample",
    "spec_label",
    "ratio_form",
    "parse_boundaries",
    "parse_switch",
    "parse_assignment",
    "shares_of",
    "MAX_DEPTH",
    "ScheduleError",
    "JsonFileError",
    "read_json_file",
    "loads_bounded",
    "MAX_FILE_BYTES",
    "MAX_JSON_DEPTH",
]

MAX_DEPTH = 8
MAX_SEGMENTS = 64
#: the largest spec or trial file read (a real one is a few KB)
MAX_FILE_BYTES = 8 * 2**20
#: JSON nesting allowed in a spec or trial file: a composition MAX_DEPTH deep needs about 20
MAX_JSON_DEPTH = 64

class ScheduleError(ValueError):
    """A policy that raised, or gave an LR that is not finite and >= 0, at a named step."""


def loads_bounded(text: str, what: str = "JSON", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of untrusted text (an inline spec, a ``--set`` value): nesting, size,
    duplicate keys and NaN refused in one line, before any object is built (see
    :mod:`lrbench_gui.core.jsonio`, the one bounded reader)."""
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) > MAX_FILE_BYTES:
        raise JsonFileError(what, f"is larger than {MAX_FILE_BYTES // 2**20} MiB")
    scanner = JSONScanner(what, max_depth=max_depth, max_values=MAX_JSON_VALUES, max_string=MAX_JSON_STRING)
    scanner.feed(data)
    return parse_bounded(data, what, parse_constant=float)  # NaN is refused by the field that holds it


def parse_assignment(item: str, what: str = "--set") -> tuple[str, Any]:
    """One ``key=value`` (``--set``, an evaluator's parameters): the value read as JSON when it
    parses (numbers, lists, booleans), as a string otherwise (a value that opens a list or an
    object must be valid JSON); ``ValueError`` in one line, prefixed by ``what``."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{what} {clip(item)}: expected key=value")
    key = clip(key, 80)
    try:
        value = loads_bounded(raw, f"{what} {key}")
    except JsonFileError as exc:
        if raw.lstrip().startswith(("[", "{")):
            raise ValueError(str(exc)) from None
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} {key}: must be a finite number, got {clip(raw)}")
    return key, value


def read_json_file(path: str | Path, what: str = "file", max_bytes: int = MAX_FILE_BYTES,
                   max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read a spec or trial file bounded (:func:`lrbench_gui.core.jsonio.read_json_bounded`): at
    most ``max_bytes`` (``/dev/zero`` and other devices are refused, never read), UTF-8, nesting
    and duplicate keys checked before any object is built."""
    return read_json_bounded(path, max_bytes=max_bytes, max_depth=max_depth, name=f"{what} {clip(str(path), 200)}",
                             parse_constant=float)  # NaN is refused by the field that holds it, by name


class SpecError(ValueError):
    """A malformed or invalid spec; ``path`` says where (``sequence[1].params.lr``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    params: Params

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params.model_dump(mode="json")}


@dataclass(frozen=True)
class SequenceSpec:
    """Segments and the boundaries between them: all step numbers (ints >= 1), or all shares of
    the run (floats in (0, 1)), so a composition keeps its shape at any run length."""

    segments: tuple["Spec", ...]
    boundaries: tuple[int | float, ...]
    #: the plateau rule that moves to the next segment before its boundary (None: boundaries only)
    switch: PlateauParams | None = None

    @property
    def in_shares(self) -> bool:
        return bool(self.boundaries) and isinstance(self.boundaries[0], float)

    def steps(self, total_steps: int) -> tuple[int, ...]:
        """The boundaries in steps for a run of ``total_steps``: a share ``s`` is
        ``round(s * total_steps)``, kept at least one step after the boundary before it."""
        if not self.in_shares:
            return tuple(int(b) for b in self.boundaries)
        out: list[int] = []
        for b in self.boundaries:
            out.append(max(out[-1] + 1 if out else 1, int(round(b * total_steps))))
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        out = {"sequence": [s.to_json() for s in self.segments], "boundaries": list(self.boundaries)}
        if self.switch is not None:
            out["switch"] = self.switch.model_dump(mode="json")
        return out


Spec = Union[PolicySpec, SequenceSpec]


def parse_spec(obj: Any, registry: Registry, *, path: str = "") -> Spec:
    """Validate a spec (a dict, or a JSON string) against the policies of ``registry`` and return
    it parsed. Raises :class:`SpecError`."""
    reg = require_registry(registry, "parse_spec")
    if isinstance(obj, str):
        try:
            obj = loads_bounded(obj, "the spec")
        except JsonFileError as exc:
            raise SpecError(path, str(exc)) from None
    return _parse(obj, reg, path, 0)


def _join(path: str, key: str) -> str:
    if not path:
        return key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def _parse(obj: Any, reg: Registry, path: str, depth: int) -> Spec:
    if depth > MAX_DEPTH:
        raise SpecError(path, f"compositions nest at most {MAX_DEPTH} deep")
    if not isinstance(obj, dict):
        raise SpecError(path, f"a spec must be a JSON object, got {type(obj).__name__}")
    if "sequence" in obj:
        extra = set(obj) - {"sequence", "boundaries", "switch"}
        if extra:
            raise SpecError(path, f"unknown keys {clip(sorted(extra))} in a sequence (allowed: sequence, "
                                  "boundaries, switch)")
        seq, bounds = obj["sequence"], obj.get("boundaries")
        if not isinstance(seq, list) or not seq:
            raise SpecError(_join(path, "sequence"), "must be a non-empty list of specs")
        if len(seq) > MAX_SEGMENTS:
            raise SpecError(_join(path, "sequence"), f"at most {MAX_SEGMENTS} segments")
        if not isinstance(bounds, list):
            raise SpecError(_join(path, "boundaries"), "required: a list of step numbers, one fewer than the segments")
        if len(bounds) != len(seq) - 1:
            raise SpecError(
                _join(path, "boundaries"),
                f"needs {len(seq) - 1} step number(s) for {len(seq)} segments, got {len(bounds)}",
            )
        segments = tuple(_parse(s, reg, _join(path, f"sequence[{i}]"), depth + 1) for i, s in enumerate(seq))
        return SequenceSpec(segments, parse_boundaries(bounds, path), parse_switch(obj, path))
    if "name" not in obj:
        raise SpecError(path, "a spec needs 'name' (one policy) or 'sequence' (a composition)")
    extra = set(obj) - {"name", "params"}
    if extra:
        raise SpecError(path, f"unknown keys {clip(sorted(extra))} (allowed: name, params)")
    name = obj["name"]
    if not isinstance(name, str):
        raise SpecError(_join(path, "name"), f"must be a string, got {type(name).__name__}")
    try:
        cls = reg.policy(name)
    except UnknownName as exc:
        text = str(exc) if len(name) <= 200 else f"unknown policy {clip(name)}"
        raise SpecError(_join(path, "name"), text) from None
    raw = obj.get("params", {})
    try:
        params = validate_params(cls.Params, raw)
    except ParamError as exc:
        first_path, first_msg = exc.problems[0]
        where = _join(_join(path, "params"), first_path) if first_path else _join(path, "params")
        rest = "; ".join(f"{p or 'params'}: {m}" for p, m in exc.problems[1:])
        raise SpecError(where, first_msg + (f" (also {rest})" if rest else "")) from None
    return PolicySpec(name, params)


def parse_switch(obj: dict[str, Any], path: str) -> PlateauParams | None:
    """A sequence's ``switch``: the plateau rule's parameters (:class:`PlateauParams`)."""
    if "switch" not in obj:
        return None
    where = _join(path, "switch")
    if len(obj["sequence"]) < 2:
        raise SpecError(where, "a switch needs at least two segments to switch between")
    try:
        return validate_params(PlateauParams, obj["switch"])
    except ParamError as exc:
        first_path, first_msg = exc.problems[0]
        raise SpecError(_join(where, first_path) if first_path else where, first_msg) from None


def parse_boundaries(bounds: list[Any], path: str = "") -> tuple[int | float, ...]:
    """A sequence's boundaries, checked: all whole step numbers (increasing, from 1) or all shares
    of the run (increasing, strictly between 0 and 1). :class:`SpecError` names the bad one."""
    shares = bool(bounds) and all(isinstance(b, float) and 0 < b < 1 for b in bounds[:1])
    out: list[int | float] = []
    prev: float = 0
    for i, b in enumerate(bounds):
        where = _join(path, f"boundaries[{i}]")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
            raise SpecError(where, f"must be a step number or a share of the run, got {clip(b)}")
        if b <= prev:
            raise SpecError(where, f"must be greater than {prev} (boundaries increase and start above 0)")
        if shares:
            if not (isinstance(b, float) and 0 < b < 1):
                raise SpecError(where, f"must be a share of the run between 0 and 1 like the first boundary "
                                       f"(give all boundaries as shares or all as step numbers), got {clip(b)}")
        elif int(b) != b or b < 1:
            hint = " (to give shares of the run, give every boundary as a share)" if 0 < b < 1 and i else (
                " or a share of the run between 0 and 1" if not i else "")
            raise SpecError(where, f"must be a whole step number{hint}, got {clip(b)}")
        prev = b
        out.append(float(b) if shares else int(b))
    return tuple(out)


class Schedule:
    """A spec bound to a run length: ``lr_at(step)`` for any step, no state between calls.

    A reactive schedule (a reactive policy in it, or a sequence's ``switch``) is fed the run's
    metric (:meth:`feed`, or :meth:`observe` for one observation as is); ``lr_at(k)`` then reads
    the observations made before step ``k`` (:mod:`lrbench_gui.core.reactive`), and
    :meth:`switches` says where they changed the LR."""

    def __init__(self, spec: Spec, total_steps: int, registry: Registry) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1 (got {total_steps})")
        self.spec = spec
        self.total_steps = int(total_steps)
        reg = require_registry(registry, "Schedule")
        if isinstance(spec, PolicySpec):
            try:
                self.policy: Policy | None = reg.policy(spec.name)(spec.params, self.total_steps)
            except Exception as exc:  # a plugin's constructor may raise anything
                raise ScheduleError(f"policy {spec.name}: setting it up for {self.total_steps} steps raised "
                                    f"{type(exc).__name__}: {clip(str(exc))}") from None
            self._starts: list[int] = []
            self._segments: list[Schedule] = []
            self.reactive = bool(getattr(self.policy, "reactive", False))
        else:
            self.policy = None
            bounds = spec.steps(self.total_steps)
            self._starts = [0, *bounds]
            self._ends = [*bounds, max(self.total_steps, bounds[-1] + 1 if bounds else 1)]
            self._segments = [Schedule(seg, max(1, end - start), reg)
                              for seg, start, end in zip(spec.segments, self._starts, self._ends)]
            self.reactive = spec.switch is not None or any(s.reactive for s in self._segments)
        self._reg = reg
        switch = spec.switch if isinstance(spec, SequenceSpec) else None
        self._rule = PlateauRule(switch) if switch is not None else None
        self._feed = Feed(switch) if switch is not None else None
        self._own_switches: list[dict[str, Any]] = []
        self._last_observed = -1
        #: what :meth:`observe` and :meth:`feed` were given that a reactive part may read, as
        #: three columns (steps, indices into ``_fed_names``, values): 20 bytes a row
        self._fed = (array("q"), array("i"), array("d"))
        self._fed_names: list[str] = []
        self._watched: list[str] | None = None

    def lr_at(self, step: int) -> float:
        """The LR of ``step``; :class:`ScheduleError` naming the policy and the step when the
        policy raises (``exp`` with ``gamma=10`` overflows) or returns something not a number."""
        if self.policy is not None:
            try:
                return float(self.policy.lr_at(step))
            except ScheduleError:
                raise
            except Exception as exc:  # a plugin's lr_at may raise anything
                name = self.spec.name if isinstance(self.spec, PolicySpec) else "?"
                raise ScheduleError(f"policy {name}: lr_at({step}) raised {type(exc).__name__}: "
                                    f"{clip(str(exc))}") from None
        i = self._segment_at(step)
        return self._segments[i].lr_at(step - self._starts[i])

    def _segment_at(self, step: int) -> int:
        i = len(self._starts) - 1
        while i > 0 and step < self._starts[i]:
            i -= 1
        return i

    def observe(self, step: int, value: float) -> None:
        """One observation of the monitored metric after step ``step`` (torch's
        ``ReduceLROnPlateau.step(value)``), for every reactive part of the schedule; it first
        moves the LR of step ``step + 1``. ``TypeError`` for a schedule that reacts to nothing."""
        if not self.reactive:
            raise TypeError(f"policy {self.label()} does not react to a metric: scheduler.step() takes no value")
        self._observe(int(step), float(value), None, None)
        self._log(step, "", value)

    def feed(self, step: int, loss: float | None = None, metrics: dict[str, float] | None = None) -> None:
        """The run's train ``loss`` after ``step`` and/or an evaluation's ``metrics`` at ``step``:
        each reactive part turns them into observations of its own ``monitor`` (no-op when the
        schedule reacts to nothing)."""
        if self.reactive:
            self._observe(int(step), None, loss, metrics)
            if self._watched is None:
                self._watched = self.monitors()
            watched = self._watched
            if loss is not None and (not watched or "loss" in watched):
                self._log(step, "loss", loss)
            for name, v in (metrics or {}).items():
                if not watched or name in watched or name == "*":
                    try:
                        self._log(step, str(name), float(v))
                    except (TypeError, ValueError):  # Feed.eval skips it too
                        pass

    def _log(self, step: int, what: str, value: float) -> None:
        if what not in self._fed_names:
            self._fed_names.append(what)
        steps, kinds, values = self._fed
        steps.append(int(step))
        kinds.append(self._fed_names.index(what))
        values.append(float(value))

    def observations(self) -> list[tuple[int, str, float]]:
        """What the schedule was fed, in order, as ``(step, what, value)``: ``what`` is ``""``
        for :meth:`observe`'s value, else ``loss`` or the metric name :meth:`feed` got (only
        those a reactive part watches: at most one row per step and one per evaluation).
        :meth:`restore` on a fresh schedule replays them; a checkpoint keeps them."""
        names = self._fed_names
        return [(s, names[k], v) for s, k, v in zip(*self._fed)]

    def restore(self, rows: Any) -> None:
        """Replay ``rows`` (:meth:`observations` of a schedule of the same spec) into this fresh
        one, so its LRs and switches continue where that one's were; ``ValueError`` when they are
        not such rows or this schedule was fed already."""
        if self._fed[0] or self._last_observed >= 0:
            raise ValueError(f"policy {self.label()}: restore needs a fresh schedule (this one was fed already)")
        if not self.reactive:
            return
        rows = list(rows)
        for k, row in enumerate(rows):
            if not (isinstance(row, (list, tuple)) and len(row) == 3 and isinstance(row[1], str)
                    and isinstance(row[0], (int, float)) and isinstance(row[2], (int, float))):
                raise ValueError(f"observation {k} is {clip(repr(row))}, not [step, what, value]")
        k = 0
        while k < len(rows):
            step, what, value = int(rows[k][0]), rows[k][1], float(rows[k][2])
            if what == "":
                self.observe(step, value)
            elif what == "loss":
                self.feed(step, loss=value)
            else:  # one evaluation's metrics: the rows of the same step, as one call
                metrics = {what: value}
                while (k + 1 < len(rows) and rows[k + 1][1] not in ("", "loss", *metrics)
                       and int(rows[k + 1][0]) == step):
                    k += 1
                    metrics[rows[k][1]] = float(rows[k][2])
                self.feed(step, metrics=metrics)
            k += 1

    def _observe(self, step: int, value: float | None, loss: float | None, metrics: dict | None) -> None:
        if step < self._last_observed:
            raise ValueError(f"policy {self.label()}: observation at step {step} after one at step "
                             f"{self._last_observed} (observations go forward)")
        self._last_observed = step
        if self.policy is not None:
            if not self.reactive:
                return
            try:
                if value is not None:
                    self.policy.observe(step, value)
                else:
                    self.policy.feed(step, loss, metrics)
            except (TypeError, ValueError):
                raise
            except Exception as exc:  # a plugin's observe may raise anything
                raise ScheduleError(f"policy {self.label()}: observing step {step} raised {type(exc).__name__}: "
                                    f"{clip(str(exc))}") from None
            return
        i = self._segment_at(step)
        seg = self._segments[i]
        if seg.reactive:
            seg._observe(step - self._starts[i], value, loss, metrics)
        if self._rule is None or self._feed is None:
            return
        observed = [value] if value is not None else [
            v for v in (self._feed.step(step, loss) if loss is not None else None,
                        self._feed.eval(step, metrics) if metrics else None) if v is not None]
        for v in observed:
            if self._rule.update(v) and i + 1 < len(self._segments) and step + 1 < self._starts[i + 1]:
                self._switch_to(i + 1, step + 1, self._rule.reason(v, self._feed.monitor))

    def _switch_to(self, i: int, start: int, reason: str) -> None:
        """Segment ``i`` starts at ``start`` (before its boundary): its clock and its length follow."""
        self._starts[i] = start
        self._segments[i] = Schedule(self.spec.segments[i], max(1, self._ends[i] - start), self._reg)
        if len(self._own_switches) < MAX_SWITCHES:
            lr = self.lr_at(start)
            self._own_switches.append({"step": start, "lr": lr, "reason": f"plateau: {reason}; segment {i + 1} "
                                       f"({spec_label(self.spec.segments[i])}) starts"})

    def monitors(self) -> list[str]:
        """The metrics the reactive parts watch (``loss``, ``val_loss``...), each once; [] when
        the schedule reacts to nothing."""
        if not self.reactive:
            return []
        if self.policy is not None:
            name = getattr(self.policy.params, "monitor", None)
            return [name] if isinstance(name, str) else []
        out = [self._feed.monitor] if self._feed is not None else []
        for seg in self._segments:
            out += [m for m in seg.monitors() if m not in out]
        return out

    def switches(self) -> list[dict[str, Any]]:
        """Where observations changed the LR: ``{"step", "lr", "reason"}`` in step order,
        ``step`` being the first step with the new LR; nested parts' steps are the run's."""
        if self.policy is not None:
            return list(self.policy.switches()) if self.reactive else []
        out = list(self._own_switches)
        for start, seg in zip(self._starts, self._segments):
            out += [{**s, "step": int(s["step"]) + start} for s in seg.switches()]
        return sorted(out, key=lambda s: s["step"])[:MAX_SWITCHES]

    def checked_lr(self, step: int) -> float:
        """:meth:`lr_at`, refused (:class:`ScheduleError`) unless finite and >= 0: what an
        optimizer is given and a sample prints."""
        lr = self.lr_at(step)
        if not math.isfinite(lr) or lr < 0:
            what = "a non-finite" if not math.isfinite(lr) else "a negative"
            raise ScheduleError(f"policy {self.label()} gives {what} LR ({lr!r}) at step {step}: check its parameters")
        return lr

    def label(self) -> str:
        return spec_label(self.spec) if isinstance(self.spec, SequenceSpec) else self.spec.name

    def lrs(self, n: int | None = None) -> list[float]:
        return [self.lr_at(s) for s in range(self.total_steps if n is None else n)]

    def checked_lrs(self, n: int | None = None) -> list[float]:
        return [self.checked_lr(s) for s in range(self.total_steps if n is None else n)]


def build_schedule(spec: Spec | dict | str, total_steps: int, registry: Registry) -> Schedule:
    """A :class:`Schedule` from a parsed spec or its JSON form."""
    if not isinstance(spec, (PolicySpec, SequenceSpec)):
        spec = parse_spec(spec, registry)
    return Schedule(spec, total_steps, registry)


def sample(spec: Spec | dict | str, steps: int, registry: Registry) -> list[float]:
    """The LR of steps ``0 .. steps-1`` of a run of ``steps`` steps."""
    return build_schedule(spec, steps, registry).lrs()


def spec_label(spec: Spec | dict, registry: Registry | None = None) -> str:
    """The one short label of a spec; see :func:`lrbench_gui.core.records.spec_label`."""
    from lrbench_gui.core.records import spec_label as label

    return label(spec, registry)


def ratio_form(spec: dict[str, Any], total_steps: int, registry: Registry) -> dict[str, Any]:
    """``spec`` (JSON form, tuned for runs of ``total_steps``) with every length given in steps
    rewritten as a share of the run where the policy takes one (``warmup_steps`` -> ``warmup_ratio``,
    ``decay_steps`` -> ``decay_ratio``: any ``X_steps`` with an ``X_ratio`` beside it) and a
    composition's boundaries as shares, so the spec keeps its shape when it is used, or exported,
    for a run of another length. The curve over ``total_steps`` is unchanged (checked: a rewrite
    that would move a step is not made)."""
    reg = require_registry(registry, "ratio_form")
    if total_steps < 1 or not isinstance(spec, dict):
        return spec
    try:
        before = sample(spec, total_steps, reg)
    except (SpecError, ValueError):
        return spec
    if "sequence" in spec:
        bounds = spec.get("boundaries") or []
        if not bounds or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) or bounds[-1] >= total_steps:
            return spec
        ends = [*bounds, total_steps]
        segs = [ratio_form(seg, end - start, reg) for seg, start, end in zip(spec["sequence"], [0, *bounds], ends)]
        switch = {"switch": spec["switch"]} if "switch" in spec else {}  # kept as it is
        for shares in ([round(b / total_steps, 6) for b in bounds], [b / total_steps for b in bounds]):
            candidate = {"sequence": segs, "boundaries": shares, **switch}
            if _same_curve(candidate, total_steps, before, reg):
                return parse_spec(candidate, reg).to_json()
        candidate = {"sequence": segs, "boundaries": list(bounds), **switch}
        return parse_spec(candidate, reg).to_json() if _same_curve(candidate, total_steps, before, reg) else spec
    if "name" not in spec:
        return spec
    fields = reg.policy(str(spec["name"])).Params.model_fields
    params = dict(spec.get("params") or {})
    out = dict(params)
    for key, value in params.items():
        ratio_key = key[: -len("_steps")] + "_ratio" if key.endswith("_steps") else ""
        if ratio_key not in fields or not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            continue
        for ratio in (round(value / total_steps, 6), value / total_steps):
            if not 0 < ratio < 1:
                break
            trial = {**out, key: 0, ratio_key: ratio}
            if _same_curve({**spec, "params": trial}, total_steps, before, reg):
                out = trial
                break
    if out == params:
        return spec
    return parse_spec({**spec, "params": out}, reg).to_json()


def _same_curve(candidate: dict[str, Any], total_steps: int, before: list[float], reg: Registry) -> bool:
    try:
        return sample(candidate, total_steps, reg) == before
    except (SpecError, ValueError):
        return False


def shares_of(spec: dict[str, Any]) -> list[str]:
    """What a spec gives as shares of the run, for a message: ``["warmup_ratio 0.1",
    "boundaries 0.25,0.9"]`` (the ``*_ratio`` parameters above 0 and share boundaries, nested
    segments included)."""
    out: list[str] = []
    if not isinstance(spec, dict):
        return out
    if "sequence" in spec:
        bounds = spec.get("boundaries") or []
        if bounds and all(isinstance(b, float) and 0 < b < 1 for b in bounds):
            out.append("boundaries " + ",".join(f"{b:g}" for b in bounds))
        for seg in spec.get("sequence") or []:
            out += [x for x in shares_of(seg) if x not in out]
        return out
    for key, value in (spec.get("params") or {}).items():
        if key.endswith("_ratio") and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            out.append(f"{key} {value:g}")
    return out
