"""Training on a dataset of one's own: `configs/<system>.py:own` takes what the built dataset knows.

  python -m imujax.main --config=configs/tsfm_stage1.py:own --config.data.name=imu_video_folder/default \
      --config.data.data_dir=DIR --workdir=runs/mine

An `:own` config sets ``config.data.from_dataset=True``; before the run, `resolve` opens the training split and fills
the fields the system needs from the dataset's metadata: channels, sampling rate, window length, class names and video
settings (the metadata.json keys ``channels`` / ``channel_layouts``, ``rate_hz``, ``window``, ``class_names``,
``video_frames`` and ``video_fps`` that `imu_video_folder` writes; for other builders, read off the first training
record and the label feature). When recordings differ in their channels, TSFM takes every channel (it reads each
record's own list) and the systems with a fixed layout (EVI-MAE, HIMU-MAE) take the triads that every recording has.
Normalisation statistics a system needs (EVI-MAE's spectrogram mean/std, HIMU-MAE's per-channel spectrogram mean/std)
are measured once on the training split and cached in ``imujax_stats.json`` next to the dataset (in the workdir when
that folder is read-only). TSFM z-scores every (patch, channel) itself and needs none. Explicit ``--config.*``
overrides of those fields win over the dataset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re

import ml_collections
import numpy as np

from imujax import input_pipeline
from imujax.transforms import records

STATS_FILE = "imujax_stats.json"
STATS_RECORDS = 256  # training records (spread evenly) that the normalisation statistics are measured on
_CHANNEL = re.compile(r"^(?P<place>.+)/(?P<kind>[A-Za-z0-9]+)_(?P<axis>[A-Za-z0-9]+)$")


class OwnDataError(ValueError):
    """The built dataset cannot feed this system (e.g. EVI-MAE without video); the message says what it needs."""


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    name: str
    channels: tuple[str, ...]       # every channel of any recording, in order of first appearance
    common_channels: tuple[str, ...]  # the channels every recording has
    rate_hz: float
    window: int                     # samples per record (of the first record when records differ)
    class_names: tuple[str, ...]
    video_frames: int               # frames per record; 0 without video
    video_fps: float
    description: str
    directory: str                  # the built dataset's folder (where the statistics cache lives)
    splits: tuple[str, ...] = ()

    @property
    def window_s(self) -> float:
        return self.window / self.rate_hz


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_facts(config: ml_collections.ConfigDict, workdir: str) -> DatasetFacts:
    source = input_pipeline.open_source(config, workdir, config.data.train_split)
    if not len(source):
        raise OwnDataError(f"{config.data.name}: training split {config.data.train_split!r} is empty")
    info, record = source.dataset_info, source[0]
    meta = dict(info.metadata or {})
    layouts = [tuple(x["channels"]) for x in meta.get("channel_layouts") or []]
    if meta.get("channels"):
        layouts = [tuple(meta["channels"])]
    layouts = layouts or [tuple(records.channel_names(record))]
    channels = tuple(dict.fromkeys(c for layout in layouts for c in layout))
    common = tuple(c for c in layouts[0] if all(c in layout for layout in layouts))
    rate = float(meta.get("rate_hz") or record["imu_rate_hz"])
    window = int(meta.get("window") or np.asarray(record["imu"]).shape[0])
    classes = tuple(meta.get("class_names") or ())
    label = info.features["label"] if "label" in info.features else None
    if not classes and hasattr(label, "names"):
        classes = tuple(label.names)
    frames = int(meta.get("video_frames") or (len(record["video"]) if "video" in record else 0))
    fps = float(meta.get("video_fps") or record.get("video_fps", 0.0))
    return DatasetFacts(name=config.data.name, channels=channels, common_channels=common, rate_hz=rate, window=window,
                        class_names=classes,
                        video_frames=frames, video_fps=fps, description=str(meta.get("description") or info.name),
                        directory=os.fspath(info.data_dir), splits=tuple(info.splits.keys()))


def triads(channels, kinds=("acc", "gyro")) -> list[tuple[str, str, str]]:
    """Complete x/y/z triads `<place>/<kind>_{x,y,z}` among `channels`, kinds in the order given, then places in
    channel order."""
    present = set(channels)
    out = []
    for kind in kinds:
        places = dict.fromkeys(m["place"] for c in channels if (m := _CHANNEL.match(c)) and m["kind"] == kind)
        for place in places:
            triad = tuple(f"{place}/{kind}_{axis}" for axis in "xyz")
            if all(c in present for c in triad):
                out.append(triad)
    return out


# -- normalisation statistics, measured once per dataset and cached next to it -----------------------------------------
def cached_stats(facts: DatasetFacts, config: ml_collections.ConfigDict, workdir: str, key: str, measure) -> dict:
    """`measure(records)` on up to STATS_RECORDS training records, cached under `key` (which names every setting the
    statistics depend on) in <dataset folder>/imujax_stats.json."""
    for folder in (facts.directory, workdir):
        path = os.path.join(folder, STATS_FILE)
        if os.path.exists(path):
            with open(path) as f:
                cache = json.load(f)
            if key in cache:
                return cache[key]
    source = input_pipeline.open_source(config, workdir, config.data.train_split)
    index = np.unique(np.linspace(0, len(source) - 1, min(STATS_RECORDS, len(source))).round().astype(int))
    stats = measure([source[int(i)] for i in index])
    logging.warning("own data: measured %s on %d training records: %s", key, len(index), stats)
    for folder in (facts.directory, workdir):
        path = os.path.join(folder, STATS_FILE)
        try:
            os.makedirs(folder, exist_ok=True)
            cache = json.load(open(path)) if os.path.exists(path) else {}
            cache[key] = stats
            with open(path + ".tmp", "w") as f:
                json.dump(cache, f, indent=1)
            os.replace(path + ".tmp", path)
            break
        except OSError as e:
            logging.warning("own data: cannot write %s (%s)", path, e)
    return stats


# -- per system ----------------------------------------------------------------------------------------------------
def _single_dataset(config) -> None:
    d = config.data
    d.mixture, d.auto_build = (), False
    d.per_dataset, d.manual_dirs = ml_collections.ConfigDict(), ml_collections.ConfigDict()


def _tsfm(config, facts: DatasetFacts, workdir: str) -> None:
    d = config.data
    _single_dataset(config)
    d.imu_channels, d.channel_names, d.sampling_rate_hz = (), facts.channels, facts.rate_hz
    d.dataset_description = d.dataset_description or facts.description
    d.patch_seconds = min(d.patch_seconds, facts.window_s)
    d.max_patches = max(1, math.ceil(facts.window_s / d.patch_seconds - 1e-6))
    d.max_channels = len(facts.channels)  # records of a different layout fill fewer channel slots
    if "patch_seconds_choices" in d:  # Stage 2: training-time patch lengths that fit the window
        d.patch_seconds_choices = tuple(p for p in d.patch_seconds_choices if p <= facts.window_s) or (d.patch_seconds,)
        d.max_patches = max(1, math.ceil(facts.window_s / min(d.patch_seconds_choices) - 1e-6))
    if "class_names" in d:
        if not facts.class_names:
            raise OwnDataError(f"{facts.name}: {config.system} trains on labels, but the dataset has no class names")
        d.class_names = facts.class_names


def _evi_mae(config, facts: DatasetFacts, workdir: str) -> None:
    d, m = config.data, config.model
    if not facts.video_frames:
        raise OwnDataError(f"{facts.name}: EVI-MAE pairs IMU with video, and this dataset has no video (build it with "
                           "video, or use tsfm_stage1 / himu_mae for IMU only)")
    kinds = tuple(d.get("part_kinds", ("acc", "gyro")))
    parts = triads(facts.common_channels, kinds)
    if not parts:
        raise OwnDataError(f"{facts.name}: EVI-MAE takes 3-axis parts '<place>/<kind>_x/_y/_z' "
                           f"(kinds {kinds}) that every recording has; the common channels "
                           f"{list(facts.common_channels)} hold none")
    _single_dataset(config)
    d.imu_channels = tuple(c for triad in parts for c in triad)
    m.imu_channels, m.imu_parts = len(d.imu_channels), len(parts)
    # the clip: every frame of the window (stride 1), a whole number of tubelets, at most the configured length
    d.frame_stride = 1
    m.num_frames = max(m.tubelet, min(m.num_frames, facts.video_frames // m.tubelet * m.tubelet))
    key = f"stretched_db_spectrogram {facts.name} {d.train_split} channels={','.join(d.imu_channels)} " \
          f"n_fft={d.n_fft} win={d.win_length} hop={d.hop_length} time={m.imu_time} freq={m.imu_freq}"

    def measure(recs):
        from imujax.transforms import imu as imu_tf
        values = np.concatenate([imu_tf.stretched_db_spectrogram(
            records.select_channels(r, d.imu_channels), mean=0.0, std=1.0, target_length=m.imu_time,
            n_bins=m.imu_freq, n_fft=d.n_fft, win_length=d.win_length, hop_length=d.hop_length).ravel()
            for r in recs])
        return {"mean": float(values.mean()), "std": float(values.std())}

    stats = cached_stats(facts, config, workdir, key, measure)
    d.imu_mean, d.imu_std = stats["mean"], stats["std"]


def _evi_mae_finetune(config, facts: DatasetFacts, workdir: str) -> None:
    _evi_mae(config, facts, workdir)
    if not facts.class_names:
        raise OwnDataError(f"{facts.name}: fine-tuning needs labels, but the dataset has no class names")
    config.finetune.num_classes = len(facts.class_names)


def _himu_mae(config, facts: DatasetFacts, workdir: str) -> None:
    d = config.data
    parts = triads(facts.common_channels, ("acc",))
    if not parts:
        raise OwnDataError(f"{facts.name}: HIMU-MAE takes one accelerometer triad '<place>/acc_x/_y/_z' that every "
                           f"recording has; the common channels {list(facts.common_channels)} hold none")
    if facts.rate_hz != int(facts.rate_hz) or facts.rate_hz < d.down_rate:
        raise OwnDataError(f"{facts.name}: HIMU-MAE resamples an integer rate down to {d.down_rate} Hz; the "
                           f"dataset's rate is {facts.rate_hz} Hz")
    _single_dataset(config)
    d.imu_channels, d.window_s = parts[0], facts.window_s
    key = f"himu_spectrogram {facts.name} {d.train_split} channels={','.join(d.imu_channels)} " \
          f"rates={d.down_rate}/{d.up_rate} window={d.window_s} n_fft={d.n_fft} win={d.win_length} " \
          f"size={config.model.img_h}x{config.model.img_w}"

    def measure(recs):
        from imujax.systems import himu_mae  # the spectrogram of the system itself, with identity normalisation
        probe = ml_collections.ConfigDict(config.to_dict())
        probe.data.spec_mean, probe.data.spec_std = (0.0,) * 3, (1.0,) * 3
        system = himu_mae.System(probe)
        specs = np.stack([system.preprocess(r, None)["spec"] for r in recs])  # [N, 3, H, W]
        return {"mean": specs.mean(axis=(0, 2, 3)).tolist(), "std": specs.std(axis=(0, 2, 3)).tolist()}

    stats = cached_stats(facts, config, workdir, key, measure)
    d.spec_mean, d.spec_std = tuple(stats["mean"]), tuple(stats["std"])


FILLERS = {"tsfm_stage1": _tsfm, "tsfm_stage2": _tsfm, "evi_mae": _evi_mae, "evi_mae_finetune": _evi_mae_finetune,
           "himu_mae": _himu_mae}


def resolve(config: ml_collections.ConfigDict, workdir: str, overridden=()) -> ml_collections.ConfigDict:
    """The config with its dataset-dependent fields filled from the built dataset (a copy; the input is unchanged).
    Fields named in `overridden` (dotted, as given on the command line) keep their given values."""
    if not config.data.get("from_dataset"):
        return config
    if config.system not in FILLERS:
        raise OwnDataError(f"config.data.from_dataset: no own-data support for {config.system!r} "
                           f"(supported: {sorted(FILLERS)})")
    if not config.data.name:
        raise OwnDataError("an :own config needs --config.data.name=<builder>/<config> (and --config.data.data_dir)")
    facts = read_facts(config, workdir)
    filled = ml_collections.ConfigDict(config.to_dict())
    FILLERS[config.system](filled, facts, workdir)
    named = set(re.sub(r"\[[^\]]*\]", "", config.data.eval_split).split("+"))  # "a[:50%]+b" -> {a, b}
    if facts.splits and not named <= set(facts.splits):
        logging.warning("own data: %s has no split %r (splits: %s); evaluating on %r", facts.name,
                        config.data.eval_split, list(facts.splits), config.data.train_split)
        filled.data.eval_split = config.data.train_split
    for dotted in overridden:  # what the user typed wins
        *parents, leaf = dotted.split(".")
        src, dst = config, filled
        for p in parents:
            src, dst = src[p], dst[p]
        if leaf in src:
            dst[leaf] = src[leaf]
    logging.warning("own data %s: %d channels at %g Hz, %d-sample windows, %d classes, %d video frames", facts.name,
                    len(facts.channels), facts.rate_hz, facts.window, len(facts.class_names), facts.video_frames)
    return filled
