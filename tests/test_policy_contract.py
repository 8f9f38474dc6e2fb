"""The plugin contract of :mod:`lrbench_gui.testing`, run on every built-in policy, and checked
to catch the mistakes it exists for."""

from __future__ import annotations

import abc
import math
import subprocess
import sys

import pytest
from pydantic import create_model, field_validator

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.policy import Export, Policy
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuner import Tuner
from lrbench_gui.plugins import load_plugins
from lrbench_gui.testing import (
    ContractError,
    PolicyContract,
    check_policy,
    check_policy_defaults,
    check_policy_exports,
    check_policy_exports_exact,
    check_policy_pure,
    check_policy_refuses_bad_params,
    check_policy_registers,
    check_policy_schema,
    check_policy_total_steps,
    check_task,
    check_tuner,
)


def _builtins(kind: str) -> dict[str, type]:
    # Collection runs before conftest's fixtures set the environment: load without the user
    # folder and keep only what the built-in entry points registered.
    return {n: item.obj for n, item in sorted(_COLLECTED.items[kind].items()) if item.source.startswith("builtin")}


_COLLECTED = load_plugins(None)
BUILTIN_POLICIES = _builtins("policy")


@pytest.fixture(params=sorted(BUILTIN_POLICIES))
def policy_class(request) -> type[Policy]:
    return BUILTIN_POLICIES[request.param]


class TestBuiltinPolicies(PolicyContract):
    """Every rule of the contract, once per built-in policy."""


def test_every_builtin_policy_is_under_contract(registry):
    builtin = {n for n, item in registry.policies.items() if item.source.startswith("builtin")}
    assert set(BUILTIN_POLICIES) == builtin
    assert len(builtin) >= 36


def test_check_policy_runs_with_the_app_registry(registry):
    check_policy(registry.policy("cosine"), registry)


def test_check_policy_refuses_a_registry_without_the_policy(registry):
    class Other(_Good):
        name = "contract-other"

    with pytest.raises(ContractError, match="not the policy registered"):
        check_policy(Other, registry)


def test_testing_module_does_not_import_torch():
    code = "import sys, lrbench_gui.testing; sys.exit('torch' in sys.modules or 'pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


class _Good(Policy):
    name = "contract-good"
    summary = "A well-behaved policy"

    class Params(Params):
        lr: float = param(0.1, "Learning rate.", gt=0, log=True, search=(1e-4, 1.0))
        half_life: int = param(50, "Steps to halve the LR.", ge=1, search=(1, 500))

    def lr_at(self, step: int) -> float:
        return self.params.lr * 0.5 ** (step / self.params.half_life)

    def to_hf(self) -> Export:
        return Export({"learning_rate": self.params.lr}, exact=False, note="constant only")


def test_a_well_behaved_third_party_policy_passes():
    check_policy(_Good)


class TestThirdPartyPolicy(PolicyContract):
    """The mixin as a plugin author uses it."""

    @pytest.fixture
    def policy_class(self):
        return _Good


def _variant(**attrs) -> type[Policy]:
    return type("Broken", (_Good,), {"name": "contract-broken", "__module__": __name__, **attrs})


class _Stateful(_Good):
    name = "contract-stateful"

    def lr_at(self, step: int) -> float:
        self.calls = getattr(self, "calls", 0) + 1  # remembers how often it was asked
        return self.params.lr / self.calls


class _ClassState(_Good):
    name = "contract-class-state"
    seen = [0]

    def lr_at(self, step: int) -> float:
        self.seen[0] = max(self.seen[0], step)  # LRBench NSTEP's mistake: state outside the instance
        return self.params.lr * (0.5 if self.seen[0] > step else 1.0)


