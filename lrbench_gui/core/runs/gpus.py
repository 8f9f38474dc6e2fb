"""The local GPUs, found without importing torch, and how trials share them.

:func:`detect_gpus` asks, in this order:

1. ``LRBENCH_GPUS`` (a comma list of indices, ``0,1,2,3``): these GPUs and no others. On a host
   where ``nvidia-smi`` finds no GPU the ids are *simulated*: trials are placed on them (each
   gets its ``CUDA_VISIBLE_DEVICES``, the records hold them) but train on the CPU, which is how
   the GPU placement is tested on a CPU machine.
2. ``CUDA_VISIBLE_DEVICES`` in the app's own environment: the GPUs ``nvidia-smi`` finds, kept to
   these (indices or ``GPU-...`` UUIDs, in that order).
3. ``nvidia-smi --query-gpu=index,name,memory.total,uuid`` (a few seconds at most, asked once
   per ``PATH``): every GPU it lists. A missing or failing ``nvidia-smi`` means no GPU.

Ids are ``nvidia-smi`` indices as strings; trials get ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA
numbers them the same way. :func:`gpu_slots` cuts the ids into disjoint groups (one per trial
slot), :func:`plan_slots` decides a study's slots and says so in one line, :func:`trial_resources`
is what a trial's record keeps of where it ran.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["GPU", "GpuInventory", "GpuError", "SlotPlan", "detect_gpus", "real_gpus", "clear_cache", "parse_gpu_list",
           "gpu_slots", "default_parallel", "plan_slots", "placement_problem", "launcher_include",
           "trial_resources", "NVIDIA_SMI_TIMEOUT"]

#: seconds nvidia-smi may take before the host is taken to have no GPU
NVIDIA_SMI_TIMEOUT = 5.0
_QUERY = ["--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits"]


class GpuError(ValueError):
    """A GPU list that cannot be used (``LRBENCH_GPUS``, a per-trial count); the message is one line."""


@dataclass(frozen=True)
class GPU:
    id: str
    name: str = ""
    memory_mib: int | None = None
    uuid: str = ""


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs trials may use here; ``source`` says who decided (LRBENCH_GPUS, CUDA_VISIBLE_DEVICES,
    nvidia-smi or none)."""

    gpus: tuple[GPU, ...] = ()
    source: str = "none"
    #: ids given by LRBENCH_GPUS on a host where nvidia-smi finds no GPU: trials run on the CPU
    simulated: bool = False

    @property
    def ids(self) -> list[str]:
        return [g.id for g in self.gpus]

    def __len__(self) -> int:
        return len(self.gpus)

    def describe(self, cpu_workers: int | None = None) -> str:
        """One line for a panel: ``4 GPUs (0,1,2,3): NVIDIA H200, 140 GiB each`` or ``no GPU: 2 CPU workers``."""
        if not self.gpus:
            n = cpu_workers or 1
            return f"no GPU: {n} CPU worker{'s' if n != 1 else ''}"
        head = f"{_count(len(self.gpus))} ({','.join(self.ids)})"
        if self.simulated:
            return f"{head}, simulated by LRBENCH_GPUS: trials run on the CPU"
        names = sorted({g.name for g in self.gpus if g.name})
        mems = sorted({g.memory_mib for g in self.gpus if g.memory_mib})
        what = ", ".join(names)
        if len(mems) == 1:
            what += f", {mems[0] / 1024:.0f} GiB" + (" each" if len(self.gpus) > 1 else "")
        return f"{head}: {what}" if what else head


def _count(n: int) -> str:
    return f"{n} GPU" + ("s" if n != 1 else "")


def parse_gpu_list(text: str, what: str = "LRBENCH_GPUS") -> list[str]:
    """``"0, 1,3"`` -> ``["0", "1", "3"]``; :class:`GpuError` (one line) for anything else."""
    ids = [t.strip() for t in str(text).split(",")]
    if ids and not ids[-1]:
        ids.pop()  # a trailing comma
    bad = next((t for t in ids if not (t.isdigit() and t.isascii() and len(t) <= 4)), None)
    if bad is not None or not ids:
        got = f" (not a GPU index: {bad[:20]!r})" if bad else ""
        raise GpuError(f"{what}={str(text)[:60]!r}: expected GPU indices separated by commas, e.g. 0,1{got}")
    ids = [str(int(t)) for t in ids]
    twice = next((t for i, t in enumerate(ids) if t in ids[:i]), None)
    if twice is not None:
        raise GpuError(f"{what}={str(text)[:60]!r} lists GPU {twice} twice")
    return ids


