"""What this machine does fast: the float precision to compute in and the number of threads to use.

    >>> from downsize.hardware import resolve_precision, choose_threads
    >>> p = resolve_precision("auto")          # bf16 where this machine computes in it natively, else fp32
    >>> p.name in ("bf16", "fp32") and p.autocast == {"bf16": "bf16", "fp32": "no"}[p.name]
    True
    >>> resolve_precision("no")                # Accelerate's name for fp32 is accepted too
    Precision(name='fp32', reason='fp32 as asked')
    >>> resolve_precision("fp32").autocast     # the name Accelerate's mixed_precision takes
    'no'
    >>> choose_threads(cpus=2, physical=2, busy=1.0)    # choose_threads() reads this machine's CPUs and load
    ThreadChoice(threads=1, reason='2 CPUs usable (2 physical cores), ~1.0 busy with other work')
    >>> choose_threads(cpus=16, physical=8, busy=0.2).threads   # capped at the physical cores
    8

**Precision.** bf16 halves memory traffic, but it is only fast where the hardware computes in it: CUDA GPUs
from Ampere on (``torch.cuda.is_bf16_supported``), and CPUs with bf16 dot-product instructions (x86
``avx512_bf16`` or ``amx_bf16``; ARM ``bf16``). Elsewhere PyTorch emulates it and a bf16 matmul runs 10-100x
slower than fp32 (measured on an AVX2-only AMD EPYC: 0.9 vs 122 GFLOP/s for 1024², and a training step of
the zoo teacher under bf16 autocast 12x slower). x86 CPUs are judged by their flags; other CPUs by a short
timed probe (bf16 vs fp32 ``F.linear``), cached per machine in ``cache_dir()/hardware.json``.

**Threads.** OpenMP threads wait for each other at every parallel region; when another process holds one
of the cores, every region waits for the thread that was descheduled, and a 2-thread run on 2 busy cores
goes 10-20x slower, not 2x. So the default is the usable CPUs (``os.sched_getaffinity``) minus those busy
with other work at start (the runnable processes in /proc/loadavg, and the 1-minute load average where a
0.2 s sample of /proc/stat confirms it: the load average still counts a job for a minute after it ended),
capped at the physical cores, at least 1. An explicit ``--threads`` or ``OMP_NUM_THREADS`` wins.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from downsize.errors import DownsizeError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
# Accelerate's mixed_precision names: fp32 is "no"; "no" is accepted as input too (older recipes, TrainConfig).
AUTOCAST = {"bf16": "bf16", "fp32": "no"}
ALIASES = {"no": "fp32", "float32": "fp32", "bfloat16": "bf16"}
# CPU flags (x86 /proc/cpuinfo "flags", ARM "Features") that mean bf16 dot products in hardware.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
X86 = frozenset({"x86_64", "amd64", "i686", "i386"})
HARDWARE_CACHE = "hardware.json"
# bf16 counts as native when the probe's bf16 linear is at most this much slower than fp32 (native bf16
# is usually faster; emulated is 5-100x slower, so the threshold is not delicate).
PROBE_MAX_RATIO = 1.25


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16" or "fp32"
    reason: str

    @property
    def autocast(self) -> str:
        """The name Accelerate's ``mixed_precision`` takes."""
        return AUTOCAST[self.name]


def normalise(requested: str) -> str:
    """``auto``/``bf16``/``fp32`` (``no`` = fp32); anything else is refused with the choices."""
    name = ALIASES.get(str(requested).lower(), str(requested).lower())
    if name not in PRECISIONS:
        raise DownsizeError(f"precision {requested!r} is not supported",
                            hint="use auto (bf16 where the hardware computes in it, else fp32), bf16 or fp32; "
                                 "fp16 is very slow on CPU")
    return name


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_bf16_ratio(n: int = 256, repeats: int = 5) -> float:
    """Seconds of a bf16 ``F.linear`` (n×n by n×n) over the fp32 one, best of ``repeats``, on one thread.

    One thread, because with several OpenMP threads on a busy machine every parallel region waits for the
    thread that was descheduled, and a sub-millisecond fp32 product can take a whole time slice (a 2-thread
    probe under load once read bf16 as 0.66x fp32 on a CPU where it is 10x slower). Each timing repeats the
    product until it has run for at least 2 ms, so one preemption cannot decide the minimum.
    """
    import torch
    import torch.nn.functional as F

    def best(dtype) -> float:
        x, w = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        F.linear(x, w)  # warm up (oneDNN picks its kernel on first use)
        times = []
        for _ in range(repeats):
            calls, t0 = 0, time.perf_counter()
            while True:
                F.linear(x, w)
                calls += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= 0.002:
                    break
            times.append(elapsed / calls)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return best(torch.bfloat16) / max(best(torch.float32), 1e-9)
    finally:
        torch.set_num_threads(threads)


def _probe_cached() -> float:
    """The probe's ratio, measured once per (CPU model, torch version) and kept in the downsize cache."""
    import torch

    from downsize.data.packing import cache_dir

    key = f"{_cpu_model()}|{platform.machine()}|torch {torch.__version__}"
    path = cache_dir() / HARDWARE_CACHE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known.get("bf16_ratio", {}):
        return float(known["bf16_ratio"][key])
    ratio = probe_bf16_ratio()
    known.setdefault("bf16_ratio", {})[key] = round(ratio, 3)
    try:
        from downsize.io import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, known)
    except OSError:  # a read-only cache only costs the probe next time
        pass
    return ratio


