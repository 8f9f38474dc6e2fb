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
from lrbench_gui.trainer.checkpoint import load_resume, load_weights, save_checkpoint
from lrbench_gui.trainer.optim import build_optimizer, check_optimizer

__all__ = ["main", "run_trial", "run_file", "Emitter", "DIVERGED_METRIC", "check_metrics"]

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
        #: the step and eval events so far, kept for resumable checkpoints (None: not kept)
        self.history: list[list[Any]] | None = None

    def emit(self, type_: str, **fields: Any) -> None:
        if self.history is not None and type_ in ("step", "eval"):
            self.history.append([type_, {k: v for k, v in fields.items() if k != "replayed"}])
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


def _ds_prepare() -> None:
    """The process group's environment, and DeepSpeed's CPU comm op switched off (idempotent)."""
    _ds_env()
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu" and os.environ.get("LRBENCH_DS_SHM") != "1":
        # On a CPU host DeepSpeed compiles a shared-memory all-reduce op at its first use (one to
        # two minutes); gloo's own all-reduce does the same job for trials this size, so skip it
        # (LRBENCH_DS_SHM=1 builds and uses it)
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def _ds_config(cfg: TrialConfig, world: int, log: Any) -> dict[str, Any]:
    """The trial's DeepSpeed config (the user's, merged with what the trial needs; a contradiction
    fails the trial in one line), with the process group's environment set up first, so a task
    can build its model partitioned under ZeRO-3 (``TaskContext.deepspeed_config``)."""
    from lrbench_gui.core.runs.deepspeed_config import merge_deepspeed_config, zero_stage

    notes: list[str] = []
    config = merge_deepspeed_config(cfg.deepspeed.config, cfg, world, notes=notes)
    for note in notes:
        log(note)
    if zero_stage(config) == 3 and (cfg.save_model or cfg.checkpoint_steps or cfg.checkpoint_every):
        raise TrialError("ZeRO stage 3 keeps each weight partitioned across the ranks and lrbench does not gather "
                         "them to save yet: drop save_model and checkpoints from this trial, or use ZeRO stage 2")
    _ds_prepare()
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    for half, supported in (("fp16", acc.is_fp16_supported), ("bf16", acc.is_bf16_supported)):
        if config.get(half, {}).get("enabled") and not supported():
            raise TrialError(f"precision {cfg.precision}: DeepSpeed's {acc.device_name()} accelerator has no {half}; "
                             "use the torch backend for it, or another precision")
    return config


def _ds_engine(cfg: TrialConfig, model: Any, optimizer: Any, steps: int, config: dict[str, Any]) -> Any:
    from lrbench_gui.core.runs.deepspeed_config import fill_model_autos

    _ds_prepare()
    import deepspeed

    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    config = fill_model_autos(config, hidden if isinstance(hidden, int) else None)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def _ds_summary(engine: Any, zero3_init: bool) -> dict[str, Any]:
    """What the engine runs with, read back from it (the hello event's ``deepspeed``);
    ``zero3_init``: the task built its model already partitioned (ZeRO-3 init)."""
    return {"zero_stage": int(engine.zero_optimization_stage()), "zero3_init": zero3_init,
            "bf16": bool(engine.bfloat16_enabled()),
            "fp16": bool(engine.fp16_enabled()), "offload": bool(engine.zero_cpu_offload()),
            "train_batch_size": int(engine.train_batch_size()),
            "gradient_clipping": float(engine.gradient_clipping() or 0.0)}


def _numel(p: Any) -> int:
    """A parameter's size, also when ZeRO-3 holds only this rank's partition of it."""
    return int(getattr(p, "ds_numel", p.numel()))


