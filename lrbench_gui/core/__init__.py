"""The Qt-free, torch-free core: policies and their specs, the plugin registry, the database,
the tuner and task protocols. Nothing here imports Qt or torch (an import-linter contract in
pyproject.toml checks it)."""

from lrbench_gui.core.params import ParamError, ParamInfo, Params, describe, param, validate_params
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.core.registry import PluginProblem, Registered, RegistrationError, Registry, UnknownName
from lrbench_gui.core.spec import PolicySpec, Schedule, SequenceSpec, Spec, SpecError, build_schedule, parse_spec, sample
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuner import Tuner

__all__ = [
    "Export",
    "ParamError",
    "ParamInfo",
    "Params",
    "PluginProblem",
    "Policy",
    "PolicySpec",
    "Registered",
    "RegistrationError",
    "Registry",
    "Schedule",
    "SequenceSpec",
    "Spec",
    "SpecError",
    "Task",
    "Tuner",
    "UnknownName",
    "build_schedule",
    "describe",
    "param",
    "parse_spec",
    "sample",
    "validate_params",
]
