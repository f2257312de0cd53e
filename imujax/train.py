"""The one training loop for every system: mesh, init-or-restore, jitted step, eval hooks, checkpoints, metrics.

The train state is a pytree {step, params, other (BatchNorm statistics), opt_state}; the model's static structure
(graphdef) stays outside the jitted step. Each step's RNG is fold_in(seed key, step), so a resumed run draws exactly
the masks and dropout an uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils

from imujax import (alarms, checkpointing, config_checks, evaluate, figures, input_pipeline, mixture, run_metrics,
                    runtime, sharding, systems, validation)


# -- optimiser ---------------------------------------------------------------------------------------------------------
def make_schedule(opt: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    lr = opt.learning_rate
    if opt.schedule == "constant":
        schedule = optax.constant_schedule(lr)
    elif opt.schedule == "multistep":  # torch MultiStepLR stepped per epoch
        boundaries = {int(e) * steps_per_epoch: opt.gamma for e in opt.milestones_epochs}
        schedule = optax.piecewise_constant_schedule(lr, boundaries)
    elif opt.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, max(total_steps - opt.warmup_steps, 1),
                                               alpha=opt.min_learning_rate / lr if lr else 0.0)
    else:
        raise ValueError(f"config.optimizer.schedule={opt.schedule!r}; expected constant, multistep or cosine")
    if opt.warmup_steps:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, opt.warmup_steps), schedule],
                                        [opt.warmup_steps])
    return schedule


def scale_by_path_multipliers(rules: dict[str, float]) -> optax.GradientTransformation:
    """Per-parameter learning-rate factors: the first regex in ``rules`` that matches a parameter's dotted path
    (e.g. 'mlp_head.1.kernel') scales its update. Chained after the learning-rate step this equals torch parameter
    groups with different lr (Adam's L2 decay and AdamW's decoupled decay both scale linearly with lr)."""
    compiled = [(re.compile(pattern), float(factor)) for pattern, factor in rules.items()]

    def factor(path) -> float:
        name = jax.tree_util.keystr(path, simple=True, separator=".")
        return next((f for pattern, f in compiled if pattern.search(name)), 1.0)

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(lambda p, u: u * jnp.asarray(factor(p), u.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(opt: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    parts = []
    if opt.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if opt.name == "adam":  # torch.optim.Adam: weight decay is an L2 term added to the gradient before the moments
        if opt.weight_decay:
            parts.append(optax.add_decayed_weights(opt.weight_decay))
        parts += [optax.scale_by_adam(opt.b1, opt.b2, opt.eps), optax.scale_by_learning_rate(schedule)]
    elif opt.name == "adamw":
        parts.append(optax.adamw(schedule, opt.b1, opt.b2, opt.eps, weight_decay=opt.weight_decay))
    else:
        raise ValueError(f"config.optimizer.name={opt.name!r}; expected adam or adamw")
    if opt.get("lr_multipliers"):
        parts.append(scale_by_path_multipliers(dict(opt.lr_multipliers)))
    return optax.chain(*parts)


# -- state -------------------------------------------------------------------------------------------------------------
def _init_fn(system, config, tx):
    static = {}

    def init():
        graphdef, params, other = nnx.split(system.make_model(nnx.Rngs(config.seed)), nnx.Param, ...)
        static["graphdef"] = graphdef  # structure only; identical on every trace
        state = {"step": jnp.zeros((), jnp.int32), "params": params, "other": other}
        return state if tx is None else dict(state, opt_state=tx.init(params))  # tx None: the eval state

    return init, static


def abstract_state(system, config, tx, mesh):
    """(graphdef, abstract state with shardings, shardings) without allocating anything (tx None: no optimiser
    state, what an evaluation restores)."""
    init, static = _init_fn(system, config, tx)
    abstract = jax.eval_shape(init)
    shardings = sharding.state_shardings(abstract, mesh)
    return static["graphdef"], abstract_with_shardings(shardings, abstract), shardings


def create_state(system, config, tx, mesh):
    """Initialise the train state directly onto its shardings; returns (graphdef, state, state_shardings)."""
    init, static = _init_fn(system, config, tx)
    shardings = sharding.state_shardings(jax.eval_shape(init), mesh)
    state = jax.jit(init, out_shardings=shardings)()
    return static["graphdef"], state, shardings


def abstract_with_shardings(state_shardings, abstract_state):
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
                        state_shardings)


def make_train_step(system, graphdef, tx, seed: int, dataset_names=()):
    """The jitted step. With ``dataset_names`` (a mixture run) and batches carrying ``dataset_index``, the per-example
    / per-dataset values a system returns (run_metrics.PER_EXAMPLE / PER_DATASET) become '<metric>/<dataset>' scalars
    and 'samples/<dataset>' counts; without, they are dropped."""
    base_key = jax.random.key(seed)

    def train_step(state, batch):
        key = jax.random.fold_in(base_key, state["step"])

        def loss_fn(params, other):
            # Fresh Variables at this trace level, so BatchNorm may update its statistics inside the grad trace.
            model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, other))
            loss, step_metrics = system.loss(model, batch, key)
            _, _, other = nnx.split(model, nnx.Param, ...)
            return loss, (step_metrics, other)

        grads, (step_metrics, other) = jax.grad(loss_fn, has_aux=True)(state["params"], state["other"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        step_metrics = dict(step_metrics, grad_norm=optax.global_norm(grads))
        step_metrics.update(run_metrics.per_dataset(step_metrics, batch.get("dataset_index"), dataset_names))
        return {"step": state["step"] + 1, "params": params, "other": other, "opt_state": opt_state}, step_metrics

    return train_step


class _StopRequest:
    """SIGTERM (preemption) sets a flag; the loop checkpoints at the next step boundary and exits cleanly.

    With several processes the flag is agreed on at log steps (one tiny all-gather), so every host stops at the same
    step even when only some of them received the signal; a lone host stopping early would hang the others.
    """

    def __init__(self, sync_every: int):
        self.sync_every = sync_every
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self.requested = bool(getattr(self._previous, "requested", False))  # received during start-up (imujax.main)

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint at the next step boundary")
        self.requested = True

    def agreed(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.requested
        if step % self.sync_every:
            return False
        return bool(multihost_utils.process_allgather(np.asarray(self.requested)).any())

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def total_steps_for(config, steps_per_epoch: int) -> int:
    return config.total_steps or config.num_epochs * steps_per_epoch


def matmul_precision(config: ml_collections.ConfigDict):
    """config.matmul_precision as JAX's default matmul precision; every step traced inside it follows it."""
    return jax.default_matmul_precision(config.get("matmul_precision", "default"))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Train (resuming from workdir if it holds a checkpoint) and return the final metrics."""
    config_checks.check(config, "train")
    stop = _StopRequest(sync_every=config.log_every_steps)  # from here on SIGTERM stops the run cleanly
    try:
        with matmul_precision(config):
            return _train(config, workdir, stop)
    finally:
        stop.restore()


def _train(config: ml_collections.ConfigDict, workdir: str, stop: _StopRequest) -> dict[str, float]:
    os.makedirs(workdir, exist_ok=True)
    system = systems.make_system(config)
    mesh = sharding.make_mesh(**config.mesh)
    if config.batch_size % sharding.batch_divisor(mesh) or config.batch_size % jax.process_count():
        raise ValueError(f"config.batch_size={config.batch_size} must be divisible by the data*fsdp mesh size "
                         f"{sharding.batch_divisor(mesh)} and by {jax.process_count()} processes")

    input_pipeline.ensure_built(config, workdir)
    train_source = input_pipeline.open_train_source(config, workdir)
    train_source, validation_source = validation.carve(config, system, train_source)  # model selection's records
    dataset_names = mixture.short_names(train_source.names) if isinstance(train_source, input_pipeline.Mixture) else ()
    steps_per_epoch = input_pipeline.steps_per_epoch(len(train_source), config.batch_size)
    total_steps = total_steps_for(config, steps_per_epoch)
    schedule = make_schedule(config.optimizer, steps_per_epoch, total_steps)
    tx = make_optimizer(config.optimizer, schedule)

    data = iter(input_pipeline.train_dataset(
        train_source, system.preprocess, global_batch=config.batch_size, seed=config.data.shuffle_seed,
        worker_count=config.data.worker_count, process_index=jax.process_index(), process_count=jax.process_count(),
        read_threads=config.data.read_threads, prefetch_batches=config.data.prefetch_batches))

    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                                      use_async=config.checkpoint.use_async)
    with jax.set_mesh(mesh):
        graphdef, state, state_shardings = create_state(system, config, tx, mesh)
        restored_step, selection = None, None
        if ckpt.latest_step() is not None:
            restored_step, restored, selection = ckpt.restore_latest_good(
                abstract_with_shardings(state_shardings, state), data, config)
            if restored_step is not None:
                state = restored
            else:
                logging.warning("no usable checkpoint in %s: starting from scratch", ckpt.directory)
        if restored_step is None and init_source(config)[0]:
            state = _init_from(state, config, state_shardings, system)

        step_fn = jax.jit(make_train_step(system, graphdef, tx, config.seed, dataset_names), donate_argnums=0,
                          out_shardings=(state_shardings, None))
        evaluator = evaluate.Evaluator(system, graphdef, config, workdir, mesh, source=validation_source,
                                       prefix="eval" if validation_source is None else "val")
        best = _best_checkpointer(system, config, workdir, selection, restored_step, evaluator.prefix)
        writer = run_metrics.open_writer(workdir)
        progress = run_metrics.Progress(total_steps, config.batch_size, config.log_every_steps)
        learning = alarms.for_system(system, config)
        step = int(state["step"])
        final: dict[str, float] = {}
        compiled = False
        try:
            if stop.agreed(0):  # SIGTERM during start-up: nothing new to save
                logging.warning("stopping before the first step after SIGTERM; resume with the same command")
                print("stopped by SIGTERM during start-up, before the first step; rerun the same command to resume",
                      file=sys.stderr, flush=True)
                return final
            if (best is not None and best.eval_pending(step)
                    and _eval_due(config, step, total_steps, steps_per_epoch)):  # skipped by a SIGTERM stop
                final = _evaluate(evaluator, best, writer, state, config, workdir, step)
            while step < total_steps:
                local = next(data)
                local, bookkeeping = input_pipeline.split_bookkeeping(local)
                batch_ids = bookkeeping["id"]
                state, step_metrics = step_fn(state, sharding.global_batch(local, mesh))
                if not compiled:  # the call compiled the step: hand the compiler's freed memory back
                    runtime.release_free_memory()
                    compiled = True
                step += 1
                progress.tick(step)
                stopping = stop.agreed(step)  # read once: a signal arriving now is handled at the next boundary
                saving = step % config.checkpoint.every_steps == 0 or step == total_steps or stopping
                if step % config.log_every_steps == 0 or step == total_steps or saving:
                    scalars = run_metrics.drop_absent(run_metrics.to_host(step_metrics), dataset_names)
                    _check_finite(scalars, step, batch_ids, ckpt)  # before any save: keep the last good checkpoint
                if step % config.log_every_steps == 0 or step == total_steps:
                    scalars["lr"] = float(schedule(step - 1))
                    scalars.update(progress.line(step, scalars))
                    scalars.update(learning.update(step, scalars))  # terms stuck at their trivial value
                    writer.write_scalars(step, scalars)
                # Eval before the save, whose selection record then includes this step's eval.
                if not stopping and _eval_due(config, step, total_steps, steps_per_epoch):
                    final = _evaluate(evaluator, best, writer, state, config, workdir, step)
                    runtime.release_free_memory()  # after the eval functions' compilation
                if saving:
                    ckpt.save(step, state, data, config, selection=None if best is None else best.record())
                if stopping:
                    logging.warning("stopping at step %d after SIGTERM; resume with the same command", step)
                    break
            if step == total_steps and config.figures:
                figures.write_run_figures(system, graphdef, state, config, workdir, step, mesh, writer)
        finally:
            ckpt.wait()
            ckpt.close()
            if best is not None:
                best.wait()
                best.close()
            writer.close()
    return final


def _eval_due(config, step: int, total_steps: int, steps_per_epoch: int) -> bool:
    every = config.eval_every_steps or config.get("eval_every_epochs", 0) * steps_per_epoch
    return bool(every and step % every == 0) or step == total_steps


def _best_checkpointer(system, config, workdir: str, record: dict | None, restored_step: int | None,
                       prefix: str = "eval"):
    """Model selection for runs with a selection metric (fine-tuning: the system's, e.g. RevalExo weighted F1 at
    horizon 0 on the eval split), continued from the restored checkpoint's record; None otherwise."""
    selection = evaluate.selection_metric(system, config)
    if selection is None:
        return None
    if prefix != "eval":  # selecting on the validation split carved from the training subjects (imujax.validation)
        selection = (selection[0].replace("eval/", f"{prefix}/", 1), selection[1])
    best = checkpointing.BestCheckpointer(os.path.join(workdir, checkpointing.BEST_DIR), *selection,
                                          use_async=config.checkpoint.use_async)
    best.resume(record, restored_step or 0)
    return best


