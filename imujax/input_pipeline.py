"""tfds.data_source -> grain -> per-host numpy batches (the loop makes them global arrays).

Training: a seeded shuffle of all records (reshuffled every epoch), the system's transform with a per-record RNG
derived from the seed and the record's position, cut into per-host blocks of each global batch, prefetched in worker
processes. Batches do not depend on the worker or host count. The iterator is checkpointable (grain state saved with
the model), which is what makes resume exact.
"""

from __future__ import annotations

import importlib
import logging
import math
import os

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds


class DatasetNotBuiltError(FileNotFoundError):
    """The TFDS dataset named in the config has not been prepared in the data directory."""


# Datasets shipped with imujax that can be generated on the fly (no download): TFDS name -> builder package.
EMBEDDED_BUILDERS = {"synthetic_egomotion": "data_builders.synthetic_egomotion"}


def data_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    return config.data.data_dir or os.path.join(workdir, "data")


def _split_name(name: str) -> tuple[str, str | None]:
    dataset, _, builder_config = name.partition("/")
    return dataset, builder_config or None


def ensure_built(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Build an embedded dataset on first use when the config asks for it (no-op when it already exists)."""
    dataset, builder_config = _split_name(config.data.name)
    if not config.data.auto_build:
        return
    if dataset not in EMBEDDED_BUILDERS:
        raise ValueError(f"config.data.auto_build is set but {dataset!r} is not an embedded dataset "
                         f"(embedded: {sorted(EMBEDDED_BUILDERS)})")
    module = importlib.import_module(EMBEDDED_BUILDERS[dataset])
    module.build(data_dir(config, workdir), builder_config or "default")


def open_source(config: ml_collections.ConfigDict, workdir: str, split: str):
    """Random-access source of decoded records for one split; a clear error when the dataset is not built."""
    directory = data_dir(config, workdir)
    dataset, builder_config = _split_name(config.data.name)
    try:
        # download=False: never generate a dataset as a side effect of opening it (ensure_built does that on purpose).
        return tfds.data_source(config.data.name, data_dir=directory, split=split, download=False)
    except Exception as e:  # tfds raises several types (DatasetNotFoundError, AssertionError, FileNotFoundError)
        not_generated = "not been generated" in str(e) or "is empty" in str(e)
        if isinstance(e, (KeyError, ValueError)) and "split" in str(e).lower() and not not_generated:
            raise  # a wrong split name on a built dataset: tfds's own message lists the splits
        package = EMBEDDED_BUILDERS.get(dataset, f"data_builders.{dataset}").replace(".", "/")
        flags = f"{package} --data_dir={directory}" + (f" --config={builder_config}" if builder_config else "")
        raise DatasetNotBuiltError(
            f"dataset {config.data.name!r} (split {split!r}) is not built in {directory} ({type(e).__name__}: {e}).\n"
            f"Build it first with:\n  tfds build {flags}\n"
            f"or, without TensorFlow installed (the tfds CLI imports it):\n  python -m imujax.build_dataset {flags}"
            ) from e


class BadRecordError(ValueError):
    """A record whose transformed arrays are not finite: the loader never feeds NaN/Inf to the model."""


class CheckedTransform:
    """Wraps a system's ``preprocess``: rejects non-finite outputs naming the record, and carries the record id
    (as bytes, kept on the host) so a failing step can name the records of its batch."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, record, rng=None):
        out = self.preprocess(record, rng)
        record_id = record.get("id", b"?")
        for key, value in out.items():
            if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(value).all():
                raise BadRecordError(f"record {record_id!r}: transformed field {key!r} has "
                                     f"{int(np.size(value) - np.isfinite(value).sum())} non-finite values; repair or "
                                     f"drop it at build time")
        return dict(out, id=np.bytes_(record_id))


def host_slice(num_records: int, process_index: int, process_count: int) -> slice:
    return slice(process_index, num_records, process_count)


def train_dataset(source, preprocess, *, global_batch: int, seed: int, worker_count: int,
                  process_index: int = 0, process_count: int = 1, read_threads: int = 2,
                  prefetch_batches: int = 2) -> grain.IterDataset:
    """Infinite, shuffled, transformed stream of this host's part of every global batch.

    The shuffle order and each record's transform RNG depend only on the seed and the record's position in the
    global stream, and host i takes the i-th block of each global batch; so the global batches are the same for any
    number of hosts and workers (a 2-process run sees exactly the data of a 1-process run).
    """
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} is not divisible by {process_count} processes")
    if len(source) < global_batch:
        raise ValueError(f"training split has {len(source)} records, fewer than one global batch of {global_batch}")
    local_batch = global_batch // process_count
    ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
    ds = ds.random_map(CheckedTransform(preprocess), seed=seed + 1)
    ds = ds.batch(local_batch, drop_remainder=True)[process_index::process_count]
    # Elements here are whole batches: bound the read-ahead (grain's default is 500 elements on 16 threads, which
    # for video batches means tens of GB of host memory and cores taken from the training step).
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches))
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


def eval_batches(source, preprocess, *, per_host_batch: int, process_index: int = 0, process_count: int = 1):
    """Deterministic pass over a split; every host yields the same number of batches, padded rows have valid=0."""
    indices = list(range(len(source)))[host_slice(len(source), process_index, process_count)]
    per_host = math.ceil(len(source) / process_count)
    total = math.ceil(per_host / per_host_batch) * per_host_batch
    valid = np.zeros(total, np.int32)
    valid[: len(indices)] = 1
    padded = indices + [0] * (total - len(indices))
    for start in range(0, total, per_host_batch):
        rows = [CheckedTransform(preprocess)(source[i], None) for i in padded[start:start + per_host_batch]]
        batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        batch["valid"] = valid[start:start + per_host_batch]
        yield batch


def steps_per_epoch(num_records: int, global_batch: int) -> int:
    steps = num_records // global_batch
    if steps == 0:
        logging.warning("dataset of %d records is smaller than one global batch of %d", num_records, global_batch)
    return max(steps, 1)
