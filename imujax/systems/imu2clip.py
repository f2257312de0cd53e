"""IMU2CLIP pretraining: align an MW2 stack-RNN IMU encoder with video and text embeddings.

Facts: facebookresearch/imu2clip@6353031 lib/{imu_models.py, loss.py, train_modules.py}. Loss = sum over targets {video,
text} of the symmetric InfoNCE (CE over columns + CE over rows, added) on L2-normalised embeddings, one raw temperature
shared by all targets (learnable from 0.1 at upstream HEAD, fixed 0.1 in the original release). The IMU encoder output
(final GRU state) is compared directly with the target embeddings: there is no projection on the IMU side.

Targets:
* video: `model.video_tower='features'` reads a precomputed per-clip embedding from the record's `video_features`
  ([F, D] averaged over F, or [D]), the stand-in for the frozen CLIP image tower; `'vit'` trains a small frame ViT
  (`models/video.py`) plus a linear map to the embedding size (used by the synthetic demo, where no CLIP exists).
* text: `data.text_source='features'` reads `text_features` [D]; `'hash'` embeds the record's `text` with the
  deterministic hashed bag-of-words stand-in (`models/text_hash.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import systems
from imujax.grafting import graft_converted_encoder
from imujax.models.rnn_imu import MW2StackRNNPooling
from imujax.models.video import VideoTower
from imujax.objectives.infonce import in_batch_top1, info_nce_symmetric_sum, l2_normalize
from imujax.transforms.contrastive_inputs import alignment_targets, check_targets, imu_window


class IMU2CLIPModel(nnx.Module):
    def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
        m = config.model
        self.imu_encoder = MW2StackRNNPooling(**dict(m.imu_encoder), rngs=rngs)
        self.embed_dim = m.imu_encoder.size_embeddings
        self.video_encoder = VideoTower(m.video_tower, m.video, self.embed_dim, rngs=rngs)
        # HEAD's learnable raw divisor (a param, so Adam updates it); None = the original fixed temperature.
        self.temperature = nnx.Param(jnp.asarray(m.temperature, jnp.float32)) if m.learn_temperature else None
        self.fixed_temperature = float(m.temperature)

    def tau(self) -> jax.Array | float:
        return self.temperature[...] if self.temperature is not None else self.fixed_temperature


class System(systems.System):
    """IMU2CLIP: `imu` [6, T] (T in the encoder's valid range, 1000 upstream), `video`, `text` [D], `label`."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.targets = check_targets(config.loss.targets)

    def make_model(self, rngs: nnx.Rngs) -> IMU2CLIPModel:
        model = IMU2CLIPModel(self.config, rngs=rngs)
        valid = model.imu_encoder.valid_input_lengths()
        length = self.config.data.imu_length
        if valid is None or not valid[0] <= length <= valid[1]:
            raise ValueError(f"config.data.imu_length={length} does not fit the IMU2CLIP encoder, which accepts "
                             f"{valid} samples (set imu_rate_hz/imu_length accordingly)")
        return model

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        d = self.config.data
        out = {"imu": imu_window(record, d.imu_channels, d.imu_rate_hz, d.imu_length, d.imu_resample),
               "label": np.int32(record["label"])}
        return {**out, **alignment_targets(record, self.config, self.targets, rng)}

    def loss(self, model: IMU2CLIPModel, batch: dict[str, jax.Array], rng: jax.Array):
        del rng  # deterministic: no dropout, no augmentation in the upstream recipe
        emb = model.imu_encoder(batch["imu"])
        tau = model.tau()
        metrics: dict[str, jax.Array] = {}
        total = jnp.zeros((), jnp.float32)
        for name in self.targets:
            target = model.video_encoder(batch["video"]) if name == "video" else batch["text"]
            term = info_nce_symmetric_sum(emb, target, tau)
            metrics[f"imu2{name}"] = term
            metrics[f"imu2{name}_top1"] = in_batch_top1(emb, target)
            total = total + term
        metrics.update(loss=total, temperature=jnp.asarray(tau, jnp.float32))
        return total, metrics

    def init_from_converted(self, params: nnx.State, name: str, config: dict, converted: nnx.State) -> nnx.State:
        """Start from an `imujax.convert --model=imu2clip` output: the encoder, and its temperature if learnable."""
        if name != "imu2clip":
            raise ValueError(f"config.init_from holds a {name!r} conversion; the imu2clip system needs 'imu2clip'")
        return graft_converted_encoder(params, converted, "config.init_from",
                                       {"temperature": config.get("temperature")})

    def embed(self, model: IMU2CLIPModel, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        emb = model.imu_encoder(batch["imu"])
        out = {"imu": l2_normalize(emb), "fused": emb}
        if "video" in batch:
            out["video"] = l2_normalize(model.video_encoder(batch["video"]))
        return out
