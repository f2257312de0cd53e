"""Figures written at the end of a run: loss/metric curves and the system's own pictures (e.g. MAE reconstructions),
as PNGs in <workdir>/figures and as TensorBoard images; confusion matrices of classification evals (one per
prediction horizon) at every eval."""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from flax import nnx

from imujax import input_pipeline, sharding
from imujax.eval import plots


def write_run_figures(system, graphdef, state, config, workdir: str, step: int, mesh) -> list[str]:
    out_dir = os.path.join(workdir, "figures")
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    if system.pictures is not None:  # every process takes part in the (global) forward; process 0 writes
        source = input_pipeline.open_source(config, workdir, config.data.eval_split)
        local = next(input_pipeline.eval_batches(source, system.preprocess,
                                                 per_host_batch=sharding.batch_divisor(mesh) // jax.process_count(),
                                                 process_index=jax.process_index(),
                                                 process_count=jax.process_count()))
        local, _ = input_pipeline.split_bookkeeping(local)
        model = nnx.merge(graphdef, state["params"], state["other"])
        model.eval()
        arrays = system.pictures(model, sharding.global_batch(local, mesh), jax.random.key(config.seed))
        arrays = {k: np.asarray(jax.device_get(v)) for k, v in arrays.items()}
        if jax.process_index() == 0:
            written += system.draw_pictures(arrays, out_dir)
    if jax.process_index() == 0:
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(metrics_path):
            written.append(plots.plot_curves(metrics_path, os.path.join(out_dir, "curves.png")))
        for path in written:
            plots.png_to_tensorboard(workdir, "figures/" + os.path.splitext(os.path.basename(path))[0], path, step)
        logging.info("figures: %s", ", ".join(written))
    return written


def write_confusion_figures(confusions: dict[str, np.ndarray], workdir: str, step: int, *, prefix: str = "confusion",
                            class_names=None, writer=None) -> list[str]:
    """<workdir>/figures/<prefix>[_<horizon>].png (row-normalised, rows = true class), overwritten at each eval, and a
    TensorBoard image at ``step`` (through ``writer``, a MetricWriter, when given). Process 0 only."""
    if jax.process_index() != 0 or not confusions:
        return []
    out_dir = os.path.join(workdir, "figures")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, cm in confusions.items():
        stem = f"{prefix}_{name}" if name else prefix
        path = plots.plot_confusion(cm, os.path.join(out_dir, stem + ".png"), class_names,
                                    title=f"{stem} step {step} (rows: true, row-normalised)")
        if writer is not None:
            writer.write_image("figures/" + stem, path, step)
        else:
            plots.png_to_tensorboard(workdir, "figures/" + stem, path, step)
        written.append(path)
    return written
