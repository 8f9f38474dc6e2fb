"""``lrbench horizon``, ``lrbench path-switch`` and ``lrbench merge``: the three LLM methods beyond
LRBench++, each a study of its tuner plugin (``horizon``, ``path-switch``, ``merge``), recorded in
the database like any study and resumable with ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from lrbench_gui.cli import CliError, print_json
from lrbench_gui.cli.tune import _open_db, _Progress, _split_sets, run_study_blocking

__all__ = ["add_parser"]

#: AdamW as the LLM papers (and ../shared/MINIATURES.md) train: betas 0.9/0.95, weight decay 0.1
LM_OPTIMIZER = {"weight_decay": 0.1, "betas": [0.9, 0.95]}


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{what} {text!r}: expected numbers separated by commas") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{what} {text!r}: expected whole numbers separated by commas") from None


def _study(args: argparse.Namespace, db: Any, tuner: str, tuner_params: dict[str, Any], name: str,
           budget_steps: int, **extra: Any) -> Any:
    from lrbench_gui.core.registry import UnknownName
    from lrbench_gui.core.tuning.study import Study, StudyConfig

    if args.resume:
        found = db.get(args.resume, "studies")
        if found is None:
            raise CliError(f"no study {args.resume!r} in {db.path} (lrbench db list shows the studies)")
        config = StudyConfig.model_validate(found["extra"]["config"])
        if config.tuner != tuner:
            raise CliError(f"study {args.resume} is a {config.tuner} study, not {tuner}")
    else:
        sets = _split_sets(args.set)
        try:
            config = StudyConfig(
                task=args.task, task_params={**extra.pop("task_params", {}), **sets["task"]}, tuner=tuner,
                tuner_params={**tuner_params, **sets["tuner"]}, policies=["fixed"], budget_steps=max(1, budget_steps),
                trials=1, parallel=args.parallel, batch_size=args.batch_size, seed=args.seed, name=args.name or name,
                optimizer={**extra.pop("optimizer", {}), **sets["optim"]}, **extra,
            )
        except Exception as exc:  # pydantic names the field
            raise CliError(f"study: {str(exc).splitlines()[0]}; {' '.join(str(exc).splitlines()[1:3])}") from None
    try:
        study = Study(config, db=db)
    except (UnknownName, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.resume:
        n = study.resume()
        print(f"resuming study {config.study_id}: {n} finished trials replayed", file=sys.stderr)
    return study


def _drive(study: Any, args: argparse.Namespace) -> dict[str, Any]:
    progress = _Progress(study, args.json)
    try:
        run_study_blocking(study, progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"stopped; resume with: lrbench {args.command} --resume {study.config.study_id}", file=sys.stderr)
        raise
    progress.close()
    return study.tuner.summary_json()


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


# horizon


def _cmd_horizon(args: argparse.Namespace) -> int:
    from lrbench_gui.cli.method_plots import plot_horizon

    db = _open_db(args.db)
    horizons = _ints(args.horizons, "--horizons")
    params: dict[str, Any] = {"horizons": horizons, "lr_min": args.lr_min,
                              "lr_max": args.lr_max, "points": args.points, "seeds": args.seeds,
                              "widen": args.widen, "policy": args.policy, "warmup": args.warmup,
                              "target_steps": args.target_steps, "check": args.check}
    study = _study(args, db, "horizon", params, f"horizon on {args.task}", max(horizons or [1]),
                   optimizer=LM_OPTIMIZER)
    s = _drive(study, args)
    if args.output:
        plot_horizon(s, args.output, title=f"token-horizon LR transfer on {study.config.task}")
    if args.json:
        print_json({"study": study.config.study_id, **s})
        return 0
    print(f"{'steps':>7} {'tokens':>10} {'best LR':>9} {'LR*':>9} {'fit':>9} {'bracketed':>9} {'best loss':>9}")
    for r in s["horizons"]:
        print(f"{r['steps']:>7} {r['tokens']:>10.0f} {_fmt(r['best_lr'], '.3g'):>9} {_fmt(r['lr_star'], '.3g'):>9} "
              f"{r['method']:>9} {str(r['bracketed']):>9} {_fmt(r['best_loss']):>9}")
    law = s.get("power_law")
    if law:
        band = law.get("beta_band")
        band_text = f", 90% band [{band[0]:.3f}, {band[1]:.3f}] by {law['band_method']}" if band else ""
        print(f"\npower law: LR*(D) = {law['B']:.4g} * D^-{law['beta']:.4f}{band_text}")
    z = s.get("zero_overhead")
    if z:
        print(f"zero-overhead rule: beta fixed at {z['beta']}, B from the {z['from_steps']}-step sweep")
    if s.get("target"):
        t = s["target"]
        print(f"target {t['steps']} steps ({t['tokens']:.3g} tokens): LR {_fmt(t.get('lr'), '.3g')} "
              f"(band {t.get('band') and [round(x, 6) for x in t['band']]}); zero-overhead rule "
              f"{_fmt(t.get('zero_overhead_lr'), '.3g')}")
    h = s.get("holdout")
    if h:
        print(f"held-out horizon {h['steps']} steps: predicted {_fmt(h['predicted_lr'], '.3g')}, measured LR* "
              f"{_fmt(h.get('measured_lr_star'), '.3g')} (x{_fmt(h.get('ratio'), '.2f')}); loss at the prediction "
              f"{_fmt(h.get('loss_at_predicted'))} vs best {_fmt(h.get('best_grid_loss'))} "
              f"({_fmt(h.get('loss_gap'), '+.2%')})")
    for w in s.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    print(f"\nstudy {study.config.study_id} recorded in {db.path}" + (f"; plot: {args.output}" if args.output else ""))
    return 0


# path switching


def _cmd_path_switch(args: argparse.Namespace) -> int:
    from lrbench_gui.cli.method_plots import plot_path_switch

    db = _open_db(args.db)
    params = {"versions": args.versions, "chunk_steps": args.chunk_steps, "lr": args.lr,
              "fractions": _floats(args.fractions, "--fractions"), "decay": args.decay,
              "branch_data": args.branch_data,
              "scratch": not args.no_scratch, "continued": not args.no_continued,
              "branch_warmup": args.branch_warmup}
    study = _study(args, db, "path-switch", params, f"path switching on {args.task}", args.chunk_steps,
                   optimizer=LM_OPTIMIZER)
    s = _drive(study, args)
    if args.output:
        plot_path_switch(s, args.output, title=f"LR path switching on {study.config.task}")
    if args.json:
        print_json({"study": study.config.study_id, **s})
        return 0
    print(f"{'method':<44} {'final val loss':>14} {'vs scratch':>10} {'steps':>8} {'tokens':>11}  per version")
    for m in s["methods"].values():
        per = " ".join(_fmt(r["val_loss"], ".4f") for r in m["releases"])
        print(f"{m['label']:<44} {_fmt(m['final_val_loss'], '.4f'):>14} {_fmt(m.get('vs_scratch'), '+.2%'):>10} "
              f"{m['total_steps']:>8} {m['total_tokens']:>11}  {per}")
    for w in s.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    print(f"\nstudy {study.config.study_id} recorded in {db.path}" + (f"; plot: {args.output}" if args.output else ""))
    return 0


# merging


def _checkpoints_of(db: Any, trial_id: str) -> tuple[dict[str, Any], list[str]]:
    rec = db.get(trial_id, "trials")
    if rec is None:
        raise CliError(f"no trial {trial_id!r} in {db.path} (lrbench db list trials shows them)")
    files = [c for c in (rec.get("extra") or {}).get("checkpoints") or [] if str(c).endswith(".safetensors")]
    files = [c for c in files if Path(c).is_file()]
    if len(files) < 2:
        raise CliError(f"trial {trial_id} has {len(files)} checkpoint file(s) on this machine; merging needs two "
                       "(run it with checkpoints, e.g. lrbench run ... --checkpoint-every 128)")
    return rec, files


def _cmd_merge(args: argparse.Namespace) -> int:
    from lrbench_gui.cli.method_plots import plot_merge

    db = _open_db(args.db)
    task, task_params = args.task, {}
    if args.resume:
        later = earlier = ""
    elif args.trial:
        rec, files = _checkpoints_of(db, args.trial)
        try:
            later = files[args.pair]
        except IndexError:
            raise CliError(f"--pair {args.pair}: trial {args.trial} has {len(files)} checkpoints") from None
        i = files.index(later)
        if i == 0:
            raise CliError(f"--pair {args.pair} is the first checkpoint: it has no earlier neighbour")
        earlier = files[i - 1]
        task = task or rec["task"]
        task_params = {k: v for k, v in (rec.get("task_params") or {}).items()
                       if k not in ("init_from", "version_schedule", "version_steps")}
    elif args.later and args.earlier:
        later, earlier = args.later, args.earlier
        for f in (later, earlier):
            if not Path(f).is_file():
                raise CliError(f"checkpoint {f} does not exist")
    else:
        raise CliError("say which checkpoints: --trial TRIAL_ID [--pair -1], or --later FILE --earlier FILE")
    if not task and not args.resume:
        raise CliError("--task NAME is required with --later/--earlier")
    args.task = task
    params = {"later": later, "earlier": earlier, "alpha": args.alpha, "evaluations": args.evaluations,
              "grid": args.grid, "write": not args.no_write}
    study = _study(args, db, "merge", params, f"merge on {task}", 1, task_params=task_params)
    s = _drive(study, args)
    if args.out and s.get("model_dir"):
        dest = Path(args.out)
        if dest.exists() and any(dest.iterdir()):
            raise CliError(f"--out {dest} exists and is not empty; the merged model stays in {s['model_dir']}")
        shutil.copytree(s["model_dir"], dest, dirs_exist_ok=True)
        s["model_dir"] = str(dest)
    if s.get("model_dir"):
        report = Path(s["model_dir"]) / "merge-report.json"
        tmp = report.with_suffix(".tmp")
        tmp.write_text(json.dumps({"study": study.config.study_id, **s}, indent=2))
        tmp.replace(report)
    if args.output:
        plot_merge([(f"{Path(s['earlier']).stem} -> {Path(s['later']).stem}", s)], args.output)
    if args.json:
        print_json({"study": study.config.study_id, **s})
        return 0
    print(f"{'#':>2} {'lambda':>8} {s['metric']:>12}")
    for e in s["evaluations"]:
        print(f"{e['order'] + 1:>2} {e['lambda']:>8.4f} {e['value']:>12.6f}")
    if s.get("best"):
        b = s["best"]
        gain = s.get("gain_vs_better_endpoint")
        print(f"\nbest lambda {b['lambda']:.4f}: {s['metric']} {b['value']:.6f}"
              + (f", {gain:+.3%} vs the better checkpoint" if gain is not None else ""))
    if s.get("grid_best"):
        print(f"grid of {len(s['grid'])}: best lambda {s['grid_best']['lambda']:.4f} ({s['grid_best']['value']:.6f}); "
              f"BO within {s['bo_vs_grid']:+.4%} of it, reached (0.01%) after "
              f"{s.get('evaluations_to_reach_grid') or '-'} evaluations")
    if s.get("model_dir"):
        print(f"merged model written to {s['model_dir']} (with merge-report.json)")
    for w in s.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    print(f"study {study.config.study_id} recorded in {db.path}" + (f"; plot: {args.output}" if args.output else ""))
    return 0


def _common(p: argparse.ArgumentParser, batch: int, task: str | None = "tinylm-pretrain") -> None:
    p.add_argument("--task", default=task, help=f"the task (default {task})" if task else "the task")
    p.add_argument("--set", action="append", default=[], metavar="task.K=V|tuner.K=V|optim.K=V")
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--parallel", type=int, default=2, help="trials side by side (CPU workers or GPUs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="a name for the study")
    p.add_argument("--db", metavar="PATH", help="the database file (default: $LRBENCH_DB or the data folder)")
    p.add_argument("--resume", metavar="STUDY_ID", help="resume an interrupted study from the database")
    p.add_argument("-o", "--output", metavar="PNG", help="write the study's figure")
    p.add_argument("--json", action="store_true")


def add_parser(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("horizon", help="LR transfer across token horizons: sweeps, LR*(D) = B*D^-beta, prediction")
    _common(h, batch=8)
    h.add_argument("--horizons", default="448,896,1792", help="training lengths swept, in steps (comma-separated)")
    h.add_argument("--lr-min", type=float, default=3.5e-3)
    h.add_argument("--lr-max", type=float, default=2.8e-2)
    h.add_argument("--points", type=int, default=7, help="LRs on the grid")
    h.add_argument("--seeds", type=int, default=2)
    h.add_argument("--widen", type=int, default=2, help="LRs added beyond an end of the grid when the best is there")
    h.add_argument("--policy", choices=["cosine", "linear", "constant_warmup"], default="cosine")
    h.add_argument("--warmup", type=float, default=0.05, help="warmup as a fraction of each trial")
    h.add_argument("--target-steps", type=int, default=0, help="predict the LR of a run this long")
    h.add_argument("--check", action="store_true", help="hold out the longest horizon and run its prediction")
    h.set_defaults(func=_cmd_horizon)

    s = sub.add_parser("path-switch", help="LR path switching for version updates, against retraining baselines")
    _common(s, batch=16)
    s.add_argument("--versions", type=int, default=4)
    s.add_argument("--chunk-steps", type=int, default=640, help="steps of one version's data chunk")
    s.add_argument("--lr", type=float, default=7e-3, help="the maximal LR")
    s.add_argument("--fractions", default="0.5", help="branch lengths as fractions of a chunk, e.g. 0.25,0.5")
    s.add_argument("--branch-data", choices=["replay", "newest", "both"], default="replay",
                   help="what branches train on: all chunks so far (replay), the newest only, or both")
    s.add_argument("--decay", choices=["cosine", "linear"], default="cosine")
    s.add_argument("--branch-warmup", type=float, default=0.0, help="warmup of a branch, fraction of its steps")
    s.add_argument("--no-scratch", action="store_true", help="skip the retrain-from-scratch baseline")
    s.add_argument("--no-continued", action="store_true", help="skip the continued-pre-training baseline")
    s.set_defaults(func=_cmd_path_switch)

    m = sub.add_parser("merge", help="merge two adjacent checkpoints, lambda by GP Bayesian optimization")
    _common(m, batch=32, task=None)
    m.add_argument("--trial", help="a trial in the database whose checkpoints to merge")
    m.add_argument("--pair", type=int, default=-1, help="which checkpoint is the later one (default -1: the last)")
    m.add_argument("--later", help="the later checkpoint file (instead of --trial)")
    m.add_argument("--earlier", help="the earlier checkpoint file")
    m.add_argument("--alpha", type=float, default=0.0, help="lowest lambda searched")
    m.add_argument("--evaluations", type=int, default=6, help="held-out evaluations the BO may spend")
    m.add_argument("--grid", type=int, default=0, help="also evaluate a dense grid of this many lambdas")
    m.add_argument("--no-write", action="store_true", help="do not write the merged model")
    m.add_argument("--out", metavar="DIR", help="copy the merged model folder here")
    m.set_defaults(func=_cmd_merge)
