"""PRIMUS pretraining: multimodal + self-supervised InfoNCE with nearest-neighbour positives from a feature queue.

Facts: Nokia-Bell-Labs/pretrained-imu-encoders@562e142 lib/train_modules.py, pretraining.py; the loss is
`objectives/primus.py`. Two IMU views per sample go through the multihead MW2 encoder in one pass: view 0 the raw
window, view 1 the PRIMUS augmentation (scaling then time-segment permutation, computed per record in the input
pipeline). Targets are L2-normalised video / text embeddings (precomputed features of the frozen clip4clip towers, or
the demo's trainable frame ViT and hashed text).

State that is not trained but must survive a restart lives in the model as `QueueState` variables (not
`nnx.Param`): the train loop keeps them in the state's `other` collection, so they are checkpointed and restored
with the run, sharded (replicated) like BatchNorm statistics, and updated in place by `loss`. The two raw
temperatures `mmcl_temperature` and `ssl_temperature` are `nnx.Param`s (Adam updates them, as upstream).

Deviation: upstream augments a whole batch at once, so its segment cut points are distinct across the batch; here
augmentation runs per record in grain workers, so they are distinct within each sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import systems
from imujax.models.rnn_imu import MW2StackRNNPoolingMultihead
from imujax.objectives import primus as primus_objective
from imujax.objectives.infonce import l2_normalize
from imujax.grafting import graft_converted_encoder
from imujax.models.video import VideoTower
from imujax.objectives.infonce import in_batch_top1
from imujax.transforms.contrastive_inputs import alignment_targets, check_targets, imu_window
from imujax.transforms import augment_imu


class QueueState(nnx.Variable):
    """Non-parameter training state (feature queues and their write pointer): checkpointed, never optimised."""


class PRIMUSModel(nnx.Module):
    def __init__(self, config: ml_collections.ConfigDict, targets: tuple[str, ...], *, rngs: nnx.Rngs):
        m, c = config.model, config.loss
        self.imu_encoder = MW2StackRNNPoolingMultihead(**dict(m.imu_encoder), rngs=rngs)
        dim = m.imu_encoder.size_embeddings
        self.video_encoder = VideoTower(m.video_tower, m.video, dim, rngs=rngs)
        self.mmcl_temperature = nnx.Param(jnp.asarray(c.mmcl_temperature, jnp.float32))
        self.ssl_temperature = nnx.Param(jnp.asarray(c.ssl_temperature, jnp.float32))
        self.use_queue = bool(c.nnclr)
        if self.use_queue:
            queue = primus_objective.init_feature_queue(c.queue_size, {name: dim for name in (*targets, "imu")})
            self.queue = nnx.Dict({name: QueueState(value) for name, value in queue.feats.items()})
            self.queue_ptr = QueueState(queue.ptr)

    def feature_queue(self) -> primus_objective.FeatureQueue | None:
        if not self.use_queue:
            return None
        return primus_objective.FeatureQueue({k: v[...] for k, v in self.queue.items()}, self.queue_ptr[...])

    def store_queue(self, queue: primus_objective.FeatureQueue) -> None:
        for name, value in queue.feats.items():
            self.queue[name][...] = value
        self.queue_ptr[...] = queue.ptr


class System(systems.System):
    """PRIMUS: `imu` / `imu_aug` [6, T] (T >= 123; 250 upstream), `video`, `text` [D], `label`."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.targets = check_targets(config.loss.targets)

    def make_model(self, rngs: nnx.Rngs) -> PRIMUSModel:
        model = PRIMUSModel(self.config, self.targets, rngs=rngs)
        valid = model.imu_encoder.valid_input_lengths()
        if valid is None or self.config.data.imu_length < valid[0]:
            raise ValueError(f"config.data.imu_length={self.config.data.imu_length} is shorter than the PRIMUS "
                             f"encoder's minimum {valid[0] if valid else '?'}")
        return model

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        d = self.config.data
        imu = imu_window(record, d.imu_channels, d.imu_rate_hz, d.imu_length, d.imu_resample)
        out = {"imu": imu, "label": np.int32(record["label"])}
        if rng is not None:  # the second view is only needed by the training loss
            out["imu_aug"] = augment_imu.primus_augment(imu[None], rng)[0]
        return {**out, **alignment_targets(record, self.config, self.targets, rng)}

    def loss(self, model: PRIMUSModel, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # the augmented view comes from the input pipeline
        if "imu_aug" not in batch:
            raise KeyError("PRIMUS loss needs batch['imu_aug'] (the augmented view made by preprocess in train mode)")
        size = batch["imu"].shape[0]
        out = model.imu_encoder(jnp.concatenate([batch["imu"], batch["imu_aug"]]))
        mmcl, ssl0, ssl1 = out["mmcl"][:size], out["ssl"][:size], out["ssl"][size:]
        targets = {}
        if "video" in self.targets:
            targets["video"] = l2_normalize(model.video_encoder(batch["video"]))
        if "text" in self.targets:
            targets["text"] = l2_normalize(batch["text"])
        total, queue, metrics = primus_objective.primus_loss(
            mmcl, ssl0, ssl1, targets, model.mmcl_temperature[...], model.ssl_temperature[...],
            model.feature_queue(), ssl_coeff=self.config.loss.ssl_coeff)
        if queue is not None:
            model.store_queue(queue)
        for name, target in targets.items():
            metrics[f"imu2{name}_top1"] = in_batch_top1(mmcl, target)
        metrics.update(tau_mm=model.mmcl_temperature[...], tau_ss=model.ssl_temperature[...])
        return total, metrics

    def init_from_converted(self, params: nnx.State, name: str, config: dict, converted: nnx.State) -> nnx.State:
        """Start from an `imujax.convert --model=primus` output: the encoder and the two learned temperatures."""
        if name != "primus":
            raise ValueError(f"config.init_from holds a {name!r} conversion; the primus system needs 'primus'")
        return graft_converted_encoder(params, converted, "config.init_from",
                                       {k: config.get(k) for k in ("mmcl_temperature", "ssl_temperature")})

    def embed(self, model: PRIMUSModel, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Retrieval uses the multimodal head (`mmcl`) against the video embedding; the probe uses `emb`."""
        out = model.imu_encoder(batch["imu"])
        emb = {"imu": l2_normalize(out["mmcl"]), "fused": out["emb"]}
        if "video" in batch:
            emb["video"] = l2_normalize(model.video_encoder(batch["video"]))
        return emb
