"""Compatibility: packed curves moved to :mod:`lrbench_gui.core.db.curves`. Kept for one
release: docs/database.md of 0.1 named this path."""

from lrbench_gui.core.db.curves import *  # noqa: F401,F403
from lrbench_gui.core.db.curves import __all__  # noqa: F401
