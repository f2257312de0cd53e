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
import jax.numpy as jnp
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

    def write_image(self, tag: str, png_path: str, step: int) -> None:
        """A PNG as a TensorBoard image in this writer's event file."""
        if not self.enabled:
            return
        from PIL import Image
        with Image.open(png_path) as im:
            self._tb.add_image(tag, np.asarray(im.convert("RGB")), int(step), dataformats="HWC")
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


# -- per-dataset metrics of mixture runs -------------------------------------------------------------------------------
# A system's loss metrics may carry, for batches with ``dataset_index`` (mixtures):
PER_EXAMPLE = "per_example"  # {name: [B] per-example values}: the train step averages them per dataset
PER_DATASET = "per_dataset"  # {name: [num_datasets] values the system computed per dataset (see segment_ratio)}


def _per_dataset_sum(values, dataset_index, num_datasets: int):
    """[num_datasets]: the sum of the per-example ``values`` [B] over each dataset's samples."""
    return jax.ops.segment_sum(values.astype(jnp.float32), dataset_index, num_segments=num_datasets)


def segment_ratio(numerator, denominator, dataset_index, num_datasets: int):
    """[num_datasets]: sum of ``numerator`` over each dataset's samples / sum of ``denominator`` (0 when that is 0)."""
    den = _per_dataset_sum(denominator, dataset_index, num_datasets)
    return _per_dataset_sum(numerator, dataset_index, num_datasets) / jnp.where(den > 0, den, 1.0)


def per_dataset(step_metrics: dict, dataset_index, names) -> dict:
    """Inside the jitted step: pops PER_EXAMPLE / PER_DATASET from a system's metrics and returns them as scalars
    '<metric>/<dataset>' (per-example values averaged over the dataset's samples) plus 'samples/<dataset>' counts.
    A dataset with no sample in the batch gets count 0 and values 0; ``drop_absent`` removes those on the host."""
    per_example = step_metrics.pop(PER_EXAMPLE, None) or {}
    given = step_metrics.pop(PER_DATASET, None) or {}
    if not names or dataset_index is None:
        return {}
    ones = jnp.ones(dataset_index.shape, jnp.float32)
    counts = _per_dataset_sum(ones, dataset_index, len(names))
    out = {f"samples/{n}": counts[i] for i, n in enumerate(names)}
    for key, values in per_example.items():
        means = segment_ratio(values, ones, dataset_index, len(names))
        out.update({f"{key}/{n}": means[i] for i, n in enumerate(names)})
    for key, values in given.items():
        out.update({f"{key}/{n}": values[i] for i, n in enumerate(names)})
    return out


def drop_absent(scalars: dict[str, float], names) -> dict[str, float]:
    """Remove the per-dataset values of datasets that had no sample in the step's batch."""
    absent = {n for n in names if scalars.get(f"samples/{n}", 1.0) == 0}
    return {k: v for k, v in scalars.items()
            if k.startswith("samples/") or "/" not in k or k.rpartition("/")[2] not in absent}
