"""What a study will run, in words: the search space the study itself will build, its compute
budget, where it runs and how it is ranked."""

from __future__ import annotations

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.space import SearchSpace, study_space
from lrbench_gui.core.tuning.study import StudyConfig

__all__ = ["preview_space", "preview_html", "planned_trials", "default_lr_range", "MAX_FAMILIES_SHOWN"]

MAX_FAMILIES_SHOWN = 12

#: the usual LR range of an optimizer, for a task that declares none: SGD's useful LRs sit about
#: a decade higher than Adam's
OPTIMIZER_LR_RANGES = {"sgd": (1e-4, 1.0), "adam": (1e-5, 1e-1), "adamw": (1e-5, 1e-1)}


def default_lr_range(task_cls: object, optimizer: str) -> tuple[float, float] | None:
    """The LR range a study of ``task_cls`` with ``optimizer`` starts from: the task's own
    ``lr_range`` (a ``(low, high)`` pair, or one per optimizer name) when it declares one, else the
    optimizer's usual range (:data:`OPTIMIZER_LR_RANGES`); None when neither says."""
    declared = getattr(task_cls, "lr_range", None)
    if isinstance(declared, dict):
        declared = declared.get(optimizer)
    if isinstance(declared, (tuple, list)) and len(declared) == 2 and 0 < float(declared[0]) < float(declared[1]):
        return float(declared[0]), float(declared[1])
    return OPTIMIZER_LR_RANGES.get(optimizer)


def _counted(cfg: StudyConfig, registry: Registry) -> bool:
    """Whether the study's trial count is a number given (a ``trials`` parameter or the budget),
    rather than a plan the tuner makes."""
    cls = registry.tuner(cfg.tuner)
    fields = getattr(getattr(cls, "Params", None), "model_fields", {}) or {}
    return "trials" in fields and getattr(cls, "uses_space", True)


def planned_trials(cfg: StudyConfig, registry: Registry) -> tuple[int, int] | None:
    """(trials, optimizer steps) the study of ``cfg`` plans, as its tuner counts them
    (:meth:`~lrbench_gui.core.tuner.Tuner.planned_trials`); None when the tuner cannot say. A
    tuner with a ``trials`` parameter is counted without being built (Bayes' would import
    Optuna on every edit of the form)."""
    from lrbench_gui.core.tuning.study import Study

    if _counted(cfg, registry):
        n = int(cfg.tuner_params.get("trials") or 0) or cfg.trials
        return n, n * cfg.budget_steps
    try:
        tuner = Study(cfg, registry=registry).tuner
    except Exception:  # noqa: BLE001 - the form shows the configuration's own error elsewhere
        return None
    n = tuner.planned_trials()
    if n is None:
        return None
    steps = tuner.planned_steps()
    return int(n), int(steps if steps is not None else n * tuner.budget.steps)


def preview_space(cfg: StudyConfig, registry: Registry) -> SearchSpace | None:
    """The space the study of ``cfg`` searches, built by the same function as the study
    (:func:`~lrbench_gui.core.tuning.space.study_space`); None for a study kind that searches no
    policy space (its tuner's ``uses_space`` is False). Raises the space's errors."""
    if not getattr(registry.tuner(cfg.tuner), "uses_space", True):
        return None
    return study_space(cfg.policies, cfg.method, registry, cfg.overrides, cfg.lr_range)


def _dims(family) -> str:  # noqa: ANN001 - a Family
    return ", ".join(
        f"{d.name} {d.low:.2g}–{d.high:.2g}{' (log)' if d.log else ''}" if d.kind != "choice"
        else f"{d.name} in {list(d.choices)}" for d in family.dims) or "nothing searched"


def _evaluators_line(cfg: StudyConfig, registry: Registry) -> str:
    """What the evaluators add to every evaluation: their names, parameters and metrics."""
    import html

    from lrbench_gui.core.tuning.kinds import format_evaluator

    parts = []
    for spec in cfg.evaluators:
        metrics = getattr(registry.evaluator(spec["name"]), "metrics", {}) or {}
        scores = ", ".join(f"{m} ({mode})" for m, mode in metrics.items())
        parts.append(f"<code>{html.escape(format_evaluator(spec))}</code>" + (f" → {scores}" if scores else ""))
    every = f"every {cfg.eval_every} steps" if cfg.eval_every else "every evaluation (a tenth of a trial)"
    return (f"Evaluators at {every} and at the end: " + "; ".join(parts)
            + ". Their time is kept apart from training's (cost.eval_seconds).")


def preview_html(cfg: StudyConfig, registry: Registry, placement: str | None = None) -> str:
    """The "What will run" text of ``cfg`` (rich text); ``placement`` says where local trials go
    (the GPUs, or the CPU workers: :func:`~lrbench_gui.core.runs.gpus.plan_slots`'s line).
    Raises the space's errors."""
    space = preview_space(cfg, registry)
    tuner = registry.tuner(cfg.tuner)
    title = tuner.display_title() if hasattr(tuner, "display_title") else cfg.tuner
    if space is None:
        searched = f"The {title} tuner chooses its own trials (it searches no policy space)."
    else:
        parts = [f"&nbsp;&nbsp;• <b>{f.name}</b>: {_dims(f)}" for f in space.families[:MAX_FAMILIES_SHOWN]]
        if len(space.families) > MAX_FAMILIES_SHOWN:
            parts.append(f"&nbsp;&nbsp;• … and {len(space.families) - MAX_FAMILIES_SHOWN} more")
        n = len(space.families)
        searched = f"Searched ({n} famil{'y' if n == 1 else 'ies'}):<br>" + "<br>".join(parts)
    planned = planned_trials(cfg, registry)
    trials, total = planned if planned is not None else (cfg.trials, cfg.trials * cfg.budget_steps)
    steps_each = (f"{cfg.budget_steps:,} steps" if planned is None or total == trials * cfg.budget_steps
                  else f"{total // trials:,} steps" if trials and total % trials == 0 else "runs of different lengths")
    where = "a Ray cluster" if cfg.backend == "ray" else f"{cfg.parallel} local worker{'s' if cfg.parallel > 1 else ''}"
    if cfg.method == "cost":
        ranked = f"the steps to reach {cfg.metric or 'the metric'} {cfg.target:g}"
    else:
        ranked = f"{cfg.metric or 'the task metric'} ({cfg.mode or 'min'})"
    lines = [
        f"<b>{cfg.method}</b> study of <b>{cfg.task}</b> with the <b>{cfg.tuner}</b> tuner",
        searched,
        f"{'About' if planned is not None and not _counted(cfg, registry) else 'Up to'} {trials} "
        f"trial{'s' if trials != 1 else ''} × {steps_each} = {total:,} steps of compute"
        + (f". Where: {placement}." if placement and cfg.backend != "ray" else f", {cfg.parallel} at a time on {where}.")
        + f" Each trains with {cfg.trial_backend} in {cfg.precision}.",
        f"Ranked by {ranked}.",
        "Recorded in the database as it runs; a stopped study can be resumed.",
    ]
    if cfg.evaluators:
        lines.insert(-1, _evaluators_line(cfg, registry))
    if getattr(cfg, "command", None):
        import html

        from lrbench_gui.core.runs.command import join_command

        folder = f" in {html.escape(cfg.cwd)}" if getattr(cfg, "cwd", None) else ""
        lines.insert(2, f"Each trial runs your command{folder}: <code>{html.escape(join_command(cfg.command))}</code>")
    return "<br><br>".join(lines)
