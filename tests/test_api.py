"""The public plugin API: ``lrbench_gui.api`` exports what an author needs, and every import
path the docs showed before it keeps working, so published plugins do not break."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import lrbench_gui.api as api

#: (module, name) pairs that docs/plugins.md and the README used before lrbench_gui.api existed
OLD_PATHS = [
    ("lrbench_gui.hookspecs", "hookimpl"),
    ("lrbench_gui.hookspecs", "hookspec"),
    ("lrbench_gui.core.params", "Params"),
    ("lrbench_gui.core.params", "param"),
    ("lrbench_gui.core.policy", "Policy"),
    ("lrbench_gui.core.policy", "Export"),
    ("lrbench_gui.core.tuner", "Tuner"),
    ("lrbench_gui.core.tuner", "TrialRequest"),
    ("lrbench_gui.core.tuner", "TrialResult"),
    ("lrbench_gui.core.tuner", "Objective"),
    ("lrbench_gui.core.tuner", "StudyBudget"),
    ("lrbench_gui.core.task", "Task"),
    ("lrbench_gui.core.task", "TaskContext"),
    ("lrbench_gui.core.db", "PolicyDB"),
    ("lrbench_gui.testing", "PolicyContract"),
    ("lrbench_gui.testing", "ContractError"),
    ("lrbench_gui.testing", "check_policy"),
    ("lrbench_gui.testing", "check_tuner"),
    ("lrbench_gui.testing", "check_task"),
    ("lrbench_gui.integrations", "as_lr_scheduler"),
]


@pytest.mark.parametrize("module, name", OLD_PATHS, ids=[f"{m}.{n}" for m, n in OLD_PATHS])
def test_every_import_path_the_old_docs_show_still_works(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_the_api_gives_the_same_objects_as_their_home_modules():
    from lrbench_gui.core.params import param, run_fraction
    from lrbench_gui.core.policy import Policy
    from lrbench_gui.core.task import Task
    from lrbench_gui.core.tuner import Tuner
    from lrbench_gui.core.tuning.search import SearchTuner
    from lrbench_gui.hookspecs import hookimpl

    assert (api.hookimpl, api.Policy, api.Task, api.Tuner, api.param, api.run_fraction, api.SearchTuner) == (
        hookimpl, Policy, Task, Tuner, param, run_fraction, SearchTuner)


def test_all_names_everything_an_author_needs_and_each_resolves():
    needed = {"hookimpl", "Policy", "Export", "Params", "param", "run_fraction", "run_divisor", "run_fractions",
              "decay_over_run", "inverse_run", "Task", "TaskContext", "Tuner", "TrialRequest", "TrialResult",
              "Objective", "StudyBudget", "SearchTuner", "PlannedTuner", "SearchSpace", "Family", "Dim",
              "policy_space", "TrialStatus", "spec_label", "load_registry"}
    assert needed <= set(api.__all__)
    assert all(getattr(api, name) is not None for name in api.__all__)
    assert len(set(api.__all__)) == len(api.__all__)


def test_load_registry_gives_the_installed_plugins_and_reloads_the_folder(lrbench_env):
    reg = api.load_registry()
    assert "cosine" in reg.policies and "digits-mlp" in reg.tasks
    assert api.load_registry() is reg  # one registry per process
    (lrbench_env["plugins"] / "mine.py").write_text(
        "from lrbench_gui.api import Params, Policy, hookimpl, param\n\n"
        "class Mine(Policy):\n    name = 'mine'\n    summary = 'Constant'\n\n"
        "    class Params(Params):\n        lr: float = param(0.1, 'LR.', gt=0)\n\n"
        "    def lr_at(self, step):\n        return self.params.lr\n\n"
        "@hookimpl\ndef register_policies(register):\n    register(Mine)\n")
    assert "mine" not in api.load_registry().policies
    again = api.load_registry(reload=True)
    assert "mine" in again.policies
    space = api.policy_space(["mine", "cosine"], registry=again)
    assert space.names == ["mine", "cosine"]
    assert api.spec_label({"name": "mine", "params": {"lr": 0.5}}, again).startswith("mine")


def test_importing_the_api_imports_neither_torch_nor_qt():
    code = ("import sys, lrbench_gui.api; "
            "sys.exit(any(m in sys.modules for m in ('torch', 'PySide6', 'pytest')))")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_module_paths_the_01_docs_named_still_import():
    """docs/tuning.md, protocol.md, format.md and database.md of 0.1 named these modules."""
    from lrbench_gui.core.db_curves import finite_curve
    from lrbench_gui.core.recipes import resolve_recipe_spec
    from lrbench_gui.core.space import SearchSpace, compose_space, policy_space
    from lrbench_gui.core.trial import TrialConfig, load_trial
    from lrbench_gui.core.tuning import families, space
    from lrbench_gui.core.runs import trial

    assert SearchSpace is space.SearchSpace and policy_space is families.policy_space
    assert compose_space is families.compose_space and TrialConfig is trial.TrialConfig
    assert callable(finite_curve) and callable(resolve_recipe_spec) and callable(load_trial)


def test_the_api_builds_spaces_and_schedules_with_the_installed_policies():
    from lrbench_gui import api

    assert api.policy_space(["cosine", "step"]).names == ["cosine", "step"]
    assert api.compose_space(["cosine"]).names == ["warmup>cosine"]
    assert api.sample({"name": "fixed", "params": {"lr": 0.5}}, 3) == [0.5, 0.5, 0.5]
    assert api.parse_spec('{"name": "cosine"}').name == "cosine"
