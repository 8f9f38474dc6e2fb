"""One trial, from its trial file to its ``end`` event.

Exit status: 0 completed / stopped / diverged (the trial ran; the status is in ``end``),
1 failed while training, 2 a bad trial file (nothing ran).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from lrbench_gui.core.params import validate_params
from lrbench_gui.core.registry import Registry
from lrbench_gui.core.runs.protocol import encode
from lrbench_gui.core.runs.trial import TrialConfig, TrialError, load_trial, validate_trial
from lrbench_gui.core.params import clip
from lrbench_gui.core.spec import ScheduleError, build_schedule, parse_spec, read_json_file
from lrbench_gui.core.task import Task, TaskContext

__all__ = ["main", "run_trial", "Emitter", "DIVERGED_METRIC", "check_metrics"]

#: What a task's ``evaluate()`` reports for a metric it cannot compute, a diverged model's loss:
#: large and finite, so the value stays JSON-safe and ranks below every real result (NaN and
#: infinities would be dropped from the record, leaving the trial without a value).
DIVERGED_METRIC = 1e9


class Emitter:
    """Writes protocol lines to stdout (rank 0 only) and keeps a short log tail for errors."""

    def __init__(self, trial: str, rank: int = 0, stream: Any = None) -> None:
        self.trial = trial
        self.active = rank == 0
        self.stream = stream or sys.stdout
        self.tail: deque[str] = deque(maxlen=40)

    def emit(self, type_: str, **fields: Any) -> None:
        if self.active:
            self.stream.write(encode(type_, self.trial, **fields) + "\n")
            self.stream.flush()

    def log(self, msg: str) -> None:
        self.tail.append(msg)
        print(msg, file=sys.stderr, flush=True)


class _Stop:
    """Set by SIGTERM/SIGINT; the loop checks it before every step."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, frame: Any) -> None:
            cls.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _device(name: str, backend: str) -> Any:
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and (backend == "deepspeed" or local_rank):
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrialError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def _optimizer(cfg: TrialConfig, params: list, lr: float) -> Any:
    import torch

    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def resolve_steps(cfg: TrialConfig, task: Task, world_size: int = 1) -> int:
    """The budget in optimizer steps."""
    b = cfg.budget
    if b.steps is not None:
        return b.steps
    per_step = cfg.batch_size * cfg.grad_accum * world_size
    if b.epochs is not None:
        n = task.samples_per_epoch()
        if not n:
            raise TrialError(f"task {cfg.task} has no fixed epoch size: give budget.steps or budget.tokens")
        return max(1, math.ceil(b.epochs * n / per_step))
    tps = task.tokens_per_sample()
    if not tps:
        raise TrialError(f"task {cfg.task} does not count tokens: give budget.steps or budget.epochs")
    return max(1, math.ceil(b.tokens / (per_step * tps)))


def _ds_env() -> None:
    """A single DeepSpeed process without a launcher still needs a process group."""
    if "RANK" in os.environ:
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")


