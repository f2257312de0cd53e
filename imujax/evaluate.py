"""Evaluation used by `--mode=eval` and periodically during training: retrieval R@k and a linear probe.

Embeddings come from the system's ``embed`` on the eval-mode model (BatchNorm running statistics, no dropout).
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from imujax import input_pipeline, sharding
from imujax.eval import linear_probe, retrieval


class Evaluator:
    def __init__(self, system, graphdef, config: ml_collections.ConfigDict, workdir: str, mesh):
        self.system, self.config, self.mesh = system, config, mesh
        batch = config.eval.batch_size or config.batch_size
        if batch % jax.process_count():
            raise ValueError(f"eval batch {batch} is not divisible by {jax.process_count()} processes")
        self.per_host_batch = batch // jax.process_count()
        self.test = input_pipeline.open_source(config, workdir, config.data.eval_split)
        self.train = input_pipeline.open_source(config, workdir, config.data.train_split)

        def embed(params, other, batch):
            model = nnx.merge(graphdef, params, other)
            model.eval()
            return system.embed(model, batch)

        self._embed = jax.jit(embed)

    def _collect(self, source, state) -> dict[str, np.ndarray]:
        outputs: dict[str, list] = {}
        for local in input_pipeline.eval_batches(source, self.system.preprocess, per_host_batch=self.per_host_batch,
                                                 process_index=jax.process_index(),
                                                 process_count=jax.process_count()):
            valid, label = local.pop("valid"), local["label"]
            local.pop("id")
            emb = self._embed(state["params"], state["other"], sharding.global_batch(local, self.mesh))
            emb = dict(emb, label=sharding.global_batch({"label": label}, self.mesh)["label"],
                       valid=sharding.global_batch({"valid": valid}, self.mesh)["valid"])
            for key, value in multihost_utils.process_allgather(emb, tiled=True).items():
                outputs.setdefault(key, []).append(np.asarray(value))
        out = {k: np.concatenate(v) for k, v in outputs.items()}
        keep = out.pop("valid").astype(bool)
        return {k: v[keep] for k, v in out.items()}

    def __call__(self, state) -> dict[str, float]:
        if not (self.config.eval.retrieval or self.config.eval.linear_probe):
            return {}
        test = self._collect(self.test, state)
        metrics: dict[str, float] = {}
        if self.config.eval.retrieval and "imu" in test and "video" in test:
            metrics.update(retrieval.retrieval_metrics(test["imu"], test["video"]))
        if self.config.eval.linear_probe and "fused" in test:
            train_subset = _Subset(self.train, self.config.eval.probe_train_examples)
            train = self._collect(train_subset, state)
            num_classes = int(max(train["label"].max(), test["label"].max())) + 1
            metrics["linear_probe_acc"] = linear_probe.linear_probe_accuracy(
                train["fused"], train["label"], test["fused"], test["label"], num_classes, self.config.eval.probe_l2)
            metrics["chance_acc"] = float(np.bincount(test["label"]).max() / len(test["label"]))
        return {f"eval/{k}": v for k, v in metrics.items()}


class _Subset:
    """n records spread evenly over a source: a fixed probe training set that covers every part of the split."""

    def __init__(self, source, n: int):
        self.source = source
        self.indices = np.linspace(0, len(source) - 1, min(n, len(source))).round().astype(int)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]
