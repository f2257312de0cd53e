"""Which CPU a benchmark ran on. XLA:CPU compiles for the host's instruction set, so the same run's floating-point
results (and its speed) differ between machines of one nominal class: this project's 2-core machines have been AMD
EPYC (AVX-512, AVX512-BF16) and Intel Xeon (AVX-512, AMX-BF16) on different days."""

import os
import platform

# Instruction-set extensions that change XLA:CPU's and oneDNN's code paths.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def describe() -> dict:
    """CPU model, core count and the ISA_FLAGS the host reports (Linux /proc/cpuinfo; elsewhere the platform)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "isa": [f for f in ISA_FLAGS if f in flags]}


def line() -> str:
    info = describe()
    return f"{info['cpu']}, {info['cores']} cores, {' '.join(info['isa']) or 'no ISA flags read'}"