def run_trial(cfg: TrialConfig, out: Emitter, registry: Registry, cache: dict | None = None) -> str:
    """Train ``cfg`` and return the end status; every event goes through ``out``. ``registry``
    resolves the task and the policy (:func:`main` passes the installed plugins; the task
    contract of :mod:`lrbench_gui.testing` passes its own). ``cache``: a warm worker's
    :attr:`TaskContext.cache` (None in a fresh process); the task's ``release`` follows the end."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    reg = registry
    task_cls = reg.task(cfg.task)
    task = task_cls(validate_params(task_cls.Params, cfg.task_params))
    device = _device(cfg.device, cfg.backend)
    check_optimizer(cfg.optimizer, device)  # before the model is built: that may take minutes
    if cfg.resume_from and (cfg.merge is not None or cfg.backend == "deepspeed"):
        raise TrialError("resume_from: give it with the torch backend and without merge (a resumed trial "
                         "starts from its checkpoint)")
    from lrbench_gui.core.runs.deepspeed_config import zero_stage
    from lrbench_gui.trainer.precision import Precision

    if cfg.backend != "deepspeed" and cfg.deepspeed.config is not None:
        raise TrialError("deepspeed.config is given, but the trial's backend is torch: set backend deepspeed "
                         "(--trainer deepspeed), or leave the DeepSpeed config out")
    ds_config = _ds_config(cfg, world, out.log) if cfg.backend == "deepspeed" else None
    precision = Precision(cfg.precision, device, deepspeed=ds_config is not None, zero_stage=zero_stage(ds_config))
    _seed_everything(cfg.seed)
    workdir = Path(cfg.output_dir) if cfg.output_dir else Path.cwd()
    ctx = TaskContext(cfg.seed, device, cfg.batch_size, rank, world, workdir, out.log,
                      precision=cfg.precision, deepspeed_config=ds_config, cache=cache)
    model = task.setup(ctx)
    evaluators = _evaluators(cfg, reg, task)
    ev_seconds = [0.0]  # the evaluators' wall time: cost.eval_seconds, left out of cost.seconds
    if cfg.merge is not None:
        _merge_into(model, cfg, out)
    model = precision.prepare(model)  # float32 master weights, or the bf16-true cast
    steps = resolve_steps(cfg, task, world)
    schedule = build_schedule(parse_spec(cfg.policy, reg), max(1, steps), reg)
    unseen = [m for m in schedule.monitors() if m != "loss"]
    if unseen and not cfg.eval_every:
        out.log(f"note: the policy watches {', '.join(unseen)}, which this trial evaluates only at its end "
                "(eval_every 0), so the LR will not change on a plateau: give eval_every")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(cfg.optimizer, trainable, schedule.checked_lr(0))
    if cfg.backend == "deepspeed":
        engine = _ds_engine(cfg, model, optimizer, steps, ds_config)
        runner, module, optimizer = engine, engine.module, engine.optimizer
    else:
        if not getattr(model, "hf_device_map", None):  # a quantized model is placed by from_pretrained
            model.to(device)
        engine, runner, module = None, model, model
    resumed = (load_resume(cfg.resume_from, module, optimizer, cfg, steps, out.log, scaler=precision.scaler,
                           schedule=schedule) if cfg.resume_from else None)
    n_params = sum(_numel(p) for p in module.parameters())
    n_trainable = sum(_numel(p) for p in module.parameters() if p.requires_grad)
    out.emit(
        "hello", pid=os.getpid(), device=str(device), world_size=world, backend=cfg.backend,
        params=n_params, trainable_params=n_trainable, steps=steps, task=cfg.task,
        model=task.model_info(), torch=torch.__version__, precision=cfg.precision,
        **({"data": task.data_info()} if hasattr(task, "data_info") else {}),  # records dropped, truncated...
        **({"deepspeed": _ds_summary(engine, precision.partitioned)} if engine is not None else {}),
    )
    out.log(f"trial {cfg.trial_id}: {cfg.task}, {steps} steps on {device} ({cfg.backend}), {n_params:,} parameters")
    out.history = [] if cfg.checkpoint_every or cfg.checkpoint_steps else None
    for type_, fields in resumed.history if resumed is not None else ():  # the record stays whole
        out.emit(type_, **fields, replayed=True)

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
    switches: dict[int, str] = {}  # a reactive policy's changes: first step with the new LR -> why
    module.train()
    if resumed is not None:  # the steps before are not rerun: data, RNG and counters continue
        resumed.continue_at(batches)
        done = resumed.step
        tokens, samples = int(resumed.progress.get("tokens", 0)), int(resumed.progress.get("samples", 0))
        best = math.inf if resumed.progress.get("best") is None else float(resumed.progress["best"])
        first_loss, loss_val = resumed.progress.get("first_loss"), resumed.progress.get("loss")
        if schedule.reactive:  # its observations were replayed: a switch at step ``done`` is logged
            switches.update((int(s["step"]), str(s["reason"])) for s in schedule.switches())
    for step in range(done, steps):
        if _Stop.requested:
            status = "stopped"
            break
        lr = schedule.checked_lr(step)  # a non-finite or negative LR fails the trial at this step
        for group in optimizer.param_groups:
            group["lr"] = lr * float(group.get("lr_scale", 1.0))
        loss_sum = 0.0
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            with precision.autocast():
                loss, counts = task.loss(runner, batch)
            if engine is not None:
                engine.backward(loss)
                engine.step()
            else:
                precision.backward(loss, cfg.grad_accum)
            loss_sum += float(loss.detach())
            tokens += int(counts.get("tokens", 0)) * world
            samples += int(counts.get("samples", 0)) * world
        if engine is None:  # fp16: unscaled before clipping; a step the scaler skips is not a divergence
            stepped = precision.step(optimizer, trainable, cfg.max_grad_norm)
        else:
            stepped = precision.name != "fp16-mixed" or bool(engine.was_step_applied())
        loss_val = loss_sum / cfg.grad_accum
        done = step + 1
        if first_loss is None:
            first_loss = loss_val
        if step % cfg.log_every == 0 or step == steps - 1 or not math.isfinite(loss_val) or step in switches:
            out.emit("step", step=step, lr=lr, loss=loss_val, tokens=tokens, samples=samples,
                     time=round(time.perf_counter() - t0, 6), cpu=round(time.process_time() - c0, 6),
                     **({} if stepped else {"skipped": True}),
                     **({"switch": switches[step]} if step in switches else {}))
        if not math.isfinite(loss_val) or loss_val > cfg.diverge_factor * max(best, first_loss):
            status = "diverged"
            out.log(f"step {step}: loss {loss_val} diverged (best {best:.4g}, first {first_loss:.4g})")
            break
        best = min(best, loss_val)
        schedule.feed(step, loss=loss_val)  # a reactive policy observes the train loss (a no-op otherwise)
        if cfg.eval_every and done % cfg.eval_every == 0 and done < steps:
            last_metrics = _evaluate(task, module, out, step, precision, evaluators, ev_seconds)
            evaluated_at = step
            schedule.feed(step, metrics=last_metrics)
        if schedule.reactive:
            switches.update((int(s["step"]), str(s["reason"])) for s in schedule.switches())
        if done in ckpt_steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            if rank == 0:
                progress = {"tokens": tokens, "samples": samples, "best": best if math.isfinite(best) else None,
                            "first_loss": first_loss, "loss": loss_val, "history": out.history}
                path = save_checkpoint(module, ckpt_dir, done, lr, cfg, progress=progress,
                                       optimizer=optimizer if engine is None else None, scaler=precision.scaler,
                                       schedule=schedule)
                out.emit("checkpoint", step=done, path=str(path), lr=lr)
    seconds = time.perf_counter() - t0 - ev_seconds[0]
    if status != "diverged" and ((done and evaluated_at != done - 1) or steps == 0):
        last_metrics = _evaluate(task, module, out, max(0, done - 1), precision, evaluators, ev_seconds)
    if cfg.save_model and status == "completed" and rank == 0:
        folder = workdir / "model"
        task.save_model(module, folder)
        out.emit("checkpoint", step=done, path=str(folder), lr=schedule.checked_lr(max(0, done - 1)), kind="model")
    summary = {"final_loss": loss_val if done else None, "best_loss": best if math.isfinite(best) else None}
    summary.update(last_metrics)
    out.emit(
        "end", status=status, metrics=summary, metric=task.metric, metric_mode=task.metric_mode,
        cost={"steps": done, "tokens": tokens, "samples": samples, "seconds": round(seconds, 3),
              **({"eval_seconds": round(ev_seconds[0], 3)} if evaluators else {})},
    )
    if precision.skipped:
        out.log(f"fp16-mixed: the loss scaler skipped {precision.skipped} of {done} steps (inf/NaN gradients)")
    out.log(f"trial {cfg.trial_id}: {status} after {done} steps in {seconds:.1f} s")
    if cache is not None:
        _release(task, module, cache, out)
    return status


def _release(task: Task, module: Any, cache: dict, out: Emitter) -> None:
    """The task hands back what it took from the warm worker's cache; if that fails, the cache
    is emptied (the next trial loads afresh) and the trial, which has ended, stays as it ended."""
    try:
        task.release(module)
    except Exception as exc:
        cache.clear()
        name = getattr(task, "name", type(task).__name__)
        out.log(f"warm worker: {type(exc).__name__} in task {name}'s release(): {clip(str(exc), 300)}; its cache "
                "is emptied")


def _merge_into(model: Any, cfg: TrialConfig, out: Emitter) -> None:
    """Set the model's weights to ``weight * later + (1 - weight) * earlier`` (same architecture)."""
    import torch

    m = cfg.merge
    assert m is not None
    states = []
    for path in (m.later, m.earlier):
        load_weights(model, path, "merge")  # a trainable-only (LoRA) checkpoint loads over the task's base
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


