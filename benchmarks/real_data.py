"""Does pretraining pay off on real recordings? One command, one table (issue 20).

  python benchmarks/real_data.py --workdir=runs/real_data            # whole table (README "Real labelled data")
  python benchmarks/real_data.py --sets=hapt --steps=100              # a quick look at one set

Per real set (hapt, dsads, motionsense, sp_sw_har; original downloads under --raw_root, built with the builders'
cross-subject configs, `configs/imu_simclr.py` SPLIT_CONFIG: 2 s windows, 1 s stride, read at 50 Hz; HAPT users 1-4
train / 5-6 test, DSADS p1-p6 / p7-p8, MotionSense subjects 1-7 / 8-10, sp_sw_har s01-s02 / s03 (`holdout`)):

  a  hand-crafted: per-channel statistics (mean, std, min/max, percentiles, energy, 4 spectral bands), within-sensor
     axis correlations and magnitude statistics; standardised; logistic regression, C by grouped CV on the training
     subjects
  b  MLP on the raw standardised windows (one hidden layer of 256, alpha 1e-2, 100 epochs)
  c  logistic probe (as a) on the frozen encoder at random init
  d  the same probe on the encoder pretrained on this set's training subjects (`configs/imu_simclr.py:own:<set>`)
  e  the same probe on the encoder pretrained on every OTHER real set (all subjects) + the synthetic corpus
     (`configs/imu_simclr.py:transfer:<set>`, --transfer_steps: the set under test is never seen, no real label is
     used; SupCon over the corpus's own generated labels as in g)
  f  fine-tuning encoder + linear head on the training subjects, from (e) (recipe `lpft`: the head starts as the
     logistic probe on the frozen encoder, then both train at a small learning rate after a warm-up) and from
     scratch (recipe `plain`), same steps; each picks its learning rate from a small grid on a validation split of
     the training subjects (`configs/imu_simclr.py` FINETUNE), then trains on all training subjects

With --synthetic (issue 26, the articulated corpus `synthetic_egomotion/motion_realsets`; no real label used):
  g  the probe on the encoder pretrained on the synthetic corpus only (`configs/imu_simclr.py:synthetic`: SimCLR
     views + SupCon over the corpus's own primitive labels, --synthetic_steps; one encoder for every set)
  h  ... on the synthetic corpus and this set's training subjects in one mixture (`synthetic_own:<set>`; SupCon
     only over the synthetic records' labels)
  i  ... on the synthetic corpus (g), then on the mixture of h (`synthetic_own:<set>` initialised from g's encoder,
     `--config.init_from=<workdir>/synthetic:latest`; --steps more): the set's own data added, the synthetic labels kept
  j  ... on e's mixture without the synthetic corpus (`transfer_real:<set>`: every other real set, views only,
     --transfer_steps): e - j is what the corpus adds to real pretraining, scored over every subject with --folds
  z  zero-shot with text, no label of the set used: TSFM Stage 2 trained on the synthetic corpus only
     (`configs/tsfm_stage2.py:synthetic`, --zs_steps; one encoder for every set), each test window's embedding
     against the label-bank embeddings of the set's class names as phrases (`data_builders/<set>/parsing.py`
     LABEL_TEXT), nearest wins; the same path at random init (z_zero_shot_random), and the expected scores of
     uniform random guesses (chance_*). Channels go through TSFM's record path (acc + gyro by name, z-scored patches).

Every method sees the same input: the acc + gyro channels of every sensor of the set (DSADS: 5 units, no
magnetometer). The encoder takes one 6-channel sensor; a multi-sensor window's embedding is the concatenation of its
sensors' embeddings. Pretraining (d, e, g, h, i, j) runs through the project's loop (`python -m imujax.main`); the
rest is done here. Metrics: accuracy and macro-F1 on the test subjects, per window (HAPT, DSADS, sp_sw_har: their
protocols classify windows/segments) or one prediction per recording (MotionSense trials: majority vote of the window
predictions). --folds=K scores every subject instead: K leave-subjects-out folds over all of the set's subjects
(`imujax.probe.group_kfold`; K at or above the number of subjects is leave-one-subject-out), each predicted by a
probe fitted (f: a model fine-tuned) on the other folds, for the rows that never pretrain on the set (a, b, c, e, f,
g, j, z); one held-out pair of subjects moves a macro-F1 by several hundredths, which the folds average out. Writes
<workdir>/real_data.json (with the machine: XLA:CPU's results depend on the CPU's instruction set) and prints the
table.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import subprocess
import sys
import time

# One BLAS thread: on a shared 2-core machine multi-threaded BLAS made each scikit-learn fit ~50x slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from flax import nnx  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from benchmarks import machine  # noqa: E402
from configs import imu_simclr  # noqa: E402
from imujax import systems  # noqa: E402
from imujax.eval import probes  # noqa: E402
from imujax.probe import group_kfold  # noqa: E402

PER_RECORDING = {"hapt": False, "dsads": False, "motionsense": True, "sp_sw_har": False}
CONFIG = "configs/imu_simclr.py"


# -- data ---------------------------------------------------------------------------------------------------------------
def build(name: str, raw_root: str, data_dir: str) -> None:
    import tensorflow_datasets as tfds
    builder = importlib.import_module(f"data_builders.{name}").Builder(config=imu_simclr.SPLIT_CONFIG[name],
                                                                      data_dir=data_dir,
                                                                      file_format="array_record")
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=os.path.join(raw_root, name)))


def load_split(name: str, split: str, data_dir: str, system) -> dict[str, np.ndarray]:
    """Unit-scaled sensor windows [N, S, 6, T] (S sensors of the set), labels, subjects, recording ids."""
    import tensorflow_datasets as tfds
    source = tfds.data_source(imu_simclr.tfds_name(name), data_dir=data_dir, split=split, download=False)
    first = source[0]
    names = {c.decode() for c in first["channels"]}
    groups = [g for g in system.groups if set(g) <= names]
    windows, labels, subjects, sessions = [], [], [], []
    for i in range(len(source)):
        record = source[i]
        windows.append(np.stack([_window(system, record, g) for g in groups]))
        labels.append(int(record["label"]))
        subjects.append(int(record["subject"]))
        session = record.get("session", record["id"])  # sp_sw_har: no recording field; scored per window anyway
        sessions.append(session.decode() if isinstance(session, bytes) else session)
    return dict(x=np.stack(windows), y=np.array(labels), groups=np.array(subjects), session=np.array(sessions))


def _window(system, record: dict, group) -> np.ndarray:
    saved, system.groups = system.groups, [group]
    try:
        return system.window(record, None)
    finally:
        system.groups = saved


# -- features and probes ------------------------------------------------------------------------------------------------
def handcrafted(x: np.ndarray) -> np.ndarray:
    """[N, S, 6, T] -> [N, F] per-channel statistics, spectral bands, axis correlations and magnitude statistics."""
    n, s, c, t = x.shape
    ch = x.reshape(n, s * c, t)
    triads = x.reshape(n, s * 2, 3, t)
    mag = np.linalg.norm(triads, axis=2)                             # [N, 2S, T]
    series = np.concatenate([ch, mag], axis=1)
    stats = [series.mean(-1), series.std(-1), series.min(-1), series.max(-1),
             *np.percentile(series, [10, 25, 50, 75, 90], axis=-1), (series ** 2).mean(-1)]
    power = np.abs(np.fft.rfft(series - series.mean(-1, keepdims=True), axis=-1)) ** 2
    stats += [band.mean(-1) for band in np.array_split(power[..., 1:], 4, axis=-1)]
    centred = triads - triads.mean(-1, keepdims=True)
    norm = np.sqrt((centred ** 2).sum(-1)) + 1e-8
    for i, j in ((0, 1), (0, 2), (1, 2)):
        stats.append((centred[:, :, i] * centred[:, :, j]).sum(-1) / (norm[:, :, i] * norm[:, :, j]))
    return np.concatenate(stats, axis=1)


def logistic(train_x, train_y, train_groups, test_x, test_y) -> np.ndarray:
    """imujax.eval.probes.logistic_probe (standardised, C by grouped CV on the training subjects): test predictions."""
    return np.asarray(probes.logistic_probe(train_x, train_y, train_groups, test_x, test_y, cs=(0.01, 0.1, 1.0, 10.0),
                                            folds=4, max_iter=500)["predictions"])


def mlp_raw(train_x, train_y, train_groups, test_x, test_y) -> np.ndarray:
    """imujax.eval.probes.mlp_probe on flattened raw windows (standardised, alpha by grouped CV): test predictions."""
    # One alpha and 2 folds: the CPU budget of the table (each fit on 600 inputs takes ~20 s on a loaded machine).
    return np.asarray(probes.mlp_probe(train_x, train_y, train_groups, test_x, test_y, alphas=(1e-2,), folds=2,
                                       max_iter=100)["predictions"])


def held_out_masks(n: int, held_out: list[np.ndarray]):
    """One boolean mask over the n scored rows per fold, True on the rows that fold holds out."""
    for held in held_out:
        out = np.zeros(n, bool)
        out[held] = True
        yield out


def fitted(features, fit, train: dict, scored: dict, held_out: list[np.ndarray] | None) -> np.ndarray:
    """Predictions on `scored` of `fit(train features, labels, subjects, test features, labels)` (the test labels only
    score the probe's own report): fitted on `train` (held_out None: the builder's split), or for each fold of
    `scored` (its held-out row indices) on the other folds, so that every subject is predicted by a probe that never
    saw it."""
    if held_out is None:
        return fit(features(train["x"]), train["y"], train["groups"], features(scored["x"]), scored["y"])
    feats, pred = features(scored["x"]), np.zeros(len(scored["y"]), int)
    for out in held_out_masks(len(pred), held_out):
        pred[out] = fit(feats[~out], scored["y"][~out], scored["groups"][~out], feats[out], scored["y"][out])
    return pred


def scores(pred: np.ndarray, data: dict, per_recording: bool) -> dict[str, float]:
    """Accuracy and macro-F1 per window, or per recording (majority vote of its windows, ties to the lower class)."""
    y = data["y"]
    if per_recording:
        ids, inverse = np.unique(data["session"], return_inverse=True)
        votes = np.zeros((len(ids), int(max(pred.max(), y.max())) + 1))
        np.add.at(votes, (inverse, pred), 1)
        y = np.array([np.bincount(y[inverse == k]).argmax() for k in range(len(ids))])
        pred = votes.argmax(1)
    labels = np.unique(y)
    per_class = skm.f1_score(y, pred, average=None, labels=labels)
    return {"accuracy": float(skm.accuracy_score(y, pred)), "macro_f1": float(per_class.mean()),
            # where a macro-F1 gap comes from (e.g. DSADS: classes no 2 s window tells apart cap every method)
            "f1_per_class": {int(c): round(float(f), 3) for c, f in zip(labels, per_class)}}


# -- encoder ------------------------------------------------------------------------------------------------------------
def encoder(config, workdir: str | None):
    """The config's encoder at random init (workdir None) or with the params of a run's latest checkpoint."""
    model = systems.make_system(config).make_model(nnx.Rngs(config.seed))
    if workdir is None:
        return model
    ckpt_dir = os.path.join(workdir, "checkpoints")
    step = max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
    saved = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(ckpt_dir), str(step), "state"))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    nnx.replace_by_pure_dict(params, _pure(saved["params"]))
    nnx.update(model, params)
    return model


def _pure(tree):
    """An orbax-restored nnx.State ({'value': array} leaves, list indices as text) as a pure dict."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _pure(v) for k, v in tree.items()}
    return tree