@pytest.mark.parametrize(
    "broken, check, message",
    [
        (_variant(lr_at=lambda self, step: -1.0), check_policy_defaults, "finite LR >= 0"),
        (_variant(lr_at=lambda self, step: math.nan), check_policy_defaults, "finite LR >= 0"),
        (
            _variant(lr_at=lambda self, step: 1.0 / (self.total_steps - 1)),
            check_policy_defaults,
            r"lr_at\(0\) raised ZeroDivisionError",
        ),
        (_variant(lr_at=lambda self, step: "0.1"), check_policy_defaults, "not a float"),
        (_Stateful, check_policy_pure, "not pure|attributes"),
        (_ClassState, check_policy_pure, "not pure"),
        (_variant(name="Not A Name"), check_policy_registers, "refused by a Registry"),
        (_variant(summary=""), check_policy_registers, "summary"),
        (_variant(to_torch=lambda self: Export({"not": "source"})), check_policy_exports, "Python source"),
        (_variant(to_torch=lambda self: Export("scheduler = (")), check_policy_exports, "does not compile"),
        (_variant(to_hf=lambda self: {"learning_rate": 1.0}), check_policy_exports, "not an Export"),
        (_variant(to_deepspeed=lambda self: Export({"lr": math.inf})), check_policy_exports, "JSON"),
        (_variant(to_deepspeed=lambda self: 1 / 0), check_policy_exports, "return None"),
    ],
    ids=[
        "negative",
        "nan",
        "crashes-on-one-step-run",
        "returns-str",
        "instance-state",
        "class-state",
        "bad-name",
        "no-summary",
        "torch-not-source",
        "torch-syntax-error",
        "hf-not-export",
        "ds-not-json",
        "export-raises",
    ],
)
def test_the_contract_catches(broken, check, message):
    with pytest.raises(ContractError, match=message):
        check(broken)


def _with_params(**fields) -> type[Policy]:
    return _variant(Params=create_model("P", __base__=Params, **fields), lr_at=lambda self, step: 0.1)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"lr": (float, param(0.1, ""))}, "no description"),
        ({"lr": (float, param(0.1, "LR.", gt=0, search=(0.0, 1.0)))}, "leaves the bounds"),
        ({"lr": (float, param(0.1, "LR.", gt=0, le=1.0, search=(0.5, 2.0)))}, "leaves the bounds"),
        ({"lr": (float, param(5.0, "LR.", le=1.0))}, "invalid parameter schema|outside its bounds"),
        ({"lr": (float, param(0.1, "LR.", search=(-1.0, 1.0), log=True))}, "log-scale"),
    ],
    ids=["no-description", "search-below-bound", "search-above-bound", "default-outside", "log-search-negative"],
)
def test_the_contract_catches_bad_schemas(fields, message):
    with pytest.raises(ContractError, match=message):
        check_policy_schema(_with_params(**fields))


def test_the_contract_catches_a_lenient_schema():
    # The schema shows lr > 0, but a validator swallows the error and the bad value passes.
    class Lenient(Params):
        lr: float = param(0.1, "LR.", gt=0)

        @field_validator("lr", mode="wrap")
        @classmethod
        def _clip(cls, value, handler):
            try:
                return handler(value)
            except Exception:
                return 0.1  # silently replaces a bad value instead of refusing it

    with pytest.raises(ContractError, match="accepted lr="):
        check_policy_refuses_bad_params(_variant(Params=Lenient))


class _Tuner(Tuner):
    name = "contract-tuner"
    summary = "Asks nothing"

    class Params(Params):
        trials: int = param(10, "How many trials.", ge=1)

    def ask(self):
        return None

    def tell(self, result):
        pass

    def done(self):
        return True


class _Task(Task):
    name = "contract-task"
    summary = "Trains nothing"

    class Params(Params):
        steps: int = param(10, "Training steps.", ge=1)

    def setup(self, ctx):
        return None

    def train_batches(self):
        yield from ()

    def loss(self, model, batch):
        return 0.0, {"samples": 1}

    def evaluate(self, model):
        return {"val_loss": 0.0}


def test_check_tuner_and_check_task():
    check_tuner(_Tuner)
    check_task(_Task)
    with pytest.raises(ContractError, match="refused by a Registry"):
        check_tuner(type("T", (_Tuner,), {"name": "UPPER"}))
    with pytest.raises(ContractError, match=r"does not implement evaluate\(\)"):
        check_task(type("K", (_Task,), {"evaluate": abc.abstractmethod(lambda self, model: None)}))
    with pytest.raises(ContractError, match="metric_mode"):
        check_task(type("K", (_Task,), {"metric_mode": "lowest"}))
    with pytest.raises(ContractError, match="no description"):

        class NoDescription(Params):
            steps: int = param(10, "")

        check_task(type("K", (_Task,), {"Params": NoDescription}))
    with pytest.raises(ContractError, match="refused by a Registry"):
        check_task(_Tuner)  # a tuner is not a task


