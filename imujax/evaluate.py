"""Evaluation used by `--mode=eval` and periodically during training: retrieval R@k, a linear probe and, for systems
that define ``classification_spec()`` (fine-tuning), classification metrics of the model's own logits
(`imujax.eval.classification`: accuracy, macro / weighted F1, per prediction horizon and their mean).

Embeddings come from the system's ``embed`` on the eval-mode model (BatchNorm running statistics, no dropout).
``selection_metric`` names the eval metric that selects the best checkpoint (`imujax.checkpointing.BestCheckpointer`).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from imujax import input_pipeline, sharding
from imujax.eval import classification, linear_probe, retrieval


def classification_spec(system, config: ml_collections.ConfigDict):
    """The system's ClassificationSpec, or None (no hook, or config.eval.classification off)."""
    if system.classification_spec is None or not config.eval.get("classification", True):
        return None
    return system.classification_spec()


def selection_metric(system, config: ml_collections.ConfigDict) -> tuple[str, str] | None:
    """(logged eval key, 'max' | 'min') that selects the best checkpoint, or None: config.checkpoint.best_metric when
    set ('none' disables), else the system's own (e.g. RevalExo: 'eval/weighted_f1_h0s', max)."""
    name = config.checkpoint.get("best_metric", "")
    if name == "none":
        return None
    if name:
        mode = config.checkpoint.get("best_mode", "max")
        if mode not in ("max", "min"):
            raise ValueError(f"config.checkpoint.best_mode must be 'max' or 'min', got {mode!r}")
        return (name if name.startswith("eval/") else f"eval/{name}"), mode
    spec = classification_spec(system, config)
    if spec is None or not spec.selection:
        return None
    return spec.selection_key, spec.selection_mode


