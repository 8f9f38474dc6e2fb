"""The tuner and task contracts of :mod:`lrbench_gui.testing`: every built-in tuner and task
passes them, and deliberately broken plugins fail them with a message that names the rule."""

from __future__ import annotations

import math
import random
import uuid

import pytest

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.task import Task
from lrbench_gui.core.tuning.search import SearchTuner
from lrbench_gui.plugins import load_plugins
from lrbench_gui.testing import (
    ContractError,
    TaskContract,
    TunerContract,
    check_task_deterministic,
    check_task_diverged,
    check_task_metric,
    check_tuner_refuses_unknown_tell,
    check_tuner_replay,
    check_tuner_resume,
    run_task,
)

_COLLECTED = load_plugins(None)
BUILTIN_TUNERS = {n: i.obj for n, i in sorted(_COLLECTED.tuners.items()) if i.source.startswith("builtin")}
BUILTIN_TASKS = {n: i.obj for n, i in sorted(_COLLECTED.tasks.items()) if i.source.startswith("builtin")}

#: options that keep each built-in study kind's plan small (its trials are synthetic anyway)
KIND_OPTIONS = {
    "horizon": {"tuner_params": {"horizons": [20, 40, 80], "points": 3, "seeds": 1, "widen": 1}},
    "path-switch": {"tuner_params": {"versions": 2, "chunk_steps": 20}, "task": "tinylm-pretrain"},
    "merge": {"tuner_params": {"later": "run/step-0000020.safetensors", "earlier": "run/step-0000010.safetensors",
                               "evaluations": 4, "grid": 3}},
}


@pytest.fixture(params=sorted(BUILTIN_TUNERS))
def builtin_tuner(request):
    return BUILTIN_TUNERS[request.param], KIND_OPTIONS.get(request.param, {})


def _kw(options):
    return {"task": options.get("task")}


def test_replay_is_deterministic_for_every_builtin_tuner(builtin_tuner):
    cls, options = builtin_tuner
    check_tuner_replay(cls, options.get("tuner_params"), **_kw(options))


def test_every_builtin_tuner_resumes_through_a_real_study_and_database(builtin_tuner, tmp_path):
    cls, options = builtin_tuner
    check_tuner_resume(cls, options.get("tuner_params"), folder=tmp_path, **_kw(options))
    assert (tmp_path / "contract-db.json").stat().st_size > 0


def test_every_builtin_tuner_refuses_a_tell_it_never_asked(builtin_tuner):
    cls, options = builtin_tuner
    check_tuner_refuses_unknown_tell(cls, options.get("tuner_params"), **_kw(options))


def test_the_builtins_under_contract_are_all_of_them(registry):
    assert set(BUILTIN_TUNERS) == {n for n, i in registry.tuners.items() if i.source.startswith("builtin")}
    assert {"grid", "random", "bayes", "halving", "horizon", "path-switch", "merge"} <= set(BUILTIN_TUNERS)
    assert set(KIND_OPTIONS) <= set(BUILTIN_TUNERS)


class TestSearchTunersAsAuthorsUseTheMixin(TunerContract):
    """The pytest base class, once per built-in search tuner."""

    @pytest.fixture(params=["grid", "random", "bayes", "halving"])
    def tuner_class(self, request):
        return BUILTIN_TUNERS[request.param]


class TestHorizonAsAStudyKind(TunerContract):
    tuner_params = KIND_OPTIONS["horizon"]["tuner_params"]

    @pytest.fixture
    def tuner_class(self):
        return BUILTIN_TUNERS["horizon"]