@functools.lru_cache(maxsize=8)
def _query_nvidia_smi(path: str) -> tuple[GPU, ...]:
    exe = shutil.which("nvidia-smi", path=path)
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, *_QUERY], capture_output=True, text=True, errors="replace",
                             timeout=NVIDIA_SMI_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    gpus = []
    for line in out.stdout.splitlines()[:1024]:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        try:
            memory = int(float(parts[2]))
        except (ValueError, OverflowError):  # "[N/A]"
            memory = None
        gpus.append(GPU(str(int(parts[0])), parts[1][:128], memory, parts[3][:128] if len(parts) > 3 else ""))
    return tuple(gpus)


def real_gpus(env: Mapping[str, str] | None = None) -> bool:
    """Whether nvidia-smi finds a GPU here (False on a host whose GPUs LRBENCH_GPUS simulates)."""
    env = os.environ if env is None else env
    return bool(_query_nvidia_smi(env.get("PATH", os.defpath)))


def clear_cache() -> None:
    """Forget what nvidia-smi said (a test that changes PATH, a GPU that came back)."""
    _query_nvidia_smi.cache_clear()


def detect_gpus(env: Mapping[str, str] | None = None) -> GpuInventory:
    """The GPUs of this host as the module docstring says; :class:`GpuError` for a bad LRBENCH_GPUS."""
    env = os.environ if env is None else env
    found = _query_nvidia_smi(env.get("PATH", os.defpath))
    given = env.get("LRBENCH_GPUS", "").strip()
    if given:
        ids = parse_gpu_list(given)
        if not found:
            return GpuInventory(tuple(GPU(i, "simulated") for i in ids), "LRBENCH_GPUS", simulated=True)
        by_id = {g.id: g for g in found}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise GpuError(f"LRBENCH_GPUS={given[:60]!r} names GPU {missing[0]}, but nvidia-smi lists only "
                           f"{','.join(by_id)}")
        return GpuInventory(tuple(by_id[i] for i in ids), "LRBENCH_GPUS")
    if not found:
        return GpuInventory()
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        keep: list[GPU] = []
        for token in (t.strip() for t in visible.split(",")):
            match = next((g for g in found if token and (g.id == token or (g.uuid and g.uuid == token))), None)
            if match is None:
                break  # CUDA stops at the first id it cannot use (-1, a typo)
            if match not in keep:
                keep.append(match)
        return GpuInventory(tuple(keep), "CUDA_VISIBLE_DEVICES")
    return GpuInventory(found, "nvidia-smi")


def gpu_slots(ids: list[str], per_trial: float = 1) -> list[str]:
    """Disjoint groups of ``per_trial`` GPUs, in order: ``["0", "1"]`` or ``["0,1", "2,3"]``; ids
    left over (5 GPUs, 2 per trial) stay idle. :class:`GpuError` when ``per_trial`` is not a
    whole number >= 1 or more than there are GPUs."""
    number = isinstance(per_trial, (int, float)) and not isinstance(per_trial, bool)
    if not number or not math.isfinite(per_trial) or per_trial < 1 or per_trial != int(per_trial):
        shown = f"{per_trial:g}" if number else repr(per_trial)[:40]
        raise GpuError(f"GPUs per trial must be a whole number >= 1 for local trials (got {shown}); "
                       "fractions of a GPU need the Ray scheduler")
    k = int(per_trial)
    if k > len(ids):
        raise GpuError(f"{_count(k)} per trial, but this machine has {_count(len(ids))}"
                       + (f" ({','.join(ids)})" if ids else ""))
    return [",".join(ids[i:i + k]) for i in range(0, len(ids) - k + 1, k)]


def default_parallel(ids: list[str], per_trial: float = 1, cpu_default: int = 1) -> int:
    """Trials at a time when the user says nothing: one per GPU group, else ``cpu_default``."""
    return len(gpu_slots(ids, per_trial or 1)) if ids else max(1, int(cpu_default))


