"""Draw the small curve of every built-in policy for docs/policies.md (one PNG per policy).

Run from the repository root with the ``[plot]`` extra installed:
``.venv/bin/python docs/policies/make_plots.py``. Each curve is the policy's default parameters
(with the changes in ``SHOWN`` where the defaults draw a flat or one-phase line) over ``STEPS``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lrbench_gui.core.reactive import Trace, drive  # noqa: E402
from lrbench_gui.core.spec import build_schedule  # noqa: E402
from lrbench_gui.plugins import load_plugins  # noqa: E402

STEPS = 1000
HERE = Path(__file__).resolve().parent
#: parameters that make a default curve show its shape in STEPS steps
SHOWN: dict[str, dict] = {
    "constant_factor": {"total_iters": 300},
    "linear_factor": {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 700},
    "cosine_annealing": {"t_max": 300},
    "cosine": {"warmup_steps": 50},
    "linear": {"warmup_steps": 50},
    "cosine_hard_restarts": {"warmup_steps": 50, "num_cycles": 3},
    "poly_warmup": {"warmup_steps": 50, "power": 2.0},
    "cosine_warmup_with_min_lr": {"warmup_steps": 50, "min_lr": 1e-4},
    "warmup": {"warmup_num_steps": 300},
    "warmup_decay": {"warmup_num_steps": 200},
    "warmup_cosine": {"warmup_num_steps": 100},
    "ds_onecycle": {"cycle_first_step_size": 300, "cycle_second_step_size": 300, "decay_lr_rate": 0.01,
                    "decay_step_size": 10},
    "cosine_restarts": {"cycle_mult": 2, "cycle_steps": 70},
    "inverse_sqrt": {"warmup_steps": 50},
    "step": {"step_size": 250, "gamma": 0.5},
    "multistep": {"milestones": [500, 750], "gamma": 0.3},
    "exp": {"gamma": 0.997},
    "lr_range": {"step_size": 100},
}


def main() -> None:
    reg = load_plugins(None)
    for name, item in sorted(reg.policies.items()):
        cls = item.obj
        if not item.source.startswith("builtin"):
            continue
        spec = {"name": name, "params": SHOWN.get(name, {})}
        schedule = build_schedule(spec, STEPS, reg)
        # a reactive policy's curve depends on the run: drawn against the synthetic plateaus loss
        lrs = drive(schedule, Trace.synthetic("plateaus", STEPS)) if getattr(cls, "reactive", False) else schedule.lrs()
        fig, ax = plt.subplots(figsize=(2.0, 0.75), dpi=80)
        ax.plot(range(STEPS), lrs, linewidth=1.2, color="#1f77b4")
        ax.set_axis_off()
        ax.set_ylim(min(0.0, min(lrs)), max(lrs) * 1.05 or 1.0)
        fig.subplots_adjust(0.02, 0.04, 0.98, 0.96)
        fig.savefig(HERE / f"{name}.png")
        plt.close(fig)


if __name__ == "__main__":
    main()
