"""The records of the policy database: validation, defaults, packed curves and the content hash.

Every record that enters the database (an add from this app, an import, a migration) goes
through :func:`normalize_record`, which checks every field of ``docs/format.md``, fills the
optional ones with their defaults, packs and bounds the curves, and computes the content hash.
The shapes it returns are :class:`~lrbench_gui.core.records.TrialRecord` and
:class:`~lrbench_gui.core.records.StudyRecord`.

A policy spec is validated as far as the ``registry`` handed in knows it: a policy installed
there has its parameters checked by its schema (a bad one refuses the record); a policy it does
not know (a colleague's plugin), and every policy when the registry is ``None``, is kept as
written, its parameters checked only as a bounded free-form object, and its name reported in
``Normalized.unknown_policies``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Union

from lrbench_gui.core.db.curves import CurveError, normalize_curve
from lrbench_gui.core.db.fields import (
    KEY,
    MAX_NAME,
    MAX_STRING,
    MAX_TEXT,
    FieldError,
    as_choice,
    as_id,
    as_int,
    as_number,
    as_object,
    as_str,
    as_tags,
    as_time,
    canonical_json,
    freeform,
    join,
    name_map,
    type_name,
    with_fields,
)
from lrbench_gui.core.records import TRIAL_STORED, StudyRecord, StudyStatus, TrialRecord
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import MAX_DEPTH, MAX_SEGMENTS, SpecError, parse_switch, parse_boundaries, parse_spec

__all__ = [
    "FieldError",
    "Normalized",
    "normalize_record",
    "finite_curves",
    "check_spec",
    "record_hash",
    "TABLES",
    "REQUIRED",
    "FIELDS",
    "TRIAL_STATUSES",
    "STUDY_STATUSES",
    "TRIAL_KINDS",
    "POLICY_KINDS",
    "MAX_CURVES",
]

TABLES = ("studies", "trials", "policies")
MAX_CURVES = 8

#: statuses a stored trial may have (:data:`lrbench_gui.core.records.TRIAL_STORED`)
TRIAL_STATUSES: tuple[str, ...] = tuple(s.value for s in TRIAL_STORED)
STUDY_STATUSES: tuple[str, ...] = StudyStatus.values()
TRIAL_KINDS = ("train", "range_test")
POLICY_KINDS = ("policy", "recipe", "rule_of_thumb")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_POLICY_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")

#: a record of the ``policies`` table (a named policy, a recipe or a rule of thumb)
PolicyRecord = dict[str, Any]
AnyRecord = Union[StudyRecord, TrialRecord, PolicyRecord]


def record_hash(record: dict[str, Any], curve_digests: dict[str, tuple[int, str]] | None = None) -> str:
    """sha256 of the canonical JSON of ``record`` without ``hash``, curves replaced by their digests.

    ``curve_digests`` maps a curve name to (points, digest of the decoded arrays); when it is not
    given the curves are decoded from the record.
    """
    body = {k: v for k, v in record.items() if k != "hash"}
    if "curves" in body:
        if curve_digests is None:
            curve_digests = {}
            for name, c in body["curves"].items():
                cv = normalize_curve(c)
                curve_digests[name] = (len(cv), cv.digest())
        body["curves"] = {name: {"n": n, "sha256": d} for name, (n, d) in curve_digests.items()}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _model(value: Any, path: str) -> dict:
    d = with_fields(value, path, (), ("family", "size", "parameters"))
    return {
        "family": as_str(d.get("family"), join(path, "family"), max_len=MAX_NAME, null=True),
        "size": as_str(d.get("size"), join(path, "size"), max_len=MAX_NAME, null=True),
        "parameters": as_int(d.get("parameters"), join(path, "parameters"), null=True, ge=0),
    }


def _named_params(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    d = with_fields(value, path, ("name",), ("params",))
    return {
        "name": as_str(d["name"], join(path, "name"), max_len=MAX_NAME),
        "params": freeform(as_object(d.get("params", {}), join(path, "params")), join(path, "params")),
    }


def _objective(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    d = with_fields(value, path, ("metric",), ("mode",))
    return {
        "metric": as_str(d["metric"], join(path, "metric"), max_len=64, pattern=KEY, what="a metric name"),
        "mode": as_choice(d.get("mode", "min"), join(path, "mode"), ("min", "max")),
    }


def _budget(value: Any, path: str) -> dict:
    d = with_fields(value, path, (), ("steps", "epochs", "tokens", "seconds"))
    return {
        "steps": as_int(d.get("steps"), join(path, "steps"), null=True, ge=0),
        "epochs": as_number(d.get("epochs"), join(path, "epochs"), null=True, ge=0),
        "tokens": as_int(d.get("tokens"), join(path, "tokens"), null=True, ge=0),
        "seconds": as_number(d.get("seconds"), join(path, "seconds"), null=True, ge=0),
    }


def _cost(value: Any, path: str) -> dict:
    d = with_fields(value, path, (), ("steps", "tokens", "seconds", "eval_seconds"))
    out = {
        "steps": as_int(d.get("steps"), join(path, "steps"), null=True, ge=0),
        "tokens": as_int(d.get("tokens"), join(path, "tokens"), null=True, ge=0),
        "seconds": as_number(d.get("seconds"), join(path, "seconds"), null=True, ge=0),
    }
    if "eval_seconds" in d:  # the evaluators' wall time (docs/format.md), apart from seconds
        out["eval_seconds"] = as_number(d.get("eval_seconds"), join(path, "eval_seconds"), null=True, ge=0)
    return out


#: at most this many GPU ids in a trial's ``resources.gpus``
MAX_GPUS = 1024


def _resources(value: Any, path: str) -> dict:
    """Where a trial ran: the GPU ids it was given, the host, the DeepSpeed launcher's include list."""
    d = with_fields(value, path, (), ("gpus", "host", "launcher_include"))
    gpus = d.get("gpus", [])
    if not isinstance(gpus, list) or len(gpus) > MAX_GPUS:
        raise FieldError(join(path, "gpus"), f"must be a list of at most {MAX_GPUS} GPU indices, got {type_name(gpus)}"
                         + (f" of {len(gpus)}" if isinstance(gpus, list) else ""))
    return {
        "gpus": [as_int(g, join(join(path, "gpus"), i), ge=0) for i, g in enumerate(gpus)],
        "host": as_str(d.get("host"), join(path, "host"), max_len=MAX_NAME, null=True),
        "launcher_include": as_str(d.get("launcher_include"), join(path, "launcher_include"), max_len=MAX_NAME,
                                   null=True),
    }


