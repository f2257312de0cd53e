"""`python -m imujax.main --mode=probe`: a labelled protocol on frozen embeddings.

The encoder (the workdir's best or latest checkpoint, or config.init_from) embeds the chosen records once; the
embeddings are saved with their record ids, recordings, groups and labels to <workdir>/embeddings/<encoder>_<split>.npz,
then probed per fold (`imujax.eval.probes.logistic_probe`, and `mlp_probe` with config.eval.mlp_probe): C / alpha are
chosen by grouped CV on the fold's training groups only. config.eval.protocol:

- ``split``: train on config.data.train_split, test on config.data.eval_split (one fold);
- ``loso``: leave one group out (config.eval.group_field, default ``subject``) over config.eval.probe_split;
- ``kfold``: config.eval.folds folds of whole groups (GroupKFold) over config.eval.probe_split; a field that already
  numbers the folds (e.g. ``fold``) with group_field=fold and folds = its number of values.

config.eval.pool_per_recording averages the windows of each recording first (one prediction per recording; the
recording is `imujax.transforms.records.recording_id`).
config.eval.random_reference repeats everything for a randomly initialised encoder of the same config (seed
config.seed), so one command shows what pretraining bought. Results (mean and per fold): <workdir>/probe.json,
TensorBoard scalars probe/<encoder>/<probe>/<metric>, and confusion-matrix PNGs (summed over folds) in
<workdir>/figures/.
"""

from __future__ import annotations

import json
import os
import re

import jax
import ml_collections
import numpy as np

from imujax import checkpointing, input_pipeline, run_metrics, sharding, systems, train
from imujax.eval import plots, probes
from imujax.transforms import records


class _Tagged:
    """The system's eval transform plus the host-side tags the protocol needs (bytes: they never reach a device)."""

    def __init__(self, preprocess, group_field: str):
        self.preprocess, self.group_field = preprocess, group_field

    def __call__(self, record, rng=None):
        if self.group_field not in record:
            raise KeyError(f"record {record.get('id', '?')!r} has no {self.group_field!r} field "
                           f"(config.eval.group_field); it has {sorted(record)}")
        out = dict(self.preprocess(record, rng))
        out["probe_label"] = np.int32(record.get("label", -1))
        out["probe_group"] = np.bytes_(records.as_bytes(record[self.group_field]))
        out["probe_recording"] = np.bytes_(records.recording_id(record))
        return out


def make_embed(system, graphdef):
    """The jitted eval-mode embedding, compiled once for every split and encoder of the command."""
    from flax import nnx

    @jax.jit
    def embed(params, other, batch):
        model = nnx.merge(graphdef, params, other)
        model.eval()
        return system.embed(model, batch)

    return embed


def embed_split(system, embed, state, config, workdir: str, split: str, mesh) -> dict[str, np.ndarray]:
    """{features [N, D], labels, groups, recordings, ids} of every record of one split."""
    e = config.eval
    if jax.process_count() > 1:
        raise ValueError("--mode=probe runs on one process (its record tags stay on the host): start it without a "
                         "multi-process launcher")
    source = input_pipeline.open_source(config, workdir, split)
    feature = e.get("probe_feature", "fused")
    batch_size = e.batch_size or config.batch_size
    out: dict[str, list] = {k: [] for k in ("features", "labels", "groups", "recordings", "ids")}
    for local in input_pipeline.eval_batches(source, _Tagged(system.preprocess, e.get("group_field", "subject")),
                                             per_host_batch=batch_size):
        local, bookkeeping = input_pipeline.split_bookkeeping(local)
        keep = bookkeeping["valid"].astype(bool)
        tags = {k: local.pop(k) for k in ("probe_label", "probe_group", "probe_recording")}
        tags["id"] = bookkeeping["id"]
        emb = embed(state["params"], state["other"], sharding.global_batch(local, mesh))
        if feature not in emb:
            raise KeyError(f"config.eval.probe_feature={feature!r}: {config.system}.embed returns {sorted(emb)}")
        out["features"].append(np.asarray(emb[feature], np.float32)[keep])
        for key, tag in zip(("labels", "groups", "recordings", "ids"), tags.values()):
            out[key].append(tag[keep])
    return {k: np.concatenate(v) for k, v in out.items()}


