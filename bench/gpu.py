"""GPU figures in one unattended command: throughput, the LR actually applied, memory, precision.

On one CUDA GPU it builds a ~100 M-parameter Llama from a ``LlamaConfig`` (random weights, no
download) and a synthetic text corpus (tinylm's language), then fine-tunes it, full and LoRA,
with the same data, batch, sequence length, policy and precision (bf16-mixed) through:

- the lrbench torch trainer (``python -m lrbench_gui.trainer``; also once in fp32),
- the lrbench DeepSpeed trainer at ZeRO 2 and ZeRO 3,
- Hugging Face ``Trainer`` + DeepSpeed at ZeRO 2 and 3 (and once without DeepSpeed), following
  the same policy through ``lrbench_gui.integrations.hf.FollowPolicy``.

Each run is its own process, started through a small wrapper in this file that installs a global
optimizer step pre-hook (the LR each optimizer step really used), notes whether the first forward
ran under autocast and in which weight dtype, captures the config handed to
``deepspeed.initialize``, and writes ``torch.cuda.max_memory_allocated()`` at the end. The figures:
steady tokens/s (the last 80 % of the steps), DeepSpeed trainer / HF Trainer ratios (goal >= 0.95),
the largest |LR of the step event - policy lr_at(step)| and |applied LR - lr_at(step)| over every
step, the peak GPU memory per run, and bf16-mixed against fp32.

A bare GPU machine may lack what lrbench and DeepSpeed need: the script installs what is missing
(or older) from the wheels in ``bench/wheels/`` (made by ``bench/gpu_wheels.sh``) into
``WORK/site``, with no network, and puts it, the repo and ``plugins/`` on the path of itself and
of every run. What cannot be installed or run becomes a reason in the JSON; the rest still runs.
Runs go in order of importance and stop at the time budget, so the JSON line always comes.

Usage: python3 bench/gpu.py OUT_DIR [--quick] [--cpu-smoke] [--runs a,b] [--budget-s S] [--work DIR]

OUT_DIR gets ``gpu.json`` (the JSON line) and ``gpu-log.txt`` (the driver's log and each run's
stderr tail), nothing else: the model, the data, ``site/`` and the runs' folders go to ``--work``
(a temporary folder by default, removed at the end unless ``--keep``). The last line printed is
the JSON object. Without a GPU it prints ``{"gpu": null, "reason": ...}`` and exits 0.
``--cpu-smoke`` runs the same driver on the CPU with a tiny model and 3 steps per run (what needs
CUDA, the memory peak, is reported as null and said so), to show the GPU run will not stop on a slip.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "bench" / "wheels"
#: the DeepSpeed trainer against HF Trainer + DeepSpeed: at least this share of its tokens/s
DS_VS_HF_GOAL = 0.95
#: distributions whose wheels must be installed together (pydantic pins its core exactly)
TOGETHER = {"pydantic": ["pydantic-core"], "pydantic-core": ["pydantic"]}
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass(frozen=True)
class Shape:
    """The model and the workload of one mode."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    seq: int
    batch: int
    steps: int
    warmup: int


GPU_SHAPE = Shape(hidden=768, layers=12, heads=12, ffn=2048, vocab=16384, seq=512, batch=16, steps=80, warmup=8)
QUICK_SHAPE = Shape(hidden=768, layers=12, heads=12, ffn=2048, vocab=16384, seq=512, batch=16, steps=40, warmup=4)
SMOKE_SHAPE = Shape(hidden=32, layers=2, heads=2, ffn=64, vocab=128, seq=32, batch=4, steps=3, warmup=1)


@dataclass(frozen=True)
class Run:
    """One measured run: who trains (``lrbench`` or ``hf``), with which backend and ZeRO stage."""

    name: str
    kind: str  # "lrbench" | "hf"
    deepspeed: bool
    zero: int
    lora: bool
    precision: str = "bf16-mixed"


#: in order of importance: the budget cuts from the end
RUNS = [
    Run("torch-full", "lrbench", False, 0, False),
    Run("torch-full-fp32", "lrbench", False, 0, False, "fp32"),
    Run("ds2-full", "lrbench", True, 2, False),
    Run("hf-ds2-full", "hf", True, 2, False),
    Run("ds3-full", "lrbench", True, 3, False),
    Run("hf-ds3-full", "hf", True, 3, False),
    Run("torch-lora", "lrbench", False, 0, True),
    Run("ds2-lora", "lrbench", True, 2, True),
    Run("hf-ds2-lora", "hf", True, 2, True),
    Run("ds3-lora", "lrbench", True, 3, True),
    Run("hf-ds3-lora", "hf", True, 3, True),
    Run("hf-full", "hf", False, 0, False),
]
QUICK_DROPS = {"ds3-lora", "hf-ds3-lora", "hf-full"}


def policy(lora: bool, shape: Shape) -> dict[str, Any]:
    return {"name": "cosine", "params": {"lr": 1e-3 if lora else 3e-4, "min_lr": 0.0, "warmup_steps": shape.warmup}}


