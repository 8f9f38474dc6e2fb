"""Where lrbench keeps its files. Each location can be overridden by an environment variable,
which is also how the tests give every test a fresh, empty data folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "plugins_dir", "default_db_path"]


def data_dir() -> Path:
    """``$LRBENCH_DATA_DIR``, else the platform's user data folder (``~/.local/share/lrbench``)."""
    env = os.environ.get("LRBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("lrbench", appauthor=False))


def plugins_dir() -> Path:
    """``$LRBENCH_PLUGINS_DIR``, else ``plugins/`` in the data folder."""
    env = os.environ.get("LRBENCH_PLUGINS_DIR")
    return Path(env).expanduser() if env else data_dir() / "plugins"


def default_db_path() -> Path:
    """``$LRBENCH_DB``, else ``policies.json`` in the data folder."""
    env = os.environ.get("LRBENCH_DB")
    return Path(env).expanduser() if env else data_dir() / "policies.json"
