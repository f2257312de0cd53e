"""HIMU-MAE pretraining system (and Audio-MAE-style MAE on any IMU spectrogram): preprocess, loss, embeddings.

Record -> accelerometer window -> ``transforms.himu.himu_spectrogram`` [C, H(freq), W(time)]; the model is
``models.audio_mae.AudioMAE`` (ViT encoder + shifted-window decoder), optionally conditioned on the record's
precomputed clip feature (``video_features``, Omnivore 1536-d) in the decoder. Loss: norm-pix masked MSE.
Eval embedding ``fused``: mean of the unmasked encoder tokens (HIMU's ``extract_feats`` + mean pool).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import alarms, systems
from imujax.eval import reconstruction
from imujax.models.audio_mae import AudioMAE, AudioMAESizes, patchify, unpatchify
from imujax.objectives import mae
from imujax.transforms import himu, records


class System(systems.System):
    """Binds a config to the HIMU-MAE model, its spectrogram transform, the MAE loss and evaluation embeddings."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        model_cfg = dict(config.model)
        self.dtype = jnp.dtype(model_cfg.pop("dtype", "float32"))
        for key in ("window", "shift"):
            model_cfg[key] = tuple(model_cfg[key])
        self.sizes = AudioMAESizes(**model_cfg)

    # -- model ------------------------------------------------------------------------------------------------------
    def make_model(self, rngs: nnx.Rngs) -> AudioMAE:
        return AudioMAE(self.sizes, dtype=self.dtype, rngs=rngs)

    # -- data -------------------------------------------------------------------------------------------------------
    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """One decoded record -> {'spec' [C, H, W], 'label'} (+ 'video' [D_v] when the decoder is video-conditioned)."""
        d = self.config.data
        accel = records.select_channels(record, d.imu_channels)
        rate = float(record["imu_rate_hz"])
        if rate != int(rate):
            raise ValueError(f"record {record.get('id', '?')!r}: imu_rate_hz {rate} must be an integer rate")
        train = rng is not None
        spec = himu.himu_spectrogram(
            accel, orig_rate=int(rate), down_rate=d.down_rate, window_s=d.window_s, up_rate=d.up_rate,
            side=d.pad_side, n_fft=d.n_fft, win_length=d.win_length, hop_length=d.hop_length,
            size=(self.sizes.img_h, self.sizes.img_w), antialias=d.antialias, mean=d.spec_mean, std=d.spec_std,
            rng=rng, freq_mask=d.freq_mask if train else 0, time_mask=d.time_mask if train else 0)
        out = {"spec": spec, "label": np.int32(record["label"])}
        if self.sizes.video_dim:
            if "video_features" not in record:
                raise KeyError(f"record {record.get('id', '?')!r} has no 'video_features' but config.model.video_dim="
                               f"{self.sizes.video_dim} (video-conditioned decoder)")
            feats = np.asarray(record["video_features"], np.float32).reshape(-1, self.sizes.video_dim)
            out["video"] = feats.mean(axis=0)
        return out

    # -- objective --------------------------------------------------------------------------------------------------
    def _forward(self, model: AudioMAE, batch, rng, dropout: bool = True):
        c = self.config.loss
        k_mask, k_drop = jax.random.split(rng)
        k_drop = k_drop if dropout else None
        noise = model.draw_noise(k_mask, batch["spec"].shape[0], mask_2d=c.mask_2d)
        return model(batch["spec"], noise, video=batch.get("video"), mask_ratio=c.mask_ratio,
                     mask_row_ratio=c.mask_row_ratio, mask_col_ratio=c.mask_col_ratio, key=k_drop)

    def loss(self, model: AudioMAE, batch: dict[str, jax.Array], rng: jax.Array):
        out = self._forward(model, batch, rng)
        loss = mae.masked_mse(out["pred"], out["target"], out["mask"], norm_pix=self.config.loss.norm_pix_loss)
        return loss, {"loss": loss, "mask_fraction": out["mask"].mean()}

    # -- evaluation -------------------------------------------------------------------------------------------------
    def trivial_values(self, batch_size: int) -> dict[str, tuple[float, str]]:
        """What the loss reads when nothing is learned (imujax.alarms)."""
        return {"loss": alarms.NORM_PIX_MAE} if self.config.loss.norm_pix_loss else {}

    def embed(self, model: AudioMAE, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {"fused": model.encode_unmasked(batch["spec"]).mean(axis=1)}

    def pictures(self, model: AudioMAE, batch: dict[str, jax.Array], rng: jax.Array):
        """The spectrogram reconstruction figure: input, masked input (removed patches 0) and the reconstruction."""
        out = self._forward(model, batch, rng, dropout=False)
        s = self.sizes
        masked, recon = reconstruction.paste_patches(out["pred"], patchify(batch["spec"], s.patch), out["mask"],
                                                     self.config.loss.norm_pix_loss)
        return {"reconstruction_spectrogram": reconstruction.Reconstruction(
            batch["spec"], unpatchify(masked, s.patch, s.grid, s.in_chans),
            unpatchify(recon, s.patch, s.grid, s.in_chans), reconstruction.SPECTROGRAM)}