class Log:
    """The driver's log: stderr and ``gpu-log.txt``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("a", encoding="utf-8")
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:7.1f}s] {msg}"
        print(line, file=sys.stderr, flush=True)
        self.fh.write(line + "\n")
        self.fh.flush()

    def block(self, title: str, text: str, limit: int = 6000) -> None:
        text = text[-limit:]
        self.fh.write(f"----- {title} -----\n{text}\n----- end {title} -----\n")
        self.fh.flush()


def _short(exc: BaseException | str, limit: int = 300) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----- the machine: a GPU, and what is installed ---------------------------------------------

def find_driver() -> str | None:
    """Why there is surely no NVIDIA GPU here (no driver, no nvidia-smi), or None: maybe one."""
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists():
        return None
    return "no NVIDIA driver on this machine (no nvidia-smi, /proc/driver/nvidia or /dev/nvidia0)"


_PROBE = r"""
import json, sys
out = {"python": sys.version.split()[0]}
for name in ("torch", "transformers", "peft", "accelerate", "deepspeed", "pydantic", "tinydb", "pluggy"):
    try:
        out[name] = __import__(name).__version__
    except Exception as exc:
        out[name] = None
        out.setdefault("missing", {})[name] = f"{type(exc).__name__}: {exc}"[:300]
try:
    import torch
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": p.name, "count": torch.cuda.device_count(), "memory_gib": round(p.total_memory / 2**30, 1),
                      "capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda,
                      "bf16": bool(torch.cuda.is_bf16_supported())}
except Exception as exc:
    out["cuda_error"] = f"{type(exc).__name__}: {exc}"[:300]
try:
    from lrbench_gui.plugins import get_registry
    reg = get_registry()
    out["lrbench_tasks"] = sorted(reg.items["task"])
    out["lrbench_problems"] = [f"{p.plugin}: {p.message}"[:200] for p in reg.problems]
except Exception as exc:
    out["lrbench_error"] = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps(out))
"""


def start_probe(env: dict[str, str]) -> subprocess.Popen:
    """A fresh process with ``env`` that tells the versions, the GPU and whether lrbench loads."""
    return subprocess.Popen([sys.executable, "-c", _PROBE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def finish_probe(proc: subprocess.Popen, timeout: float = 180) -> dict[str, Any]:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"probe_error": f"the probe took over {timeout:.0f} s"}
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"probe_error": _short(stderr or f"exit {proc.returncode}, no output")}
    return json.loads(lines[-1])


def _wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else -1 for x in re.split(r"[.+-]", v)[:4])


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def plan_installs(wheels: list[Path], installed: Any = _installed) -> dict[str, tuple[str, str]]:
    """``{dist: (version, why)}`` of the wheels to install: a distribution that is missing, or a
    pure-Python one older than the wheel (binary ones are kept as the machine has them), plus
    the partners of :data:`TOGETHER` of any that goes in."""
    offered: dict[str, tuple[str, bool]] = {}
    for w in wheels:
        dist, version = _wheel_name(w)
        offered.setdefault(dist, (version, w.name.endswith("-none-any.whl")))
    plan: dict[str, tuple[str, str]] = {}
    for dist, (version, pure) in sorted(offered.items()):
        have = installed(dist)
        if have is None:
            plan[dist] = (version, "missing")
        elif pure and _version_key(have) < _version_key(version):
            plan[dist] = (version, f"{have} is older")
    for dist in list(plan):
        for partner in TOGETHER.get(dist, []):
            if partner in offered and partner not in plan:
                plan[partner] = (offered[partner][0], f"goes with {dist}")
    return plan


def _unzip_wheel(wheel: Path, site: Path) -> None:
    """Install a wheel without pip: unpack it, lifting ``*.data/purelib|platlib`` to the top."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    for data in site.glob("*.data"):
        for sub in ("purelib", "platlib"):
            if (data / sub).is_dir():
                for item in (data / sub).iterdir():
                    target = site / item.name
                    if not target.exists():
                        item.rename(target)
        shutil.rmtree(data, ignore_errors=True)


def _compatible(wheel: Path) -> bool:
    """Whether a wheel's tags fit this interpreter (for the no-pip path)."""
    try:
        from packaging.tags import sys_tags
        from packaging.utils import parse_wheel_filename
    except ImportError:
        return wheel.name.endswith("-none-any.whl")
    supported = set(sys_tags())
    return bool(set(parse_wheel_filename(wheel.name)[3]) & supported)


