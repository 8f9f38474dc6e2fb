"""A task whose ``evaluate()`` never returns its declared metric cannot be ranked, so its trial
fails with one clear line instead of completing; tested with a task plugin in the plugins
folder through a real ``lrbench run``."""

from __future__ import annotations

import subprocess
import sys

import pytest

WRONG_METRIC = '''
from lrbench_gui.api import Params, Task, hookimpl, param


class Misnamed(Task):
    name = "misnamed"
    summary = "Declares val_loss, reports accuracy and mse"
    metric = "val_loss"

    class Params(Params):
        size: int = param(32, "Samples.", ge=8)

    def setup(self, ctx):
        import torch

        self.g = torch.Generator().manual_seed(ctx.seed)
        self.x = torch.randn(self.params.size, 2, generator=self.g)
        self.y = self.x.sum(dim=1)
        return torch.nn.Linear(2, 1)

    def train_batches(self):
        while True:
            yield self.x, self.y

    def loss(self, model, batch):
        x, y = batch
        return ((model(x).squeeze(-1) - y) ** 2).mean(), {"samples": len(y)}

    def evaluate(self, model):
        mse = float(((model(self.x).squeeze(-1) - self.y) ** 2).mean())
        return {"mse": mse, "accuracy": 0.5}


@hookimpl
def register_tasks(register):
    register(Misnamed)
'''


@pytest.fixture
def misnamed(lrbench_env):
    (lrbench_env["plugins"] / "misnamed.py").write_text(WRONG_METRIC)
    return lrbench_env


def test_lrbench_run_says_failed_with_one_clear_line(misnamed):
    out = subprocess.run(
        [sys.executable, "-m", "lrbench_gui.cli", "run", "--task", "misnamed", "--policy", "fixed", "--steps", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("failed: misnamed")
    line = "task misnamed's evaluate() returned no 'val_loss' (it returned: accuracy, mse)"
    assert out.stderr.count(line) >= 1
    assert "Traceback" not in out.stderr

    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.plugins import get_registry

    (trial,) = PolicyDB(misnamed["db"], registry=get_registry()).trials(task="misnamed")
    assert trial["status"] == "failed"
    assert trial["notes"].splitlines()[0] == line


def test_check_metrics_passes_a_good_evaluation_and_names_what_a_bad_one_returned():
    from lrbench_gui.core.runs.trial import TrialError
    from lrbench_gui.trainer.run import check_metrics

    class Named:
        name, metric = "named", "val_mse"

    assert check_metrics(Named(), {"val_mse": 1, "r2": 0.5}) == {"val_mse": 1.0, "r2": 0.5}
    with pytest.raises(TrialError, match=r"^task named's evaluate\(\) returned no 'val_mse' \(it returned: nothing\)$"):
        check_metrics(Named(), {})
    with pytest.raises(TrialError, match="returned list, not a dict"):
        check_metrics(Named(), [1.0])
    with pytest.raises(TrialError, match="val_mse='high', not a number"):
        check_metrics(Named(), {"val_mse": "high"})
