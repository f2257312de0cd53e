"""Run metrics through clu's metric writers, as the Flax examples write them: workdir/metrics.jsonl (one JSON object
per write), TensorBoard scalars and images under workdir/tensorboard, and a console line per log step whose rate and
ETA come from clu's ``periodic_actions.ReportProgress``.

clu's own TensorBoard writer needs TensorFlow; ours writes the same event files with tensorboardX. Only process 0
writes: the others get clu's MultiWriter of no writer.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

if importlib.util.find_spec("tensorflow") is None:
    # clu 0.0.12's metric_writers package imports its TensorFlow summary writer eagerly (google/CommonLoopUtils
    # pull 358, open, makes that import lazy); without TensorFlow that one writer is left out, the rest works.
    _no_tf = types.ModuleType("clu.metric_writers.summary_writer")
    _no_tf.SummaryWriter = None
    sys.modules.setdefault("clu.metric_writers.summary_writer", _no_tf)
from clu import metric_writers, periodic_actions  # noqa: E402


class _ScalarsAndImages(metric_writers.MetricWriter):
    """The kinds of values a run writes (scalars, images); the others are not written by imujax and are dropped."""

    def write_summaries(self, step, values, metadata=None):
        pass

    def write_scalars(self, step, scalars):
        pass

    def write_images(self, step, images):
        pass

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        pass

    def write_histograms(self, step, arrays, num_buckets=None):
        pass

    def write_hparams(self, hparams):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class JsonlWriter(_ScalarsAndImages):
    """Scalars as one JSON object {"step": N, name: value, ...} per write, appended to a file (eval.plots reads it)."""

    def __init__(self, path: str):
        self.path = path

    def write_scalars(self, step, scalars):
        if scalars:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")


class TensorboardXWriter(_ScalarsAndImages):
    """Scalars and images ([H, W, C] or [N, H, W, C], uint8 or float in [0, 1]) as TensorBoard event files."""

    def __init__(self, logdir: str):
        from tensorboardX import SummaryWriter
        self._writer = SummaryWriter(logdir)

    def write_scalars(self, step, scalars):
        for key, value in scalars.items():
            self._writer.add_scalar(key, float(value), int(step))

    def write_images(self, step, images):
        for key, image in images.items():
            image = np.asarray(image)
            self._writer.add_images(key, image if image.ndim == 4 else image[None], int(step), dataformats="NHWC")

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


def open_writer(workdir: str) -> metric_writers.MetricWriter:
    """The run's one writer: metrics.jsonl + TensorBoard on process 0, nothing elsewhere."""
    if jax.process_index() != 0:
        return metric_writers.MultiWriter([])
    return metric_writers.MultiWriter([JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
                                       TensorboardXWriter(os.path.join(workdir, "tensorboard"))])


def write_png(writer: metric_writers.MetricWriter, step: int, tag: str, png_path: str) -> None:
    """A written PNG figure as a TensorBoard image."""
    from PIL import Image
    with Image.open(png_path) as im:
        writer.write_images(int(step), {tag: np.asarray(im.convert("RGB"))})


class _LastRate(_ScalarsAndImages):
    def __init__(self):
        self.steps_per_sec: float | None = None

    def write_scalars(self, step, scalars):
        self.steps_per_sec = scalars.get("steps_per_sec", self.steps_per_sec)


class Progress:
    """clu's ReportProgress, ticked every step (it wants every step), and the console line at each log step."""

    def __init__(self, total_steps: int, samples_per_step: int, log_every_steps: int):
        self.total_steps, self.samples_per_step = total_steps, samples_per_step
        self._rate = _LastRate()
        self._report = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=self._rate,
                                                       every_steps=log_every_steps, every_secs=None)
        self._reported = False

    def tick(self, step: int) -> None:
        self._reported = self._report(step)

    def line(self, step: int, scalars: dict[str, float]) -> dict[str, float]:
        """Prints 'step N/total | S steps/s | ETA h:mm:ss | metrics' (process 0); returns the rates to log, measured
        since the previous log step (none at the first step a process runs)."""
        rates = {}
        if self._reported and self._rate.steps_per_sec:
            rates = {"steps_per_s": self._rate.steps_per_sec,
                     "samples_per_s": self._rate.steps_per_sec * self.samples_per_step}
        if jax.process_index() == 0:
            eta = ""
            if rates:
                seconds = (self.total_steps - step) / rates["steps_per_s"]
                eta = f" | {rates['steps_per_s']:.2f} steps/s | ETA {_hms(seconds)}"
            shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if not k.startswith("lr"))
            print(f"step {step}/{self.total_steps}{eta} | {shown}", file=sys.stdout, flush=True)
        return rates


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
