"""Contract tests for plugin authors: what every policy, tuner, task and evaluator must satisfy.

The built-in plugins pass these checks, and a third-party plugin should too, the way a sampler
author runs Optuna's ``optuna/testing/pytest_samplers.py``. Two ways to use them:

* call a check (:func:`check_policy`, :func:`check_tuner_replay`, :func:`check_task_metric`...)
  from any test; it raises :class:`ContractError` (an ``AssertionError``) naming the item and
  the broken rule;
* or subclass :class:`PolicyContract`, :class:`TunerContract` or :class:`TaskContract` in a
  pytest module and provide a ``policy_class``, ``tuner_class`` or ``task_class`` fixture, which
  gives one test per rule::

      import pytest
      from lrbench_gui.testing import PolicyContract
      from my_plugin import MyPolicy

      class TestMyPolicy(PolicyContract):
          @pytest.fixture
          def policy_class(self):
              return MyPolicy

The policy checks build their own :class:`~lrbench_gui.core.registry.Registry` holding only the
item under test; the tuner checks add the installed policies (their requests name them); the
task checks add a constant-LR policy of their own. This package imports neither pytest nor
torch (the export and task checks import torch when they run).

Modules: :mod:`.policy`, :mod:`.tuner`, :mod:`.task`, :mod:`.evaluator` (:class:`EvaluatorContract`:
fixtures ``evaluator_class`` and ``evaluator_inputs``); every public name is importable from here.
"""

from __future__ import annotations

from lrbench_gui.testing._common import ContractError
from lrbench_gui.testing.evaluator import (
    EvaluatorContract,
    check_evaluator,
    check_evaluator_deterministic,
    check_evaluator_metrics,
    run_evaluator,
)
from lrbench_gui.testing.policy import (
    LARGE_STEPS,
    RUN_LENGTHS,
    PolicyContract,
    check_policy,
    check_policy_defaults,
    check_policy_exports,
    check_policy_exports_exact,
    check_policy_pure,
    check_policy_refuses_bad_params,
    check_policy_registers,
    check_policy_schema,
    check_policy_spec_round_trip,
    check_policy_total_steps,
    run_export,
    sample_param_sets,
)
from lrbench_gui.testing.task import (
    TaskContract,
    TaskRun,
    check_task,
    check_task_deterministic,
    check_task_diverged,
    check_task_metric,
    check_task_warm,
    run_task,
)
from lrbench_gui.testing.tuner import (
    SYNTHETIC_BEST_LR,
    TunerContract,
    check_tuner,
    check_tuner_refuses_unknown_tell,
    check_tuner_replay,
    check_tuner_resume,
    contract_registry,
    drive_tuner,
    synthetic_result,
)

__all__ = [
    "ContractError",
    "PolicyContract",
    "TunerContract",
    "TaskContract",
    "EvaluatorContract",
    "check_evaluator",
    "check_evaluator_metrics",
    "check_evaluator_deterministic",
    "run_evaluator",
    "RUN_LENGTHS",
    "LARGE_STEPS",
    "SYNTHETIC_BEST_LR",
    "check_policy",
    "check_policy_registers",
    "check_policy_schema",
    "check_policy_defaults",
    "check_policy_pure",
    "check_policy_spec_round_trip",
    "check_policy_refuses_bad_params",
    "check_policy_total_steps",
    "check_policy_exports",
    "check_policy_exports_exact",
    "run_export",
    "sample_param_sets",
    "check_tuner",
    "check_tuner_replay",
    "check_tuner_resume",
    "check_tuner_refuses_unknown_tell",
    "contract_registry",
    "drive_tuner",
    "synthetic_result",
    "check_task",
    "check_task_metric",
    "check_task_diverged",
    "check_task_deterministic",
    "check_task_warm",
    "run_task",
    "TaskRun",
]