def group_kfold(groups: np.ndarray, folds: int) -> list[np.ndarray]:
    """Held-out row indices of each of min(folds, number of groups) folds of whole groups: scikit-learn's GroupKFold
    (groups to folds by size, largest first), the one fold assignment of this command and benchmarks/real_data.py."""
    from sklearn.model_selection import GroupKFold
    k = min(folds, len(np.unique(groups)))
    if k < 2:
        raise ValueError(f"group_kfold: {folds} fold(s) over {len(np.unique(groups))} group(s); at least 2 of each "
                         "are needed to hold any group out")
    return [held for _, held in GroupKFold(k).split(groups, groups=groups)]


def folds(config, train: dict, test: dict | None) -> list[tuple[str, dict, dict]]:
    """(name, train part, test part) per fold of config.eval.protocol."""
    e = config.eval
    protocol = e.get("protocol", "split")
    if protocol == "split":
        return [("split", train, test)]
    if protocol not in ("loso", "kfold"):
        raise ValueError(f"config.eval.protocol={protocol!r}; expected split, loso or kfold")
    data, groups = train, train["groups"]
    unique = list(dict.fromkeys(groups.tolist()))
    if len(unique) < 2:
        raise ValueError(f"config.eval.protocol={protocol}: only one {e.group_field!r} value ({unique}); nothing to "
                         "hold out")
    if protocol == "loso":
        assignment = [np.flatnonzero(groups == g) for g in unique]
        names = [g.decode(errors="replace") for g in unique]
    else:
        assignment = group_kfold(groups, e.get("folds", 5))
        names = [f"fold{i}" for i in range(len(assignment))]
    out = []
    for name, held in zip(names, assignment):
        mask = np.zeros(len(groups), bool)
        mask[held] = True
        out.append((name, {k: v[~mask] for k, v in data.items()}, {k: v[mask] for k, v in data.items()}))
    return out


def _pool(part: dict) -> dict:
    pooled = probes.pool_per_recording(part["features"], part["labels"], part["recordings"], part["groups"])
    return {"features": pooled.features, "labels": pooled.labels, "groups": pooled.groups,
            "recordings": pooled.record_ids, "ids": pooled.record_ids}


def _labelled(part: dict) -> dict:
    """Unlabelled records (label -1) take no part in a labelled protocol."""
    keep = part["labels"] >= 0
    return {k: v[keep] for k, v in part.items()}


def probe_embeddings(config, train: dict, test: dict | None, num_classes: int) -> dict:
    """Every probe on every fold: {probe: {"mean": {metric: value}, "folds": {fold: result}}}."""
    e = config.eval
    kinds = {"logistic": probes.logistic_probe}
    if e.get("mlp_probe", False):
        kinds["mlp"] = probes.mlp_probe
    results = {}
    for kind, probe in kinds.items():
        per_fold = {}
        for name, tr, te in folds(config, train, test):
            tr, te = _labelled(tr), _labelled(te)
            if e.get("pool_per_recording", False):
                tr, te = _pool(tr), _pool(te)
            if not len(te["labels"]):
                raise ValueError(f"probe fold {name!r}: no labelled test record")
            result = probe(tr["features"], tr["labels"], tr["groups"], te["features"], te["labels"],
                           num_classes=num_classes, folds=e.get("probe_cv_folds", 5))
            result["test_records"] = [r.decode(errors="replace") for r in te["ids"].tolist()]
            per_fold[name] = result
        mean = {m: float(np.mean([r[m] for r in per_fold.values()])) for m in ("accuracy", "macro_f1")}
        mean["per_class_f1"] = np.mean([r["per_class_f1"] for r in per_fold.values()], axis=0).tolist()
        mean["confusion"] = np.sum([r["confusion"] for r in per_fold.values()], axis=0).tolist()
        results[kind] = {"mean": mean, "folds": per_fold}
    return results


