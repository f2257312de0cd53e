"""tfds.data_source -> grain -> per-host numpy batches (the loop makes them global arrays).

Training: a seeded shuffle of all records (reshuffled every epoch), the system's transform with a per-record RNG
derived from the seed and the record's position, cut into per-host blocks of each global batch, prefetched in worker
processes. Batches do not depend on the worker or host count. The iterator is checkpointable (grain state saved with
the model), which is what makes resume exact.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import os
import traceback

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
import threadpoolctl

from imujax import mixture


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
    """Build the run's datasets on first use when the config asks for it (no-op when they already exist).

    Every dataset of the run (config.data.mixture, or config.data.name) is built: embedded ones by their generator,
    others from the raw files named in config.data.manual_dirs.<dataset> (the builder's --manual_dir).
    """
    if not config.data.auto_build:
        return
    manual_dirs = dict(config.data.get("manual_dirs") or {})
    for name in mixture.dataset_names(config):
        dataset, builder_config = _split_name(name)
        if dataset in EMBEDDED_BUILDERS:
            module = importlib.import_module(EMBEDDED_BUILDERS[dataset])
            module.build(data_dir(config, workdir), builder_config or "default")
        elif manual_dirs.get(dataset):
            _build_from_manual_dir(dataset, builder_config, data_dir(config, workdir), manual_dirs[dataset])
        else:
            raise ValueError(f"config.data.auto_build is set but {dataset!r} is not an embedded dataset "
                             f"(embedded: {sorted(EMBEDDED_BUILDERS)}) and config.data.manual_dirs has no "
                             f"{dataset!r} entry: pass --config.data.manual_dirs.{dataset}=DIR (its raw download), or "
                             f"set IMUJAX_DATA_DIR to the folder holding {dataset}/")


def _build_from_manual_dir(dataset: str, builder_config: str | None, directory: str, manual_dir: str) -> None:
    """`tfds build data_builders/<dataset> --manual_dir=...` in process, unless the dataset is already prepared."""
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"config.data.manual_dirs.{dataset}={manual_dir} is not a directory")
    module = importlib.import_module(f"data_builders.{dataset}")
    builder = module.Builder(config=builder_config or "default", data_dir=directory, file_format="array_record")
    if builder.is_prepared():
        return
    logging.info("building %s from %s into %s", dataset, manual_dir, directory)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def open_source(config: ml_collections.ConfigDict, workdir: str, split: str, name: str | None = None):
    """Random-access source of decoded records for one split of config.data.name (or ``name``); a clear error when
    the dataset is not built."""
    directory = data_dir(config, workdir)
    name = name or config.data.name
    dataset, builder_config = _split_name(name)
    try:
        # download=False: never generate a dataset as a side effect of opening it (ensure_built does that on purpose).
        source = tfds.data_source(name, data_dir=directory, split=split, download=False)
    except Exception as e:  # tfds raises several types (DatasetNotFoundError, AssertionError, FileNotFoundError)
        not_generated = "not been generated" in str(e) or "is empty" in str(e)
        if isinstance(e, (KeyError, ValueError)) and "split" in str(e).lower() and not not_generated:
            raise  # a wrong split name on a built dataset: tfds's own message lists the splits
        package = EMBEDDED_BUILDERS.get(dataset, f"data_builders.{dataset}").replace(".", "/")
        flags = f"{package} --data_dir={directory}" + (f" --config={builder_config}" if builder_config else "")
        manual_dir = dict(config.data.get("manual_dirs") or {}).get(dataset)
        if manual_dir:
            flags += f" --manual_dir={os.path.abspath(manual_dir)}"
        elif dataset not in EMBEDDED_BUILDERS:
            flags += " --manual_dir=DIR"  # the raw download (config.data.manual_dirs.<dataset> or IMUJAX_DATA_DIR)
        raise DatasetNotBuiltError(
            f"dataset {name!r} (split {split!r}) is not built in {directory} ({type(e).__name__}: {e}).\n"
            f"Build it first with:\n  tfds build {flags}\n"
            f"or, without TensorFlow installed (the tfds CLI imports it):\n  python -m imujax.build_dataset {flags}"
            ) from e
    check_shards(source, name, split)
    return CheckedSource(source, name, split)


class BadRecordError(ValueError):
    """A record the model must not see: non-finite transformed arrays, or stored bytes (e.g. a JPEG frame) that
    cannot be decoded. The message names the record id."""


class CorruptShardError(RuntimeError):
    """A shard file of a built dataset is truncated or damaged; the message names the file. Rebuild the dataset."""


def _shard_instructions(source) -> list:
    """The split's file instructions (filename, skip, take, examples_in_shard), in record order."""
    return list(source.dataset_info.splits[source.split].file_instructions)


def check_shards(source, name: str, split: str) -> None:
    """Opens every array_record shard of the split and checks its record count against the dataset info, so a
    truncated, missing or replaced shard fails here, naming the file, instead of at some later read with an error
    that names no file (array_record: "Corrupted Riegeli/records file ...")."""
    from array_record.python import array_record_module

    for instruction in _shard_instructions(source):
        path = os.fspath(instruction.filename)
        if ".array_record" not in os.path.basename(path):
            continue
        rebuild = f"rebuild dataset {name!r} (delete its directory {os.path.dirname(path)} and build it again)"
        if not os.path.exists(path):
            raise CorruptShardError(f"{path}: shard of split {split!r} is missing; {rebuild}")
        try:  # a damaged file gives a reader that is not ok(); close() raises its status (naming no file)
            reader = array_record_module.ArrayRecordReader(path, options="readahead_buffer_size:0")
            healthy = reader.ok()
            count = reader.num_records() if healthy else 0
            reader.close()
            problem = None if healthy else "the reader is not ok"
        except Exception as e:
            problem = f"{type(e).__name__}: {e}"
        if problem is not None:
            raise CorruptShardError(f"{path}: shard of split {split!r} cannot be opened, it is truncated or damaged "
                                    f"({os.path.getsize(path)} bytes; {problem}); {rebuild}")
        if count != instruction.examples_in_shard:
            raise CorruptShardError(f"{path}: shard of split {split!r} holds {count} records, the dataset info says "
                                    f"{instruction.examples_in_shard}; {rebuild}")


def _image_decode_error(error: BaseException) -> bool:
    """Pillow's errors for undecodable image bytes: unknown format, or an error raised inside Pillow while decoding
    (truncated data: OSError, broken headers: SyntaxError / ValueError)."""
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return True
    frames = traceback.extract_tb(error.__traceback__)
    return (isinstance(error, (OSError, SyntaxError, ValueError)) and bool(frames)
            and f"{os.sep}PIL{os.sep}" in frames[-1].filename)


class CheckedSource:
    """A tfds data source whose read errors name what is at fault: a record that cannot be decoded (e.g. a corrupt
    JPEG frame) raises BadRecordError naming its id, field and index; an unreadable shard raises CorruptShardError
    naming the file. The loader never skips such a record silently nor feeds garbage in its place."""

    def __init__(self, source, name: str, split: str):
        self.source, self.name, self.split = source, name, split

    @property
    def dataset_info(self):
        return self.source.dataset_info

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index):
        try:
            return self.source[index]
        except Exception as e:
            explained = self._explain(int(index), e)
            if explained is e:
                raise
            raise explained from e

    def __getitems__(self, indices):
        try:
            return self.source.__getitems__(indices)
        except Exception:
            return [self[i] for i in indices]  # one by one: the failing record is named

    def __repr__(self) -> str:
        return f"CheckedSource({self.source!r})"

    def _shard_of(self, index: int) -> str:
        for instruction in _shard_instructions(self.source):
            if index < instruction.take:
                return os.fspath(instruction.filename)
            index -= instruction.take
        return "?"

    def _explain(self, index: int, error: Exception) -> Exception:
        if not 0 <= index < len(self):
            return error
        where = f"index {index} of {self.name!r} split {self.split!r}"
        try:
            shard = self._shard_of(index)
        except Exception:  # diagnostics must not hide the original error
            shard = "?"
        try:
            raw = self.source.data_source[index]
            problem = None if raw else "the reader returned no bytes"  # what the reader of a damaged shard does
        except Exception as read_error:
            problem = f"{type(read_error).__name__}: {read_error}"
        if problem is not None:
            return CorruptShardError(f"{shard}: cannot read record {where} ({problem}); the shard is truncated or "
                                     f"damaged: rebuild the dataset")
        record_id, field = b"?", "?"
        try:  # the serialized fields, undecoded, to name the record and the field that does not decode
            features = self.source.dataset_info.features
            parsed = features._example_parser_np.parse_example(raw)
            record_id = parsed.get("id", b"?")
            for key in features.keys():
                try:
                    features[key].decode_example_np(parsed[key])
                except Exception:
                    field = key
                    break
        except Exception:
            pass
        if not _image_decode_error(error) and field == "?":
            return error  # not a data problem this wrapper can name: re-raised as is
        return BadRecordError(f"record {record_id!r} ({where}, shard {shard}): field {field!r} cannot be decoded "
                              f"({type(error).__name__}: {error}); rebuild the dataset or drop the record at build "
                              f"time")


