"""``lrbench tune``: a study (search, run, rank, record). ``lrbench range-test`` is in
:mod:`lrbench_gui.cli.study`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from lrbench_gui.cli import CliError, open_db, print_json
from lrbench_gui.cli.policy import parse_set

__all__ = ["add_parser", "run_study_blocking", "format_ranking", "all_failed", "report_recovered", "split_sets",
           "StudyProgress", "add_trainer_flags", "trainer_settings", "inventory", "placement_line", "TRAINERS",
           "PRECISIONS"]

EXIT_RECOVERED = 3  # the study ran; some records are in recovery files (lrbench_gui.core.db.recovery)
TRAINERS = ("torch", "deepspeed")
#: the trainer's precisions, as the trial file declares them (lrbench_gui.core.runs.trial)
PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed", "bf16-true")


def add_trainer_flags(add: Any, *, run: bool = False) -> None:
    """Where and how a trial trains, the same in ``run``, ``tune`` and ``study KIND``: ``add`` is
    an ``add_argument`` (a parser's, a group's, or one that skips taken names). ``run`` keeps
    its old spellings as hidden aliases (``--backend`` for the trainer, ``--gpus``)."""
    add("--trainer", choices=TRAINERS, default=None,
        help="where a trial trains: torch (default) or deepspeed")
    if run:
        add("--backend", dest="trainer", choices=TRAINERS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add("--gpus-per-trial", dest="gpus_per_trial", type=float, default=None, metavar="K",
        help="GPUs of one trial (default: 1 when the machine has GPUs; more than 1 needs --trainer deepspeed, "
             "a fraction the Ray scheduler)")
    if run:
        add("--gpus", dest="gpus_per_trial", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    add("--device", default=None, help="auto (default), cpu, cuda, cuda:1...")
    add("--precision", choices=PRECISIONS, default=None,
        help="fp32 (default); bf16-/fp16-mixed: fp32 master weights with autocast; bf16-true: all in bfloat16")
    add("--grad-accum", dest="grad_accum", type=int, default=None, metavar="N",
        help="micro-batches per optimizer step (default: 1)")
    add("--zero-stage", dest="zero_stage", type=int, choices=[0, 1, 2, 3], default=None,
        help="DeepSpeed ZeRO stage (with --trainer deepspeed; default: 0, or your config's)")
    add("--deepspeed-config", dest="deepspeed_config", metavar="FILE", default=None,
        help="your DeepSpeed JSON config (with --trainer deepspeed): ZeRO, offload, communication are yours; "
             "lrbench sets the scheduler, batch sizes and precision")


def _read_deepspeed_config(path: str) -> dict[str, Any]:
    from lrbench_gui.core.jsonio import JSONBoundsError, read_json_bounded

    try:
        obj = read_json_bounded(Path(path).expanduser(), max_bytes=1 << 20, name=f"--deepspeed-config {path[:200]}")
    except JSONBoundsError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"--deepspeed-config {path[:200]}: {exc.strerror or exc}") from None
    if not isinstance(obj, dict):
        raise CliError(f"--deepspeed-config {path[:200]}: must be a JSON object (a DeepSpeed config), "
                       f"got {type(obj).__name__}")
    return obj


def resumed_trainer_settings(trainer: dict[str, Any], record: dict[str, Any], study_id: str) -> dict[str, Any]:
    """The trainer flags a resumed study takes from this command line: its execution settings.
    Precision and gradient accumulation change results, so a value other than the stored
    study's is refused in one line; the study keeps its own."""
    stored = (record.get("extra") or {}).get("config") or {}
    for key, flag in (("precision", "--precision"), ("grad_accum", "--grad-accum")):
        if key in trainer and key in stored and trainer[key] != stored[key]:
            raise CliError(f"{flag} {trainer[key]}: study {study_id} keeps its own ({stored[key]}); "
                           "it changes results, so a resumed study cannot change it")
    return {k: v for k, v in trainer.items() if k not in ("precision", "grad_accum")}