def _restore(system, config, workdir: str, mesh):
    """(graphdef, state, where) of the encoder to probe: the workdir's checkpoint (config.eval.checkpoint: auto = best,
    else latest), else the weights of config.init_from; (graphdef, None, None) when there is neither."""
    which = config.eval.get("checkpoint", "auto")
    if checkpointing.candidates(workdir, which):
        graphdef, abstract, _ = train.abstract_state(system, config, None, mesh)
        restored = checkpointing.restore(workdir, abstract, which=which, config=config)
        return graphdef, restored.state, f"{restored.kind} checkpoint step {restored.step}"
    graphdef, state, shardings = train.create_state(system, config, None, mesh)
    if train.init_source(config)[0]:
        return graphdef, train._init_from(state, config, shardings, system), f"init_from {config.init_from}"
    return graphdef, None, None


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The probe protocol for the trained encoder (and the random reference); writes probe.json and returns it."""
    e = config.eval
    which = e.get("checkpoint", "auto")
    if not (checkpointing.candidates(workdir, which) or train.init_source(config)[0] or e.random_reference):
        raise FileNotFoundError(f"--mode=probe: nothing to probe: no checkpoint in {workdir} and no "
                                "--config.init_from (--config.eval.random_reference=true probes a randomly "
                                "initialised encoder alone)")
    system = systems.make_system(config)
    mesh = sharding.make_mesh(**config.mesh)
    input_pipeline.ensure_built(config, workdir)
    protocol = e.get("protocol", "split")
    splits = [config.data.train_split, config.data.eval_split] if protocol == "split" else \
        [e.get("probe_split", "") or config.data.train_split]
    out_dir = os.path.join(workdir, "embeddings")
    os.makedirs(out_dir, exist_ok=True)
    report = {"protocol": protocol, "splits": splits, "group_field": e.get("group_field", "subject"),
              "pool_per_recording": bool(e.get("pool_per_recording", False)), "encoders": {}}
    with jax.set_mesh(mesh):
        graphdef, trained, where = _restore(system, config, workdir, mesh)
        encoders = {} if trained is None else {"trained": trained}
        if e.random_reference:
            encoders["random"] = train.create_state(system, config, None, mesh)[1]
        embed = make_embed(system, graphdef)
        for tag, state in encoders.items():
            embedded = []
            for split in splits:
                emb = embed_split(system, embed, state, config, workdir, split, mesh)
                safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", split)
                np.savez(os.path.join(out_dir, f"{tag}_{safe}.npz"), **emb)
                embedded.append(emb)
            labels = np.concatenate([x["labels"] for x in embedded])
            if len(np.unique(labels[labels >= 0])) < 2:
                raise ValueError(f"--mode=probe needs labelled records of at least 2 classes in {splits}")
            names = _class_names(config, workdir)
            num_classes = max(int(labels.max()) + 1, len(names or ()))
            results = probe_embeddings(config, embedded[0], embedded[1] if len(embedded) > 1 else None,
                                       num_classes)
            report["class_names"] = names if names and len(names) == num_classes else None
            report["encoders"][tag] = {"source": where if tag == "trained" else f"random init (seed {config.seed})",
                                       **results}
            del state
    _write(report, config, workdir)
    return report


def _class_names(config, workdir: str) -> list[str] | None:
    """The dataset's class names (imu_video_folder metadata, or a ClassLabel feature), if it has them."""
    info = input_pipeline.open_source(config, workdir, config.data.train_split).dataset_info
    label = info.features["label"] if "label" in info.features else None
    return list((info.metadata or {}).get("class_names") or getattr(label, "names", None) or []) or None


def _write(report: dict, config, workdir: str) -> None:
    """probe.json, one console line per (encoder, probe), TensorBoard scalars and confusion-matrix PNGs."""
    if jax.process_index():
        return
    with open(os.path.join(workdir, "probe.json"), "w") as f:
        json.dump(report, f, indent=1)
    writer = run_metrics.open_writer(workdir)
    figures = os.path.join(workdir, "figures")
    os.makedirs(figures, exist_ok=True)
    try:
        for tag, encoder in report["encoders"].items():
            for kind, result in ((k, v) for k, v in encoder.items() if isinstance(v, dict) and "mean" in v):
                mean = result["mean"]
                writer.write_scalars(0, {f"probe/{tag}/{kind}/{metric}": mean[metric]
                                         for metric in ("accuracy", "macro_f1")})
                print(f"probe {tag} {kind}: accuracy={mean['accuracy']:.4f} macro_f1={mean['macro_f1']:.4f} "
                      f"({len(result['folds'])} fold(s), {encoder['source']})", flush=True)
                png = plots.plot_confusion(np.asarray(mean["confusion"]),
                                           os.path.join(figures, f"probe_confusion_{tag}_{kind}.png"),
                                           class_names=report.get("class_names"), title=f"{tag} {kind} probe")
                run_metrics.write_png(writer, 0, f"probe/{tag}/{kind}/confusion", png)
    finally:
        writer.close()