@functools.cache
def _one_blas_thread() -> None:
    """Transforms run one BLAS thread per process (parallelism comes from grain workers): numpy's small matmuls (the
    spectrogram's DFT) were several times slower when OpenBLAS threads competed with the workers and the step."""
    threadpoolctl.threadpool_limits(1, user_api="blas")


class CheckedTransform:
    """Wraps a system's ``preprocess``: rejects non-finite outputs naming the record, and carries the record id
    (as bytes, kept on the host) so a failing step can name the records of its batch."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, record, rng=None):
        _one_blas_thread()
        record_id = record.get("id", b"?")
        try:
            out = self.preprocess(record, rng)
        except Exception as e:
            if _image_decode_error(e):  # a system that decodes stored JPEG bytes itself
                raise BadRecordError(f"record {record_id!r}: an image cannot be decoded ({type(e).__name__}: {e}); "
                                     f"rebuild the dataset or drop the record at build time") from e
            e.add_note(f"while transforming record {record_id!r}")
            raise
        for key, value in out.items():
            if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.isfinite(value).all():
                raise BadRecordError(f"record {record_id!r}: transformed field {key!r} has "
                                     f"{int(np.size(value) - np.isfinite(value).sum())} non-finite values; repair or "
                                     f"drop it at build time")
        out = dict(out, id=np.bytes_(record_id))
        if "dataset_index" in record:  # mixtures tag records with their dataset (per-dataset metrics)
            out["dataset_index"] = np.int32(record["dataset_index"])
        return out


def host_slice(num_records: int, process_index: int, process_count: int) -> slice:
    return slice(process_index, num_records, process_count)


class Mixture:
    """Several training sources drawn with p_i ∝ n_i^T (``imujax.mixture.mix_sources``); records get
    ``dataset_index``.

    Its length (the sum of the sources') only sets the epoch length; the stream itself is infinite.
    """

    def __init__(self, sources, names, temperature: float = 0.5):
        if len(sources) != len(names) or not sources:
            raise ValueError(f"a mixture needs one name per source, got {len(sources)} sources, {len(names)} names")
        self.sources, self.names, self.temperature = list(sources), tuple(names), float(temperature)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def weights(self) -> np.ndarray:
        return mixture.temperature_weights([len(s) for s in self.sources], self.temperature)


def open_train_source(config: ml_collections.ConfigDict, workdir: str):
    """The training split of config.data.name, or a Mixture of every dataset in config.data.mixture."""
    if not config.data.get("mixture"):
        return open_source(config, workdir, config.data.train_split)
    names = mixture.dataset_names(config)
    sources = [open_source(config, workdir, config.data.train_split, name) for name in names]
    mixed = Mixture(sources, names, config.data.get("mixture_temperature", 0.5))
    logging.info("training mixture (T=%s): %s", mixed.temperature,
                 ", ".join(f"{n} {len(s)} records p={w:.3f}" for n, s, w in zip(names, sources, mixed.weights())))
    return mixed


def train_dataset(source, preprocess, *, global_batch: int, seed: int, worker_count: int,
                  process_index: int = 0, process_count: int = 1, read_threads: int = 2,
                  prefetch_batches: int = 2) -> grain.IterDataset:
    """Infinite, shuffled, transformed stream of this host's part of every global batch.

    The shuffle order and each record's transform RNG depend only on the seed and the record's position in the
    global stream, and host i takes the i-th block of each global batch; so the global batches are the same for any
    number of hosts and workers (a 2-process run sees exactly the data of a 1-process run). A ``Mixture`` source is
    interleaved by ``imujax.mixture.mix_sources`` (each source shuffled with seed + i; the draw depends only on the
    position too), so the same holds for mixtures.
    """
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} is not divisible by {process_count} processes")
    if len(source) < global_batch:
        raise ValueError(f"training split has {len(source)} records, fewer than one global batch of {global_batch}")
    local_batch = global_batch // process_count
    if isinstance(source, Mixture):
        ds = mixture.mix_sources(source.sources, seed=seed, weights=source.weights())
    else:
        ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat(None)
    ds = ds.random_map(CheckedTransform(preprocess), seed=seed + 1)
    ds = ds.batch(local_batch, drop_remainder=True)[process_index::process_count]
    # Elements here are whole batches: bound the read-ahead (grain's default is 500 elements on 16 threads, which
    # for video batches means tens of GB of host memory and cores taken from the training step).
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches))
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it


BOOKKEEPING_KEYS = ("id", "valid")  # host-batch entries that are never model inputs


def split_bookkeeping(batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(model inputs, bookkeeping): record ids (named when a step goes non-finite) and the eval-padding mask
    ``valid`` (0 on padded rows) are taken out of a host batch here, in one place."""
    inputs = {k: v for k, v in batch.items() if k not in BOOKKEEPING_KEYS}
    return inputs, {k: batch[k] for k in BOOKKEEPING_KEYS if k in batch}


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
