"""The classic-DNN workload: scikit-learn's bundled 8x8 digits (1,797 images, no download),
classified by an MLP or a small CNN. Policies behave here as in LRBench's CIFAR tables, in
seconds instead of hours."""

from __future__ import annotations

from typing import Any, Iterator

from lrbench_gui.core.params import Params, param
from lrbench_gui.core.task import Task, TaskContext
from lrbench_gui.hookspecs import hookimpl


def load_digits_arrays() -> tuple[Any, Any]:
    """scikit-learn's digits as (pixels 0..16, labels), read from the CSV that scikit-learn ships.

    Reading the file directly skips importing scikit-learn (most of a second), which matters for
    the time from "run" to the first step; ``sklearn.datasets.load_digits`` is the fallback.
    """
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            with gzip.open(path, "rt") as fh:
                data = np.loadtxt(fh, delimiter=",", dtype=np.float64)
            return data[:, :-1], data[:, -1].astype("int64")
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target.astype("int64")


class DigitsParams(Params):
    val_fraction: float = param(0.2, "Share of the images held out for validation.", gt=0, lt=1)
    split_seed: int = param(0, "Seed of the train/validation split (the same for every trial by default).", ge=0)
    hidden: int = param(128, "Width of the hidden layer.", ge=4, le=4096)


class _Digits(Task):
    Params = DigitsParams
    metric = "val_loss"
    metric_mode = "min"

    def _data(self, ctx: TaskContext) -> None:
        import numpy as np
        import torch

        # a warm worker keeps the images (read-only here); the split and the model are per trial
        if ctx.cache is not None and "digits" not in ctx.cache:
            ctx.cache["digits"] = load_digits_arrays()
        x, y = ctx.cache["digits"] if ctx.cache is not None else load_digits_arrays()
        x = (x / 16.0).astype("float32")
        order = np.random.default_rng(self.params.split_seed).permutation(len(y))
        n_val = int(round(len(y) * self.params.val_fraction))
        val, train = order[:n_val], order[n_val:]
        self.device = ctx.device
        self.x_train = torch.from_numpy(x[train]).to(ctx.device)
        self.y_train = torch.from_numpy(y[train]).to(ctx.device)
        self.x_val = torch.from_numpy(x[val]).to(ctx.device)
        self.y_val = torch.from_numpy(y[val]).to(ctx.device)
        self.batch_size = ctx.batch_size
        self.rank, self.world = ctx.rank, ctx.world_size
        per_rank = len(train) // max(1, self.world)
        if len(val) < 1 or per_rank < self.batch_size:
            # an endless batch loop would otherwise never yield (and never see SIGTERM)
            raise ValueError(
                f"digits: {len(train)} training images ({per_rank} per rank) and {len(val)} validation images "
                f"with val_fraction={self.params.val_fraction}: the batch size {self.batch_size} needs at least "
                f"that many per rank; lower --batch-size or val_fraction")
        self.generator = torch.Generator().manual_seed(ctx.seed)

    @classmethod
    def warm_reuse(cls, params: Params) -> bool:
        return True  # all a trial builds comes from its seed; the images are never written

    def samples_per_epoch(self) -> int:
        return len(self.y_train)

    def train_batches(self) -> Iterator[Any]:
        import torch

        n = len(self.y_train)
        while True:
            order = torch.randperm(n, generator=self.generator)[self.rank :: self.world]
            for i in range(0, len(order) - self.batch_size + 1, self.batch_size):
                idx = order[i : i + self.batch_size].to(self.device)
                yield self.x_train[idx], self.y_train[idx]

    def loss(self, model: Any, batch: Any) -> tuple[Any, dict[str, int]]:
        import torch.nn.functional as F

        x, y = batch
        return F.cross_entropy(model(self._shape(x)), y), {"samples": len(y)}

    def evaluate(self, model: Any) -> dict[str, float]:
        import torch.nn.functional as F

        logits = model(self._shape(self.x_val))
        loss = F.cross_entropy(logits, self.y_val).item()
        acc = (logits.argmax(dim=1) == self.y_val).float().mean().item()
        if loss != loss or loss == float("inf"):
            loss = 1e9  # a diverged model: a large finite loss keeps the metric JSON-safe
        return {"val_loss": loss, "val_acc": acc}

    def _shape(self, x: Any) -> Any:
        return x

    def save_model(self, model: Any, folder) -> None:
        from safetensors.torch import save_model

        folder.mkdir(parents=True, exist_ok=True)
        save_model(model, str(folder / "model.safetensors"), metadata={"task": self.name})


class DigitsMLP(_Digits):
    name = "digits-mlp"
    summary = "scikit-learn digits (8x8) with a one-hidden-layer MLP"
    model_family = "mlp"

    def setup(self, ctx: TaskContext) -> Any:
        from torch import nn

        self._data(ctx)
        return nn.Sequential(nn.Linear(64, self.params.hidden), nn.ReLU(), nn.Linear(self.params.hidden, 10))

    def model_info(self) -> dict[str, Any]:
        return {"family": "mlp", "params": 64 * self.params.hidden + self.params.hidden * 11 + 10}


class DigitsCNN(_Digits):
    name = "digits-cnn"
    summary = "scikit-learn digits (8x8) with a two-layer CNN"
    model_family = "cnn"

    def setup(self, ctx: TaskContext) -> Any:
        from torch import nn

        self._data(ctx)
        h = self.params.hidden
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, h), nn.ReLU(), nn.Linear(h, 10),
        )

    def _shape(self, x: Any) -> Any:
        return x.view(-1, 1, 8, 8)

    def model_info(self) -> dict[str, Any]:
        return {"family": "cnn"}


@hookimpl
def register_tasks(register):
    register(DigitsMLP)
    register(DigitsCNN)