def embed(model, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """[N, S, 6, T] -> [N, S * dim]: each sensor embedded on its own, concatenated."""
    n, s = x.shape[:2]
    flat = x.reshape(n * s, *x.shape[2:])
    forward = nnx.jit(lambda m, b: m(b))
    out = np.concatenate([np.asarray(forward(model, jnp.asarray(flat[i:i + batch])))
                          for i in range(0, len(flat), batch)])
    return out.reshape(n, -1)


class Classifier(nnx.Module):
    def __init__(self, encoder, sensors: int, num_classes: int, *, rngs: nnx.Rngs):
        self.encoder = encoder
        self.head = nnx.Linear(sensors * encoder.embed.out_features, num_classes, rngs=rngs)

    def __call__(self, x):  # [B, S, 6, T]
        b, s = x.shape[:2]
        return self.head(self.encoder(x.reshape(b * s, *x.shape[2:])).reshape(b, -1))


def finetune_optimizer(recipe, steps: int) -> optax.GradientTransformation:
    """AdamW with the head at recipe.lr and the encoder at lr * encoder_lr_scale, both warmed up linearly over
    warmup_fraction of the steps, then cosine-decayed to 0 (`configs/imu_simclr.py` FINETUNE)."""
    warmup = int(round(recipe.warmup_fraction * steps))

    def schedule(peak):
        if not warmup:
            return optax.cosine_decay_schedule(peak, max(steps, 1))
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1))

    tx = {part: optax.adamw(schedule(recipe.lr * scale), weight_decay=recipe.weight_decay)
          for part, scale in (("head", 1.0), ("encoder", recipe.encoder_lr_scale))}
    labels = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, _: "head" if path[0].key == "head" else "encoder", params)
    return optax.multi_transform(tx, labels)