@pytest.mark.parametrize("name", sorted(_builtins("tuner")))
def test_builtin_tuner_contract(name):
    check_tuner(_builtins("tuner")[name])


@pytest.mark.parametrize("name", sorted(_builtins("task")))
def test_builtin_task_contract(name):
    check_task(_builtins("task")[name])


class _Linear(_Good):
    """A linear decay over the run: its curve depends on total_steps."""

    name = "contract-linear"

    def lr_at(self, step: int) -> float:
        return self.params.lr * max(0.0, 1.0 - step / self.total_steps)


def test_a_policy_that_needs_the_run_length_but_says_not_fails():
    with pytest.raises(ContractError, match="set uses_total_steps = True.*TOTAL_STEPS = 1"):
        check_policy_total_steps(_Linear)
    check_policy_total_steps(type("Declared", (_Linear,), {"uses_total_steps": True}))
    check_policy_total_steps(_Good)  # a half-life does not depend on the run's length


def test_without_the_flag_the_torch_export_is_another_schedule(lrbench_env):
    """The symptom the rule prevents: ``policy export --to torch`` bakes in a run of one step."""
    source = """
from lrbench_gui.api import Params, Policy, hookimpl, param


class Linear(Policy):
    name = "undeclared-linear"
    summary = "Linear decay over the run"

    class Params(Params):
        lr: float = param(0.1, "LR.", gt=0)

    def lr_at(self, step):
        return self.params.lr * max(0.0, 1.0 - step / self.total_steps)


@hookimpl
def register_policies(register):
    register(Linear)
"""
    (lrbench_env["plugins"] / "undeclared.py").write_text(source)
    out = subprocess.run([sys.executable, "-m", "lrbench_gui.cli", "policy", "export", "undeclared-linear", "--to",
                          "torch"], capture_output=True, text=True, check=True)
    assert "TOTAL_STEPS = 1\n" in out.stdout
    from lrbench_gui.plugins import get_registry

    with pytest.raises(ContractError, match="uses_total_steps"):
        check_policy(get_registry().policy("undeclared-linear"))


def _exporting(**exports) -> type[Policy]:
    return _variant(**{k: (lambda self, v=v: v(self)) for k, v in exports.items()})


@pytest.mark.parametrize(
    "exports, message",
    [
        ({"to_torch": lambda self: Export(  # a staircase for a smooth decay
            f"scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size={self.params.half_life}, gamma=0.5)\n")},
         r"to_torch\(\) .* claims exact=True but is another schedule: at step 1"),
        ({"to_hf": lambda self: Export({"learning_rate": self.params.lr, "lr_scheduler_type": "constant"})},
         r"to_hf\(\) .* claims exact=True but is another schedule"),
        ({"to_deepspeed": lambda self: Export({"scheduler": {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": self.params.lr, "warmup_num_steps": 10}}})},
         r"to_deepspeed\(\) .* claims exact=True but is another schedule: at step 0"),
        ({"to_torch": lambda self: Export("scheduler = torch.optim.lr_scheduler.NoSuchLR(optimizer)\n")},
         r"claims exact=True but running it raised AttributeError"),
    ],
    ids=["torch-staircase", "hf-constant", "deepspeed-warmup", "torch-crashes"],
)
def test_an_export_claimed_exact_that_is_another_schedule_fails(exports, message):
    broken = _exporting(**exports)
    check_policy_exports(broken)  # well-formed: only running it shows the lie
    with pytest.raises(ContractError, match=message):
        check_policy_exports_exact(broken)
    with pytest.raises(ContractError, match="claims exact=True"):
        check_policy(broken)


def test_exact_exports_that_are_exact_pass_and_approximations_may_say_so():
    def exponential(self):
        gamma = 0.5 ** (1 / self.params.half_life)
        return Export(f"scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma={gamma!r})\n")

    check_policy_exports_exact(_exporting(to_torch=exponential))
    approx = _exporting(to_hf=lambda self: Export({"learning_rate": self.params.lr, "lr_scheduler_type": "constant"},
                                                   exact=False, note="constant only"))
    check_policy_exports_exact(approx)