@dataclass(frozen=True)
class SlotPlan:
    """Where a study's local trials go: ``slots`` for the slot queue (a count of CPU workers, or
    GPU groups), how many run at once, the one line that says so, and a warning if ``parallel``
    was cut down."""

    slots: int | list[str]
    parallel: int
    per_trial: int
    text: str
    warning: str | None = None


def plan_slots(inventory: GpuInventory, *, per_trial: float | None = None, parallel: int | None = None,
               device: str = "auto") -> SlotPlan:
    """The local slots of a study: one group of ``per_trial`` GPUs per slot (default 1 when
    there are GPUs and ``device`` is not cpu), ``parallel`` of them (default: all; more than
    there are is cut to them with a warning, never two trials on one GPU); CPU workers when there
    is no GPU. :class:`GpuError` for a per-trial count the GPUs cannot meet."""
    ids = inventory.ids
    if not ids or device == "cpu":
        n = max(1, int(parallel or 1))
        text = f"no GPU: {n} CPU worker{'s' if n != 1 else ''}" if not ids else \
            f"device cpu: {n} CPU worker{'s' if n != 1 else ''} ({_count(len(ids))} not used)"
        return SlotPlan(n, n, 0, text)
    k = per_trial or 1
    groups = gpu_slots(ids, k)
    k = int(k)
    n = len(groups) if not parallel else int(parallel)
    warning = None
    if n > len(groups):
        warning = (f"{n} trials at a time asked, but {_count(len(ids))} at {k} per trial make {len(groups)} "
                   f"slot{'s' if len(groups) != 1 else ''}: {len(groups)} at a time, never two on one GPU")
        n = len(groups)
    text = f"{_count(len(ids))} ({','.join(ids)}), {k} per trial: {n} trial{'s' if n != 1 else ''} at a time"
    if inventory.simulated:
        text += " (simulated by LRBENCH_GPUS: they train on the CPU)"
    return SlotPlan(groups[:n], n, k, text, warning)


def placement_problem(*, trainer: str = "torch", per_trial: float | None = None, device: str = "auto",
                      scheduler: str = "local", zero_stage: int | None = None,
                      deepspeed_config: Any = None) -> str | None:
    """What a choice of trainer, GPUs, device and scheduler would silently ignore, in one line
    (None: nothing). The flags are the CLI's; the GUI offers the same choices."""
    if trainer != "deepspeed" and zero_stage is not None:
        return f"--zero-stage {zero_stage}: ZeRO is DeepSpeed's; add --trainer deepspeed"
    if trainer != "deepspeed" and deepspeed_config is not None:
        return "--deepspeed-config: the torch trainer does not read a DeepSpeed config; add --trainer deepspeed"
    if per_trial is None:
        return None
    if not math.isfinite(per_trial) or per_trial < 0:
        return f"--gpus-per-trial {per_trial:g}: must be a number >= 0"
    if device == "cpu" and per_trial > 0:
        return f"--gpus-per-trial {per_trial:g} with --device cpu: a CPU trial uses no GPU; drop one of them"
    if trainer != "deepspeed" and per_trial > 1:
        return (f"--gpus-per-trial {per_trial:g} with the torch trainer: a torch trial trains on one GPU; "
                "add --trainer deepspeed to spread a trial over several")
    if scheduler != "ray" and per_trial != int(per_trial):
        return (f"--gpus-per-trial {per_trial:g}: local trials take whole GPUs; "
                "fractions of a GPU need --scheduler ray")
    return None


def launcher_include(config: Any, gpus: str | None) -> str | None:
    """``localhost:i,j``: the DeepSpeed launcher's ``--include`` for a DeepSpeed trial given
    several GPUs (None for one GPU, none, or the torch trainer)."""
    ids = [g for g in (gpus or "").split(",") if g.strip()]
    if getattr(config, "backend", None) != "deepspeed" or len(ids) < 2:
        return None
    return "localhost:" + ",".join(g.strip() for g in ids)


def trial_resources(config: Any, gpus: str | None) -> dict[str, Any]:
    """Where a trial ran, for its record: ``{"gpus": [2, 3], "host": ..., "launcher_include":
    "localhost:2,3" or None}`` (``gpus`` empty for a CPU slot)."""
    ids = [int(g) for g in (gpus or "").split(",") if g.strip().isdigit()]
    return {"gpus": ids, "host": platform.node()[:256], "launcher_include": launcher_include(config, gpus)}