def native_bf16(device: str = "cpu") -> tuple[bool, str]:
    """(whether ``device`` computes in bf16 natively, why)."""
    if str(device).startswith("cuda"):
        import torch

        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
        return ok, f"{name} {'supports' if ok else 'does not support'} bf16"
    flags = cpu_flags()
    have = sorted(BF16_FLAGS & flags)
    if have:
        return True, f"this CPU has native bf16 ({', '.join(have)})"
    if platform.machine().lower() in X86 and flags:
        return False, "this CPU has no native bf16 (no avx512_bf16/amx_bf16 flag), where bf16 is emulated and slow"
    ratio = _probe_cached()
    ok = ratio <= PROBE_MAX_RATIO
    return ok, f"a bf16 matmul probe ran {ratio:.2f}x the fp32 time on this CPU"


def resolve_precision(requested: str = "auto", device: str | None = None) -> Precision:
    """The precision to compute in: ``auto`` -> bf16 where ``device`` is native bf16, else fp32."""
    name = normalise(requested)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "auto":
        return Precision(name, f"{name} as asked")
    ok, why = native_bf16(device)
    return Precision("bf16" if ok else "fp32", why)


# ---- threads ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def physical_cores(cpus: set[int] | None = None, cpuinfo: str | None = None) -> int:
    """Physical cores among ``cpus`` (logical CPU ids), from /proc/cpuinfo's physical/core ids; len(cpus) if unknown."""
    cpus = set(os.sched_getaffinity(0)) if cpus is None else set(cpus)
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return len(cpus)
    cores, cur = set(), {}
    for line in cpuinfo.splitlines() + [""]:
        key, _, value = (s.strip() for s in line.partition(":"))
        if not key:
            if cur.get("processor") is not None and int(cur["processor"]) in cpus and "core id" in cur:
                cores.add((cur.get("physical id", "0"), cur["core id"]))
            cur = {}
        elif key in ("processor", "physical id", "core id"):
            cur[key] = value
    return len(cores) or len(cpus)


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU-seconds of the whole machine since boot, this process's CPU-seconds), from /proc/stat."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(v) < 4:
        return None
    t = os.times()
    return (sum(v) - v[3] - (v[4] if len(v) > 4 else 0)) / os.sysconf("SC_CLK_TCK"), t.user + t.system


def busy_now(before: tuple[float, float], after: tuple[float, float], wall_s: float) -> float:
    """CPUs busy with other processes between two ``_cpu_seconds()`` readings ``wall_s`` apart."""
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / max(wall_s, 1e-9))


def busy_cpus(sample_s: float = 0.2) -> float:
    """CPUs busy with other processes now: runnable tasks (minus this one), or the 1-minute load as far as a
    ``sample_s`` sample of /proc/stat confirms it (a job that ended in the last minute still weighs in the
    load average), the larger."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        running = int(fields[3].split("/")[0]) - 1  # this process is running while it reads
        load1 = float(fields[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    a = _cpu_seconds() if load1 > running and sample_s > 0 else None
    if a is not None:
        t0 = time.perf_counter()
        time.sleep(sample_s)
        b = _cpu_seconds()
        if b is not None:
            load1 = min(load1, busy_now(a, b, time.perf_counter() - t0))
    return max(0.0, float(running), load1)


def choose_threads(cpus: int | None = None, physical: int | None = None, busy: float | None = None) -> ThreadChoice:
    """Threads for torch: usable CPUs minus the busy ones (rounded), capped at the physical cores, >= 1."""
    cpus = len(os.sched_getaffinity(0)) if cpus is None else cpus
    physical = physical_cores() if physical is None else physical
    busy = busy_cpus() if busy is None else busy
    free = cpus - int(math.floor(busy + 0.5))
    n = max(1, min(free, physical, cpus))
    return ThreadChoice(n, f"{cpus} CPUs usable ({physical} physical cores), ~{busy:.1f} busy with other work")


_threads_set = False


def set_threads(threads: int | None = None) -> ThreadChoice:
    """Set torch's thread count: ``threads`` when given, else OMP_NUM_THREADS when set, else ``choose_threads``."""
    global _threads_set
    import torch

    env = os.environ.get("OMP_NUM_THREADS", "")
    if threads:
        choice = ThreadChoice(int(threads), "as asked (--threads)")
    elif env.isdigit() and int(env) > 0:
        choice = ThreadChoice(int(env), "OMP_NUM_THREADS")
    else:
        choice = choose_threads()
    torch.set_num_threads(choice.threads)
    _threads_set = True
    log.info("threads: %d (%s)", choice.threads, choice.reason)
    return choice


def ensure_threads() -> None:
    """``set_threads()`` once per process, unless the threads were already chosen: by the CLI, or by the user
    calling ``torch.set_num_threads`` (a count that is not torch's default, one per usable or physical core)."""
    import torch

    if _threads_set:
        return
    if torch.get_num_threads() not in (len(os.sched_getaffinity(0)), physical_cores()):
        return
    set_threads()
