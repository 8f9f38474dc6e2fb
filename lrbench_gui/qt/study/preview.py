"""What a study will run, in words: the search space the study itself will build, its compute
budget, where it runs and how it is ranked."""

from __future__ import annotations

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.space import SearchSpace, study_space
from lrbench_gui.core.tuning.study import StudyConfig

__all__ = ["preview_space", "preview_html", "MAX_FAMILIES_SHOWN"]

MAX_FAMILIES_SHOWN = 12


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
    total = cfg.trials * cfg.budget_steps
    where = "a Ray cluster" if cfg.backend == "ray" else f"{cfg.parallel} local worker{'s' if cfg.parallel > 1 else ''}"
    if cfg.method == "cost":
        ranked = f"the steps to reach {cfg.metric or 'the metric'} {cfg.target:g}"
    else:
        ranked = f"{cfg.metric or 'the task metric'} ({cfg.mode or 'min'})"
    lines = [
        f"<b>{cfg.method}</b> study of <b>{cfg.task}</b> with the <b>{cfg.tuner}</b> tuner",
        searched,
        f"Up to {cfg.trials} trials × {cfg.budget_steps:,} steps = {total:,} steps of compute"
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