def _evaluators(cfg: TrialConfig, registry: Registry, task: Task) -> list[Any]:
    """The trial's evaluators, built and checked against the task before training (a missing set
    or a task without a tokenizer fails the trial in one line, before it trains)."""
    from lrbench_gui.core.evaluator import EvalContext
    from lrbench_gui.core.params import ParamError

    built = []
    for spec in cfg.evaluators:
        cls = registry.evaluator(spec.name)
        try:
            ev = cls(validate_params(cls.Params, spec.params))
            ev.check(EvalContext.of(task))
        except ParamError as exc:
            raise TrialError(f"evaluator {spec.name}: {exc}") from None
        except (ValueError, OSError, ImportError) as exc:
            raise TrialError(clip(str(exc), 600) if str(exc).startswith(("evaluator", spec.name))
                             else f"evaluator {spec.name}: {clip(str(exc), 600)}") from None
        built.append(ev)
    return built


def _run_evaluators(evaluators: list[Any], task: Task, module: Any, step: int,
                    task_metrics: dict[str, float]) -> dict[str, float]:
    from lrbench_gui.core.evaluator import EvalContext

    out: dict[str, float] = {}
    for ev in evaluators:
        ctx = EvalContext.of(task, step)
        ctx.extra.setdefault("task_metrics", task_metrics)
        try:
            got = ev.evaluate(module, ctx)
        except TrialError:
            raise
        except Exception as exc:
            raise TrialError(f"evaluator {ev.name}: {type(exc).__name__}: {clip(str(exc), 400)}") from None
        if not isinstance(got, dict):
            raise TrialError(f"evaluator {ev.name} returned {type(got).__name__}, not a dict of metrics")
        for key, value in got.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TrialError(f"evaluator {ev.name} returned {key}={value!r}, not a number") from None
            if not math.isfinite(number):
                raise TrialError(f"evaluator {ev.name} returned {key}={number}, not a finite number")
            out[str(key)] = number
    return out