def _evaluate(evaluator, best, writer, state, config, workdir: str, step: int) -> dict[str, float]:
    """One periodic eval: metrics, model selection (saves the best checkpoint), log line, confusion figures."""
    final = evaluator(state)
    if best is not None:
        final = dict(final, **best.update(step, final, state, config))
    writer.write_scalars(step, final)
    if final and jax.process_index() == 0:
        print("eval " + " ".join(f"{k}={v:.4f}" for k, v in final.items()), flush=True)
    result = evaluator.last_classification
    if config.figures and result is not None and jax.process_index() == 0:
        figures.write_confusion_figures(result.confusions, workdir, step, writer)
    return final


def _check_finite(scalars: dict[str, float], step: int, batch_ids, ckpt) -> None:
    bad = [k for k, v in scalars.items() if not np.isfinite(v)]
    if bad:
        ids = [i.decode(errors="replace") for i in np.asarray(batch_ids).tolist()]
        raise FloatingPointError(
            f"non-finite {', '.join(bad)} at step {step} (loss={scalars.get('loss')}); this host's records in that "
            f"batch: {ids}. The run stopped without saving; the last good checkpoint is step {ckpt.latest_step()} "
            f"in {ckpt.directory}")


def init_source(config) -> tuple[str, str]:
    """(config.init_from, config.init_only), with TSFM Stage 2's older ``encoder_init_from=RUN_DIR`` read as
    ``init_from=RUN_DIR:latest init_only=encoder``."""
    source, only = config.get("init_from", ""), config.get("init_only", "")
    legacy = config.get("encoder_init_from", "")
    if legacy:
        if source:
            raise ValueError("set config.init_from (with config.init_only=encoder) or the older "
                             "config.encoder_init_from, not both")
        logging.warning("config.encoder_init_from is read as --config.init_from=%s:latest --config.init_only=encoder",
                        legacy)
        source, only = f"{legacy}:latest", "encoder"
    return source, only


