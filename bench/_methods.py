"""What bench/horizon.py, bench/path_switch.py and bench/merge.py share: run one study of a
study kind to its end on the study driver, with real trial subprocesses (2 side by side, 1 thread
each) in a throw-away data folder, and give back its summary and wall time."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lrbench_builtins.tuners.horizon import LM_OPTIMIZER  # noqa: E402

PARALLEL = 2
#: AdamW as the LLM kinds train by default (clipping 1.0 is the trainer's default)
OPTIMIZER = {"name": "adamw", **LM_OPTIMIZER}


def workdir(prefix: str) -> Path:
    """A fresh data folder for the bench's database and trials (kept only with LRBENCH_KEEP=1)."""
    d = Path(tempfile.mkdtemp(prefix=f"lrbench-{prefix}-"))
    os.environ["LRBENCH_DATA_DIR"] = str(d)
    os.environ["LRBENCH_DB"] = str(d / "policies.json")
    return d


def run_study(name: str, tuner: str, tuner_params: dict[str, Any], *, task_params: dict[str, Any],
              batch_size: int, seed: int = 0, log: bool = True) -> tuple[Any, dict, float]:
    """One study of kind ``tuner`` on ``tinylm-pretrain``, built as ``lrbench study`` builds it (the
    kind's defaults and run length), evaluated at the end of each trial only."""
    from lrbench_gui.core.db import PolicyDB
    from lrbench_gui.core.tuning.driver import run_study as drive
    from lrbench_gui.core.tuning.kinds import study_config
    from lrbench_gui.core.tuning.study import Study
    from lrbench_gui.plugins import get_registry

    registry = get_registry()
    config = study_config(registry.tuner(tuner), tuner_params, {
        "name": name, "task": "tinylm-pretrain", "task_params": task_params, "parallel": PARALLEL,
        "batch_size": batch_size, "optimizer": OPTIMIZER, "seed": seed, "threads": 1,
        "eval_every": 10**8,  # evaluate at the end only
    })
    study = Study(config, registry=registry, db=PolicyDB(registry=registry))
    t0 = time.perf_counter()

    def progress(study: Any) -> None:
        if log:
            print(f"  [{name}] {len(study.results)} trials done, {len(study.running)} running, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    drive(study, on_progress=progress)
    return study, study.tuner.summary_json(), time.perf_counter() - t0


def load() -> float:
    return round(os.getloadavg()[0], 2)