def _provenance(value: Any, path: str) -> dict:
    d = with_fields(value, path, (), ("user", "host", "created", "app_version"))
    return {
        "user": as_str(d.get("user"), join(path, "user"), max_len=MAX_NAME, null=True),
        "host": as_str(d.get("host"), join(path, "host"), max_len=MAX_NAME, null=True),
        "created": as_time(d.get("created"), join(path, "created")),
        "app_version": as_str(d.get("app_version"), join(path, "app_version"), max_len=64, null=True),
    }


def _source(value: Any, path: str) -> dict:
    d = with_fields(value, path, ("title",), ("url", "citation"))
    return {
        "title": as_str(d["title"], join(path, "title"), max_len=MAX_NAME),
        "url": as_str(d.get("url"), join(path, "url"), max_len=2048, null=True),
        "citation": as_str(d.get("citation"), join(path, "citation"), max_len=MAX_STRING, null=True),
    }


def check_spec(value: Any, path: str, registry: Registry | None, unknown: set[str], depth: int = 0) -> dict:
    """Validate a policy spec's structure; leaves naming a policy ``registry`` has are fully parsed.

    A leaf naming a policy not in ``registry`` (a colleague's plugin; any policy when
    ``registry`` is None) is kept as written, its parameters checked only as bounded JSON, and
    its name added to ``unknown``.
    """
    if depth > MAX_DEPTH:
        raise FieldError(path, f"compositions nest at most {MAX_DEPTH} deep")
    d = as_object(value, path)
    if "sequence" in d:
        with_fields(d, path, ("sequence", "boundaries"), ("switch",))
        seq, bounds = d["sequence"], d["boundaries"]
        if not isinstance(seq, list) or not seq or len(seq) > MAX_SEGMENTS:
            raise FieldError(join(path, "sequence"), f"must be a list of 1 to {MAX_SEGMENTS} specs")
        if not isinstance(bounds, list) or len(bounds) != len(seq) - 1:
            raise FieldError(join(path, "boundaries"), f"must be a list of {len(seq) - 1} step number(s) "
                                                       "or shares of the run")
        try:
            checked = parse_boundaries(bounds)
        except SpecError as exc:
            raise FieldError(join(path, exc.path), exc.message) from None
        out = {
            "sequence": [check_spec(s, join(join(path, "sequence"), i), registry, unknown, depth + 1) for i, s in enumerate(seq)],
            "boundaries": list(checked),
        }
        if "switch" in d:  # the plateau rule of a switching sequence (core.spec, core.reactive)
            try:
                out["switch"] = parse_switch(d, path).model_dump(mode="json")  # type: ignore[union-attr]
            except SpecError as exc:
                raise FieldError(exc.path, exc.message) from None
        return out
    with_fields(d, path, ("name",), ("params",))
    name = as_str(d["name"], join(path, "name"), max_len=64, pattern=_POLICY_NAME, what="a policy name")
    params = freeform(as_object(d.get("params", {}), join(path, "params")), join(path, "params"))
    if registry is not None and name in registry.policies:
        try:
            parse_spec({"name": name, "params": params}, registry, path=path)
        except SpecError as exc:
            raise FieldError(exc.path, exc.message) from None
    else:
        unknown.add(name)  # type: ignore[arg-type]
    return {"name": name, "params": params}


