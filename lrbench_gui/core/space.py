"""Compatibility: search spaces moved to :mod:`lrbench_gui.core.tuning.space` (the types) and
:mod:`lrbench_gui.core.tuning.families` (``policy_space``, ``compose_space``, which now take the
registry as an argument; ``lrbench_gui.api`` has versions that default to the installed one).
Kept for one release so plugins written against the 0.1 docs keep importing."""

from lrbench_gui.core.tuning.families import compose_space, policy_space
from lrbench_gui.core.tuning.space import Dim, Family, SearchSpace, SpaceError, as_space

__all__ = ["Dim", "Family", "SearchSpace", "SpaceError", "as_space", "policy_space", "compose_space"]
