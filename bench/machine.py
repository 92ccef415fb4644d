"""The machine a benchmark runs on: what it is, and how busy all of it has been."""

from __future__ import annotations

import os
import platform

import psutil


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python and kernel of this machine."""
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 1024 ** 3:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def cpu_model() -> str:
    """The CPU's model name (psutil does not give it: /proc/cpuinfo does)."""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_line() -> str:
    """One line describing the machine, for reports."""
    info = machine()
    return (f"{info['cpu']}, {info['cores']} cores, {info['ram']} RAM; "
            f"Python {info['python']}, Linux {info['kernel']}")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, every process) since boot."""
    times = psutil.cpu_times()
    return (times.user + times.nice + times.system + times.irq + times.softirq
            + times.steal)

