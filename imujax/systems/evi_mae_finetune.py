"""EVI-MAE fine-tuning system: classification from IMU spectrograms + video, two heads.

`config.finetune.head`:
- "evimaeft": released EVI-MAE fine-tuning (`EVIMAEFT`, ``multimodal`` mode). Input transform as pretraining
  (`imujax.transforms.spectrogram_clip`), with the dataset's fine-tune statistics.
- "revalexo_fusion": RevalExo `EVI_MAE_Fusion` (`imujax.models.evi_mae_fusion`), multi-horizon locomotion labels
  (records of the `revalexo` builder). IMU: the 12 slot channels of `imujax.transforms.channel_layouts`
  (`config.data.slot_mapping`), RevalExo spectrogram in (freq, time) layout; video: 16 frames by linspace over the
  window, ImageNet-normalised, short side scaled, random-resized crop (scale 0.8-1) + flip in training, centre crop
  in eval. Loss: label-smoothed CE per horizon, mean over horizons (revalexo train/utils/training_utils.py).
Evaluation (`classification_spec`): accuracy, macro and weighted F1 of the logits, per horizon and their mean; the best
checkpoint is selected by `config.finetune.metric`: weighted F1 at horizon index 0 on the eval split for RevalExo
(revalexo train/train.py; in a LOSO fold the eval split is the held-out subject), mAP (CMU-MMAC) or accuracy (WEAR)
for EVIMAEFT (IMU-Video-MAE src/traintest_ft.py).
EVIMAEFT targets (mf-zhang/IMU-Video-MAE@78e7666 src/dataloader.py, src/traintest_ft.py):
- loss "bce" (released EVI-MAE recipe): multi-hot vector that starts at smoothing/C everywhere, each listed class
  set to 1 - smoothing; BCE-with-logits averaged over classes and batch.
- loss "ce": softmax cross-entropy with torch-style label smoothing ((1 - s) one-hot + s/C).
Records carry either `labels` (multi-hot [C], e.g. CMU-MMAC) or `label` (one class index).

The newly initialised head trains at 100 x the base learning rate upstream: `config.optimizer.lr_multipliers`
({path regex: factor}), applied by the loop's optimiser (`imujax.train.scale_by_path_multipliers`).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from imujax import alarms, systems
from imujax.eval import classification
from imujax.models.evi_mae import EVIMAEFT, EVIMAESizes
from imujax.models.evi_mae_fusion import EVIMAEFusion
from imujax.transforms import imu as imu_tf
from imujax.transforms import channel_layouts, records, spectrogram_clip
from imujax.transforms import video as video_tf


# config.finetune.metric (upstream spelling) -> imujax.eval.classification metric name
SELECTION_METRICS = {"acc": "accuracy", "map": "map", "weighted_f1": "weighted_f1", "macro_f1": "macro_f1",
                     "accuracy": "accuracy"}


def smoothed_multi_hot(positives: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    """EVI-MAE dataloader targets: smoothing/C everywhere, 1 - smoothing at every positive class."""
    target = np.full((num_classes,), smoothing / num_classes, np.float32)
    target[np.asarray(positives, np.int64)] = 1.0 - smoothing
    return target


def record_positives(record: dict, num_classes: int) -> np.ndarray:
    """Positive class indices of a record: from multi-hot `labels` when present, else the single `label`."""
    if "labels" in record:
        multi_hot = np.asarray(record["labels"])
        if multi_hot.shape != (num_classes,):
            raise ValueError(f"record {record.get('id', '?')!r}: 'labels' has shape {multi_hot.shape}, expected "
                             f"({num_classes},) = config.finetune.num_classes")
        return np.flatnonzero(multi_hot > 0.5)
    label = int(record["label"])
    if not 0 <= label < num_classes:
        raise ValueError(f"record {record.get('id', '?')!r}: label {label} outside [0, {num_classes})")
    return np.array([label])


class System(systems.System):
    """EVIMAEFT (BCE or CE) or RevalExo EVI_MAE_Fusion (multi-horizon CE); `embed` returns the fused feature."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        model_cfg = dict(config.model)  # the pretraining model's sizes and record transform
        self.dtype = jnp.dtype(model_cfg.pop("dtype", "float32"))
        self.sizes = EVIMAESizes(**model_cfg)
        f = config.finetune
        if f.head not in ("evimaeft", "revalexo_fusion"):
            raise ValueError(f"config.finetune.head must be 'evimaeft' or 'revalexo_fusion', got {f.head!r}")
        if f.loss not in ("bce", "ce"):
            raise ValueError(f"config.finetune.loss must be 'bce' or 'ce', got {f.loss!r}")
        if f.head == "revalexo_fusion" and f.loss != "ce":
            raise ValueError("config.finetune.head='revalexo_fusion' trains with loss='ce' (one CE per horizon)")
        self.classification_spec()  # validates config.finetune.metric

    def classification_spec(self) -> classification.ClassificationSpec:
        """Eval hook: the logits, their labels per horizon and the checkpoint-selection metric (upstream's)."""
        f = self.config.finetune
        selection = SELECTION_METRICS.get(f.metric, f.metric)
        if f.head == "revalexo_fusion":  # checkpoint metric: classification-report weighted F1 at horizon index 0
            return classification.ClassificationSpec(
                f.num_classes, logits="logits", labels="labels", horizon_names=classification.names_for(f.horizons),
                transitions="transitions", selection=selection, selection_horizon=0)
        return classification.ClassificationSpec(f.num_classes, logits="logits", labels="label", multi_hot="targets",
                                                 selection=selection)

    def make_model(self, rngs: nnx.Rngs):
        f = self.config.finetune
        if f.head == "revalexo_fusion":
            return EVIMAEFusion(self.sizes, f.num_classes, num_horizons=len(f.horizons), feature_dim=f.feature_dim,
                                shared_layers=f.shared_classifier_layers, use_graph=f.use_graph, dtype=self.dtype,
                                rngs=rngs)
        return EVIMAEFT(self.sizes, f.num_classes, use_graph=f.use_graph, dtype=self.dtype, rngs=rngs)

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        f = self.config.finetune
        if f.head == "revalexo_fusion":
            return self._revalexo_preprocess(record, rng)
        # as pretraining; the label is set below (it may be multi-hot)
        out = spectrogram_clip.spectrogram_clip_patches(dict(record, label=0), self.config.data, self.sizes, rng)
        positives = record_positives(record, f.num_classes)
        smoothing = f.label_smoothing if rng is not None or f.smooth_eval_targets else 0.0
        out["targets"] = smoothed_multi_hot(positives, f.num_classes, smoothing)
        out["label"] = np.int32(positives[0] if len(positives) else -1)  # first positive, for probes and accuracy
        return out

    def _revalexo_preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        d, s, f = self.config.data, self.sizes, self.config.finetune
        imu = channel_layouts.to_evi_mae_slots(record, d.slot_mapping)
        spec = imu_tf.resized_log_spectrogram(imu, mean=d.imu_mean, std=d.imu_std, signal_length=d.signal_length,
                                           target_height=s.imu_freq, target_length=s.imu_time, n_fft=d.n_fft,
                                           win_length=d.win_length, hop_length=d.hop_length)
        frames = records.frames(record)
        clip = video_tf.normalize(frames[video_tf.linspace_frame_indices(len(frames), s.num_frames)])
        clip = video_tf.short_side_resize(clip, int(round(s.img_size * d.short_side_ratio)))
        if rng is not None:
            clip = video_tf.random_resized_crop(clip, s.img_size, rng, scale=(0.8, 1.0))
            if rng.random() < 0.5:
                clip = video_tf.horizontal_flip(clip)
        else:
            clip = video_tf.center_crop(clip, s.img_size)
        # Records without per-horizon labels (e.g. synthetic clips) carry one `label`, used at every horizon.
        labels = np.asarray(record["labels"] if "labels" in record else [record["label"]] * len(f.horizons), np.int32)
        if labels.shape != (len(f.horizons),):
            raise ValueError(f"record {record.get('id', '?')!r}: 'labels' has shape {labels.shape}, expected one "
                             f"label per horizon {tuple(f.horizons)}")
        transitions = np.asarray(record.get("transitions", np.zeros(len(labels))), bool)
        return {"imu": spec, "video": video_tf.to_channels_first(clip), "label": labels[0], "labels": labels,
                "transitions": transitions}

    def model_inputs(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(imu, video): RevalExo batches hold the normalised clip, the others the pretraining patch layout."""
        if self.config.finetune.head == "revalexo_fusion":
            return batch["imu"], batch["video"]
        return spectrogram_clip.model_inputs(batch)

    def logits(self, model, batch: dict[str, jax.Array], dropout_key: jax.Array | None) -> jax.Array:
        """[B, C] (EVIMAEFT) or [H, B, C] (RevalExo fusion)."""
        out = model(*self.model_inputs(batch), dropout_key=dropout_key)
        return (out[0] if isinstance(out, tuple) else out).astype(jnp.float32)

    def loss(self, model, batch: dict[str, jax.Array], rng: jax.Array):
        f = self.config.finetune
        logits = self.logits(model, batch, rng)
        if f.head == "revalexo_fusion":  # MultiHorizonLoss: each horizon weighted 1/H
            one_hot = jax.nn.one_hot(batch["labels"].T, f.num_classes)  # [H, B, C]
            per_horizon = optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, f.label_smoothing))
            loss = per_horizon.mean()
            accuracy = (logits[0].argmax(-1) == batch["labels"][:, 0]).mean()
            return loss, {"loss": loss, "accuracy_h0": accuracy}
        if f.loss == "bce":
            loss = optax.sigmoid_binary_cross_entropy(logits, batch["targets"]).mean()
        else:
            one_hot = jax.nn.one_hot(batch["label"], f.num_classes)
            loss = optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, f.label_smoothing)).mean()
        accuracy = (logits.argmax(-1) == batch["label"]).mean()
        return loss, {"loss": loss, "accuracy": accuracy}

    def trivial_values(self, batch_size: int) -> dict[str, tuple[float, str]]:
        """Training accuracy at chance (imujax.alarms)."""
        key = "accuracy_h0" if self.config.finetune.head == "revalexo_fusion" else "accuracy"
        classes = int(self.config.finetune.num_classes)
        return {key: alarms.chance(classes, "classes")} if classes > 1 else {}

    def embed(self, model, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        if self.config.finetune.head == "revalexo_fusion":
            logits, features = model(*self.model_inputs(batch))
            return {"fused": features, "logits": logits.astype(jnp.float32).transpose(1, 0, 2)}
        fused = model.encode_multimodal(*self.model_inputs(batch))
        return {"fused": fused, "logits": model.mlp_head[1](model.mlp_head[0](fused)).astype(jnp.float32)}