def _init_from(state, config, state_shardings, system=None):
    """Start from other weights (config.init_from: an `imujax.convert` output or another run's checkpoint, see
    `checkpointing.load_init_weights`): parameters and BatchNorm statistics whose path and shape match are loaded
    (as the upstream fine-tune loaders do by name and shape), restricted to the path prefixes of config.init_only
    when set; the rest keep their init. A system whose model wraps a converted one (e.g. an IMU encoder inside a
    contrastive model) places it with its own ``init_from_converted(params, name, config, converted_state)``."""
    source, only = init_source(config)
    weights = checkpointing.load_init_weights(source)
    if (system is not None and system.init_from_converted is not None and weights.converted is not None
            and not only):
        params = system.init_from_converted(jax.device_get(state["params"]), *weights.converted)
        return dict(state, params=jax.device_put(params, state_shardings["params"]))
    prefixes = tuple(p.strip().strip("/") for p in only.replace(",", " ").split() if p.strip())
    wanted = lambda name: not prefixes or any(name == p or name.startswith(p + "/") for p in prefixes)
    source_arrays = {k: v for k, v in weights.arrays.items() if wanted(k)}
    loaded, skipped = [], []

    def take(tree):
        flat = nnx.to_flat_state(tree)
        for path, variable in flat:
            name = "/".join(map(str, path))
            value = source_arrays.get(name)
            if value is not None and value.shape == variable.shape:
                variable.set_value(jnp.asarray(value, variable.dtype))
                loaded.append(name)
            elif wanted(name):
                skipped.append(name)
        return nnx.from_flat_state(flat)

    params, other = take(jax.device_get(state["params"])), take(jax.device_get(state["other"]))
    if not loaded:
        raise ValueError(f"--config.init_from={source}: no parameter of this model"
                         + (f" under {', '.join(prefixes)}" if prefixes else "")
                         + f" matches {weights.origin} by path and shape")
    unused = sorted(set(source_arrays) - set(loaded))
    logging.warning("init_from %s: loaded %d arrays; kept the initialisation of %d (%s); %d arrays unused (%s)",
                    weights.origin, len(loaded), len(skipped), _paths(skipped), len(unused), _paths(unused))
    return dict(state, params=jax.device_put(params, state_shardings["params"]),
                other=jax.device_put(other, state_shardings["other"]))


