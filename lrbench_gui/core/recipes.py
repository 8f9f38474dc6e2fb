"""Compatibility: the published recipes moved to :mod:`lrbench_gui.core.db.recipes`
(``resolve_recipe_spec`` now takes the registry). Kept for one release: docs/format.md of 0.1
named this path."""

from lrbench_gui.core.db.recipes import *  # noqa: F401,F403
from lrbench_gui.core.db.recipes import __all__  # noqa: F401