class _Counter(SearchTuner):
    """A well-behaved tuner: random points from a seeded generator, keys from a counter."""

    name = "contract-counter"
    summary = "Random points, counted keys"

    class Params(Params):
        trials: int = param(5, "Trials.", ge=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rng = random.Random(self.seed)

    def key(self) -> str:
        return f"c{len(self.requests):03d}"

    def ask(self):
        if self.done():
            return None
        family = self.space.families[0]
        return self._request(self.key(), family.name, family.sample(self.rng), self.budget.steps)

    def done(self):
        return len(self.requests) >= self.params.trials


class _RandomKeys(_Counter):
    name = "contract-random-keys"

    def key(self) -> str:
        return "c-" + uuid.uuid4().hex[:8]  # a new key on every run: its study cannot resume


class _Unseeded(_Counter):
    name = "contract-unseeded"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rng = random.Random()  # ignores the study's seed


class _Lenient(_Counter):
    name = "contract-lenient"

    def tell(self, result):
        self.results[result.key] = result  # accepts any key


class _Stuck(_Counter):
    name = "contract-stuck"

    def ask(self):
        return None  # waits for nothing, forever

    def done(self):
        return False


def test_a_well_behaved_third_party_tuner_passes(tmp_path):
    check_tuner_replay(_Counter)
    check_tuner_resume(_Counter, folder=tmp_path)
    check_tuner_refuses_unknown_tell(_Counter)


def test_a_tuner_whose_keys_are_random_fails_replay_and_resume(tmp_path):
    with pytest.raises(ContractError, match=r"contract-random-keys: two runs with the same seed .* differ .* key"):
        check_tuner_replay(_RandomKeys)
    with pytest.raises(ContractError, match="resumed study replayed 0 of its 3 finished trials"):
        check_tuner_resume(_RandomKeys, folder=tmp_path)


def test_a_tuner_that_ignores_its_seed_fails_replay():
    with pytest.raises(ContractError, match=r"differ at event 0: request 'c000'"):
        check_tuner_replay(_Unseeded)


def test_a_tuner_that_accepts_any_tell_fails():
    with pytest.raises(ContractError, match="accepted a result for 'lrbench-contract-never-asked'"):
        check_tuner_refuses_unknown_tell(_Lenient)


def test_a_tuner_that_waits_for_nothing_fails():
    with pytest.raises(ContractError, match="would wait forever"):
        check_tuner_replay(_Stuck)


class TestDigitsTasks(TaskContract):
    @pytest.fixture(params=["digits-mlp", "digits-cnn"])
    def task_class(self, request):
        return BUILTIN_TASKS[request.param]


class TestTinyLM(TaskContract):
    steps = 3

    @pytest.fixture
    def task_class(self):
        return BUILTIN_TASKS["tinylm-pretrain"]


@pytest.fixture(scope="module")
def finetune_params(tmp_path_factory):
    """A freshly initialized tinylm saved as a Hugging Face folder, and a small text file."""
    import torch

    from lrbench_builtins.tasks import _corpus
    from lrbench_builtins.tasks.tinylm import TinyLMPretrain
    from lrbench_gui.core.params import validate_params
    from lrbench_gui.core.task import TaskContext

    folder = tmp_path_factory.mktemp("finetune")
    task = TinyLMPretrain(validate_params(TinyLMPretrain.Params, {"context": 64, "val_tokens": 1024}))
    model = task.setup(TaskContext(0, torch.device("cpu"), 4, log=lambda *a: None))
    task.save_model(model, folder / "model")
    (folder / "book.txt").write_text(_corpus.generate_text(5, 1, 4000))
    return {"model_path": str(folder / "model"), "data_path": str(folder / "book.txt"), "max_length": 64}


def test_the_finetune_task_passes_the_task_contract(finetune_params, tmp_path):
    cls = BUILTIN_TASKS["causal-lm-finetune"]
    check_task_metric(cls, finetune_params, steps=3, batch_size=4, folder=tmp_path)
    check_task_diverged(cls, finetune_params, batch_size=4, folder=tmp_path)
    check_task_deterministic(cls, finetune_params, steps=3, batch_size=4, folder=tmp_path)


def test_every_builtin_task_is_under_contract():
    covered = {"digits-mlp", "digits-cnn", "tinylm-pretrain", "causal-lm-finetune"}
    assert set(BUILTIN_TASKS) - {"command"} == covered  # command never trains: tests/test_own_script.py


class _Regression(Task):
    """A tiny well-behaved task: a linear model on seeded random data."""

    name = "contract-regression"
    summary = "A linear model on seeded data"
    metric = "val_mse"

    class Params(Params):
        size: int = param(64, "Samples.", ge=8)

    def setup(self, ctx):
        import torch

        g = torch.Generator().manual_seed(ctx.seed)
        self.x = torch.randn(self.params.size, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.g = g
        return torch.nn.Linear(3, 1)

    def train_batches(self):
        import torch

        while True:
            idx = torch.randint(0, self.params.size, (8,), generator=self.g)
            yield self.x[idx], self.y[idx]

    def loss(self, model, batch):
        x, y = batch
        return ((model(x).squeeze(-1) - y) ** 2).mean(), {"samples": len(y)}

    def evaluate(self, model):
        mse = float(((model(self.x).squeeze(-1) - self.y) ** 2).mean())
        return {"val_mse": mse if math.isfinite(mse) else 1e9}


class _WrongMetric(_Regression):
    name = "contract-wrong-metric"

    def evaluate(self, model):
        return {"mse": super().evaluate(model)["val_mse"]}  # declares val_mse, returns another name


class _NaNWhenDiverged(_Regression):
    name = "contract-nan"

    def evaluate(self, model):
        return {"val_mse": float(((model(self.x).squeeze(-1) - self.y) ** 2).mean())}  # NaN for NaN weights


class _UnseededData(_Regression):
    name = "contract-unseeded-data"

    def train_batches(self):
        import torch

        while True:
            idx = torch.randint(0, self.params.size, (8,), generator=torch.Generator().manual_seed(
                random.SystemRandom().randrange(2**31)))  # a new order on every run
            yield self.x[idx], self.y[idx]


class TestThirdPartyTask(TaskContract):
    @pytest.fixture
    def task_class(self):
        return _Regression


def test_a_task_whose_evaluate_never_returns_its_metric_fails(tmp_path):
    with pytest.raises(ContractError, match=r"evaluate\(\) returned no 'val_mse' \(it returned: mse\)"):
        check_task_metric(_WrongMetric, folder=tmp_path)
    run = run_task(_WrongMetric, folder=tmp_path)
    assert run.status == "failed" and "no 'val_mse'" in run.error


def test_a_task_that_reports_nan_for_a_diverged_model_fails(tmp_path):
    check_task_metric(_NaNWhenDiverged, folder=tmp_path)  # a healthy model is fine
    with pytest.raises(ContractError, match=r"val_mse=nan for a diverged model.*1e9"):
        check_task_diverged(_NaNWhenDiverged, folder=tmp_path)


def test_a_task_whose_data_ignores_the_seed_fails_determinism(tmp_path):
    with pytest.raises(ContractError, match="two runs with seed 0 gave different losses"):
        check_task_deterministic(_UnseededData, steps=6, folder=tmp_path)