def install_missing(site: Path, log: Log, wheels_dir: Path = WHEELS) -> tuple[list[str], list[str]]:
    """Install what is missing from ``wheels_dir`` into ``site``: (installed, reasons)."""
    wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir.is_dir() else []
    if not wheels:
        return [], [f"no wheels in {wheels_dir} (run bench/gpu_wheels.sh on a machine with pip's network): "
                    "nothing missing could be installed"]
    plan = plan_installs(wheels)
    if not plan:
        return [], []
    site.mkdir(parents=True, exist_ok=True)
    log("installing " + ", ".join(f"{d}=={v} ({why})" for d, (v, why) in plan.items()))
    specs = [f"{d}=={v}" for d, (v, _) in plan.items()]
    has_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
    reasons: list[str] = []
    done: list[str] = []
    if has_pip:
        base = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--find-links", str(wheels_dir),
                "--target", str(site)]
        out = subprocess.run(base + specs, capture_output=True, text=True)
        if out.returncode == 0:
            return specs, []
        log.block("pip install", out.stdout + out.stderr)
        for spec in specs:  # one at a time: keep what installs, name what does not
            one = subprocess.run(base + [spec], capture_output=True, text=True)
            if one.returncode == 0:
                done.append(spec)
            else:
                last = (one.stderr.strip().splitlines() or ["no message"])[-1]
                reasons.append(f"{spec}: pip could not install it ({_short(last)})")
        return done, reasons
    reasons.append("pip is not available to this python: wheels unpacked by hand (no entry points or scripts)")
    for spec in specs:
        dist, version = spec.split("==")
        fits = [w for w in wheels if _wheel_name(w) == (dist, version) and _compatible(w)]
        if not fits:
            reasons.append(f"{spec}: no wheel fits Python {sys.version.split()[0]} in {wheels_dir}")
            continue
        try:
            _unzip_wheel(fits[0], site)
            done.append(spec)
        except Exception as exc:
            reasons.append(f"{spec}: {_short(exc)}")
    return done, reasons


def entry_points_text(pyproject: Path) -> str:
    """The ``[lrbench]`` entry points of ``pyproject.toml`` as an ``entry_points.txt``."""
    lines, inside = ["[lrbench]"], False
    for raw in pyproject.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == "[project.entry-points.lrbench]"
            continue
        m = re.match(r'^([A-Za-z0-9_.\-]+)\s*=\s*"([^"]+)"', line) if inside else None
        if m:
            lines.append(f"{m.group(1)} = {m.group(2)}")
    return "\n".join(lines) + "\n"


def ensure_lrbench_metadata(site: Path, pyproject: Path = ROOT / "pyproject.toml", installed: Any = _installed) -> bool:
    """Make the built-in plugins findable when lrbench runs from its source tree without being
    installed: a ``dist-info`` with its entry points in ``site``. True if it wrote one."""
    if installed("lrbench-gui") is not None:
        return False
    text = pyproject.read_text(encoding="utf-8")
    version = (re.search(r'^version\s*=\s*"([^"]+)"', text, re.M) or [None, "0"])[1]
    info = site / f"lrbench_gui-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lrbench-gui\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points_text(pyproject))
    return True


def child_env(site: Path, work: Path, cpu: bool) -> dict[str, str]:
    paths = [str(site), str(ROOT), str(ROOT / "plugins")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", LRBENCH_DATA_DIR=str(work / "lrbench-data"),
               LRBENCH_PLUGINS_DIR=str(work / "no-plugins"), TORCH_EXTENSIONS_DIR=str(work / "torch_extensions"),
               LRBENCH_TRIAL_WATCHDOG="0")
    env.pop("LRBENCH_LOAD_PLUGINS", None)
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    return env


# ----- the workload --------------------------------------------------------------------------