def trainer_settings(args: argparse.Namespace, scheduler: str = "local") -> dict[str, Any]:
    """The trainer flags given, checked together (a flag the choice would ignore is refused in
    one line), as ``StudyConfig`` fields: ``trial_backend``, ``gpus_per_trial``, ``device``,
    ``precision``, ``grad_accum``, ``zero_stage``, ``deepspeed_config``; absent when not given."""
    from lrbench_gui.core.runs.gpus import placement_problem

    trainer = getattr(args, "trainer", None) or "torch"
    device = getattr(args, "device", None) or "auto"
    per_trial = getattr(args, "gpus_per_trial", None)
    problem = placement_problem(trainer=trainer, per_trial=per_trial, device=device, scheduler=scheduler,
                                zero_stage=getattr(args, "zero_stage", None),
                                deepspeed_config=getattr(args, "deepspeed_config", None))
    if problem:
        raise CliError(problem)
    accum = getattr(args, "grad_accum", None)
    if accum is not None and accum < 1:
        raise CliError(f"--grad-accum {accum}: must be 1 or more")
    out: dict[str, Any] = {
        "trial_backend": getattr(args, "trainer", None), "gpus_per_trial": per_trial,
        "device": getattr(args, "device", None), "precision": getattr(args, "precision", None),
        "grad_accum": accum, "zero_stage": getattr(args, "zero_stage", None),
    }
    if getattr(args, "deepspeed_config", None):
        out["deepspeed_config"] = _read_deepspeed_config(args.deepspeed_config)
    return {k: v for k, v in out.items() if v is not None}


def inventory() -> Any:
    """This machine's GPUs (:func:`~lrbench_gui.core.runs.gpus.detect_gpus`); a bad LRBENCH_GPUS is one line."""
    from lrbench_gui.core.runs.gpus import GpuError, detect_gpus

    try:
        return detect_gpus()
    except GpuError as exc:
        raise CliError(str(exc)) from None


