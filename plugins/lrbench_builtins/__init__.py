"""The built-in plugins of lrbench-gui, grouped by kind.

Each module registers through the ``lrbench`` entry-point group exactly like a third party's
plugin (see pyproject.toml): ``policies/`` (one module per family), ``tuners/`` (one module per
study kind or search family) and ``tasks/`` (one module per workload).
"""