def prepare(work: Path, shape: Shape, seed: int = 0) -> dict[str, Any]:
    """The model folder (random weights, the character tokenizer) and the text file."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lrbench_builtins.tasks import _corpus
    from lrbench_builtins.tasks import _lm_common as lm

    vocab = lm.char_vocab()
    pad, _unk, bos, eos = (_corpus.SPECIAL_TOKENS.index(t) for t in _corpus.SPECIAL_TOKENS)
    config = LlamaConfig(
        vocab_size=max(shape.vocab, len(vocab)), hidden_size=shape.hidden, intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.heads,
        max_position_embeddings=shape.seq, tie_word_embeddings=True, rms_norm_eps=1e-5,
        pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, use_cache=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder = work / "model"
    model.save_pretrained(folder)
    lm.char_tokenizer(vocab).save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    del model
    # every training block full (max_length tokens); enough text for the run and a validation share
    chars = int(shape.steps * shape.batch * shape.seq * 1.2) + 40 * shape.seq
    data = work / "data.txt"
    data.write_text(_corpus.generate_text(seed, 0, chars), encoding="utf-8")
    return {"params": params, "hidden": shape.hidden, "layers": shape.layers, "heads": shape.heads,
            "ffn": shape.ffn, "vocab": config.vocab_size, "tied_embeddings": True, "chars": chars,
            "model_path": str(folder), "data_path": str(data)}


def task_params(model: dict[str, Any], shape: Shape, lora: bool) -> dict[str, Any]:
    return {"model_path": model["model_path"], "data_path": model["data_path"], "data_format": "text",
            "max_length": shape.seq, "val_fraction": 0.05, "max_val_samples": 32, "lora": lora,
            "lora_r": 16, "lora_alpha": 32.0, "lora_dropout": 0.0, "lora_target_modules": LORA_TARGETS}


def trial_file(run: Run, model: dict[str, Any], shape: Shape, folder: Path, device: str) -> dict[str, Any]:
    return {
        "trial_id": f"gpu-{run.name}", "task": "causal-lm-finetune", "task_params": task_params(model, shape, run.lora),
        "policy": policy(run.lora, shape), "optimizer": {"name": "adamw", "weight_decay": 0.0},
        "budget": {"steps": shape.steps}, "batch_size": shape.batch, "max_grad_norm": 1.0, "seed": 0,
        "device": device, "precision": run.precision, "backend": "deepspeed" if run.deepspeed else "torch",
        "deepspeed": {"zero_stage": run.zero}, "threads": 0 if device == "cuda" else 1, "log_every": 1,
        "output_dir": str(folder),
    }


def hf_config(run: Run, model: dict[str, Any], shape: Shape, folder: Path, device: str) -> dict[str, Any]:
    return {"task_params": task_params(model, shape, run.lora), "policy": policy(run.lora, shape),
            "steps": shape.steps, "batch": shape.batch, "precision": run.precision, "seed": 0, "device": device,
            "deepspeed": run.deepspeed, "zero": run.zero, "max_grad_norm": 1.0, "weight_decay": 0.0,
            "threads": 0 if device == "cuda" else 1, "output_dir": str(folder)}


# ----- inside each run's process -------------------------------------------------------------

class Probes:
    """What the run's process reports about itself: the LR of every optimizer step, the first
    forward's autocast and weight dtype, the DeepSpeed config, the GPU memory peak."""

    def __init__(self) -> None:
        import torch
        from torch.nn.modules.module import register_module_forward_pre_hook
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self.torch = torch
        self.applied: list[list[float]] = []
        self.first_forward: dict[str, Any] | None = None
        self.ds_config: Any = None
        register_optimizer_step_pre_hook(self._step)
        self._fwd = register_module_forward_pre_hook(self._forward)

    def _step(self, opt: Any, args: Any, kwargs: Any) -> None:
        # one call may cover only some groups (ZeRO steps the base optimizer once per group)
        self.applied.append([float(g["lr"]) / float(g.get("lr_scale", 1.0)) for g in opt.param_groups])

    def _forward(self, module: Any, args: Any) -> None:
        torch = self.torch
        if not module.training or next(module.children(), None) is not None:
            return  # the first training forward of a leaf (inside any autocast a wrapper enters)
        param = next(module.parameters(recurse=False), None)
        if param is None:
            return
        self._fwd.remove()
        kind = param.device.type
        try:
            on = torch.is_autocast_enabled(kind)
            dtype = torch.get_autocast_dtype(kind) if on else None
        except TypeError:  # an older torch: the CUDA question only
            on = torch.is_autocast_enabled()
            dtype = torch.get_autocast_gpu_dtype() if on else None
        self.first_forward = {"autocast": str(dtype).replace("torch.", "") if on else None,
                              "param_dtype": str(param.dtype).replace("torch.", ""), "device": kind,
                              "module": type(module).__name__}

    def watch_deepspeed(self) -> None:
        try:
            import deepspeed
        except Exception:
            return
        original = deepspeed.initialize

        def initialize(*args: Any, **kwargs: Any) -> Any:
            config = kwargs.get("config", kwargs.get("config_params"))
            try:
                self.ds_config = json.loads(json.dumps(config, default=str))
            except Exception:
                self.ds_config = str(config)[:2000]
            return original(*args, **kwargs)

        deepspeed.initialize = initialize

    def stats(self, **extra: Any) -> dict[str, Any]:
        torch = self.torch
        out: dict[str, Any] = {"applied_lrs": self.applied, "first_forward": self.first_forward,
                               "ds_config": self.ds_config, **extra}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["max_memory_allocated"] = torch.cuda.max_memory_allocated()
            out["max_memory_reserved"] = torch.cuda.max_memory_reserved()
        return out


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def trial_main(trial: str, stats: str) -> int:
    """A run of the lrbench trainer, as ``python -m lrbench_gui.trainer TRIAL`` does it, probed."""
    probes = Probes()
    if json.loads(Path(trial).read_text()).get("backend") == "deepspeed":
        probes.watch_deepspeed()
    from lrbench_gui.trainer.run import main

    code = main([trial])
    _write_json(Path(stats), probes.stats(exit=code))
    return code


