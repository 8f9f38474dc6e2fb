"""Precision and the LR study: does a trial in reduced precision reach fp32's loss?

A tiny Llama is pre-trained by a ``tinylm-pretrain`` trial and saved; then the same full
fine-tune (``causal-lm-finetune``, lora=false, a fixed LR of 2e-5, the issue's setting) runs on
the CPU in each precision. At that LR most updates are smaller than bfloat16's resolution of a
weight, so ``bf16-true`` (bf16 weights and optimizer state) loses them and lands off fp32's loss:
an LR study in it would be biased. ``bf16-mixed`` keeps float32 master weights and only computes
in bf16; it must land within 2% of fp32 (``fp16-mixed`` likewise, with its loss scaler).

Every trial is a real ``python -m lrbench_gui.trainer`` subprocess. Figures: each precision's final
val loss, its gap to fp32 in percent, and its seconds. ``--quick`` runs fewer steps (and no
fp16-mixed) and writes nothing into the repository; the full run also writes
``docs/figures/precision-summary.json``.

Usage: python bench/precision.py [--quick]; the last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]


def _run(trial: dict) -> tuple[dict, list]:
    from lrbench_gui.core.runs.runner import LocalScheduler
    from lrbench_gui.core.runs.trial import load_trial

    events: list = []
    sched = LocalScheduler(1, on_event=lambda tid, e: events.append(e))
    sched.submit(load_trial(trial))
    (record,) = sched.run().values()
    if record["status"] != "completed":
        raise SystemExit(f"trial {trial['task']} ended {record['status']}: {record['notes'][-600:]}")
    return record, events


def pretrain(folder: Path, steps: int, threads: int) -> tuple[str, Path]:
    """A saved tiny Llama and the instruction data it is fine-tuned on (a shifted corpus)."""
    from lrbench_builtins.tasks import _corpus

    _, events = _run({
        "task": "tinylm-pretrain", "task_params": {"context": 64, "val_tokens": 4096},
        "policy": {"name": "cosine", "params": {"lr": 5e-3, "warmup_steps": 10}}, "budget": {"steps": steps},
        "batch_size": 16, "save_model": True, "output_dir": str(folder / "pretrain"), "threads": threads,
    })
    model = next(e["path"] for e in events if e.type == "checkpoint" and e.get("kind") == "model")
    data = folder / "shifted.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _corpus.instruction_records(5, 2, 300)))
    return model, data


def finetune_trial(model: str, data: Path, precision: str, steps: int, threads: int, out: Path) -> dict:
    """The issue's full fine-tune: lora=false, fixed LR 2e-5, batch 8, in ``precision``."""
    return {
        "task": "causal-lm-finetune",
        "task_params": {"model_path": model, "data_path": str(data), "lora": False, "max_length": 96,
                        "template": "alpaca-short"},
        "policy": {"name": "fixed", "params": {"lr": 2e-5}}, "budget": {"steps": steps}, "batch_size": 8,
        "precision": precision, "threads": threads, "output_dir": str(out / precision),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a shorter pre-training, no fp16-mixed (about a minute)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    pre_steps, steps = (60, 30) if args.quick else (120, 30)
    precisions = ["fp32", "bf16-mixed", "bf16-true"] + ([] if args.quick else ["fp16-mixed"])
    figures: dict = {"bench": "precision", "quick": args.quick, "pretrain_steps": pre_steps, "steps": steps,
                     "lr": 2e-5, "threads": args.threads, "load": round(os.getloadavg()[0], 2), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="lrbench-precision-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        model, data = pretrain(folder, pre_steps, args.threads)
        print(f"pre-trained the tiny Llama in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        start, _ = _run(finetune_trial(model, data, "fp32", 0, args.threads, folder))  # evaluates only
        figures["start_val_loss"] = round(start["metrics"]["val_loss"], 5)
        for p in precisions:
            t0 = time.perf_counter()
            record, events = _run(finetune_trial(model, data, p, steps, args.threads, folder))
            figures["runs"][p] = {"val_loss": round(record["metrics"]["val_loss"], 5),
                                  "seconds": round(time.perf_counter() - t0, 1),
                                  "skipped_steps": sum(1 for e in events if e.type == "step" and e.get("skipped"))}
    base = figures["runs"]["fp32"]["val_loss"]
    print(f"before fine-tuning: val loss {figures['start_val_loss']:.4f}")
    for p, run in figures["runs"].items():
        run["gap_pct"] = round(100 * (run["val_loss"] - base) / base, 2)
        print(f"{p:>11}: val loss {run['val_loss']:.4f}  ({run['gap_pct']:+.2f}% vs fp32)  {run['seconds']:.1f} s")
    figures["bf16_mixed_within_2pct"] = abs(figures["runs"]["bf16-mixed"]["gap_pct"]) < 2
    if not args.quick:
        (ROOT / "docs" / "figures" / "precision-summary.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
