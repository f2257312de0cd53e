"""Run metrics: one JSON object per log step in workdir/metrics.jsonl, TensorBoard scalars, a console line.

Only process 0 writes. TensorBoard files are written with tensorboardX (no TensorFlow).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np


class MetricWriter:
    def __init__(self, workdir: str, total_steps: int):
        self.enabled = jax.process_index() == 0
        self.total_steps = total_steps
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self._last_time = time.time()
        self._last_step: int | None = None

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled or not scalars:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in scalars.items():
            self._tb.add_scalar(key, float(value), int(step))
        self._tb.flush()

    def progress(self, step: int, scalars: dict[str, float], samples_per_step: int) -> dict[str, float]:
        """Throughput since the previous call, printed as one console line; returns the rate metrics to log."""
        now = time.time()
        rates = {}
        if self._last_step is not None and step > self._last_step:
            steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
            rates = {"steps_per_s": steps_per_s, "samples_per_s": steps_per_s * samples_per_step}
        self._last_time, self._last_step = now, step
        if self.enabled:
            eta = ""
            if rates:
                seconds = (self.total_steps - step) / rates["steps_per_s"]
                eta = f" | {rates['steps_per_s']:.2f} steps/s | ETA {_hms(seconds)}"
            shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if not k.startswith("lr"))
            print(f"step {step}/{self.total_steps}{eta} | {shown}", file=sys.stdout, flush=True)
        return rates

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def to_host(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
