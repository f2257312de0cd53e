"""TSFM Stage 2: align session embeddings with label text through the learnable label bank (alxdofficial/tsfm@308eea1
training_scripts/human_activity_recognition/semantic_alignment_train.py).

Per record: channels (config.data.keep_sensors=(lo, hi): a random lo..hi of the record's sensors in training, the
first hi in evaluation)
-> optional SO(3) rotation -> jitter / per-channel scaling (p 0.5 each) -> patches with a
patch length drawn from config.data.patch_seconds_choices (training) -> padded arrays, channel-description indices
and a label-text variant (raw name, or a template such as "person {}" with probability text_augment_prob).
Text token states of every channel description and label variant are computed once at start-up (disk cache).
Loss: soft-target InfoNCE (K=1), multi-prototype InfoNCE (K>1) or SigLIP, with a memory bank of negatives.
Starting the encoder from a Stage-1 run: ``--config.init_from=RUN_DIR:latest --config.init_only=encoder`` (the older
``config.encoder_init_from=RUN_DIR`` is read the same way; `imujax.train.init_source`).
Multi-dataset runs (config.data.mixture): per-dataset channels, descriptions and patch lengths as in Stage 1; the
label bank's table is the union of every dataset's class names (``label_variant`` indexes it), while ``label`` stays
the dataset's own class index (evaluation is closed-set on config.data.name's classes).
End-of-run evaluation (config.eval.zero_shot): closed-set zero-shot and the config.eval.supervision_rates protocol
(imujax.eval.zero_shot) on the eval split, written to metrics.jsonl with the other eval metrics.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from imujax import run_metrics
from imujax import mixture
from imujax import systems
from imujax.models.tsfm import TSFM, encode_frozen, sizes_from_config
from imujax.objectives import prototypes
from imujax.text import descriptions
from imujax.text import embedder as text_embedder
from imujax.transforms import tsfm_augment
from imujax.transforms.tsfm_records import dataset_patchers, record_dataset


def keep_sensors(record: dict, rng: np.random.Generator | None, d: ml_collections.ConfigDict) -> dict:
    """The record with a random lo..hi (d.keep_sensors) of its sensors in training, its first hi sensors in
    evaluation (rng None); channels are grouped into sensors by location (the part of the name before '/'). One
    encoder then sees the 1-5 sensor layouts real sets carry."""
    lo, hi = d.get("keep_sensors") or (0, 0)
    if not hi:
        return record
    if d.imu_channels:
        raise ValueError(f"config.data.keep_sensors={d.keep_sensors} needs config.data.imu_channels=() (it picks "
                         "from the record's own channels)")
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in record["channels"]]
    locations = list(dict.fromkeys(n.rpartition("/")[0] for n in names))
    if rng is None:
        keep = set(locations[:hi])
    else:
        count = int(rng.integers(min(lo, len(locations)), min(hi, len(locations)) + 1))
        keep = {locations[i] for i in rng.choice(len(locations), size=max(count, 1), replace=False)}
    columns = [i for i, n in enumerate(names) if n.rpartition("/")[0] in keep]
    return dict(record, imu=np.asarray(record["imu"], np.float32)[:, columns], channels=[names[i] for i in columns])


class System(systems.System):
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.sizes = sizes_from_config(config.model, use_channel_encoding=False,
                                       memory_bank_size=config.loss.memory_bank_size)
        embedder = text_embedder.make_embedder(config.text.embedder, cache_dir=config.text.cache_dir or None,
                                               width=config.text.hashed_width)
        t = config.text
        strings, self.patchers = dataset_patchers(config, leading=(descriptions.PAD,))  # row 0: padded channels
        self.eval_dataset = mixture.eval_index(config)
        self.channel_tokens, self.channel_token_mask = descriptions.token_table(embedder, strings, t.max_length)
        self.templates = tuple(t.label_templates)
        # label table: every dataset's classes, each name once; label_maps[i][local class] -> row of the table
        self.label_names: list[str] = []
        self.label_maps = []
        for patcher in self.patchers:
            names = list(patcher.data.class_names)
            if not names:
                raise ValueError(f"class_names of {patcher.data.name!r} are empty (config.data.class_names or "
                                 f"config.data.per_dataset.<dataset>.class_names)")
            self.label_names += [n for n in names if n not in self.label_names]
            self.label_maps.append(np.array([self.label_names.index(n) for n in names], np.int32))
        self.class_names = list(self.patchers[self.eval_dataset].data.class_names)  # closed-set candidates
        self.label_tokens, self.label_token_mask = descriptions.token_table(
            embedder, descriptions.label_variants(self.label_names, self.templates), t.max_length)
        if self.label_tokens.shape[-1] != self.sizes.semantic_dim:
            raise ValueError(f"text width {self.label_tokens.shape[-1]} != config.model.semantic_dim "
                             f"{self.sizes.semantic_dim} (the label bank works on the text model's token states)")

    # -- model ---------------------------------------------------------------------------------------------------------
    def make_model(self, rngs: nnx.Rngs) -> TSFM:
        return TSFM(self.sizes, rngs=rngs)

    # -- data ----------------------------------------------------------------------------------------------------------
    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        dataset = record_dataset(record, self.eval_dataset)
        patcher = self.patchers[dataset]
        d = patcher.data
        seconds = d.patch_seconds
        if rng is not None and d.patch_seconds_choices:
            seconds = float(rng.choice(np.asarray(d.patch_seconds_choices)))
        record = keep_sensors(record, rng, d)
        record = dict(record, imu=self._signal_augment(np.asarray(record["imu"], np.float32), rng, d))
        patches, patch_mask, channel_mask, ids = patcher(record, rng, seconds)
        label = int(record["label"])
        variant = 0
        if rng is not None and rng.random() < self.config.text.augment_prob:
            variant = int(rng.integers(1, len(self.templates)))
        row = int(self.label_maps[dataset][label])
        return {"patches": patches, "patch_mask": patch_mask, "channel_mask": channel_mask, "channel_ids": ids,
                "label": np.int32(label), "label_variant": np.int32(row * len(self.templates) + variant)}

    def _signal_augment(self, imu: np.ndarray, rng: np.random.Generator | None,
                        d: ml_collections.ConfigDict) -> np.ndarray:
        if rng is None:
            return imu
        if rng.random() < d.jitter_prob:
            imu = tsfm_augment.jitter(imu, rng, d.jitter_sigma)
        if rng.random() < d.scale_prob:
            imu = tsfm_augment.scaling(imu, rng, 0.9, 1.1)
        return imu

    # -- objective -----------------------------------------------------------------------------------------------------
    def session_embedding(self, model: TSFM, batch, dropout_key=None):
        ids = batch["channel_ids"]
        return model.embed_session(batch["patches"], batch["patch_mask"], batch["channel_mask"],
                                   jnp.asarray(self.channel_tokens)[ids], jnp.asarray(self.channel_token_mask)[ids],
                                   dropout_key)

    def loss(self, model: TSFM, batch: dict[str, jax.Array], rng: jax.Array):
        c = self.config.loss
        z = self.session_embedding(model, batch, rng)
        tokens = jnp.asarray(self.label_tokens)[batch["label_variant"]]
        mask = jnp.asarray(self.label_token_mask)[batch["label_variant"]]
        t = model.label_bank(tokens, mask)  # [B, K, D]
        negatives = model.memory_bank.negatives() if self.sizes.memory_bank_size else {}
        if c.kind == "siglip":
            best = jnp.argmax(jnp.einsum("bd,bkd->bk", z, t), axis=-1)
            t_best = jnp.take_along_axis(t, best[:, None, None], axis=1)[:, 0]
            loss, metrics = prototypes.siglip_loss(z, t_best, model.logit_scale[...], model.logit_bias[...])
        elif self.sizes.num_prototypes == 1:
            frozen = encode_frozen(tokens, mask) if c.soft_targets == "frozen" else None
            loss, metrics = prototypes.soft_info_nce(
                z, t[:, 0], model.logit_scale[...], frozen_text=frozen, soft_weight=c.soft_weight,
                soft_temperature=c.soft_temperature, use_soft=c.soft_targets != "none", **negatives)
            t_best = t[:, 0]
        else:
            loss, metrics = prototypes.multi_prototype_info_nce(
                z, t, model.logit_scale[...], soft_weight=c.soft_weight, soft_temperature=c.soft_temperature,
                use_soft=c.soft_targets != "none", **negatives)
            t_best = metrics.pop("t_best")
            metrics.pop("best_prototype")
        rows = metrics.pop("per_example_loss")
        out = {"loss": loss, **metrics, run_metrics.PER_EXAMPLE: {"loss": rows}}
        if self.sizes.memory_bank_size and c.kind != "siglip":
            out["bank_rejected"] = model.memory_bank.enqueue(z, t_best)
            out["bank_filled"] = model.memory_bank.filled[...]
        return loss, out

    # -- evaluation ----------------------------------------------------------------------------------------------------
    def label_embeddings(self, model: TSFM) -> jax.Array:
        """Label-bank embeddings [n_classes, K, D] of the raw class names (template 0)."""
        rows = self.label_maps[self.eval_dataset] * len(self.templates)
        return model.label_bank(jnp.asarray(self.label_tokens[rows]), jnp.asarray(self.label_token_mask[rows]))

    def embed(self, model: TSFM, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {"fused": self.session_embedding(model, batch)}

    def evaluate(self, graphdef, state, source) -> dict[str, float]:
        """The TSFM protocol (upstream evaluate_tsfm.py) on config.data.eval_split when config.eval.zero_shot is set:
        closed-set zero-shot accuracy / macro-F1 (+ chance 1 / classes) and the config.eval.supervision_rates
        fine-tuning protocol (e.g. 'supervised_10pct/acc'), on ``source`` (the eval split). Called by the Evaluator (end
        of run, eval_every_steps) with the eval source it already holds."""
        e = self.config.eval
        if not e.get("zero_shot", False):
            return {}
        if jax.process_count() > 1:  # the protocol fine-tunes a host-local copy; run it offline on multi-host runs
            logging.warning("zero-shot / supervision protocol skipped on a %d-process run: run "
                            "`python -m imujax.main --mode=eval` on the workdir in one process", jax.process_count())
            return {}
        from imujax.eval import zero_shot
        model = nnx.merge(graphdef, jax.device_get(state["params"]), jax.device_get(state["other"]))
        model.eval()
        return zero_shot.evaluate_model(self, model, source, tuple(e.get("supervision_rates", (0.1,))),
                                        e.get("finetune_lr", 1e-5))