def hf_main(config_path: str, stats: str) -> int:
    """The same fine-tune through Hugging Face ``Trainer`` (+ DeepSpeed), the same task's model,
    samples, collation and loss, following the same policy."""
    cfg = json.loads(Path(config_path).read_text())
    probes = Probes()
    if cfg["deepspeed"]:
        probes.watch_deepspeed()
        for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
            os.environ.setdefault(key, value)
        if "MASTER_PORT" not in os.environ:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        if cfg["device"] == "cpu":  # as the lrbench trainer does: gloo's all-reduce, no compiled CPU op
            import deepspeed.ops

            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from lrbench_builtins.tasks._lm_common import causal_lm_loss
    from lrbench_gui.core.params import validate_params
    from lrbench_gui.core.task import TaskContext
    from lrbench_gui.integrations.hf import FollowPolicy
    from lrbench_gui.plugins import get_registry

    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])  # as the trial's ``threads`` does
    registry = get_registry()
    cls = registry.task("causal-lm-finetune")
    task = cls(validate_params(cls.Params, cfg["task_params"]))
    device = torch.device(cfg["device"])
    set_seed(cfg["seed"])
    folder = Path(cfg["output_dir"])
    model = task.setup(TaskContext(cfg["seed"], device, cfg["batch"], 0, 1, folder,
                                   lambda m: print(m, file=sys.stderr, flush=True)))
    model.config.use_cache = False
    tokens: list[int] = []

    def collate(samples: list[Any]) -> dict[str, Any]:
        batch = task.collate(samples)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Samples(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(task.train)

        def __getitem__(self, i: int) -> Any:
            return task.train[i]

    times: list[float] = []
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    class Clock(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync()  # as the lrbench trainer's float(loss) does at every step
            times.append(time.perf_counter() - self.t0)

    ds = None
    if cfg["deepspeed"]:
        ds = {"train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
              "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
              "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
              "zero_optimization": {"stage": cfg["zero"]}, "zero_allow_untested_optimizer": True,
              "steps_per_print": 10**9, "wall_clock_breakdown": False}
    args = TrainingArguments(
        output_dir=str(folder / "hf"), per_device_train_batch_size=cfg["batch"], max_steps=cfg["steps"],
        learning_rate=cfg["policy"]["params"]["lr"], lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=cfg["weight_decay"], max_grad_norm=cfg["max_grad_norm"], optim="adamw_torch",
        bf16=cfg["precision"] == "bf16-mixed", fp16=cfg["precision"] == "fp16-mixed",
        logging_steps=cfg["steps"], save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False, seed=cfg["seed"],
        use_cpu=device.type == "cpu", deepspeed=ds,
    )

    def loss_fn(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        return causal_lm_loss(outputs.logits, labels)

    trainer = Trainer(model=model, args=args, train_dataset=Samples(), data_collator=collate,
                      compute_loss_func=loss_fn,
                      callbacks=[FollowPolicy(cfg["policy"], cfg["steps"], registry), Clock()])
    out = trainer.train()
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _write_json(Path(stats), probes.stats(
        exit=0, times=times, tokens=tokens[: len(times)], train_loss=float(out.training_loss),
        params=n_params, trainable_params=n_trainable, transformers=__import__("transformers").__version__))
    return 0


# ----- the driver ----------------------------------------------------------------------------

def spawn(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd`` in its own session; its stdout lines with their arrival times, its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    lines: list[tuple[float, str]] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda: [lines.append((time.perf_counter() - t0, x)) for x in proc.stdout],
                                daemon=True),
               threading.Thread(target=lambda: [err.append(x) for x in proc.stderr], daemon=True)]
    for r in readers:
        r.start()
    timed_out = False
    try:
        proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    for r in readers:
        r.join(timeout=10)
    return {"code": proc.returncode, "lines": lines, "stderr": "".join(err), "wall": time.perf_counter() - t0,
            "timed_out": timed_out}


def steady_rate(times: list[float], tokens: list[int]) -> tuple[float | None, float | None]:
    """(tokens/s, ms/step) over the last 80 % of the steps; ``times`` are cumulative seconds at
    each step's end, ``tokens`` the tokens of each step."""
    n = len(times)
    if n < 2:
        return None, None
    w = max(0, min(n - 2, n // 5))
    dt = times[-1] - times[w]
    if dt <= 0:
        return None, None
    return sum(tokens[w + 1 : n]) / dt, 1e3 * dt / (n - 1 - w)


def _max_diff(got: list[float], want: list[float]) -> float | None:
    if not got:
        return None
    return max(abs(a - b) for a, b in zip(got, want))


def applied_check(calls: list[list[float]], want: list[float]) -> dict[str, Any]:
    """The LRs the optimizer's ``step()`` calls saw against the policy: ``calls`` holds each
    call's group LRs; k calls a training step (ZeRO steps once per group) are one step's."""
    out: dict[str, Any] = {"optimizer_step_calls": len(calls), "lr_applied_max_abs_diff": None}
    if not want or not calls or len(calls) % len(want):
        if calls or want:
            out["lr_applied_note"] = f"{len(calls)} optimizer step calls for {len(want)} steps"
        return out
    k = len(calls) // len(want)
    out["lr_applied_max_abs_diff"] = max(abs(lr - want[i // k]) for i, call in enumerate(calls) for lr in call)
    if k > 1:
        out["optimizer_step_calls_per_step"] = k
    return out


def lrbench_figures(res: dict[str, Any], stats: dict[str, Any], want: list[float]) -> dict[str, Any]:
    from lrbench_gui.core.runs.protocol import parse_line

    events = [(t, parse_line(line)) for t, line in res["lines"]]
    events = [(t, e) for t, e in events if e is not None]
    steps = [e for _, e in events if e.type == "step"]
    hello = next((e for _, e in events if e.type == "hello"), None)
    end = next((e for _, e in events if e.type == "end"), None)
    error = next((e for _, e in events if e.type == "error"), None)
    first = next((t for t, e in events if e.type == "step"), None)
    cum = [int(e["tokens"]) for e in steps]
    per_step = [b - a for a, b in zip([0] + cum[:-1], cum)]
    rate, ms = steady_rate([float(e["time"]) for e in steps], per_step)
    out: dict[str, Any] = {
        "status": end["status"] if end else ("timed out" if res["timed_out"] else f"no end event (exit {res['code']})"),
        "steps": len(steps), "tokens_per_s": rate, "ms_per_step": ms,
        "startup_s": first, "wall_s": res["wall"],
        "lr_max_abs_diff": _max_diff([float(e["lr"]) for e in steps], want) if len(steps) == len(want) else None,
    }
    if len(steps) != len(want):
        out["lr_note"] = f"{len(steps)} step events for {len(want)} steps"
    if end:
        out["val_loss"] = (end.get("metrics") or {}).get("val_loss")
        out["final_loss"] = (end.get("metrics") or {}).get("final_loss")
    if hello:
        out.update(params=hello.get("params"), trainable_params=hello.get("trainable_params"),
                   device=hello.get("device"), precision_reported=hello.get("precision"))
    if error:
        out["error"] = _short(error["message"], 400)
    elif not end:
        tail = [x for x in res["stderr"].strip().splitlines() if x.strip()]
        out["error"] = _short(tail[-1] if tail else "no output", 400)
    return out


def hf_figures(res: dict[str, Any], stats: dict[str, Any], want: list[float]) -> dict[str, Any]:
    times, tokens = stats.get("times") or [], stats.get("tokens") or []
    rate, ms = steady_rate(times, tokens)
    ok = res["code"] == 0 and len(times) == len(want)
    out = {"status": "completed" if ok else ("timed out" if res["timed_out"] else f"failed (exit {res['code']})"),
           "steps": len(times), "tokens_per_s": rate, "ms_per_step": ms, "wall_s": res["wall"],
           "final_loss": stats.get("train_loss"), "params": stats.get("params"),
           "trainable_params": stats.get("trainable_params")}
    if not ok:
        tail = [x for x in res["stderr"].strip().splitlines() if x.strip()]
        out["error"] = _short(tail[-1] if tail else "no output", 400)
    return out


def run_one(run: Run, ctx: dict[str, Any], log: Log) -> dict[str, Any]:
    shape, model, env, device = ctx["shape"], ctx["model"], ctx["env"], ctx["device"]
    folder = ctx["work"] / "runs" / run.name
    folder.mkdir(parents=True, exist_ok=True)
    stats_path = folder / "stats.json"
    if run.kind == "lrbench":
        spec = folder / "trial.json"
        _write_json(spec, trial_file(run, model, shape, folder, device))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_trial", str(spec), str(stats_path)]
    else:
        spec = folder / "hf.json"
        _write_json(spec, hf_config(run, model, shape, folder, device))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_hf", str(spec), str(stats_path)]
    res = spawn(cmd, env, folder, ctx["timeout"](run))
    log.block(f"{run.name} stderr (exit {res['code']})", res["stderr"])
    stats: dict[str, Any] = {}
    if stats_path.is_file():
        try:
            stats = json.loads(stats_path.read_text())
        except ValueError:
            pass
    want = ctx["lrs"][run.lora]
    figures = (lrbench_figures if run.kind == "lrbench" else hf_figures)(res, stats, want)
    figures.update(applied_check(stats.get("applied_lrs") or [], want))
    figures["first_forward"] = stats.get("first_forward")
    ds = stats.get("ds_config")
    if isinstance(ds, dict):
        figures["ds_precision"] = {k: (ds.get(k) or {}).get("enabled") for k in ("bf16", "fp16") if k in ds}
        figures["ds_zero_stage"] = (ds.get("zero_optimization") or {}).get("stage")
    mem = stats.get("max_memory_allocated")
    figures["peak_mem_gib"] = round(mem / 2**30, 3) if mem is not None else None
    if stats.get("max_memory_reserved") is not None:
        figures["reserved_mem_gib"] = round(stats["max_memory_reserved"] / 2**30, 3)
    for key in ("tokens_per_s", "ms_per_step", "startup_s", "wall_s"):
        if isinstance(figures.get(key), float):
            figures[key] = round(figures[key], 1 if key == "tokens_per_s" else 3)
    return {"kind": run.kind, "deepspeed": run.deepspeed, "zero": run.zero, "lora": run.lora,
            "precision": run.precision, **figures}


def _ratio(a: dict | None, b: dict | None) -> float | None:
    x, y = (a or {}).get("tokens_per_s"), (b or {}).get("tokens_per_s")
    return round(x / y, 4) if x and y else None


def summarize(runs: dict[str, dict[str, Any]], cpu: bool) -> dict[str, Any]:
    pairs = {"zero2_full": ("ds2-full", "hf-ds2-full"), "zero3_full": ("ds3-full", "hf-ds3-full"),
             "zero2_lora": ("ds2-lora", "hf-ds2-lora"), "zero3_lora": ("ds3-lora", "hf-ds3-lora")}
    ds_vs_hf = {k: _ratio(runs.get(a), runs.get(b)) for k, (a, b) in pairs.items()}
    measured = [v for v in ds_vs_hf.values() if v is not None]
    lr_diffs = [r["lr_max_abs_diff"] for r in runs.values() if r.get("lr_max_abs_diff") is not None]
    applied = [r["lr_applied_max_abs_diff"] for r in runs.values() if r.get("lr_applied_max_abs_diff") is not None]
    bf16, fp32 = runs.get("torch-full"), runs.get("torch-full-fp32")
    out: dict[str, Any] = {
        "ds_vs_hf_tokens_per_s": ds_vs_hf,
        "ds_vs_hf_min": min(measured) if measured else None,
        "ds_vs_hf_goal": DS_VS_HF_GOAL,
        "ds_vs_hf_goal_met": (min(measured) >= DS_VS_HF_GOAL) if measured and not cpu else None,
        "torch_vs_hf_tokens_per_s": _ratio(runs.get("torch-full"), runs.get("hf-full")),
        "lr_max_abs_diff": max(lr_diffs) if lr_diffs else None,
        "lr_applied_max_abs_diff": max(applied) if applied else None,
        "lr_runs_checked": len(lr_diffs),
        "peak_mem_gib": {k: r.get("peak_mem_gib") for k, r in runs.items()},
        "tokens_per_s": {k: r.get("tokens_per_s") for k, r in runs.items()},
    }
    if bf16 or fp32:
        out["precision"] = {
            p: {k: (r or {}).get(k) for k in ("tokens_per_s", "val_loss", "peak_mem_gib", "first_forward")}
            for p, r in (("bf16-mixed", bf16), ("fp32", fp32))
        }
        out["precision"]["bf16_speedup"] = _ratio(bf16, fp32)
    return out


def select_runs(names: str | None, quick: bool, smoke: bool) -> list[Run]:
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        known = {r.name: r for r in RUNS}
        bad = [n for n in wanted if n not in known]
        if bad:
            raise ValueError(f"unknown run(s) {', '.join(bad)}; the runs are {', '.join(known)}")
        return [known[n] for n in wanted]
    return [r for r in RUNS if not (quick and r.name in QUICK_DROPS)]


def emit(out_dir: Path, result: dict[str, Any]) -> None:
    line = json.dumps(result, default=str)
    (out_dir / "gpu.json").write_text(line + "\n")
    print(line, flush=True)


def drive(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log(out_dir / "gpu-log.txt")
    smoke = args.cpu_smoke
    result: dict[str, Any] = {"bench": "gpu", "mode": "cpu-smoke" if smoke else ("quick" if args.quick else "full"),
                              "gpu": None, "reasons": []}
    if not smoke:
        why = find_driver()
        if why:
            result.update(reason=why, ok=False)
            emit(out_dir, result)
            return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="lrbench-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    result["work"] = str(work)
    try:
        return _drive(args, log, result, work, out_dir, t_start, smoke)
    except Exception as exc:  # the JSON line comes whatever broke
        import traceback

        log.block("driver error", traceback.format_exc())
        result["reasons"].append(f"the driver stopped: {_short(exc)}")
        result["ok"] = False
        emit(out_dir, result)
        return 0
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


def _drive(args: argparse.Namespace, log: Log, result: dict[str, Any], work: Path, out_dir: Path,
           t_start: float, smoke: bool) -> int:
    budget = args.budget_s
    deadline = t_start + budget
    site = work / "site"
    installed, reasons = install_missing(site, log, Path(args.wheels))
    result["installed"] = installed
    result["reasons"] += reasons
    if ensure_lrbench_metadata(site):
        result["lrbench_metadata"] = "written (lrbench runs from its source tree)"
    env = child_env(site, work, smoke)
    for p in (str(ROOT / "plugins"), str(ROOT), str(site)):
        if p not in sys.path:
            sys.path.insert(0, p)
    importlib.invalidate_caches()
    shape = SMOKE_SHAPE if smoke else (QUICK_SHAPE if args.quick else GPU_SHAPE)
    if args.steps:
        shape = Shape(**{**shape.__dict__, "steps": args.steps})
    pending = start_probe(env)
    try:  # while the probe imports everything: the model and the data (wasted only where no GPU is seen)
        model: dict[str, Any] | None = prepare(work, shape)
        prepare_error = None
    except Exception as exc:
        model, prepare_error = None, exc
    info = finish_probe(pending)
    log(f"probe: {json.dumps(info)}")
    result["versions"] = {k: info.get(k) for k in ("python", "torch", "transformers", "peft", "accelerate",
                                                   "deepspeed", "pydantic", "tinydb", "pluggy")}
    if info.get("probe_error") or info.get("torch") is None:
        result.update(reason=f"torch does not load here: {info.get('probe_error') or info.get('missing', {}).get('torch')}",
                      ok=False)
        emit(out_dir, result)
        return 0
    if not smoke:
        if not info.get("gpu"):
            result.update(reason=f"no CUDA GPU: torch {info['torch']} sees none"
                                 + (f" ({info['cuda_error']})" if info.get("cuda_error") else ""), ok=False)
            emit(out_dir, result)
            return 0
        result["gpu"] = info["gpu"]
    if "lrbench_error" in info or "causal-lm-finetune" not in info.get("lrbench_tasks", []):
        result.update(reason="lrbench does not load: " + (info.get("lrbench_error") or "; ".join(info.get("lrbench_problems", []))
                                                         or "no causal-lm-finetune task"), ok=False)
        emit(out_dir, result)
        return 0
    for name in ("transformers", "peft"):
        if info.get(name) is None:
            result["reasons"].append(f"{name} does not load ({info['missing'][name]}): its runs are skipped")
    if info.get("deepspeed") is None:
        result["reasons"].append(f"deepspeed does not load ({(info.get('missing') or {}).get('deepspeed')}): "
                                 "the DeepSpeed runs are skipped")
    if smoke:
        result["reasons"].append("cpu-smoke: on the CPU with a tiny model; GPU memory peaks are null (they need CUDA) "
                                 "and the tokens/s say nothing about a GPU")
    runs = select_runs(args.runs, args.quick, smoke)
    if model is None:
        result.update(reason=f"the model and data could not be made: {_short(prepare_error or 'unknown')}", ok=False)
        emit(out_dir, result)
        return 0
    log(f"model: {model['params']:,} parameters; data: {model['chars']:,} characters")
    from lrbench_gui.core.spec import build_schedule
    from lrbench_gui.plugins import get_registry

    registry = get_registry()
    lrs = {lora: build_schedule(policy(lora, shape), shape.steps, registry).checked_lrs() for lora in (False, True)}
    result["model"] = {k: v for k, v in model.items() if not k.endswith("_path")}
    result["workload"] = {"task": "causal-lm-finetune", "batch": shape.batch, "seq": shape.seq, "steps": shape.steps,
                          "tokens_per_step": shape.batch * shape.seq, "optimizer": "adamw (torch)",
                          "policies": {"full": policy(False, shape), "lora": policy(True, shape)},
                          "lora": {"r": 16, "alpha": 32, "targets": LORA_TARGETS}}
    min_left = 5.0 if smoke else 40.0

    def timeout(run: Run) -> float:
        return min(deadline - time.perf_counter() - 3.0, 120.0 if smoke else 150.0)

    ctx = {"shape": shape, "model": model, "env": env, "device": "cpu" if smoke else "cuda", "work": work,
           "lrs": lrs, "timeout": timeout}
    done: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    hung: set[str] = set()  # after a run that ran out of time, its kind would likely hang again
    for run in runs:
        if run.deepspeed and info.get("deepspeed") is None:
            skipped[run.name] = "deepspeed does not load"
            continue
        kind = "DeepSpeed" if run.deepspeed else run.kind
        if kind in hung:
            skipped[run.name] = f"an earlier {kind} run ran out of time"
            continue
        if run.lora and info.get("peft") is None:
            skipped[run.name] = "peft does not load"
            continue
        left = deadline - time.perf_counter()
        if left < min_left:
            skipped[run.name] = f"time budget: {left:.0f} s of --budget-s {budget:.0f} left"
            continue
        log(f"run {run.name} ({left:.0f} s left)")
        try:
            done[run.name] = run_one(run, ctx, log)
        except Exception as exc:
            done[run.name] = {"status": "driver error", "error": _short(exc)}
        r = done[run.name]
        if r.get("status") == "timed out":
            hung.add(kind)
        log(f"  {run.name}: {r.get('status')}, {r.get('tokens_per_s')} tokens/s, peak {r.get('peak_mem_gib')} GiB, "
            f"lr diff {r.get('lr_max_abs_diff')} / applied {r.get('lr_applied_max_abs_diff')}"
            + (f", error: {r['error']}" if r.get("error") else ""))
    result["runs"] = done
    result["skipped"] = skipped
    result["summary"] = summarize(done, smoke)
    failed = [n for n, r in done.items() if r.get("status") != "completed"]
    if failed:
        result["reasons"].append(f"run(s) that did not complete: {', '.join(failed)} (see gpu-log.txt)")
    result["ok"] = bool(done) and not failed
    result["budget_s"] = budget
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["load1"] = round(os.getloadavg()[0], 2)
    emit(out_dir, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_trial"]:
        code = trial_main(argv[1], argv[2])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # a DeepSpeed process group may hold the interpreter at exit
    if argv[:1] == ["--_hf"]:
        code = hf_main(argv[1], argv[2])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    ap = argparse.ArgumentParser(prog="bench/gpu.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", help="where gpu.json and gpu-log.txt go")
    ap.add_argument("--quick", action="store_true", help="fewer steps and runs (about half the time)")
    ap.add_argument("--cpu-smoke", action="store_true", help="the whole driver on the CPU, tiny model, 3 steps a run")
    ap.add_argument("--runs", help=f"comma list of runs, in this order (default all): {', '.join(r.name for r in RUNS)}")
    ap.add_argument("--steps", type=int, default=0, help="steps per run (default 80, --quick 40, --cpu-smoke 3)")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="wall-clock budget: runs that would start past it are skipped (default 450)")
    ap.add_argument("--work", help="scratch folder for the model, data, site/ and the runs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary scratch folder")
    ap.add_argument("--wheels", default=str(WHEELS), help="the wheels folder (default bench/wheels)")
    args = ap.parse_args(argv)
    try:  # a misspelled run: one line, before anything runs
        select_runs(args.runs, args.quick, args.cpu_smoke)
    except ValueError as exc:
        ap.error(str(exc))
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
