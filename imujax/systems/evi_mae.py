"""EVI-MAE pretraining system: record preprocessing, model construction, the weighted loss and eval embeddings.

Total = mae_weight * (MSE_imu + MSE_video) + contrast_weight * InfoNCE(video -> IMU, tau) + graph_weight * SCE,
the released recipe being 1.0 / 0.01 / 10 with tau 0.05 (mf-zhang/IMU-Video-MAE@78e7666 src/models/evi_mae.py
`EVIMAE.forward`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import alarms, patch_layout, systems
from imujax.eval import plots
from imujax.models.evi_mae import EVIMAE, EVIMAESizes
from imujax.objectives import graph, infonce, mae
from imujax.transforms import spectrogram_clip


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
    def pictures(self, model: EVIMAE, batch: dict[str, jax.Array], rng: jax.Array) -> dict[str, jax.Array]:
        """One masked forward on an eval batch: inputs, masks and decoder outputs for reconstruction figures."""
        c = self.config.loss

        @nnx.jit
        def forward(model, batch, key):
            imu, video = self.model_inputs(batch)
            masks = model.draw_masks(key, imu.shape[0])
            out = model(imu, video, masks=masks, imu_mask_ratio=c.imu_mask_ratio, video_mask_ratio=c.video_mask_ratio)
            return {"imu": imu, "video": video, "pred_imu": out["pred_imu"],
                    "mask_imu": out["mask_imu"], "pred_video": out["pred_video"], "mask_video": out["mask_video"]}

        return forward(model, batch, rng)

    def draw_pictures(self, arrays: dict[str, np.ndarray], out_dir: str) -> list[str]:
        """Reconstructions of the first example of the batch."""
        s, norm_pix = self.sizes, self.config.loss.norm_pix_loss
        arrays = {k: v[0] for k, v in arrays.items()}
        imu = patch_layout.imu_from_patches(arrays["imu"], s.imu_channels, s.imu_time, s.imu_freq, s.patch)
        video = patch_layout.video_from_patches(arrays["video"], s.num_frames, s.img_size, s.tubelet, s.patch)
        return [
            plots.plot_imu_reconstruction(imu, arrays["pred_imu"], arrays["mask_imu"],
                                          os.path.join(out_dir, "reconstruction_imu.png"), s.patch, norm_pix),
            plots.plot_video_reconstruction(video, arrays["pred_video"], arrays["mask_video"],
                                            os.path.join(out_dir, "reconstruction_video.png"), s.tubelet, s.patch,
                                            norm_pix=norm_pix)]
