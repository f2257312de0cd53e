"""Contrastive IMU pretraining for real recordings (SimCLR on IMU, the PRIMUS/IMU2CLIP self-supervised term alone).

Two augmented views of each window (`transforms/imu_views.py`: rotation, time warp, scaling, jitter, sensor
dropout) go through a small conv encoder (`models/conv_imu.py`); an InfoNCE over the batch (both directions) pulls
the views of one window together. The input keeps its levels (acc in g, gyro in rad/s, no per-window z-score).
With config.loss.label_weight = w > 0 the loss is (1 - w) of that InfoNCE plus w of a supervised contrastive term
(SupCon) whose positives are every window of the same synthetic primitive (the corpus's labels come with the data);
a real record's label is never used: its window's only positive is its other view.

Records of any dataset in the project schema work: `config.data.imu_channel_groups` lists sensor placements as
6-channel (acc xyz, gyro xyz) groups; a record uses the groups it has (training: one at random per record, so a
multi-sensor set such as DSADS or the synthetic body suit gives every placement; evaluation: the first present).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import systems
from imujax.models.conv_imu import ConvIMUEncoder
from imujax.objectives.infonce import info_nce_symmetric_mean, l2_normalize, supervised_contrastive
from imujax.transforms import imu as imu_tf
from imujax.transforms import imu_views, records


class System(systems.System):
    """`imu` [6, T] (and `imu_view` [6, T] in training), `label`."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        groups = [tuple(g) for g in config.data.imu_channel_groups]
        if not groups or any(len(g) != 6 for g in groups):
            raise ValueError(f"config.data.imu_channel_groups={groups}: expected groups of 6 channel names "
                             f"(acc xyz, gyro xyz)")
        self.groups = groups
        # Labels may shape the pretraining only where they are generated with the data (the synthetic corpus): a
        # real set's labels are what the benchmark's probes are scored on. Per source of the run (mixture order).
        sources = list(config.data.get("mixture") or [config.data.name])
        self.label_sources = [name.startswith("synthetic_egomotion") for name in sources]
        if config.loss.label_weight and not any(self.label_sources):
            raise ValueError(f"config.loss.label_weight={config.loss.label_weight} uses the labels of synthetic "
                             f"records, and no source of this run is synthetic ({sources})")

    def make_model(self, rngs: nnx.Rngs) -> ConvIMUEncoder:
        m = self.config.model
        return ConvIMUEncoder(6, tuple(m.widths), m.kernel, m.dim, m.proj_dim, rngs=rngs)

    def window(self, record: dict, rng: np.random.Generator | None) -> np.ndarray:
        """[6, T] unit-scaled window from one of the record's sensor groups, at config.data.imu_rate_hz."""
        d = self.config.data
        names = set(records.channel_names(record))
        present = [g for g in self.groups if set(g) <= names]
        if not present:
            raise KeyError(f"record {record.get('id', '?')!r}: none of config.data.imu_channel_groups is in its "
                           f"channels {sorted(names)}")
        group = present[int(rng.integers(len(present)))] if rng is not None else present[0]
        x = records.select_channels(record, group).T
        rate = float(np.asarray(record["imu_rate_hz"]))
        if rate != d.imu_rate_hz:
            x = imu_tf.sinc_resample(x, int(rate), int(d.imu_rate_hz))
        x = x[:, :d.imu_length]
        if x.shape[1] < d.imu_length:
            x = np.pad(x, ((0, 0), (0, d.imu_length - x.shape[1])))
        return imu_views.scale_units(x)

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        x = self.window(record, rng)
        out = {"imu": x, "label": np.int32(record["label"])}
        if self.config.loss.label_weight:  # -1: a real record's label, never seen by the loss
            synthetic = self.label_sources[int(record.get("dataset_index", 0))]
            out["supcon_label"] = np.int32(record["label"] if synthetic else -1)
        if rng is not None:
            aug = dict(self.config.augment)
            out["imu"] = imu_views.random_view(x, rng, **aug)
            out["imu_view"] = imu_views.random_view(x, rng, **aug)
        return out

    def loss(self, model: ConvIMUEncoder, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        size = batch["imu"].shape[0]
        z = model.project(model(jnp.concatenate([batch["imu"], batch["imu_view"]])))
        z0, z1 = l2_normalize(z[:size]), l2_normalize(z[size:])
        tau, weight = self.config.loss.temperature, self.config.loss.label_weight
        views = info_nce_symmetric_mean(z0, z1, tau)
        top1 = jnp.mean((jnp.argmax(z0 @ z1.T, axis=1) == jnp.arange(size)).astype(jnp.float32))
        metrics = {"view_loss": views, "view_top1": top1, "chance_loss": jnp.log(size)}
        loss = views
        if weight:  # positives are also the other windows of the same synthetic primitive
            ids = jnp.where(batch["supcon_label"] >= 0, batch["supcon_label"], -1 - jnp.arange(size))
            labels = jnp.concatenate([ids, ids])  # an unlabelled window's only positive: its other view
            metrics["label_loss"] = supervised_contrastive(z, labels, tau)
            loss = (1.0 - weight) * views + weight * metrics["label_loss"]
        metrics["loss"] = loss
        return loss, metrics

    def embed(self, model: ConvIMUEncoder, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {"fused": model(batch["imu"])}