def _paths(paths, limit: int = 8) -> str:
    shown = [p.replace("/", ".") for p in paths[:limit]]
    return ", ".join(shown) + (" ..." if len(paths) > limit else "")


def evaluate_only(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Evaluate a checkpoint of workdir: config.eval.checkpoint 'auto' (the selected best checkpoint when the run kept
    one, else the latest), 'best' or 'latest'; without checkpoints, the weights named by config.init_from.

    Process 0 writes <workdir>/eval_<source>.json (step, metrics) and, for classification systems,
    eval_<source>_predictions.npz (labels / predictions / transitions per horizon, read by
    `imujax.eval.loso.finetune_report`) and the confusion figures <workdir>/figures/confusion_<source>_*.png.
    """
    system = systems.make_system(config)
    mesh = sharding.make_mesh(**config.mesh)
    input_pipeline.ensure_built(config, workdir)
    which = config.eval.get("checkpoint", "auto")
    if which not in ("auto", "best", "latest"):
        raise ValueError(f"config.eval.checkpoint must be 'auto', 'best' or 'latest', got {which!r}")
    with jax.set_mesh(mesh), matmul_precision(config):
        if not checkpointing.candidates(workdir, which) and (which == "best" or not init_source(config)[0]):
            raise FileNotFoundError(
                f"--config.eval.checkpoint=best: no best checkpoint in {workdir} (model selection keeps one when the "
                f"run has a selection metric and evaluates)" if which == "best" else
                f"nothing to evaluate: no checkpoint in {workdir} and no --config.init_from")
        if checkpointing.candidates(workdir, which):
            graphdef, abstract, _ = abstract_state(system, config, None, mesh)
            restored = checkpointing.restore(workdir, abstract, which=which, config=config)
            state, source, step = restored.state, restored.kind, restored.step
            if source == "best":
                saved = checkpointing.read_item(restored.step_dir, "metrics", required=False) or {}
                logging.warning("evaluating the best checkpoint, step %d (%s=%s)", step, saved.get("metric"),
                                saved.get("value"))
        else:  # no checkpoint of its own: the weights named by config.init_from
            graphdef, state, shardings = create_state(system, config, None, mesh)
            state = _init_from(state, config, shardings, system)
            source, step = "init", 0
        evaluator = evaluate.Evaluator(system, graphdef, config, workdir, mesh)
        results = evaluator(state)
        if jax.process_index() == 0:
            _write_eval_outputs(workdir, source, step, results, evaluator.last_classification, config)
        return results


def _write_eval_outputs(workdir: str, source: str, step: int, results: dict, result, config) -> None:
    from imujax.eval import classification
    with open(os.path.join(workdir, f"eval_{source}.json"), "w") as f:
        json.dump({"checkpoint": source, "step": int(step), "metrics": {k: float(v) for k, v in results.items()}},
                  f, indent=1)
    if result is not None:
        classification.save_predictions(os.path.join(workdir, f"eval_{source}_predictions.npz"), result,
                                         step=np.int64(step))
        if config.figures:
            writer = run_metrics.open_writer(workdir)
            try:
                figures.write_confusion_figures(result.confusions, workdir, step, writer, prefix=f"confusion_{source}")
            finally:
                writer.close()
