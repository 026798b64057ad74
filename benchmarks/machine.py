"""The machine a benchmark ran on, in one line: architecture, CPU model and the matrix-unit flags that matter."""

from __future__ import annotations

import os
import platform

from sdfjax import parallel

_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "avx2")


def describe() -> str:
    """e.g. 'x86_64 AMD EPYC (avx512f avx512_bf16 avx2) cpus=2'."""
    model, flags = platform.processor() or "", parallel.cpu_flags()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model.strip("x86_64 "):
                    model = value.strip()
                    break
    except OSError:
        pass
    present = " ".join(f for f in _FLAGS if f in flags)
    return f"{platform.machine()} {model} ({present}) cpus={os.cpu_count()}".replace("  ", " ")
