"""EVI-MAE pretraining system: record preprocessing, model construction, the weighted loss and eval embeddings.

Total = mae_weight * (MSE_imu + MSE_video) + contrast_weight * InfoNCE(video -> IMU, tau) + graph_weight * SCE,
the released recipe being 1.0 / 0.01 / 10 with tau 0.05 (mf-zhang/IMU-Video-MAE@78e7666 src/models/evi_mae.py
`EVIMAE.forward`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import alarms, patch_layout, systems
from imujax.eval import reconstruction
from imujax.models.evi_mae import EVIMAE, EVIMAESizes
from imujax.objectives import graph, infonce, mae
from imujax.transforms import spectrogram_clip
from imujax.transforms import video as video_tf


class System(systems.System):
    """Binds a config to the EVI-MAE model, its input transform, loss and evaluation embeddings."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        model_cfg = dict(config.model)
        self.dtype = jnp.dtype(model_cfg.pop("dtype", "float32"))
        self.sizes = EVIMAESizes(**model_cfg)

    # -- model ------------------------------------------------------------------------------------------------------
    def make_model(self, rngs: nnx.Rngs) -> EVIMAE:
        return EVIMAE(self.sizes, dtype=self.dtype, rngs=rngs)

    # -- data -------------------------------------------------------------------------------------------------------
    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        return spectrogram_clip.spectrogram_clip_patches(record, self.config.data, self.sizes, rng)

    model_inputs = staticmethod(spectrogram_clip.model_inputs)

    # -- objective --------------------------------------------------------------------------------------------------
    def loss(self, model: EVIMAE, batch: dict[str, jax.Array], rng: jax.Array):
        c = self.config.loss
        k_mask, k_drop = jax.random.split(rng)
        masks = model.draw_masks(k_mask, batch["imu"].shape[0])
        imu, video = self.model_inputs(batch)
        out = model(imu, video, masks=masks, imu_mask_ratio=c.imu_mask_ratio, video_mask_ratio=c.video_mask_ratio,
                    dropout_key=k_drop)
        mae_imu = mae.masked_mse(out["pred_imu"], out["target_imu"], out["mask_imu"], norm_pix=c.norm_pix_loss)
        mae_video = mae.masked_mse(out["pred_video"], out["target_video"], out["mask_video"],
                                   norm_pix=c.norm_pix_loss)
        contrast, contrast_acc = infonce.evi_mae_info_nce(out["contrast_imu"], out["contrast_video"],
                                                         temperature=c.contrast_temperature,
                                                         bidirectional=c.get("bidirectional_contrast", False))
        graph_loss = graph.sce_loss(out["graph_recon"], out["graph_nodes"], out["graph_masked"])
        total = (c.mae_weight * (mae_imu + mae_video) + c.contrast_weight * contrast
                 + c.graph_weight * graph_loss)
        return total, {"loss": total, "mae_imu": mae_imu, "mae_video": mae_video, "contrast": contrast,
                       "contrast_acc": contrast_acc, "graph": graph_loss}

    def trivial_values(self, batch_size: int) -> dict[str, tuple[float, str]]:
        """What each loss term reads when nothing is learned (imujax.alarms)."""
        out = {"contrast": alarms.info_nce(batch_size), "contrast_acc": alarms.chance(batch_size)}
        if self.config.loss.norm_pix_loss:
            out.update(mae_imu=alarms.NORM_PIX_MAE, mae_video=alarms.NORM_PIX_MAE)
        return out

    # -- evaluation -------------------------------------------------------------------------------------------------
    def embed(self, model: EVIMAE, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Eval-mode embeddings: the contrastive IMU/video features (for retrieval) and the fused fine-tune feature."""
        imu, video = self.model_inputs(batch)
        a, v = model.encode_unmasked(imu, video)
        return {"imu": model.norm_a(model.blocks_u[0](a, "a")).mean(axis=1),
                "video": model.norm_video(model.blocks_u[0](v, "v")).mean(axis=1),
                "fused": model.encode_multimodal(imu, video)}

    # -- pictures ---------------------------------------------------------------------------------------------------
    PICTURED_CHANNELS = (0, 3, 6, 9)  # the x axis of each body part's accelerometer

    def pictures(self, model: EVIMAE, batch: dict[str, jax.Array], rng: jax.Array):
        """One masked forward on an eval batch: the IMU spectrogram and the video reconstruction figures."""
        c, s = self.config.loss, self.sizes
        imu, video = self.model_inputs(batch)
        masks = model.draw_masks(rng, imu.shape[0])
        out = model(imu, video, masks=masks, imu_mask_ratio=c.imu_mask_ratio, video_mask_ratio=c.video_mask_ratio)
        imu, video = out["target_imu"], out["target_video"]  # patch vectors, whichever form the batch had

        def spectrograms(patches):  # [B, L_a, C*p*p] -> [B, shown channels, freq, time]
            images = patch_layout.imu_from_patches(patches, s.imu_channels, s.imu_time, s.imu_freq, s.patch)
            shown = [k for k in self.PICTURED_CHANNELS if k < s.imu_channels]
            return jnp.swapaxes(images[:, shown], -1, -2)

        def clips(patches):  # [B, L_v, kt*p*p*3] normalised -> [B, 3, T, S, S] RGB in [0, 1]
            rgb = patch_layout.video_from_patches(patches, s.num_frames, s.img_size, s.tubelet, s.patch)
            mean = jnp.asarray(video_tf.IMAGENET_MEAN).reshape(3, 1, 1, 1)
            std = jnp.asarray(video_tf.IMAGENET_STD).reshape(3, 1, 1, 1)
            return jnp.clip(rgb * std + mean, 0, 1)

        imu_masked, imu_recon = reconstruction.paste_patches(out["pred_imu"], imu, out["mask_imu"], c.norm_pix_loss)
        video_masked, video_recon = reconstruction.paste_patches(out["pred_video"], video, out["mask_video"],
                                                                 c.norm_pix_loss)
        return {"reconstruction_imu": reconstruction.Reconstruction(
                    spectrograms(imu), spectrograms(imu_masked), spectrograms(imu_recon), reconstruction.SPECTROGRAM),
                "reconstruction_video": reconstruction.Reconstruction(
                    clips(video), clips(video_masked), clips(video_recon), reconstruction.VIDEO)}