def _study_defaults(fields: dict[str, Any], parallel: int | None, scheduler: str, address: str | None) -> dict[str, Any]:
    """``gpus_per_trial`` and ``parallel`` when not given: 1 GPU per trial when this machine has
    GPUs (and the device is not cpu), and as many trials at a time as there are GPU slots; on a
    machine without GPUs nothing (the study's defaults)."""
    from lrbench_gui.core.runs.gpus import GpuError, default_parallel

    ids = inventory().ids if fields.get("device", "auto") != "cpu" and not (scheduler == "ray" and address) else []
    out = {}
    per_trial = fields.get("gpus_per_trial")
    if per_trial is None and ids:
        out["gpus_per_trial"] = per_trial = 1.0
    if parallel is None and ids and per_trial:  # without GPUs the study's own default holds
        try:
            if scheduler == "ray":
                out["parallel"] = max(1, int(len(ids) // per_trial))
            else:
                out["parallel"] = default_parallel(ids, per_trial)
        except GpuError as exc:
            raise CliError(f"--gpus-per-trial: {exc}") from None
    return out


def placement_line(config: Any) -> tuple[str, str | None]:
    """Where a study's trials go, in one line (and the warning when ``parallel`` was cut down)."""
    from lrbench_gui.core.runs.gpus import GpuError
    from lrbench_gui.core.tuning.driver import study_slots

    if config.backend == "ray":
        k = config.gpus_per_trial
        return (f"Ray Tune places the trials: {k:g} GPU{'s' if k != 1 else ''} and {config.cpus_per_trial:g} CPU "
                f"per trial, up to {config.parallel} at a time", None)
    try:
        plan = study_slots(config, inventory())
    except GpuError as exc:
        raise CliError(f"--gpus-per-trial: {exc}") from None
    return plan.text, plan.warning


def split_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--set task.K=V tuner.K=V optim.K=V`` as three parameter dicts (lrbench tune and study)."""
    out: dict[str, list[str]] = {"task": [], "tuner": [], "optim": []}
    for item in items:
        prefix, dot, rest = item.partition(".")
        if not dot or prefix not in out:
            raise CliError(f"--set {item!r}: prefix the key with task., tuner. or optim. (e.g. tuner.trials=12)")
        out[prefix].append(rest)
    return {k: parse_set(v) for k, v in out.items()}


def _target(text: str | None) -> tuple[str | None, float | None]:
    if not text:
        return None, None
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name.strip() or not math.isfinite(number):
        raise CliError(f"--target {text!r}: expected METRIC=VALUE, e.g. val_acc=0.95")
    return name.strip(), number




def _command(args: argparse.Namespace) -> tuple[list[str] | None, str | None]:
    """``--cmd`` as argv (placeholders checked) and ``--cwd`` as an absolute folder (default: here)."""
    import os

    from lrbench_gui.core.runs.command import CommandError, check_template, split_command

    if args.cmd is None:
        if args.cwd:
            raise CliError("--cwd: only with --cmd (the folder the command runs in)")
        return None, None
    try:
        argv = split_command(args.cmd)
        check_template(argv)
    except CommandError as exc:
        raise CliError(f"--cmd: {exc}") from None
    if args.scheduler == "ray":
        raise CliError("--cmd: command trials run on local slots (--scheduler local); Ray runs only lrbench's trainer")
    cwd = Path(args.cwd or os.getcwd()).expanduser().resolve()
    if not cwd.is_dir():
        raise CliError(f"--cwd {str(args.cwd)[:200]}: not a folder")
    return argv, str(cwd)


def _overrides(items: list[str]) -> dict[str, Any]:
    """``--override POLICY.PARAM=VALUE`` as the study's ``overrides`` (a value is JSON when it
    parses); the search space checks the names and values when the study is made."""
    return parse_set(items)


def make_study(args: argparse.Namespace, db: Any) -> Any:
    from lrbench_gui.core.registry import UnknownName
    from lrbench_gui.core.tuning.study import Study, StudyConfig, resume_config

    command, cwd = _command(args)
    if args.resume:
        found = db.get(args.resume, "studies")
        if found is None:
            raise CliError(f"no study {args.resume!r} in {db.path} (lrbench db list shows the studies)")
        # where this machine sends work is never taken from a (possibly imported) record: the
        # backend, Ray address, parallelism and GPUs are the ones given on this command line
        trainer = trainer_settings(args, args.scheduler)
        here = resumed_trainer_settings(trainer, found, args.resume)
        here.update(_study_defaults(here, args.parallel, args.scheduler, args.address))
        try:
            config = resume_config(found, backend=args.scheduler, ray_address=args.address,
                                   parallel=here.pop("parallel", args.parallel), command=command, cwd=cwd,
                                   warm=getattr(args, "warm", True), **here)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    else:
        sets = split_sets(args.set)
        metric, target = _target(args.target)
        lr_range = None
        if args.lr_range:
            try:
                lo, hi = (float(x) for x in args.lr_range.split(","))
            except ValueError:
                raise CliError(f"--lr-range {args.lr_range[:200]!r}: expected LOW,HIGH, e.g. 1e-4,1e-1") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
                raise CliError(f"--lr-range {args.lr_range[:200]}: LOW and HIGH must be finite, LOW > 0 and "
                               "LOW < HIGH (to train at one LR, run: lrbench run --policy fixed --set policy.lr=LR)")
            lr_range = (lo, hi)
        obj = {
            "task": args.task or "command", "task_params": sets["task"], "command": command, "cwd": cwd, "method": args.method, "tuner": args.tuner,
            "tuner_params": sets["tuner"], "policies": [p.strip() for p in args.policies.split(",") if p.strip()],
            "budget_steps": args.budget_steps, "trials": args.trials,
            "backend": args.scheduler, "ray_address": args.address, "batch_size": args.batch_size,
            "optimizer": {**sets["optim"], **({"name": args.optimizer} if args.optimizer else {})},
            "seed": args.seed, "target": target, "lr_range": lr_range, "eval_every": args.eval_every,
            "checkpoint_every": getattr(args, "checkpoint_every", 0),
            "name": args.name or "", "evaluators": [parse_evaluator(e) for e in args.evaluator or []],
            "overrides": _overrides(getattr(args, "override", None) or []),
        }
        obj.update(trainer_settings(args, args.scheduler))
        obj.update(_study_defaults(obj, args.parallel, args.scheduler, args.address))
        if args.parallel is not None:
            obj["parallel"] = args.parallel
        obj["warm"] = getattr(args, "warm", True)
        if args.metric or metric:
            obj["metric"] = args.metric or metric
        if args.mode:
            obj["mode"] = args.mode
        try:
            config = StudyConfig.model_validate(obj)
        except Exception as exc:  # pydantic's message names the field
            raise CliError(f"study: {exc}".splitlines()[0] + "; " + " ".join(str(exc).splitlines()[1:3])) from None
    try:
        from lrbench_gui.plugins import get_registry

        return Study(config, registry=get_registry(), db=db)
    except (UnknownName, ValueError) as exc:
        raise CliError(str(exc)[:600]) from None
    except Exception as exc:  # a tuner plugin's own error (a KeyError for a bad name): one line, no traceback
        raise CliError(f"study: {type(exc).__name__}: {str(exc)[:400]}") from None


class StudyProgress:
    """The progress of a blocking study (``lrbench tune``, ``lrbench study KIND``, ``lrbench
    range-test``), on stderr so stdout stays the answer (a table, or ``--json``'s object alone).

    Call it with the study after each finished trial and hand :meth:`event` every protocol event.
    On a terminal it is a ``rich`` progress display: the study's bar (completed / planned trials,
    the ETA from the trials so far, the best value) and one bar per running trial (its steps and
    ETA from its steps per second). Elsewhere (a pipe, a log file, CI) it prints one plain line
    per finished trial: ``study ID: 3 / 16 trials done, 2 running, ETA 1 min 20 s; best ...``.
    Silent with ``quiet`` (``--json``), except the data warnings.
    """

    #: seconds between two refreshes of the display from step events
    REFRESH = 0.25

    def __init__(self, quiet: bool, *, tty: bool | None = None) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.warned: set[str] = set()
        self._rich: Any = None
        self._main: Any = None
        self._bars: dict[str, Any] = {}
        self._last = 0.0

    def line(self, study: Any) -> str:
        """The plain progress line of ``study`` now."""
        from lrbench_gui.core.tuning.study import format_duration

        p = study.progress()
        best = study.best()
        best_text = f"best {study.objective.metric} {best['value']:.4g}" if best else "no result yet"
        planned = f"{'~' if p['estimate'] else ''}{p['planned']}"
        eta = "" if p["completed"] >= p["planned"] and not p["running"] else f", ETA {format_duration(p['eta_seconds'])}"
        return (f"study {study.config.study_id}: {p['completed']} / {planned} trials done, {p['running']} running"
                f"{eta}; {best_text}")

    def _start(self, study: Any) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._rich = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                              TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[note]}"),
                              console=Console(stderr=True), transient=False, refresh_per_second=4)
        self._rich.start()
        self._main = self._rich.add_task(f"study {study.config.study_id}", total=None, eta="", note="")

    def _refresh(self, study: Any) -> None:
        from lrbench_gui.core.tuning.study import format_duration

        if self._rich is None:
            self._start(study)
        p = study.progress()
        best = study.best()
        note = f"best {study.objective.metric} {best['value']:.4g}" if best else ""
        self._rich.update(self._main, completed=p["completed"], total=p["planned"],
                          eta=f"ETA {format_duration(p['eta_seconds'])}", note=note)
        for tid in [t for t in self._bars if t not in p["trials"]]:
            self._rich.remove_task(self._bars.pop(tid))
        for tid, t in p["trials"].items():
            eta = f"ETA {format_duration(t['eta_seconds'])}" if t["eta_seconds"] is not None else ""
            rate = f"{t['steps_per_s']:.0f} steps/s" if t["steps_per_s"] else ""
            if tid not in self._bars:
                self._bars[tid] = self._rich.add_task(f"  {tid}", total=t["steps"] or None, eta=eta, note=rate)
            self._rich.update(self._bars[tid], completed=t["step"], total=t["steps"] or None, eta=eta, note=rate)

    def event(self, study: Any, trial_id: str, event: Any) -> None:
        """A protocol event of a trial: the terminal display follows it (a few times a second)."""
        if self.quiet or not self.tty or event.type not in ("step", "hello"):
            return
        import time

        now = time.monotonic()
        if now - self._last >= self.REFRESH:
            self._last = now
            self._refresh(study)

    def __call__(self, study: Any) -> None:
        for warning in [w for w in getattr(study, "data_warnings", ()) if w not in self.warned]:
            self.warned.add(warning)  # the records a trial's data lost (too long...), said once
            message = f"lrbench: warning: {warning}"
            if self._rich is not None:
                self._rich.console.print(message, markup=False, highlight=False)
            else:
                print(message, file=sys.stderr)
        if self.quiet:
            return
        if self.tty:
            self._refresh(study)
            return
        sys.stderr.write(self.line(study)[:300] + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


def run_study_blocking(study: Any, progress: StudyProgress | None = None, on_event: Any = None) -> None:
    """Drive a study to its end with local subprocesses (or Ray), on this thread."""
    from lrbench_gui.core.tuning.driver import run_study

    if on_event is None and progress is not None:
        on_event = lambda trial_id, event: progress.event(study, trial_id, event)  # noqa: E731
    run_study(study, on_progress=progress, on_event=on_event, live="lrbench tune")


def format_ranking(study: Any, limit: int = 20) -> str:
    from lrbench_gui.core.records import spec_label

    rows = study.ranking()[:limit]
    cost = study.config.method == "cost"
    head = ["#", "trial", "policy", "status", study.objective.metric, "steps", "seconds"]
    if cost:
        head.insert(5, "to target")
    lines = []
    for i, r in enumerate(rows, 1):
        try:
            label = spec_label(r["policy"], study.registry)
        except Exception:  # a spec of a plugin no longer installed
            label = r["family"]
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        line = [str(i), r["trial"], label[:38], r["status"], value, str(r["steps"]),
                f"{r['seconds']:.1f}"]
        if cost:
            line.insert(5, "-" if r["cost_to_target"] is None else str(r["cost_to_target"]))
        lines.append(line)
    widths = [max(len(x) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(x.ljust(w) for x, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def _cmd_tune(args: argparse.Namespace) -> int:
    db = open_db(args.db, getattr(args, "wait", None))
    study = make_study(args, db)
    if args.resume:
        study.resume()
        r = study.resumed
        print(f"resuming study {study.config.study_id}: {r['completed']} completed trials kept"
              + (f", {r['replayed'] - r['completed']} failed, diverged or cancelled kept" if r["replayed"] > r["completed"] else "")
              + (f", {r['rerun']} interrupted trials to run again" if r["rerun"] else ""), file=sys.stderr)
    text, warning = placement_line(study.config)
    if warning:
        print(f"lrbench: warning: {warning}", file=sys.stderr)
    print(text, file=sys.stderr)
    progress = StudyProgress(args.json)
    try:
        if args.json:  # stdout is the JSON answer alone: Ray's banners and a plugin's prints go to stderr
            from lrbench_gui.plugins import stdout_to_stderr

            with stdout_to_stderr():
                run_study_blocking(study, progress)
        else:
            run_study_blocking(study, progress)
    except KeyboardInterrupt:
        progress.close()
        again = ""
        if study.config.command is not None:
            import shlex

            again = f" --cmd {shlex.quote(shlex.join(study.config.command))}" + (
                f" --cwd {shlex.quote(study.config.cwd)}" if study.config.cwd else "")
        print(f"stopped; resume with: lrbench tune --resume {study.config.study_id}{again}", file=sys.stderr)
        return 130
    progress.close()
    if report_recovered(study):
        return EXIT_RECOVERED
    best = study.best()
    failure = all_failed(study)
    if failure is not None and not args.json:
        print(format_ranking(study))
        print(f"lrbench: error: every trial of study {study.config.study_id} failed; the first: {failure}",
              file=sys.stderr)
        return 1
    if args.save_best and best is not None:
        from lrbench_gui.core.spec import ratio_form

        saved = ratio_form(best["policy"], study.config.budget_steps, study.registry)
        Path(args.save_best).write_text(json.dumps(saved, indent=2))
        if saved is not best["policy"] and not args.json:
            from lrbench_gui.core.spec import shares_of

            print(f"lengths are saved as shares of the run ({'; '.join(shares_of(saved))}): they keep their share "
                  "when the spec is used or exported for a longer run", file=sys.stderr)
    if args.json:
        print_json({"study": study.config.study_id, "summary": study.summary(), "ranking": study.ranking(),
                    **({"error": f"every trial failed; the first: {failure}"} if failure else {})})
        return 1 if failure else 0
    print(format_ranking(study))
    s = study.summary()
    evaluating = (f"; {100 * s['eval_share']:.0f} % of the trials' time went to evaluating ({s['eval_seconds']:.1f} of "
                  f"{s['eval_seconds'] + s['train_seconds']:.1f} s)" if s.get("eval_share") is not None else "")
    print(f"\nstudy {study.config.study_id}: {s['trials']} trials, {s['compute_steps']} steps of compute{evaluating}; "
          f"recorded in {db.path}")
    if "best_single" in s:
        bs, bc = s.get("best_single"), s.get("best_composition")
        if bs and bc:
            verdict = "better" if study.objective.better(bc["value"], bs["value"]) else "not better"
            print(f"best composition {bc['value']:.4g} vs best single policy {bs['value']:.4g}: {verdict}")
    if best is not None:
        where = args.save_best or "best.json"
        if not args.save_best:
            print(f"export the best: lrbench tune ... --save-best {where}, then "
                  f"lrbench policy export --spec {where} --to hf --steps {study.config.budget_steps}")
        else:
            print(f"best policy saved to {where}; export it: lrbench policy export --spec {where} --to hf "
                  f"--steps {study.config.budget_steps}")
    return 0


def report_recovered(study: Any) -> bool:
    """Say, one line each, which records went to recovery files instead of the database (and
    the command that applies each); True if any did."""
    if not study.recovered:
        return False
    for result in study.recovered:
        print(f"lrbench: {result.message()}", file=sys.stderr)
    return True


def all_failed(study: Any) -> str | None:
    """The first failure's reason when the study has trials and none of them gave a result."""
    records = list(study.records.values())
    if not records or any(r.get("status") in ("completed",) for r in records):
        return None
    first = records[0]
    notes = str(first.get("notes") or "").strip().splitlines()
    reason = next((n for n in notes if n.strip()), "") or f"status {first.get('status')}"
    return f"{first.get('id')}: {first.get('status')}: {reason[:200]}"


def _common(p: argparse.ArgumentParser, task_required: bool = True) -> None:
    p.add_argument("--task", required=task_required)
    p.add_argument("--set", action="append", default=[], metavar="task.K=V|tuner.K=V|optim.K=V")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=["adamw", "adam", "sgd"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", metavar="PATH", help="the database file (default: $LRBENCH_DB or the data folder)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
        help="how long a write waits for another writer's database lock (default: 60); past it the records go to a recovery file")
    p.add_argument("--json", action="store_true")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="run a study: search LR policies with a tuner, rank them, record them")
    _common(p, task_required=False)
    p.add_argument("--method", choices=["single", "compose", "cost"], default="single")
    p.add_argument("--tuner", default="random", help="grid, random, bayes, halving, range-test, value-range...")
    p.add_argument("--policies", default="cosine", help="comma-separated policy families to search")
    p.add_argument("--budget-steps", type=int, default=300, help="steps of one full trial")
    p.add_argument("--trials", type=int, default=16, help="trials (full-length equivalents) the tuner may use")
    p.add_argument("--parallel", type=int, default=None,
                   help="trials side by side (default: one per GPU slot, else 1; never more than the GPU slots)")
    p.add_argument("--target", metavar="METRIC=VALUE", help="the cost method's goal, e.g. val_acc=0.95")
    p.add_argument("--mode", choices=["min", "max"],
                   help="whether lower or higher is better (default: the task's declared direction for its "
                        "metric, else by name: accuracy-like metrics are max)")
    p.add_argument("--lr-range", metavar="LOW,HIGH",
                   help="narrow every LR dimension of the search (0 < LOW < HIGH; for one fixed LR use lrbench run)")
    p.add_argument("--override", action="append", metavar="POLICY.PARAM=VALUE",
                   help="search one family's parameter over [LOW,HIGH] or fix it to VALUE (repeatable), e.g. "
                        "cosine.lr=[1e-4,1e-2] or step.gamma=0.5 (the Study panel's per-policy LR ranges)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (default: a tenth)")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=0, metavar="N",
                   help="resumable trials: a checkpoint with the optimizer state every N steps (default: 0, none); "
                        "--resume then continues an interrupted trial from its last one (a resumed study keeps its own)")
    p.add_argument("--scheduler", choices=["local", "ray"], default="local",
                   help="where trials are placed: local processes (default) or Ray Tune")
    p.add_argument("--backend", dest="scheduler", choices=["local", "ray"], default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="a fresh trainer process per trial (default: trials of tasks that allow it reuse a warm "
                        "worker per slot, which keeps the imports and a LoRA base model loaded)")
    add_trainer_flags(p.add_argument)
    p.add_argument("--name", help="a name for the study")
    p.add_argument("--resume", metavar="STUDY_ID", help="resume an interrupted study from the database")
    p.add_argument("--save-best", metavar="FILE", help="write the best policy's spec to FILE")
    p.add_argument("--cmd", metavar="TEMPLATE",
                   help="run your own script for each trial, e.g. 'python train.py --lr {lr} --steps {steps}' "
                        "({lr} {steps} {seed} {out} {spec} {trial} {trial_id} {policy.NAME} {task.NAME}; "
                        "docs/own-script.md); the task defaults to 'command'")
    p.add_argument("--cwd", metavar="DIR", help="the folder --cmd runs in (default: this one)")
    p.add_argument("--metric", metavar="NAME", help="the metric to rank by (default: the task's; val_loss for a command)")
    p.add_argument("--evaluator", action="append", metavar="NAME[:k=v,...]",
                   help="run this evaluator at every evaluation of every trial (repeatable; lrbench plugins lists "
                        "them), e.g. multiple-choice:path=builtin:tinylm-mc; its metrics (mc_acc) can be --metric, "
                        "their direction declared by the evaluator")
    p.set_defaults(func=_cmd_tune_checked)


def parse_evaluator(text: str) -> dict[str, Any]:
    """``--evaluator NAME[:k=v,...]`` as ``{"name": NAME, "params": {...}}`` (the one parser, shared with
    ``lrbench study KIND`` and the Study panel)."""
    from lrbench_gui.core.tuning.kinds import parse_evaluator as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise CliError(f"--evaluator {exc}") from None


def _cmd_tune_checked(args: argparse.Namespace) -> int:
    if not args.task and not args.resume and args.cmd is None:
        raise CliError("--task NAME is required (or --cmd TEMPLATE, or --resume STUDY_ID)")
    return _cmd_tune(args)