def _finite_number(v: Any) -> bool:
    return type(v) is int or (type(v) is float and v - v == 0.0 and abs(v) <= 3.4e38)


def finite_curves(raw: Any) -> Any:
    """A trial record from this app with the non-finite points of its plain curves dropped.

    A run whose LR or loss went to infinity (the trial protocol carries ``"inf"``) is still a
    result worth keeping: rather than refuse the record, the points that are not finite
    numbers (or overflow float32) are dropped, counted in ``extra.dropped_points`` and named
    in ``notes``. Anything else is left for validation; the input is not modified.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("curves"), dict):
        return raw
    dropped: dict[str, int] = {}
    curves: dict[str, Any] = {}
    for name, c in raw["curves"].items():
        if isinstance(c, dict) and set(c) == {"steps", "values"} and isinstance(c["steps"], list) and isinstance(c["values"], list) \
                and len(c["steps"]) == len(c["values"]) and not all(map(_finite_number, c["values"])):
            keep = [i for i, v in enumerate(c["values"]) if _finite_number(v)]
            dropped[str(name)] = len(c["values"]) - len(keep)
            c = {"steps": [c["steps"][i] for i in keep], "values": [c["values"][i] for i in keep]}
        curves[name] = c
    if not dropped:
        return raw
    out = dict(raw)
    out["curves"] = curves
    extra = out.get("extra")
    if extra is None or isinstance(extra, dict):
        out["extra"] = {**(extra or {}), "dropped_points": dropped}
    note = "non-finite points dropped from the curves: " + ", ".join(f"{k} {n}" for k, n in dropped.items())
    notes = out.get("notes")
    if isinstance(notes, str) or notes is None:
        out["notes"] = ((notes + "\n") if notes else "") + note
        out["notes"] = out["notes"][-MAX_TEXT:]
    return out


@dataclass
class Normalized:
    """A record after validation, with what the importer needs to know about it."""

    record: AnyRecord
    unknown_policies: set[str] = field(default_factory=set)
    given_hash: str | None = None


def _common_tail(d: dict, out: dict) -> None:
    out["provenance"] = _provenance(d.get("provenance", {}), "provenance")
    out["tags"] = as_tags(d.get("tags", []), "tags")
    out["notes"] = as_str(d.get("notes", ""), "notes", max_len=MAX_TEXT)
    out["extra"] = freeform(as_object(d.get("extra", {}), "extra"), "extra")


_STUDY_FIELDS = ("id", "name", "task", "task_params", "model", "tuner", "objective", "budget", "status", "provenance", "tags", "notes", "extra", "hash")
_TRIAL_FIELDS = (
    "id", "study", "kind", "task", "task_params", "model", "policy", "optimizer", "budget", "seed", "status",
    "objective", "metrics", "cost", "curves", "plugins", "resources", "provenance", "tags", "notes", "extra", "hash",
)
_POLICY_FIELDS = (
    "id", "name", "kind", "spec", "lr", "lr_range", "optimizer", "epochs", "warmup_ratio", "warmup_steps",
    "scheduler", "model", "task", "source", "provenance", "tags", "notes", "extra", "hash",
)
REQUIRED = {"studies": ("id", "name"), "trials": ("id", "task", "policy", "status"), "policies": ("id", "name", "kind", "source")}
FIELDS = {"studies": _STUDY_FIELDS, "trials": _TRIAL_FIELDS, "policies": _POLICY_FIELDS}


def _study(d: dict, registry: Registry | None, n: Normalized) -> StudyRecord:
    return {
        "id": as_id(d["id"]),
        "name": as_str(d["name"], "name", max_len=MAX_NAME),  # type: ignore[typeddict-item]
        "task": as_str(d.get("task"), "task", max_len=MAX_NAME, null=True),
        "task_params": freeform(as_object(d.get("task_params", {}), "task_params"), "task_params"),
        "model": _model(d.get("model", {}), "model"),  # type: ignore[typeddict-item]
        "tuner": _named_params(d.get("tuner"), "tuner"),
        "objective": _objective(d.get("objective"), "objective"),
        "budget": _budget(d.get("budget", {}), "budget"),
        "status": as_choice(d.get("status", StudyStatus.CREATED.value), "status", STUDY_STATUSES),  # type: ignore[typeddict-item]
    }


def _curves(value: Any) -> tuple[dict[str, Any], dict[str, tuple[int, str]]]:
    curves_in = as_object(value, "curves")
    if len(curves_in) > MAX_CURVES:
        raise FieldError("curves", f"has {len(curves_in)} curves; the limit is {MAX_CURVES}")
    curves: dict[str, Any] = {}
    digests: dict[str, tuple[int, str]] = {}
    for name, c in curves_in.items():
        if not KEY.match(name):
            raise FieldError(join("curves", name), "is not a valid curve name (letters, digits and _ . : / -)")
        try:
            cv = normalize_curve(c)
        except CurveError as exc:
            raise FieldError(join(join("curves", name), exc.field) if exc.field else join("curves", name), exc.message) from None
        curves[name] = cv.packed()
        digests[name] = (len(cv), cv.digest())
    return curves, digests


def _trial(d: dict, registry: Registry | None, n: Normalized) -> tuple[TrialRecord, dict[str, tuple[int, str]]]:
    out: TrialRecord = {
        "id": as_id(d["id"]),
        "study": None if d.get("study") is None else as_id(d["study"], "study"),
        "kind": as_choice(d.get("kind", "train"), "kind", TRIAL_KINDS),  # type: ignore[typeddict-item]
        "task": as_str(d["task"], "task", max_len=MAX_NAME),  # type: ignore[typeddict-item]
        "task_params": freeform(as_object(d.get("task_params", {}), "task_params"), "task_params"),
        "model": _model(d.get("model", {}), "model"),  # type: ignore[typeddict-item]
        "policy": check_spec(d["policy"], "policy", registry, n.unknown_policies),
        "optimizer": _named_params(d.get("optimizer"), "optimizer"),
        "budget": _budget(d.get("budget", {}), "budget"),
        "seed": as_int(d.get("seed"), "seed", null=True),
        "status": as_choice(d["status"], "status", TRIAL_STATUSES),  # type: ignore[typeddict-item]
        "objective": _objective(d.get("objective"), "objective"),
        "metrics": name_map(d.get("metrics", {}), "metrics", lambda v, p: as_number(v, p)),
        "cost": _cost(d.get("cost", {}), "cost"),  # type: ignore[typeddict-item]
    }
    out["curves"], digests = _curves(d.get("curves", {}))
    out["plugins"] = name_map(d.get("plugins", {}), "plugins", lambda v, p: as_str(v, p, max_len=64))
    if "resources" in d:  # only when given: a record without it keeps the hash it always had
        out["resources"] = _resources(d["resources"], "resources")
    return out, digests


def _policy(d: dict, registry: Registry | None, n: Normalized) -> PolicyRecord:
    lr_range = d.get("lr_range")
    if lr_range is not None:
        if not isinstance(lr_range, list) or len(lr_range) != 2:
            raise FieldError("lr_range", f"must be a list [low, high] or null, got {type_name(lr_range)}")
        lo = as_number(lr_range[0], "lr_range[0]", gt=0)
        hi = as_number(lr_range[1], "lr_range[1]", gt=0)
        if hi < lo:  # type: ignore[operator]
            raise FieldError("lr_range[1]", f"must be >= lr_range[0] ({lo!r}), got {hi!r}")
        lr_range = [lo, hi]
    spec = d.get("spec")
    return {
        "id": as_id(d["id"]),
        "name": as_str(d["name"], "name", max_len=MAX_NAME),
        "kind": as_choice(d["kind"], "kind", POLICY_KINDS),
        "spec": None if spec is None else check_spec(spec, "spec", registry, n.unknown_policies),
        "lr": as_number(d.get("lr"), "lr", null=True, gt=0),
        "lr_range": lr_range,
        "optimizer": as_str(d.get("optimizer"), "optimizer", max_len=64, null=True),
        "epochs": as_number(d.get("epochs"), "epochs", null=True, ge=0),
        "warmup_ratio": as_number(d.get("warmup_ratio"), "warmup_ratio", null=True, ge=0, lt=1),
        "warmup_steps": as_int(d.get("warmup_steps"), "warmup_steps", null=True, ge=0),
        "scheduler": as_str(d.get("scheduler"), "scheduler", max_len=MAX_NAME, null=True),
        "model": _model(d.get("model", {}), "model"),
        "task": as_str(d.get("task"), "task", max_len=MAX_NAME, null=True),
        "source": _source(d["source"], "source"),
    }


def normalize_record(table: str, raw: Any, registry: Registry | None) -> Normalized:
    """Validate one record of ``table`` and return it complete, packed and hashed.

    Raises :class:`FieldError` naming the first wrong field. A ``hash`` in the input must match
    the computed one (a record edited after export is refused; leave ``hash`` out to have it
    computed). ``registry`` decides which policies' parameters are checked by their schema (see
    the module's docstring).
    """
    d = with_fields(raw, "", REQUIRED[table], FIELDS[table])
    n = Normalized(record={})
    given = d.get("hash")
    if given is not None:
        n.given_hash = as_str(given, "hash", max_len=64, pattern=_HEX64, what="a sha256 hex digest")
    digests = None
    out: Any
    if table == "studies":
        out = _study(d, registry, n)
    elif table == "trials":
        out, digests = _trial(d, registry, n)
    else:
        out = _policy(d, registry, n)
    _common_tail(d, out)
    out["hash"] = record_hash(out, digests)
    if n.given_hash is not None and n.given_hash != out["hash"]:
        raise FieldError(
            "hash",
            "does not match the record's content (it was changed after export); "
            "remove the hash field to accept the record as it is now",
        )
    n.record = out
    return n
