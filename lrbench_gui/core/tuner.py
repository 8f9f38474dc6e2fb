"""The tuner protocol: ask/tell, so the study owns the loop and the processes.

Lifecycle: the study builds ``Tuner(params, space)``; then, until :meth:`Tuner.ask` returns
None, it asks for a trial config, runs it (in a subprocess, maybe beside others), reports
intermediate values with :meth:`Tuner.report` (which may answer "stop") and the final result
with :meth:`Tuner.tell`. A tuner never starts processes or touches the database.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from .params import Params

__all__ = ["Tuner"]


class Tuner(abc.ABC):
    """Base of every search strategy (grid, random, bayes, halving, range tests...)."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""

    def __init__(self, params: Params, space: Any) -> None:
        self.params = params
        self.space = space

    @abc.abstractmethod
    def ask(self) -> dict[str, Any] | None:
        """The next trial config, or None when the search is over (or waits on running trials)."""

    @abc.abstractmethod
    def tell(self, trial_id: str, result: dict[str, Any]) -> None:
        """The final result of a trial asked for earlier."""

    def report(self, trial_id: str, step: int, value: float) -> bool:
        """An intermediate value; return False to stop that trial early. Default: continue."""
        return True