class Evaluator:
    def __init__(self, system, graphdef, config: ml_collections.ConfigDict, workdir: str, mesh, source=None,
                 prefix: str = "eval"):
        """source: the records to evaluate (default: config.data.eval_split), logged as '<prefix>/<metric>'."""
        self.system, self.config, self.mesh = system, config, mesh
        batch = config.eval.batch_size or config.batch_size
        if batch % jax.process_count():
            raise ValueError(f"eval batch {batch} is not divisible by {jax.process_count()} processes")
        self.per_host_batch = batch // jax.process_count()
        self.graphdef = graphdef  # for a system's own protocol (system.evaluate)
        self.classification = classification_spec(system, config)
        self.last_classification: classification.ClassificationResult | None = None  # of the latest call
        self.prefix = prefix
        self.test = source if source is not None else input_pipeline.open_source(config, workdir,
                                                                                 config.data.eval_split)
        self.train = input_pipeline.open_source(config, workdir, config.data.train_split)

        def embed(params, other, batch):
            model = nnx.merge(graphdef, params, other)
            model.eval()
            return system.embed(model, batch)

        self._embed = jax.jit(embed)

    def _collect(self, source, state, carry: tuple[str, ...] = ("label",)) -> dict[str, np.ndarray]:
        """Embeddings of every record of ``source``, with the batch entries named in ``carry``."""
        outputs: dict[str, list] = {}
        ids: list[np.ndarray] = []
        for local in input_pipeline.eval_batches(source, self.system.preprocess, per_host_batch=self.per_host_batch,
                                                 process_index=jax.process_index(),
                                                 process_count=jax.process_count()):
            local, bookkeeping = input_pipeline.split_bookkeeping(local)
            valid = bookkeeping["valid"]
            ids.append(bookkeeping["id"][valid.astype(bool)])  # host-side; whole only with one process
            carried = {k: local[k] for k in dict.fromkeys(carry) if k in local}
            emb = self._embed(state["params"], state["other"], sharding.global_batch(local, self.mesh))
            emb = dict(emb, **sharding.global_batch(dict(carried, valid=valid), self.mesh))
            for key, value in multihost_utils.process_allgather(emb, tiled=True).items():
                outputs.setdefault(key, []).append(np.asarray(value))
        out = {k: np.concatenate(v) for k, v in outputs.items()}
        keep = out.pop("valid").astype(bool)
        out = {k: v[keep] for k, v in out.items()}
        if jax.process_count() == 1:
            out["record_ids"] = np.concatenate(ids)
        return out

    def __call__(self, state) -> dict[str, float]:
        spec = self.classification
        self.last_classification = None
        own = self._system_protocol(state)
        if not (self.config.eval.retrieval or self.config.eval.linear_probe or spec is not None):
            return own
        test = self._collect(self.test, state, ("label",) + (spec.batch_keys if spec is not None else ()))
        metrics: dict[str, float] = {}
        if spec is not None:
            if spec.logits not in test:
                raise KeyError(f"{type(self.system).__module__}: classification_spec names logits {spec.logits!r}, "
                               f"but embed returns {sorted(test)}")
            self.last_classification = classification.classification_metrics(spec, test)
            metrics.update(self.last_classification.scalars)
            metrics.update(per_recording_metrics(test, spec.logits))
        if self.config.eval.retrieval and "imu" in test and "video" in test:
            metrics.update(retrieval.retrieval_metrics(test["imu"], test["video"]))
        if self.config.eval.linear_probe and "fused" in test:
            train_subset = _Subset(self.train, self.config.eval.probe_train_examples)
            train = self._collect(train_subset, state)
            num_classes = int(max(train["label"].max(), test["label"].max())) + 1
            metrics["linear_probe_acc"] = linear_probe.linear_probe_accuracy(
                train["fused"], train["label"], test["fused"], test["label"], num_classes, self.config.eval.probe_l2)
            metrics["chance_acc"] = float(np.bincount(test["label"]).max() / len(test["label"]))
        return {**own, **{f"{self.prefix}/{k}": v for k, v in metrics.items()}}

    def _system_protocol(self, state) -> dict[str, float]:
        """A system's own evaluation on the eval split, ``system.evaluate(graphdef, state, source)`` (e.g. TSFM Stage 2:
        zero-shot and few-label supervision), reported under ``eval/``."""
        if self.system.evaluate is None:
            return {}
        own = self.system.evaluate(self.graphdef, state, self.test)
        return {f"{self.prefix}/{k}": float(v) for k, v in own.items()}


def per_recording_metrics(outputs: dict[str, np.ndarray], logits_key: str) -> dict[str, float]:
    """One prediction per recording (mean of its windows' logits; the recording as `records.recording_id` names
    it): recording_accuracy / recording_macro_f1 / recordings. Empty when the ids are not at hand (several
    processes), the logits are per horizon, or a recording's windows carry different labels (no single truth)."""
    from imujax.eval import metrics as cls_metrics
    from imujax.eval import probes
    from imujax.transforms import records
    logits, labels, ids = outputs.get(logits_key), outputs.get("label"), outputs.get("record_ids")
    if ids is None or labels is None or logits is None or np.ndim(logits) != 2 or len(ids) != len(labels):
        return {}
    labelled = labels >= 0
    if not labelled.any():
        return {}
    recordings = np.asarray([records.recording_id({"id": i}) for i in ids[labelled]])
    try:
        pooled = probes.pool_per_recording(np.asarray(logits, np.float64)[labelled], labels[labelled], recordings)
    except ValueError:  # windows of one recording with different labels
        return {}
    pred = pooled.features.argmax(axis=1)
    return {"recording_accuracy": cls_metrics.accuracy(pooled.labels, pred),
            "recording_macro_f1": cls_metrics.f1_score(pooled.labels, pred, "macro"),
            "recordings": float(len(pooled.labels))}


class _Subset:
    """n records spread evenly over a source: a fixed probe training set that covers every part of the split."""

    def __init__(self, source, n: int):
        self.source = source
        self.indices = np.linspace(0, len(source) - 1, min(n, len(source))).round().astype(int)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]
