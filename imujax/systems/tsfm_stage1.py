"""TSFM Stage 1: masked patch reconstruction + patch contrastive pretraining of the dual-branch encoder
(alxdofficial/tsfm@308eea1 training_scripts/human_activity_recognition/pretrain.py).

Per record (numpy, grain workers): channels -> optional SO(3) rotation per body location -> patches of
``patch_seconds`` resampled to 64 steps and z-scored -> padded to (max_patches, max_channels); a structured MAE
mask (random / span / channel dropout) and a weak-augmented second view. Channel descriptions become frozen
sentence vectors once at start-up (cached on disk) and records carry indices into that table.
Loss: L_mae / EMA(L_mae) + L_con / EMA(L_con) with the EMAs carried in the model's training state.
Multi-dataset runs (config.data.mixture): each dataset has its own channel names, description, rate and patch seconds
(config.data.per_dataset.<dataset>); records carry ``dataset_index`` and the description table has one row per
(dataset, channel). The loss then also returns each term restricted to each dataset (per-dataset metrics).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import alarms
from imujax import run_metrics
from imujax import mixture
from imujax import systems
from imujax.models.tsfm import TSFMPretrain, sizes_from_config
from imujax.objectives import tsfm_pretrain
from imujax.text import descriptions
from imujax.text import embedder as text_embedder
from imujax.transforms import tsfm_augment
from imujax.transforms.tsfm_records import dataset_patchers, record_dataset


class System(systems.System):
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.sizes = sizes_from_config(config.model, use_channel_encoding=True)
        strings, self.patchers = dataset_patchers(config)
        self.eval_dataset = mixture.eval_index(config)
        embedder = text_embedder.make_embedder(config.text.embedder, cache_dir=config.text.cache_dir or None,
                                               width=config.text.hashed_width)
        sentences = descriptions.sentence_table(embedder, strings)
        if sentences.shape[1] != self.sizes.sbert_dim:
            raise ValueError(f"text embedder width {sentences.shape[1]} != config.model.sbert_dim {self.sizes.sbert_dim}")
        self.channel_sentences = sentences.astype(np.float32)

    def make_model(self, rngs: nnx.Rngs) -> TSFMPretrain:
        return TSFMPretrain(self.sizes, rngs=rngs)

    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        d, c = self.config.data, self.config.loss
        patcher = self.patchers[record_dataset(record, self.eval_dataset)]
        patches, patch_mask, channel_mask, ids = patcher(record, rng, patcher.data.patch_seconds)
        out = {"patches": patches, "patch_mask": patch_mask, "channel_mask": channel_mask, "channel_ids": ids,
               "label": np.int32(record["label"])}
        if rng is None:
            return out
        n_valid, c_valid = int(patch_mask.sum()), int(channel_mask.sum())
        mae_mask, drop, _ = tsfm_augment.structured_mask(d.max_patches, n_valid, channel_mask, rng, c.mask_ratio,
                                                         tuple(c.strategy_probs))
        series = patches[:n_valid, :, :c_valid].reshape(-1, c_valid)
        view = np.zeros_like(patches)
        view[:n_valid, :, :c_valid] = tsfm_augment.weak_view(series, rng).reshape(n_valid, -1, c_valid)
        return {**out, "mae_mask": mae_mask, "channel_drop": drop, "patches_view": view}

    def loss(self, model: TSFMPretrain, batch: dict[str, jax.Array], rng: jax.Array):
        c = self.config.loss
        k1, k2 = jax.random.split(rng)
        pm, cm = batch["patch_mask"], batch["channel_mask"]
        sentence = jnp.asarray(self.channel_sentences)[batch["channel_ids"]]
        _, proj1, recon = model(batch["patches"], pm, cm, mae_mask=batch["mae_mask"],
                                channel_drop=batch["channel_drop"], channel_sentence=sentence, dropout_key=k1)
        _, proj2, _ = model(batch["patches_view"], pm, cm, channel_sentence=sentence, dropout_key=k2)
        mae_args = (recon, batch["patches"], batch["mae_mask"], pm, cm, batch["channel_drop"])
        l_mae = tsfm_pretrain.mae_loss(*mae_args)
        l_con, acc, con_sums = tsfm_pretrain.patch_nt_xent(proj1, proj2, pm, cm, c.contrast_temperature,
                                                           per_example=True)
        total, ema = tsfm_pretrain.ema_balanced_total(l_mae, l_con, model.loss_ema[...], model.loss_ema_ready[...],
                                                      c.ema_decay, c.mae_weight, c.contrast_weight)
        model.loss_ema[...] = ema
        model.loss_ema_ready[...] = jnp.ones((), bool)
        out = {"loss": total, "mae": l_mae, "contrast": l_con, "contrast_acc": acc}
        if "dataset_index" in batch:  # mixture: each loss term restricted to each dataset's patches, same balance
            index, n = batch["dataset_index"], len(self.patchers)
            mae_d = run_metrics.segment_ratio(*tsfm_pretrain.mae_sums(*mae_args), index, n)
            con_d = run_metrics.segment_ratio(*con_sums, index, n)
            safe = jnp.maximum(ema, 1e-8)
            out[run_metrics.PER_DATASET] = jax.lax.stop_gradient({
                "loss": c.mae_weight * mae_d / safe[0] + c.contrast_weight * con_d / safe[1],
                "mae": mae_d, "contrast": con_d})
        return total, out

    def trivial_values(self, batch_size: int) -> dict[str, tuple[float, str]]:
        """What the reconstruction reads when nothing is learned (imujax.alarms): patches are z-scored per (patch,
        channel), so predicting zeros gives an MSE of 1."""
        return {"mae": (1.0, "MSE of a zero prediction on z-scored patches")}

    def embed(self, model: TSFMPretrain, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Mean of the encoder output over valid patches and channels (``fused``, for the linear probe)."""
        pm, cm = batch["patch_mask"], batch["channel_mask"]
        sentence = jnp.asarray(self.channel_sentences)[batch["channel_ids"]]
        feats = model.encoder(batch["patches"], pm, cm, channel_sentence=sentence)
        w = (pm[:, :, None] & cm[:, None, :]).astype(feats.dtype)[..., None]
        return {"fused": (feats * w).sum((1, 2)) / jnp.maximum(w.sum((1, 2)), 1.0)}
