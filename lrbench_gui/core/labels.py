"""Labels of trials for every view: in full (tooltips, details) and short but distinguishing
(tables, legends). Built on :func:`lrbench_gui.core.records.spec_label`, the one label of a spec,
so the CLI, the database's table rows and every panel say the same.

:func:`short_labels` gives trials that would share a label what tells them apart: the planned
steps, the parameters that differ (``step(lr=0.1, gamma=0.5)``), the seed, then the task's
parameters; what is still alike gets its key (``h1000-lr1e-3-s0`` without the study's id).
Records and panel rows both work: a record's ``id``, ``policy``, ``budget.steps``, ``seed``,
``task_params``; a row's ``trial``, ``policy``, ``planned`` or ``steps``, ``point.seed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from lrbench_gui.core.records import spec_label, spec_params

if TYPE_CHECKING:  # pragma: no cover
    from lrbench_gui.core.registry import Registry

__all__ = ["trial_label", "short_labels", "trial_key", "trial_keys", "record_id"]


def record_id(item: Mapping[str, Any]) -> str:
    """The trial id of a database record (``id``) or a panel's row (``trial``)."""
    return str(item.get("id") or item.get("trial") or "")


def trial_key(trial_id: str, study: str | None = None) -> str:
    """A trial's id without its study's: the tuner's key (``h1000-lr1e-3-s0``)."""
    if study and trial_id.startswith(f"{study}-"):
        return trial_id[len(study) + 1:]
    return trial_id


def trial_keys(ids: Iterable[str]) -> dict[str, str]:
    """Each id without what all of them share up to a ``-`` (their study's id): the part that
    tells them apart (``h1000-lr1e-3-s0``, not ``s0``)."""
    ids = list(ids)
    if len(ids) < 2:
        return {i: i.split("-", 2)[-1] if i.count("-") >= 2 else i for i in ids}
    prefix = _common_prefix(ids)
    return {i: i[len(prefix):] or i for i in ids}


def _spec(item: Any) -> Any:
    """The spec of a record or row (a table row's ``spec``, else its ``policy``), or ``item``."""
    if isinstance(item, Mapping):
        if isinstance(item.get("spec"), Mapping):
            return item["spec"]
        if "policy" in item:
            return item["policy"]
    return item


def _steps(item: Mapping[str, Any]) -> Any:
    """The planned steps: a record's budget, a panel row's ``planned`` or ``steps``."""
    budget = item.get("budget")
    if isinstance(budget, Mapping) and budget.get("steps") is not None:
        return budget.get("steps")
    return item.get("planned", item.get("steps"))


def _seed(item: Mapping[str, Any]) -> Any:
    if item.get("seed") is not None:
        return item.get("seed")
    point = item.get("point")
    return point.get("seed") if isinstance(point, Mapping) else None


def trial_label(record_or_spec: Any, registry: "Registry | None" = None, short: bool = False) -> str:
    """The label of one trial (a record, a panel's row) or spec: short (``cosine(lr=0.001)``) or
    in full, every parameter with the steps, the seed and the task (for tooltips and details)."""
    spec = _spec(record_or_spec)
    if short:
        return spec_label(spec, registry)
    text = spec_label(spec, registry, full=True)
    if spec is not record_or_spec:  # a record or a row: what it ran, too
        steps, seed, task = _steps(record_or_spec), _seed(record_or_spec), record_or_spec.get("task")
        extra = [f"{steps} steps" if steps is not None else "", f"seed {seed}" if seed is not None else "",
                 f"on {task}" if task else ""]
        text = " · ".join([text] + [e for e in extra if e])
    return text


def _dims(item: Mapping[str, Any]) -> dict[str, Any]:
    """What may tell a trial from another, by label name: steps first, then the spec's
    parameters, the seed and the task's parameters."""
    out: dict[str, Any] = {"steps": _steps(item)}
    out.update({f"p:{k}": v for k, v in spec_params(_spec(item)).items()})
    out["seed"] = _seed(item)
    task_params = item.get("task_params")
    if isinstance(task_params, Mapping):
        out.update({f"t:{k}": v for k, v in task_params.items()})
    return out


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def _derived(spec: Any, registry: "Registry | None") -> set[str]:
    """The parameters of a plain spec that follow the run's length (a horizon's warmup)."""
    if registry is None or not isinstance(spec, Mapping) or spec.get("name") not in registry.policies:
        return set()
    from lrbench_gui.core.tuning.hints import policy_hints

    return set(policy_hints(registry.policy(spec["name"])).derived)


def short_labels(records: Iterable[Mapping[str, Any]], registry: "Registry | None" = None,
                 limit: int = 3) -> dict[str, str]:
    """A short label per trial id that tells the trials of ``records`` apart (see the module's
    docstring); ``limit`` is the most differences a label names."""
    items = [(record_id(r), r) for r in records]
    base = {tid: spec_label(_spec(r), registry) for tid, r in items}
    groups: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for tid, r in items:
        groups.setdefault(base[tid], []).append((tid, r))
    out = dict(base)
    for label, group in groups.items():
        if len(group) < 2:
            continue
        dims = {tid: _dims(r) for tid, r in group}
        names = list(dict.fromkeys(n for d in dims.values() for n in d))
        differ = [n for n in names if len({_frozen(d.get(n)) for d in dims.values()}) > 1]
        if "steps" in differ:  # a parameter derived from the run's length says nothing more
            derived = set().union(*(_derived(_spec(r), registry) for _, r in group))
            differ = [n for n in differ if not (n.startswith("p:") and n[2:] in derived)]
        differ = differ[:limit]
        params = [n[2:] for n in differ if n.startswith("p:")]
        for tid, r in group:
            text = spec_label(_spec(r), registry, show=params) if params else label
            d = dims[tid]
            if "steps" in differ and d.get("steps") is not None:
                text += f" @{d['steps']} steps"
            if "seed" in differ and d.get("seed") is not None:
                text += f" seed {d['seed']}"
            task = [f"{n[2:]}={d.get(n)}" for n in differ if n.startswith("t:")]
            if task:
                text += " [" + ", ".join(task) + "]"
            out[tid] = text
    # what is still alike gets its key (the id past what all the ids share)
    seen: dict[str, list[str]] = {}
    for tid, text in out.items():
        seen.setdefault(text, []).append(tid)
    for text, ids in seen.items():
        if len(ids) > 1:
            prefix = _common_prefix(ids)
            for tid in ids:
                out[tid] = f"{text} · {tid[len(prefix):] or tid}"
    return out


def _common_prefix(ids: list[str]) -> str:
    """The longest common prefix of ``ids`` that ends at a ``-`` (a study id, not half a key)."""
    first, last = min(ids), max(ids)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    cut = first[:n].rfind("-")
    return first[:cut + 1] if cut >= 0 else ""
