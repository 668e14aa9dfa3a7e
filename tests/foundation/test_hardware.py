"""Precision and thread choice (downsize.hardware), on this machine's real CPU and on given cpuinfo texts."""

import platform
import time

import pytest

from downsize import hardware as hw
from downsize.errors import DownsizeError

CPUINFO_2X2 = """processor\t: 0
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu avx2 avx512f avx512_bf16

processor\t: 1
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu avx2 avx512f avx512_bf16

processor\t: 2
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu avx2 avx512f avx512_bf16

processor\t: 3
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu avx2 avx512f avx512_bf16
"""


def test_flags_and_physical_cores_from_cpuinfo():
    assert "avx512_bf16" in hw.cpu_flags(CPUINFO_2X2)
    assert hw.cpu_flags("processor: 0\n") == frozenset()
    assert hw.physical_cores({0, 1, 2, 3}, CPUINFO_2X2) == 2  # hyperthread siblings share a core
    assert hw.physical_cores({0, 1}, CPUINFO_2X2) == 1
    assert hw.physical_cores({0, 2}, CPUINFO_2X2) == 2


def test_threads_leave_busy_cores_alone():
    assert hw.choose_threads(cpus=8, physical=8, busy=0.0).threads == 8
    assert hw.choose_threads(cpus=8, physical=4, busy=0.0).threads == 4  # capped at physical cores
    assert hw.choose_threads(cpus=2, physical=2, busy=1.4).threads == 1
    assert hw.choose_threads(cpus=2, physical=2, busy=6.0).threads == 1  # never below one
    assert hw.choose_threads(cpus=16, physical=16, busy=3.6).threads == 12


def test_precision_names_and_errors():
    assert hw.resolve_precision("fp32").name == "fp32"
    assert hw.resolve_precision("no").autocast == "no"
    assert hw.resolve_precision("bf16").autocast == "bf16"
    with pytest.raises(DownsizeError, match="auto"):
        hw.normalise("fp16")


def test_auto_precision_matches_what_this_cpu_does_fast():
    """The flag rule and the timed probe must agree on this CPU: 'auto' picks bf16 only where bf16 is not slower."""
    ok, why = hw.native_bf16("cpu")
    ratio = hw.probe_bf16_ratio()
    assert hw.resolve_precision("auto", "cpu").name == ("bf16" if ok else "fp32")
    if platform.machine().lower() in hw.X86 and not ok:
        assert ratio > hw.PROBE_MAX_RATIO, f"bf16 ran {ratio:.2f}x fp32 on a CPU judged not native ({why})"
    if ok:
        assert ratio <= 3.0, f"{why}, yet the bf16 probe ran {ratio:.2f}x fp32"


def test_busy_cpus_counts_what_runs_now_not_a_job_that_just_ended():
    # the sample's arithmetic: 0.9 CPU-s of the machine's in 0.5 s, 0.4 of them this process's -> 1 other CPU busy
    assert hw.busy_now((100.0, 2.0), (100.9, 2.4), 0.5) == pytest.approx(1.0)
    assert hw.busy_now((100.0, 2.0), (100.1, 2.1), 0.5) == 0.0  # never below zero
    import subprocess
    import sys

    def sample():
        a, t0 = hw._cpu_seconds(), time.perf_counter()
        time.sleep(0.5)
        return hw.busy_now(a, hw._cpu_seconds(), time.perf_counter() - t0)

    spin = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        running = sample()
    finally:
        spin.kill()
        spin.wait()
    ended = sample()  # the load average still counts it; the sample does not
    assert running - ended > 0.6, (running, ended)  # the spinning process held about one CPU
