"""The tuner protocol: ask/tell, so the study owns the loop and the processes.

Lifecycle: the study builds ``TunerClass(params, space, objective, budget, seed)``. Then, until
:meth:`Tuner.done` is true, it asks for trial requests (:meth:`Tuner.ask` returns None when the
tuner must wait for running trials), runs them (in subprocesses, several at once), forwards
intermediate values with :meth:`Tuner.report` (which may answer "stop this trial") and final
results with :meth:`Tuner.tell`. A tuner never starts processes or touches the database.

Determinism: given the same seed and the same sequence of tells, a tuner asks the same requests
with the same keys. A study interrupted half-way resumes by replaying its finished trials into a
fresh tuner (ask, then tell the stored result for that key) without running them again.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrbench_gui.core.params import Params

__all__ = ["Tuner", "TrialRequest", "TrialResult", "Objective", "StudyBudget"]


@dataclass(frozen=True)
class Objective:
    """What the study optimizes: a metric of the trial's end event, lower or higher is better."""

    metric: str = "val_loss"
    mode: str = "min"  # "min" | "max"
    #: for cost-effective tuning: the value to reach (``val_acc >= 0.95``, ``val_loss <= 0.2``)
    target: float | None = None

    def better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def reached(self, value: float) -> bool:
        if self.target is None:
            return False
        return value <= self.target if self.mode == "min" else value >= self.target


@dataclass(frozen=True)
class StudyBudget:
    """How much the study may spend: ``steps`` per full trial and at most ``trials`` trials
    (full-length equivalents for tuners that run partial trials)."""

    steps: int
    trials: int = 16


@dataclass(frozen=True)
class TrialRequest:
    """One trial the tuner wants run."""

    key: str  # unique in the study; stable across a resume
    policy: dict[str, Any]  # a policy spec (JSON form), compositions allowed
    steps: int  # this trial's budget in optimizer steps (partial for halving's low rungs)
    family: str = ""  # the search-space family the point came from
    point: dict[str, Any] = field(default_factory=dict)  # the sampled values, for tables and tuners
    task_params: dict[str, Any] = field(default_factory=dict)  # overrides of the study's task params
    eval_every: int = 0  # 0: the study's default
    tags: dict[str, Any] = field(default_factory=dict)  # e.g. {"rung": 1}
    #: fields of the trial file to set for this trial: seed, checkpoint_steps, checkpoint_every,
    #: save_model, merge, batch_size (the study's values otherwise)
    trial: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialResult:
    """What a finished trial gives back to its tuner."""

    key: str
    status: str  # completed | stopped | diverged | failed | pruned
    value: float | None  # the objective's metric at the end (None when it has none)
    metrics: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)  # steps, tokens, seconds
    #: the monitored metric along the run: [(step, value)], and the training loss and LR per step
    evals: list[tuple[int, float]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    #: files the trial wrote: its checkpoints (``.safetensors``) and saved model folder, in order
    checkpoints: list[str] = field(default_factory=list)


class Tuner(abc.ABC):
    """Base of every search strategy (grid, random, bayes, halving, range tests...) and of every
    study kind (``horizon``, ``path-switch``, ``merge``).

    A tuner carries everything about itself, so adding one means writing one class: the CLI's
    ``lrbench study NAME`` flags and the GUI's form come from :attr:`Params` (whose defaults are
    *the* defaults), and the class attributes below say how the study, the CLI and the app
    treat it. All of them are optional.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    #: a title for menus and forms ("LR transfer across token horizons"); default: the name
    title: ClassVar[str] = ""
    #: a paragraph for forms and ``--help``: when to use it, what it costs
    hint: ClassVar[str] = ""
    #: whether the study builds a policy search space for it (the Study panel's policy list,
    #: ``--policies``); False for kinds that plan their own trials (they get ``space=None``)
    uses_space: ClassVar[bool] = True
    #: study settings this kind defaults to when the user gives none (``StudyConfig`` fields:
    #: ``task``, ``batch_size``, ``optimizer``, ``eval_every``...)
    study_defaults: ClassVar[dict[str, Any]] = {}
    #: the key of the view that shows its studies (the Methods panel looks views up by it); ""
    #: for the generic study views
    view: ClassVar[str] = ""
    #: the ``TypedDict`` of :meth:`summary_json` (documentation and type checks; optional)
    Summary: ClassVar[Any] = None

    @classmethod
    def budget_steps(cls, params: Params) -> int | None:
        """Optimizer steps of one full trial for ``params``, when the kind decides it (horizon:
        its longest horizon); None: the study's ``budget_steps``."""
        return None

    @classmethod
    def display_title(cls) -> str:
        return cls.title or cls.name

    def record_trial(self, request: "TrialRequest", result: "TrialResult", record: dict[str, Any]) -> dict[str, Any]:
        """The trial's database record just before it is stored, after :meth:`tell`; a tuner may
        return a copy with more in it (the range test stores its suggested LRs in its trial).
        Default: unchanged."""
        return record

    def __init__(self, params: Params, space: Any, objective: Objective | None = None,
                 budget: StudyBudget | None = None, seed: int = 0) -> None:
        self.params = params
        self.space = space
        self.objective = objective or Objective()
        self.budget = budget or StudyBudget(steps=100)
        self.seed = seed

    @abc.abstractmethod
    def ask(self) -> TrialRequest | None:
        """The next trial to run, or None when nothing can be asked until a running trial ends."""

    @abc.abstractmethod
    def tell(self, result: TrialResult) -> None:
        """The final result of a trial asked for earlier."""

    @abc.abstractmethod
    def done(self) -> bool:
        """True when the tuner will ask nothing more (the study ends once running trials finish)."""

    def report(self, key: str, step: int, value: float) -> bool:
        """An intermediate value of the objective; return False to stop that trial. Default: go on."""
        return True

    def summary_json(self) -> dict[str, Any]:
        """What the tuner concluded, for the study record (e.g. the range test's suggestions)."""
        return {}

    def planned_trials(self) -> int | None:
        """How many trials the whole study will run (those asked so far included), for progress
        bars and ETAs; None when the tuner cannot say (the study then counts its ``trials``
        budget). It may be an estimate that moves as results come in (halving's promotions, a
        widened horizon grid)."""
        return None

    def planned_steps(self) -> int | None:
        """Optimizer steps of all the planned trials, when their lengths differ (halving's rungs,
        horizons); None: :meth:`planned_trials` times the budget's steps."""
        return None
