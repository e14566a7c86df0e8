"""What a benchmark ran on: the CPU model, the ISA extensions that change kernel choice, and the load
the machine carried, as one line each benchmark prints first (timings are comparable only on the
same CPU and load)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: CPU flags (Linux /proc/cpuinfo names) that select different int8 / bf16 kernels.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
                "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Those of `KERNEL_FLAGS` the CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            found.update(line.split(":", 1)[1].split())
    return [f for f in KERNEL_FLAGS if f in found]


def machine_line() -> str:
    """``cpu: <model> (<n> CPUs; <flags>); load average <1-min> before the run``."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"cpu: {cpu_model()} ({os.cpu_count()} CPUs, {platform.machine()}; {' '.join(cpu_flags()) or 'no listed flags'}); "
            f"load average {load:.2f} before the run ({'other load present' if load > 0.5 else 'quiet'})")