def _ds_engine(cfg: TrialConfig, model: Any, optimizer: Any, steps: int) -> Any:
    _ds_env()
    import deepspeed

    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu" and os.environ.get("LRBENCH_DS_SHM") != "1":
        # On a CPU host DeepSpeed compiles a shared-memory all-reduce op at its first use (one to
        # two minutes); gloo's own all-reduce does the same job for trials this size, so skip it
        # (LRBENCH_DS_SHM=1 builds and uses it)
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False

    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.max_grad_norm:
        config["gradient_clipping"] = cfg.max_grad_norm
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def _save_checkpoint(model: Any, folder: Path, step: int, lr: float, cfg: TrialConfig) -> Path:
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}.safetensors"
    tmp = path.with_suffix(".tmp")
    meta = {"step": str(step), "lr": repr(lr), "trial": cfg.trial_id, "task": cfg.task}
    save_model(model, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def run_trial(cfg: TrialConfig, out: Emitter, registry: Registry) -> str:
    """Train ``cfg`` and return the end status; every event goes through ``out``. ``registry``
    resolves the task and the policy (:func:`main` passes the installed plugins; the task
    contract of :mod:`lrbench_gui.testing` passes its own)."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    reg = registry
    task_cls = reg.task(cfg.task)
    task = task_cls(validate_params(task_cls.Params, cfg.task_params))
    device = _device(cfg.device, cfg.backend)
    _seed_everything(cfg.seed)
    workdir = Path(cfg.output_dir) if cfg.output_dir else Path.cwd()
    ctx = TaskContext(cfg.seed, device, cfg.batch_size, rank, world, workdir, out.log)
    model = task.setup(ctx)
    if cfg.merge is not None:
        _merge_into(model, cfg, out)
    steps = resolve_steps(cfg, task, world)
    schedule = build_schedule(parse_spec(cfg.policy, reg), max(1, steps), reg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, trainable, schedule.checked_lr(0))
    if cfg.backend == "deepspeed":
        engine = _ds_engine(cfg, model, optimizer, steps)
        runner, module, optimizer = engine, engine.module, engine.optimizer
    else:
        model.to(device)
        engine, runner, module = None, model, model
    n_params = sum(p.numel() for p in module.parameters())
    n_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    out.emit(
        "hello", pid=os.getpid(), device=str(device), world_size=world, backend=cfg.backend,
        params=n_params, trainable_params=n_trainable, steps=steps, task=cfg.task,
        model=task.model_info(), torch=torch.__version__,
    )
    out.log(f"trial {cfg.trial_id}: {cfg.task}, {steps} steps on {device} ({cfg.backend}), {n_params:,} parameters")

    batches = task.train_batches()
    ckpt_steps = set(cfg.checkpoint_steps)
    ckpt_dir = workdir / "checkpoints"
    tokens = samples = 0
    best = math.inf
    first_loss: float | None = None
    last_metrics: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    status = "completed"
    done = 0
    evaluated_at = -1
    module.train()
    for step in range(steps):
        if _Stop.requested:
            status = "stopped"
            break
        lr = schedule.checked_lr(step)  # a non-finite or negative LR fails the trial at this step
        for group in optimizer.param_groups:
            group["lr"] = lr * float(group.get("lr_scale", 1.0))
        loss_sum = 0.0
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            loss, counts = task.loss(runner, batch)
            if engine is not None:
                engine.backward(loss)
                engine.step()
            else:
                (loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach())
            tokens += int(counts.get("tokens", 0)) * world
            samples += int(counts.get("samples", 0)) * world
        if engine is None:
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss_val = loss_sum / cfg.grad_accum
        done = step + 1
        if first_loss is None:
            first_loss = loss_val
        if step % cfg.log_every == 0 or step == steps - 1 or not math.isfinite(loss_val):
            out.emit("step", step=step, lr=lr, loss=loss_val, tokens=tokens, samples=samples,
                     time=round(time.perf_counter() - t0, 6), cpu=round(time.process_time() - c0, 6))
        if not math.isfinite(loss_val) or loss_val > cfg.diverge_factor * max(best, first_loss):
            status = "diverged"
            out.log(f"step {step}: loss {loss_val} diverged (best {best:.4g}, first {first_loss:.4g})")
            break
        best = min(best, loss_val)
        if cfg.eval_every and done % cfg.eval_every == 0 and done < steps:
            last_metrics = _evaluate(task, module, out, step)
            evaluated_at = step
        if done in ckpt_steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            if rank == 0:
                path = _save_checkpoint(module, ckpt_dir, done, lr, cfg)
                out.emit("checkpoint", step=done, path=str(path), lr=lr)
    seconds = time.perf_counter() - t0
    if status != "diverged" and ((done and evaluated_at != done - 1) or steps == 0):
        last_metrics = _evaluate(task, module, out, max(0, done - 1))
    if cfg.save_model and status == "completed" and rank == 0:
        folder = workdir / "model"
        task.save_model(module, folder)
        out.emit("checkpoint", step=done, path=str(folder), lr=schedule.checked_lr(max(0, done - 1)), kind="model")
    summary = {"final_loss": loss_val if done else None, "best_loss": best if math.isfinite(best) else None}
    summary.update(last_metrics)
    out.emit(
        "end", status=status, metrics=summary, metric=task.metric, metric_mode=task.metric_mode,
        cost={"steps": done, "tokens": tokens, "samples": samples, "seconds": round(seconds, 3)},
    )
    out.log(f"trial {cfg.trial_id}: {status} after {done} steps in {seconds:.1f} s")
    return status


def _merge_into(model: Any, cfg: TrialConfig, out: Emitter) -> None:
    """Set the model's weights to ``weight * later + (1 - weight) * earlier`` (same architecture)."""
    import torch
    from safetensors.torch import load_model

    m = cfg.merge
    assert m is not None
    states = []
    for path in (m.later, m.earlier):
        if not Path(path).is_file():
            raise TrialError(f"merge: checkpoint {path} does not exist (it is written by a trial with checkpoints)")
        try:
            load_model(model, path)
        except RuntimeError as exc:
            raise TrialError(f"merge: {path} does not fit this task's model (set the same sizes as the run "
                             f"that wrote it): {str(exc).splitlines()[0]}") from None
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    later, earlier = states
    merged = {k: (m.weight * v + (1.0 - m.weight) * earlier[k]).to(v.dtype) if torch.is_floating_point(v) else v
              for k, v in later.items()}
    model.load_state_dict(merged)
    out.log(f"merged {m.weight:.4g} x {Path(m.later).name} + {1 - m.weight:.4g} x {Path(m.earlier).name}")


def check_metrics(task: Task, metrics: Any) -> dict[str, float]:
    """``metrics`` as floats, or :class:`TrialError` in one line when ``evaluate()`` broke its
    contract: not a dict of numbers, or without the task's declared :attr:`Task.metric` (a trial
    that cannot be ranked must fail, not complete)."""
    name = getattr(task, "name", type(task).__name__)
    if not isinstance(metrics, dict):
        raise TrialError(f"task {name}'s evaluate() returned {type(metrics).__name__}, not a dict of metrics")
    if task.metric not in metrics:
        got = ", ".join(sorted(map(str, metrics))) or "nothing"
        raise TrialError(f"task {name}'s evaluate() returned no {task.metric!r} (it returned: {got})")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise TrialError(f"task {name}'s evaluate() returned {key}={value!r}, not a number") from None
    return out


def _evaluate(task: Task, module: Any, out: Emitter, step: int) -> dict[str, float]:
    import torch

    module.eval()
    with torch.no_grad():
        metrics = check_metrics(task, task.evaluate(module))
    module.train()
    out.emit("eval", step=step, metrics=metrics)
    return metrics


def _raw_trial_id(path: str) -> str:
    """The trial id of a trial file that failed validation, so the app can still match its events
    (read bounded, like the trial itself; "?" when there is no usable id)."""
    from lrbench_gui.core.runs.trial import SAFE_ID

    try:
        value = read_json_file(path, "trial file").get("trial_id")
    except Exception:  # any unreadable file: the events still go out, under "?"
        return "?"
    return value if isinstance(value, str) and SAFE_ID.match(value) and ".." not in value else "?"


def _failed(out: Emitter, message: str) -> None:
    """The failed trial's last two events: the reason in one line, and ``end``."""
    out.emit("error", message=message, log_tail=list(out.tail)[-20:])
    out.emit("end", status="failed", metrics={}, cost={"steps": 0, "tokens": 0, "samples": 0, "seconds": 0})


def main(argv: list[str] | None = None) -> int:
    """Run the trial file named on the command line. As the process entry point (no ``argv``),
    it does not wait at exit for a thread a plugin left running."""
    status = _main(argv)
    if argv is None:
        from lrbench_gui.plugins import exit_if_plugin_threads

        exit_if_plugin_threads(status)
    return status


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrbench_gui.trainer", description=__doc__)
    parser.add_argument("trial", help="the trial file (JSON)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help="set by the DeepSpeed launcher")
    args = parser.parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    _Stop.install()
    trial_id = "?"
    out = Emitter(trial_id, int(os.environ.get("RANK", "0")))
    from lrbench_gui.plugins import get_registry

    registry = get_registry()
    try:
        cfg = validate_trial(load_trial(args.trial), registry)
        out.trial = cfg.trial_id
    except TrialError as exc:
        out.trial = _raw_trial_id(args.trial)
        out.log(f"lrbench trainer: bad trial file {clip(args.trial)}: {exc}")
        out.tail.clear()
        _failed(out, f"bad trial file: {exc}")
        return 2
    try:
        run_trial(cfg, out, registry)
    except (TrialError, ScheduleError) as exc:  # a broken contract or a policy's bad LR: one clear line
        out.log(f"trial {cfg.trial_id} failed: {exc}")
        _failed(out, str(exc))
        return 1
    except Exception as exc:  # a failed trial is reported, never a bare traceback to the app
        out.log(traceback.format_exc())
        kind = "out of memory" if "out of memory" in str(exc).lower() else type(exc).__name__
        _failed(out, f"{kind}: {clip(str(exc), 400)}")
        return 1
    return 0
