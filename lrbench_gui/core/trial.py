"""Compatibility: the trial file moved to :mod:`lrbench_gui.core.runs.trial` (``validate_trial``
now takes the registry). Kept for one release: docs/protocol.md of 0.1 named this path."""

from lrbench_gui.core.runs.trial import TrialConfig, TrialError, load_trial, validate_trial, write_trial

__all__ = ["TrialConfig", "TrialError", "load_trial", "validate_trial", "write_trial"]