def probe_head(model, train: dict, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The LP of LP-FT: the logistic probe on the frozen encoder (standardised, C by grouped CV on the training
    subjects, as rows c-e), folded into one linear layer's kernel [D, K] and bias [K]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    feats = embed(model, train["x"])
    c = probes.logistic_probe(feats, train["y"], train["groups"], feats[:1], train["y"][:1], cs=(0.01, 0.1, 1.0, 10.0),
                              folds=4, max_iter=500)["C"]
    scaler = StandardScaler().fit(feats)
    fit = LogisticRegression(C=c, max_iter=500).fit(scaler.transform(feats), train["y"])
    kernel = np.zeros((feats.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, -10.0, np.float32)  # a class absent from these subjects: never predicted at first
    kernel[:, fit.classes_] = (fit.coef_ / scaler.scale_).T
    bias[fit.classes_] = fit.intercept_ - fit.coef_ @ (scaler.mean_ / scaler.scale_)
    return kernel, bias


def finetune(model, train: dict, test_x: np.ndarray, steps: int, recipe, seed: int = 0,
             batch: int = 64) -> np.ndarray:
    """Encoder + linear head (random, or the probe's with recipe.head_init="probe") trained end to end with
    cross-entropy (`finetune_optimizer`); test predictions."""
    num_classes = int(train["y"].max()) + 1
    clf = Classifier(model, train["x"].shape[1], num_classes, rngs=nnx.Rngs(seed))
    if recipe.head_init == "probe":
        kernel, bias = probe_head(model, train, num_classes)
        clf.head.kernel.value, clf.head.bias.value = jnp.asarray(kernel), jnp.asarray(bias)
    opt = nnx.Optimizer(clf, finetune_optimizer(recipe, steps), wrt=nnx.Param)

    @nnx.jit
    def step(clf, opt, x, y):
        def loss_fn(c):
            return optax.softmax_cross_entropy_with_integer_labels(c(x), y).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(clf)
        opt.update(clf, grads)
        return loss

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(train["y"]), batch)
        step(clf, opt, jnp.asarray(train["x"][idx]), jnp.asarray(train["y"][idx]))
    logits = np.concatenate([np.asarray(nnx.jit(lambda c, b: c(b))(clf, jnp.asarray(test_x[i:i + 256])))
                             for i in range(0, len(test_x), 256)])
    return logits.argmax(1)


def subset(data: dict, keep: np.ndarray) -> dict:
    return {k: v[keep] for k, v in data.items()}


def finetune_selected(make_encoder, train: dict, test_x: np.ndarray, steps: int, recipe,
                      per_recording: bool) -> tuple[np.ndarray, dict]:
    """Fine-tune with the recipe's lr chosen from recipe.lrs on a validation split of the TRAINING subjects (the
    last quarter of them, at least one), then on all training subjects; test predictions and the grid's scores."""
    subjects = np.unique(train["groups"])
    held = subjects[-max(1, len(subjects) // 4):]
    val = np.isin(train["groups"], held)
    fit, check = subset(train, ~val), subset(train, val)
    grid = {}
    for lr in recipe.lrs:
        trial = ml_collections.ConfigDict(recipe.to_dict())
        trial.lr = lr
        grid[lr] = scores(finetune(make_encoder(), fit, check["x"], steps, trial), check, per_recording)["macro_f1"]
    chosen = ml_collections.ConfigDict(recipe.to_dict())
    chosen.lr = max(grid, key=grid.get)
    info = {"recipe": recipe.name, "lr": chosen.lr, "val_subjects": held.tolist(),
            "val_macro_f1": {str(k): round(v, 4) for k, v in grid.items()}}
    return finetune(make_encoder(), train, test_x, steps, chosen), info


def finetune_scored(make_encoder, train: dict, scored: dict, held_out: list[np.ndarray] | None, steps: int, recipe,
                    per_recording: bool) -> tuple[np.ndarray, dict]:
    """Row f as `fitted` does the probes: fine-tuned on `train` (held_out None), or for each fold of `scored` on the
    other folds (learning rate chosen inside them), so that every subject is predicted by a model that never saw it."""
    if held_out is None:
        return finetune_selected(make_encoder, train, scored["x"], steps, recipe, per_recording)
    pred, folds = np.zeros(len(scored["y"]), int), []
    for out in held_out_masks(len(pred), held_out):
        pred[out], info = finetune_selected(make_encoder, subset(scored, ~out), scored["x"][out], steps, recipe,
                                            per_recording)
        folds.append(info)
    return pred, {"recipe": recipe.name, "folds": folds}


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
    """`key.path=value` settings (values as Python literals, else strings), as `--config.key.path=value` sets them
    for the pretraining runs: the probe's random-init encoder (row c) must be built with the same model settings."""
    for item in overrides:
        path, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        if leaf not in node:  # as `--config.x=y` refuses it: a typo fails here, not after a pretraining run
            raise KeyError(f"--override {item!r}: no key {leaf!r} in config.{'.'.join(parents) or '<root>'} "
                           f"(known: {sorted(node.keys())})")
        node[leaf] = value
    return config


def pretrain(variant: str, workdir: str, data_dir: str, raw_root: str, steps: int,
             overrides: tuple[str, ...] | list[str] = ()) -> float:
    """`python -m imujax.main` on one recipe variant (skipped when the run already finished), with `key=value`
    config settings (the run's `--override`s and any of the row's own); wall seconds."""
    if os.path.isdir(os.path.join(workdir, "checkpoints", str(steps))):
        return 0.0
    start = time.time()
    cmd = [sys.executable, "-m", "imujax.main", f"--config={CONFIG}:{variant}", f"--workdir={workdir}",
           f"--config.data.data_dir={data_dir}", f"--config.total_steps={steps}",
           f"--config.checkpoint.every_steps={steps}"]
    cmd += [f"--config.data.manual_dirs.{s}={os.path.join(raw_root, s)}" for s in imu_simclr.REAL_SETS]
    cmd += [f"--config.{item}" for item in overrides]
    subprocess.run(cmd, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return time.time() - start


# -- the table ----------------------------------------------------------------------------------------------------------
def run_set(name: str, args) -> dict:
    data_dir = os.path.join(args.workdir, "data")
    build(name, args.raw_root, data_dir)
    config = apply_overrides(imu_simclr.get_config(f"own:{name}"), args.override)
    system = systems.make_system(config)
    train, test = (load_split(name, s, data_dir, system) for s in ("train", "test"))
    per_rec = PER_RECORDING[name]
    rows, timed = {}, {}
    # The recipes' own step counts unless the command gives others (one source of truth: the config).
    transfer_steps = args.transfer_steps or imu_simclr.get_config(f"transfer:{name}").total_steps
    synthetic_steps = args.synthetic_steps or imu_simclr.get_config("synthetic").total_steps
    skip = set(args.skip.split(",")) - {""}
    want = lambda row: row not in skip  # noqa: E731

    def record(key, fn):
        if not want(key.split("_")[0]) or key in skip:
            return
        start = time.time()
        out = fn()
        pred, info = out if isinstance(out, tuple) else (out, {})
        rows[key] = dict(scores(pred, scored, per_rec), seconds=round(time.time() - start, 1), **info)
        print(f"{name} {key}: {rows[key]}", flush=True)

    if args.folds:  # every subject scored once, by a probe fitted on the subjects of the other folds
        scored = {k: np.concatenate([train[k], test[k]]) for k in train}
        held_out = group_kfold(scored["groups"], args.folds)
    else:
        scored, held_out = test, None

    record("a_handcrafted", lambda: fitted(handcrafted, logistic, train, scored, held_out))
    record("b_mlp_raw", lambda: fitted(lambda x: x.reshape(len(x), -1), mlp_raw, train, scored, held_out))

    def probe(model):
        return fitted(lambda x: embed(model, x), logistic, train, scored, held_out)

    record("c_probe_random", lambda: probe(encoder(config, None)))
    own_dir = os.path.join(args.workdir, f"own_{name}")
    if want("d"):
        timed["pretrain_own_s"] = round(
            pretrain(f"own:{name}", own_dir, data_dir, args.raw_root, args.steps, args.override), 1)
    record("d_probe_own", lambda: probe(encoder(config, own_dir)))
    transfer_dir = os.path.join(args.workdir, f"transfer_{name}")
    if want("e") or want("f"):
        seconds = pretrain(f"transfer:{name}", transfer_dir, data_dir, args.raw_root, transfer_steps, args.override)
        timed["pretrain_transfer_s"] = round(seconds, 1)
    record("e_probe_transfer", lambda: probe(encoder(config, transfer_dir)))
    for key, source, recipe in (("f_finetune_transfer", transfer_dir, args.ft_recipe),
                                ("f_finetune_scratch", None, args.ft_scratch_recipe)):
        record(key, lambda source=source, recipe=recipe: finetune_scored(
            lambda: encoder(config, source), train, scored, held_out, args.ft_steps,
            imu_simclr.finetune_config(recipe), per_rec))
    if args.synthetic and want("g"):  # issue 26: the articulated synthetic corpus alone
        synthetic_dir = os.path.join(args.workdir, "synthetic")
        timed["pretrain_synthetic_s"] = round(
            pretrain("synthetic", synthetic_dir, data_dir, args.raw_root, synthetic_steps, args.override), 1)
        record("g_probe_synthetic", lambda: probe(encoder(config, synthetic_dir)))
    if args.synthetic and want("h"):  # and with this set's unlabelled training data
        mixed_dir = os.path.join(args.workdir, f"synthetic_own_{name}")
        timed["pretrain_synthetic_own_s"] = round(
            pretrain(f"synthetic_own:{name}", mixed_dir, data_dir, args.raw_root, args.steps, args.override), 1)
        record("h_probe_synthetic_own", lambda: probe(encoder(config, mixed_dir)))
    if args.synthetic and want("i"):  # in sequence: the synthetic encoder (g), then h's mixture from it
        # (session 12: continuing with the set's own views alone undid what g's labels added; HISTORY, issue 26)
        synthetic_dir = os.path.join(args.workdir, "synthetic")
        seconds = pretrain("synthetic", synthetic_dir, data_dir, args.raw_root, synthetic_steps, args.override)
        timed["pretrain_synthetic_s"] = round(timed.get("pretrain_synthetic_s", 0.0) + seconds, 1)
        then_dir = os.path.join(args.workdir, f"synthetic_then_mixed_{name}")
        timed["pretrain_synthetic_then_mixed_s"] = round(pretrain(
            f"synthetic_own:{name}", then_dir, data_dir, args.raw_root, args.steps,
            [*args.override, f"init_from={synthetic_dir}:latest"]), 1)
        record("i_probe_synthetic_then_mixed", lambda: probe(encoder(config, then_dir)))
    if args.synthetic and want("j"):  # e's mixture without the synthetic corpus: what the corpus adds to real data
        real_dir = os.path.join(args.workdir, f"transfer_real_{name}")
        timed["pretrain_transfer_real_s"] = round(
            pretrain(f"transfer_real:{name}", real_dir, data_dir, args.raw_root, transfer_steps, args.override), 1)
        record("j_probe_transfer_real", lambda: probe(encoder(config, real_dir)))
    if args.synthetic and want("z"):  # zero-shot with text from the text-aligned encoder of the synthetic corpus
        zs_dir = os.path.join(args.workdir, "tsfm_synthetic")
        timed["pretrain_tsfm_synthetic_s"] = round(pretrain_tsfm(zs_dir, data_dir, args.zs_steps), 1)
        setup = zero_shot_setup(name, data_dir, "train+test" if held_out is not None else "test")
        for key, source in (("z_zero_shot_synthetic", zs_dir), ("z_zero_shot_random", None)):
            record(key, lambda source=source: zero_shot(setup, source, scored, per_rec))
    protocol = (f"{len(held_out)} leave-subjects-out folds (GroupKFold) of subjects "
                f"{[np.unique(scored['groups'][held]).tolist() for held in held_out]}"
                if held_out is not None else f"test subjects {np.unique(test['groups']).tolist()}")
    return dict(rows=rows, pretrain_seconds=timed, train_windows=len(train["y"]), test_windows=len(test["y"]),
                per_recording=per_rec, protocol=protocol)


# -- zero-shot with text (issue 26, row z) -----------------------------------------------------------------------------
TSFM_CONFIG = "configs/tsfm_stage2.py"


def label_text(name: str, class_names) -> list[str]:
    """The set's class names (its label order) as phrases: `data_builders/<set>/parsing.py` LABEL_TEXT."""
    table = importlib.import_module(f"data_builders.{name}.parsing").LABEL_TEXT
    missing = [c for c in class_names if c not in table]
    if missing:
        raise KeyError(f"data_builders/{name}/parsing.py LABEL_TEXT has no phrase for {missing}")
    return [table[c] for c in class_names]


def zero_shot_config(name: str, class_names, record: dict) -> ml_collections.ConfigDict:
    """`configs/tsfm_stage2.py:synthetic` read on a real set: its accelerometer and gyroscope channels by name (as
    TSFM's record path selects `config.data.imu_channels`), its rate, its class phrases as the closed-set
    candidates; model, text and patching as trained."""
    from configs import tsfm_stage2
    config = tsfm_stage2.get_config("synthetic")
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in record["channels"]]
    channels = tuple(c for c in names if c.rpartition("/")[2].startswith(("acc_", "gyro_")))
    config.data.update(dict(name=imu_simclr.tfds_name(name), imu_channels=channels, channel_names=(),
                            keep_sensors=(), class_names=tuple(label_text(name, class_names)),
                            sampling_rate_hz=float(record["imu_rate_hz"])))
    return config


def zero_shot_setup(name: str, data_dir: str, split: str) -> tuple:
    """What row z needs once per set, whichever encoder: its config, the TSFM system (text states of the class
    phrases computed once), the scored split's source and the class names."""
    import tensorflow_datasets as tfds
    source = tfds.data_source(imu_simclr.tfds_name(name), data_dir=data_dir, split=split, download=False)
    class_names = tfds.builder(imu_simclr.tfds_name(name), data_dir=data_dir).info.features["label"].names
    config = zero_shot_config(name, class_names, source[0])
    return config, systems.make_system(config), source, class_names


def zero_shot(setup: tuple, workdir: str | None, test: dict, per_recording: bool) -> tuple[np.ndarray, dict]:
    """Row z: closed-set zero-shot predictions on the scored split (TSFM Stage 2 from workdir's latest checkpoint, or
    at random init), in load_split's order, and the expected scores of uniform random guesses."""
    from imujax.eval import zero_shot as zs
    config, system, source, class_names = setup
    model = encoder(config, workdir)
    model.eval()
    pred, labels = zs.closed_set_predictions(system, model, source)
    if not np.array_equal(labels, test["y"]):
        raise RuntimeError(f"{config.data.name}: zero-shot records are not in load_split's order")
    return pred, dict(chance_scores(test, per_recording, len(class_names)), classes=len(class_names))


def chance_scores(test: dict, per_recording: bool, num_classes: int, draws: int = 50) -> dict[str, float]:
    """Mean accuracy and macro-F1 of uniform random guesses, scored as the rows are."""
    rng = np.random.default_rng(0)
    runs = [scores(rng.integers(0, num_classes, len(test["y"])), test, per_recording) for _ in range(draws)]
    return {f"chance_{k}": round(float(np.mean([r[k] for r in runs])), 4) for k in ("accuracy", "macro_f1")}


def pretrain_tsfm(workdir: str, data_dir: str, steps: int) -> float:
    """`python -m imujax.main --config=configs/tsfm_stage2.py:synthetic` (skipped when it already finished)."""
    if os.path.isdir(os.path.join(workdir, "checkpoints", str(steps))):
        return 0.0
    start = time.time()
    subprocess.run([sys.executable, "-m", "imujax.main", f"--config={TSFM_CONFIG}:synthetic", f"--workdir={workdir}",
                    f"--config.data.data_dir={data_dir}", f"--config.total_steps={steps}",
                    f"--config.checkpoint.every_steps={steps}"],
                   check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/real_data")
    parser.add_argument("--raw_root", default="../shared/data",
                        help="folder holding hapt/ dsads/ motionsense/ sp_sw_har/")
    parser.add_argument("--sets", default=",".join(imu_simclr.REAL_SETS))
    parser.add_argument("--steps", type=int, default=100, help="pretraining steps per encoder (batch 128)")
    parser.add_argument("--transfer_steps", type=int, default=None, help="pretraining steps of (e) (batch 128; "
                        "default: the recipe's own, configs/imu_simclr.py:transfer)")
    parser.add_argument("--ft_steps", type=int, default=150, help="fine-tuning steps (batch 64)")
    parser.add_argument("--ft_recipe", default="lpft", help="fine-tune recipe from (e) (configs/imu_simclr.py "
                        "FINETUNE); its lr is chosen on a validation split of the training subjects")
    parser.add_argument("--ft_scratch_recipe", default="plain", help="fine-tune recipe from scratch (lr chosen "
                        "the same way)")
    parser.add_argument("--synthetic", action="store_true", help="add rows g, h, i: pretraining on the synthetic "
                        "corpus (synthetic_egomotion/motion_realsets) alone, mixed with the set's unlabelled data, "
                        "and followed by it; j: as e without the corpus (the other real sets only); and z: zero-shot "
                        "with text from TSFM Stage 2 trained on it")
    parser.add_argument("--synthetic_steps", type=int, default=None, help="pretraining steps of the synthetic-only "
                        "encoder (rows g, i; batch 128; default: the recipe's own, configs/imu_simclr.py:synthetic)")
    parser.add_argument("--zs_steps", type=int, default=800, help="training steps of row z's TSFM Stage 2 encoder "
                        "(configs/tsfm_stage2.py:synthetic, batch 32)")
    parser.add_argument("--skip", default="", help="comma-separated rows to leave out, e.g. b,e,f (e, f: no transfer "
                        "pretraining) or whole keys, e.g. f_finetune_scratch")
    parser.add_argument("--folds", type=int, default=0, help="score every subject of the set: K leave-subjects-out "
                        "folds (scikit-learn GroupKFold, as the probe command's kfold protocol), each predicted by a "
                        "probe fitted (f: a model fine-tuned) on the other folds; only for the rows that never "
                        "pretrain on the set (a, b, c, e, f, g, j, z): less variance than one held-out split. "
                        "Default 0: the builders' held-out test subjects")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting for every encoder (pretraining runs and the random-init probe), e.g. "
                        "augment.max_stretch=1.0; repeatable")
    args = parser.parse_args()
    if args.folds < 0 or args.folds == 1:
        parser.error(f"--folds={args.folds}: 0 (the builders' held-out split) or at least 2 folds")
    pretrains_on_the_set = {"d", *(("h", "i") if args.synthetic else ())} - set(args.skip.split(","))
    if args.folds and pretrains_on_the_set:
        parser.error(f"--folds: rows {sorted(pretrains_on_the_set)} pretrain on the set's training subjects (one "
                     f"fixed split); add them to --skip")
    args.workdir, args.raw_root = os.path.abspath(args.workdir), os.path.abspath(args.raw_root)
    os.makedirs(args.workdir, exist_ok=True)
    start = time.time()
    results = {"_args": vars(args), "_machine": machine.describe()}
    for name in args.sets.split(","):
        results[name] = run_set(name, args)
        results["_total_seconds"] = round(time.time() - start, 1)
        with open(os.path.join(args.workdir, "real_data.json"), "w") as f:  # after every set: partial tables survive
            json.dump(results, f, indent=1)
    print(table(results))


def table(results: dict) -> str:
    names = [n for n in results if not n.startswith("_")]
    keys = list(results[names[0]]["rows"])
    lines = ["| method | " + " | ".join(f"{n} acc / macro-F1" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in keys:
        cells = [f"{results[n]['rows'][key]['accuracy']:.3f} / {results[n]['rows'][key]['macro_f1']:.3f}"
                 for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
