"""``lrbench run`` (one trial, with a progress bar, recorded in the database) and ``lrbench tasks``."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from lrbench_gui.core.params import describe
from lrbench_gui.core.records import spec_label
from lrbench_gui.plugins import get_registry
from lrbench_gui.core.runs.protocol import Event, encode
from lrbench_gui.core.runs.trial import TrialConfig, TrialError, load_trial, validate_trial
from lrbench_gui.cli import CliError, open_db, print_json
from lrbench_gui.cli.policy import parse_set, resolve_spec

__all__ = ["add_parser", "ProgressBar", "build_trial"]


class ProgressBar:
    """step/total, loss, lr and ETA on one stderr line (a line per 10% when not a terminal)."""

    def __init__(self, total: int, label: str, stream: Any = None) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.last_draw = 0.0
        self.last_decile = -1

    def update(self, step: int, loss: float, lr: float) -> None:
        done = step + 1
        now = time.monotonic()
        frac = min(1.0, done / self.total)
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        text = (
            f"{self.label} {done}/{self.total} [{'#' * int(frac * 24):<24}] "
            f"loss {loss:.4g}  lr {lr:.3g}  ETA {eta:5.1f}s"
        )
        if self.tty:
            if now - self.last_draw > 0.05 or done == self.total:
                self.stream.write("\r" + text[:150])
                self.stream.flush()
                self.last_draw = now
        elif int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            self.stream.write(text + "\n")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _split_sets(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"task": [], "policy": [], "optim": []}
    for item in items:
        prefix, dot, rest = item.partition(".")
        if not dot or prefix not in out:
            raise CliError(f"--set {item!r}: prefix the key with task., policy. or optim. (e.g. policy.lr=0.01)")
        out[prefix].append(rest)
    return out


def build_trial(args: argparse.Namespace) -> TrialConfig:
    """The trial the command line describes, validated against the installed plugins."""
    sets = _split_sets(args.set)
    spec = resolve_spec(args.policy, args.spec, sets["policy"])
    optim = parse_set(sets["optim"])
    if args.optimizer:
        optim["name"] = args.optimizer
    budget = {"steps": args.steps} if args.steps else {"epochs": args.epochs} if args.epochs else {"tokens": args.tokens}
    if not any(budget.values()):
        raise CliError("give a budget: --steps N, --epochs E or --tokens T")
    from lrbench_gui.cli.tune import trainer_settings

    given = trainer_settings(args)
    trainer = given.get("trial_backend", "torch")
    obj = {
        "task": args.task,
        "task_params": parse_set(sets["task"]),
        "policy": spec.to_json(),
        "optimizer": optim,
        "budget": budget,
        "batch_size": args.batch_size,
        "grad_accum": given.get("grad_accum", 1),
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "seed": args.seed,
        "device": given.get("device", "auto"),
        "precision": given.get("precision", "fp32"),
        "backend": trainer,
        "threads": args.threads,
        "save_model": args.save_model,
    }
    if trainer == "deepspeed":
        obj["deepspeed"] = {"zero_stage": given.get("zero_stage", 0),
                            "num_gpus": max(1, int(given.get("gpus_per_trial") or 1)),
                            "config": given.get("deepspeed_config")}
    if args.output_dir:
        obj["output_dir"] = args.output_dir
    try:
        from lrbench_gui.plugins import get_registry

        return validate_trial(load_trial(obj), get_registry())
    except TrialError as exc:
        raise CliError(str(exc)) from None




def _slot(cfg: TrialConfig, per_trial: float | None) -> int | list[str]:
    """The one slot of ``lrbench run``: the first group of GPUs (1 by default, ``--gpus-per-trial``
    for DeepSpeed), or a CPU worker when there is no GPU or the device is cpu."""
    from lrbench_gui.cli.tune import inventory
    from lrbench_gui.core.runs.gpus import GpuError, plan_slots

    try:
        plan = plan_slots(inventory(), per_trial=per_trial or None, parallel=1, device=cfg.device)
    except GpuError as exc:
        raise CliError(f"--gpus-per-trial: {exc}") from None
    return plan.slots


def _cmd_run(args: argparse.Namespace) -> int:
    from lrbench_gui.core.runs.live import LiveMirrors
    from lrbench_gui.core.runs.runner import LocalScheduler

    cfg = build_trial(args)
    db = None if args.no_db else open_db(args.db, getattr(args, "wait", None))
    bar: ProgressBar | None = None
    stored: dict[str, Any] = {}
    saved: dict[str, Any] = {}

    mirrors = LiveMirrors("lrbench run")

    def on_event(trial_id: str, event: Event) -> bool:
        nonlocal bar
        if args.json:
            sys.stdout.write(encode(event.type, event.trial, **event.data) + "\n")
            sys.stdout.flush()
        elif event.type == "hello":
            bar = ProgressBar(int(event.get("steps", 1)), f"{cfg.task}/{cfg.trial_id}")
        elif event.type == "step" and bar is not None:
            bar.update(int(event["step"]), float(event["loss"]), float(event["lr"]))
        return mirrors.event(trial_id, event)  # False: the app's Watch panel asked it to stop

    def on_log(trial_id: str, line: str) -> None:
        if args.verbose:
            print(f"  | {line}", file=sys.stderr)

    def on_finished(trial_id: str, record: dict[str, Any]) -> None:
        if db is not None:  # whatever stops the write (lock, permissions, disk), the run is kept
            saved["result"] = db.add_trial_or_recover(record)
        stored.setdefault("record", record)
        mirrors.finished(trial_id, str(record.get("status")))

    scheduler = LocalScheduler(_slot(cfg, getattr(args, "gpus_per_trial", None)), on_event=on_event, on_log=on_log,
                               on_finished=on_finished, on_started=mirrors.started)
    scheduler.submit(cfg)
    try:
        records = scheduler.run()
    except KeyboardInterrupt:
        scheduler.cancel_all()
        records = scheduler.run()
    finally:
        mirrors.close_all()
    if bar is not None:
        bar.close()
    record = records[cfg.trial_id]
    status = record["status"]
    result = saved.get("result")
    if not args.json:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(record["metrics"].items()) if isinstance(v, (int, float)))
        cost = record["cost"]
        print(f"{status}: {cfg.task} with {spec_label(cfg.policy, get_registry())}; {metrics}")
        print(f"cost: {cost['steps']} steps, {cost['tokens']} tokens, {cost['seconds']:.1f} s"
              + (f"; recorded as trial {cfg.trial_id} in {db.path}" if result is not None and result.ok else ""))
        if status == "failed":
            print(record.get("notes", ""), file=sys.stderr)
    if result is not None and not result.ok:  # said last, so it is the line a user sees
        from lrbench_gui.core.db import EXIT_RECOVERED

        print(f"lrbench: error: {result.message()}", file=sys.stderr)
        return EXIT_RECOVERED
    return 0 if status in ("completed", "diverged", "stopped") else 1


def _cmd_tasks(args: argparse.Namespace) -> int:
    from lrbench_gui.plugins import get_registry

    reg = get_registry()
    rows = []
    for name, item in sorted(reg.tasks.items()):
        cls = item.obj
        rows.append({
            "name": name, "summary": cls.summary, "metric": cls.metric, "metric_mode": cls.metric_mode,
            "plugin": item.plugin, "version": item.version, "params": [p.to_json() for p in describe(cls.Params)],
        })
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        print(f"{r['name']}: {r['summary']}  (metric {r['metric']}, {r['metric_mode']})")
        for p in r["params"]:
            print(f"    {p['name']} ({p['type']}) = {p['default']!r}  {p['description']}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one trial in a subprocess, with a progress bar, and record it")
    p.add_argument("--task", required=True)
    p.add_argument("--policy", metavar="NAME", help="a policy name, a spec .json file or inline JSON")
    p.add_argument("--spec", metavar="FILE", help="a policy spec file (compositions allowed)")
    p.add_argument("--set", action="append", default=[], metavar="task.K=V|policy.K=V|optim.K=V")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int)
    budget.add_argument("--epochs", type=float)
    budget.add_argument("--tokens", type=int)
    p.add_argument("--optimizer", choices=["adamw", "adam", "sgd"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    from lrbench_gui.cli.tune import add_trainer_flags

    add_trainer_flags(p.add_argument, run=True)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in the trial (0: torch's default)")
    p.add_argument("--output-dir", help="where checkpoints and the model go (default: the trial's folder)")
    p.add_argument("--save-model", action="store_true", help="save the trained model at the end")
    p.add_argument("--db", metavar="PATH", help="the database file (default: $LRBENCH_DB or the data folder)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
        help="how long a write waits for another writer's database lock (default: 60); past it the records go to a recovery file")
    p.add_argument("--no-db", action="store_true", help="do not record the trial")
    p.add_argument("--json", action="store_true", help="stream the trial's events as JSON lines")
    p.add_argument("-v", "--verbose", action="store_true", help="show the trainer's log")
    p.set_defaults(func=_cmd_run)

    q = sub.add_parser("tasks", help="list the training tasks and their parameters")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_tasks)
