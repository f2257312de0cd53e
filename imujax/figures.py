"""Figures written at the end of a run: loss/metric curves and the system's own pictures (e.g. MAE reconstructions),
as PNGs in <workdir>/figures and as TensorBoard images through the run's writer; confusion matrices of
classification evals (one per prediction horizon) at every eval.

A system's `pictures` hook returns arrays (`eval.reconstruction.Reconstruction`, which says what they are); the
drawing is chosen here by that kind, so no system draws.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from flax import nnx

from imujax import input_pipeline, run_metrics, sharding
from imujax.eval import plots, reconstruction

MAX_EXAMPLES = 4  # examples of the eval batch drawn per figure


def draw(picture: reconstruction.Reconstruction, out_png: str) -> str:
    """One picture (numpy arrays) as a PNG, drawn as its kind asks."""
    inputs, masked, recon = (np.asarray(a)[:MAX_EXAMPLES] for a in (picture.inputs, picture.masked, picture.recon))
    if picture.kind == reconstruction.SPECTROGRAM:
        return plots.plot_spectrogram_reconstruction(inputs, masked, recon, out_png, max_examples=MAX_EXAMPLES)
    if picture.kind == reconstruction.VIDEO:
        return plots.plot_video_reconstruction(inputs[0], masked[0], recon[0], out_png)
    raise ValueError(f"no drawing for picture kind {picture.kind!r} (known: {reconstruction.SPECTROGRAM!r}, "
                     f"{reconstruction.VIDEO!r})")


def write_run_figures(system, graphdef, state, config, workdir: str, step: int, mesh, writer) -> list[str]:
    out_dir = os.path.join(workdir, "figures")
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    if system.pictures is not None:  # every process takes part in the (global) forward; process 0 draws
        source = input_pipeline.open_source(config, workdir, config.data.eval_split)
        local = next(input_pipeline.eval_batches(source, system.preprocess,
                                                 per_host_batch=sharding.batch_divisor(mesh) // jax.process_count(),
                                                 process_index=jax.process_index(),
                                                 process_count=jax.process_count()))
        local, _ = input_pipeline.split_bookkeeping(local)
        model = nnx.merge(graphdef, state["params"], state["other"])
        model.eval()
        pictures = nnx.jit(system.pictures)(model, sharding.global_batch(local, mesh), jax.random.key(config.seed))
        pictures = jax.device_get(pictures)
        if jax.process_index() == 0:
            written += [draw(picture, os.path.join(out_dir, name + ".png")) for name, picture in pictures.items()]
    if jax.process_index() == 0:
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(metrics_path):
            written.append(plots.plot_curves(metrics_path, os.path.join(out_dir, "curves.png")))
        for path in written:
            run_metrics.write_png(writer, step, "figures/" + os.path.splitext(os.path.basename(path))[0], path)
        writer.flush()
        logging.info("figures: %s", ", ".join(written))
    return written


def write_confusion_figures(confusions: dict[str, np.ndarray], workdir: str, step: int, writer, *,
                            prefix: str = "confusion", class_names=None) -> list[str]:
    """<workdir>/figures/<prefix>[_<horizon>].png (row-normalised, rows = true class), overwritten at each eval, and a
    TensorBoard image at ``step`` through ``writer`` (the run's metric writer). Process 0 only."""
    if jax.process_index() != 0 or not confusions:
        return []
    out_dir = os.path.join(workdir, "figures")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, cm in confusions.items():
        stem = f"{prefix}_{name}" if name else prefix
        path = plots.plot_confusion(cm, os.path.join(out_dir, stem + ".png"), class_names,
                                    title=f"{stem} step {step} (rows: true, row-normalised)")
        run_metrics.write_png(writer, step, "figures/" + stem, path)
        written.append(path)
    return written