def _evaluate(task: Task, module: Any, out: Emitter, step: int, precision: Any = None,
              evaluators: list[Any] = (), ev_seconds: list[float] | None = None) -> dict[str, float]:
    """The task's metrics, then the evaluators' (same ``eval`` event; their wall time is added to
    ``ev_seconds[0]``)."""
    import contextlib

    import torch

    module.eval()
    with torch.no_grad(), (precision.autocast() if precision is not None else contextlib.nullcontext()):
        metrics = check_metrics(task, task.evaluate(module))
        if evaluators:
            t = time.perf_counter()
            metrics.update(_run_evaluators(list(evaluators), task, module, step, dict(metrics)))
            if ev_seconds is not None:
                ev_seconds[0] += time.perf_counter() - t
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
    out = Emitter("?", int(os.environ.get("RANK", "0")))
    from lrbench_gui.plugins import get_registry

    return run_file(args.trial, get_registry(), out)


def run_file(path: str, registry: Registry, out: Emitter, cache: dict | None = None) -> int:
    """Validate and run one trial file; returns :func:`main`'s exit status (a warm worker runs
    each of its trials through here, with its ``cache``)."""
    try:
        cfg = validate_trial(load_trial(path), registry)
        out.trial = cfg.trial_id
    except TrialError as exc:
        out.trial = _raw_trial_id(path)
        out.log(f"lrbench trainer: bad trial file {clip(path)}: {exc}")
        out.tail.clear()
        _failed(out, f"bad trial file: {exc}")
        return 2
    try:
        run_trial(cfg, out, registry, cache)
    except (TrialError, ScheduleError) as exc:  # a broken contract or a policy's bad LR: one clear line
        _forget(cache, out)
        out.log(f"trial {cfg.trial_id} failed: {exc}")
        _failed(out, str(exc))
        return 1
    except Exception as exc:  # a failed trial is reported, never a bare traceback to the app
        _forget(cache, out)
        out.log(traceback.format_exc())
        kind = "out of memory" if "out of memory" in str(exc).lower() else type(exc).__name__
        _failed(out, f"{kind}: {clip(str(exc), 400)}")
        return 1
    return 0


def _forget(cache: dict | None, out: Emitter) -> None:
    """A trial that raised never handed back what it took from a warm worker's cache (a LoRA
    fine-tune's base still wears its adapters): empty it, so the next trial loads afresh."""
    if cache:
        cache.clear()
        out.log("warm worker: the failed trial's cached model and data are dropped; the next trial loads them again")
