"""Orbax checkpoints of the whole run, and the one way to read any of them back.

A run's checkpoint (``<workdir>/checkpoints/<step>``) holds the train state (model, optimiser, step), the grain
iterator state, the config, the model-selection record and a checksum of every array. Orbax writes each step into a
temporary directory and renames it when complete, so a run killed mid-save leaves the previous checkpoint intact.

Resume (`Checkpointer.restore_latest_good`) takes the newest checkpoint that passes every check, in this order:
config readable, config compatible, files readable, arrays restored, checksums equal, selection record readable,
iterator restored. Evidence of damage (a missing or garbage item, an empty step directory, a truncated or deleted
file, a checksum mismatch) sets the checkpoint aside as ``corrupt-<step>-<time>`` with a warning and the previous one
is tried. A checkpoint that cannot be read for another reason (permission denied, an I/O error) stops the run with
`CheckpointReadError` and nothing is renamed; one written for other arrays or another model config stops it with
`IncompatibleCheckpointError`, also touching nothing. A failed attempt leaves no state behind (the iterator is only
restored once the arrays have passed), so a run whose checkpoints are all damaged starts exactly as a fresh run.

`restore` is the one reader for everything else: evaluation (``--mode=eval``), the zero-shot protocol and
``config.init_from`` (`load_init_weights`) all go through it and through the same checks (read-only: nothing is
set aside). It reads ``RUN_DIR`` (its best checkpoint when the run kept one, else its latest), ``RUN_DIR:best``,
``RUN_DIR:latest``, or a step directory, onto the shardings of a target (any mesh) or into host arrays.

Model selection (`BestCheckpointer`): when the run has a selection metric (`imujax.evaluate.selection_metric`), every
periodic eval that improves it strictly saves the eval weights {step, params, other} to ``<workdir>/best_checkpoint``
(one kept; same atomic write). The best-so-far value, its step and the last evaluated step travel in each regular
checkpoint (item ``selection``), so a resumed run compares against exactly what the interrupted one had seen; best
checkpoints newer than the restored step are dropped and re-made by the replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import sys
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

ITEMS = ("state", "data", "config", "selection", "checksums")
BEST_DIR = "best_checkpoint"  # under the workdir
CHECKPOINTS_DIR = "checkpoints"  # under the workdir

# Config sections that define what the saved arrays are; a checkpoint from a run that differs here cannot resume.
STRUCTURAL_KEYS = ("system", "model", "optimizer.name", "optimizer.schedule")


class IncompatibleCheckpointError(ValueError):
    """The checkpoint was written by a run whose model/optimiser config or arrays differ from this one."""


class CheckpointDamagedError(ValueError):
    """Evidence of damage: a missing or garbage item, a truncated or deleted file, a checksum mismatch."""


class CheckpointReadError(OSError):
    """A checkpoint that may be healthy could not be read (permission denied, an I/O error): nothing was changed."""


# -- checksums ---------------------------------------------------------------------------------------------------------
def _leaf_checksum(x, xp=np):
    """Two 32-bit sums of the array's bits with odd position weights: any single-bit flip changes both. ``xp``: numpy
    (host arrays) or jax.numpy (arrays not fully addressable from this process); the two give the same digits."""
    if xp is jnp and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == xp.bool_:
        x = x.astype(xp.uint8)
    width = {1: xp.uint8, 2: xp.uint16, 4: xp.uint32, 8: xp.uint32}[x.dtype.itemsize]
    bits = (x.view(width) if xp is np else jax.lax.bitcast_convert_type(x, width)).astype(xp.uint32).ravel()
    index = xp.arange(bits.size, dtype=xp.uint32)
    return xp.stack([xp.sum(bits * (2 * index + xp.uint32(1)), dtype=xp.uint32),
                     xp.sum((bits ^ (index * xp.uint32(0x9E3779B9))) * xp.uint32(0x85EBCA6B), dtype=xp.uint32)])


_sharded_checksums = jax.jit(lambda arrays: jax.tree.map(lambda x: _leaf_checksum(x, jnp), arrays))


def path_name(path) -> str:
    """'params/blocks/0/kernel' for a pytree path of a state, its abstract version or Orbax's metadata of one."""
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    return name[: -len("/value")] if name.endswith("/value") else name  # nnx Variables are {'value': array}


def checksums(tree) -> dict[str, str]:
    """Path name -> checksum (hex) of every array in ``tree`` (host arrays, or sharded over any mesh). Arrays this
    process holds whole are summed on the host (no compilation); the others on their devices."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {path_name(p): leaf for p, leaf in leaves if hasattr(leaf, "shape")}
    whole = lambda a: not isinstance(a, jax.Array) or a.is_fully_addressable
    sums = {name: _leaf_checksum(np.asarray(jax.device_get(a))) for name, a in arrays.items() if whole(a)}
    sharded = {name: a for name, a in arrays.items() if not whole(a)}
    if sharded:
        sums.update({name: np.asarray(s.addressable_data(0)) for name, s in _sharded_checksums(sharded).items()})
    return {name: "".join(f"{int(v):08x}" for v in s) for name, s in sums.items()}


def _verify_checksums(where: str, tree, saved: dict[str, str] | None) -> None:
    if saved is None:  # written before checksums existed
        logging.warning("%s has no checksums (written by an older imujax); its arrays are not verified", where)
        return
    now = checksums(tree)
    missing = sorted(set(now) - set(saved))
    bad = sorted(name for name in set(now) & set(saved) if now[name] != saved[name])
    if bad or missing:
        raise CheckpointDamagedError(f"{where}: checksum mismatch in {', '.join(bad[:5])}"
                                     + (f" ... ({len(bad)} arrays)" if len(bad) > 5 else "")
                                     + (f"; no checksum for {', '.join(missing[:5])}" if missing else ""))


# -- error classes -----------------------------------------------------------------------------------------------------
# errnos (and the messages tensorstore turns them into) that say nothing about the checkpoint's content.
_READ_ERRNOS = {errno.EACCES, errno.EPERM, errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY,
                errno.EINTR, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ENOLCK, errno.ECONNRESET}
_READ_MARKERS = ("PERMISSION_DENIED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "Permission denied",
                 "Input/output error", "Stale file handle", "Operation not permitted", "timed out")


def _is_read_failure(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (PermissionError, TimeoutError, ConnectionError, MemoryError, CheckpointReadError)):
            return True
        if isinstance(error, OSError) and error.errno in _READ_ERRNOS:
            return True
        if any(marker in str(error) for marker in _READ_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def _classified(where: str):
    """Turn any failure into CheckpointReadError (could be healthy) or CheckpointDamagedError (evidence of damage)."""
    try:
        yield
    except (CheckpointDamagedError, CheckpointReadError, IncompatibleCheckpointError):
        raise
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore/json raise many types for the same two cases
        if _is_read_failure(e):
            raise CheckpointReadError(f"{where} cannot be read ({type(e).__name__}: {str(e)[:300]}); it is left as it "
                                      f"is. Fix the access or retry.") from e
        raise CheckpointDamagedError(f"{where}: {type(e).__name__}: {str(e)[:300]}") from e


def _check_files_readable(step_dir: str) -> None:
    """Open every file of a step directory: permission and I/O problems are found before anything is judged damaged."""
    found = False

    def fail(e: OSError):
        raise e

    with _classified(step_dir):
        for root, _, files in os.walk(step_dir, onerror=fail):
            for name in files:
                os.close(os.open(os.path.join(root, name), os.O_RDONLY))
                found = True
    if not found:
        raise CheckpointDamagedError(f"{step_dir} is empty")


# -- reading one checkpoint --------------------------------------------------------------------------------------------
def read_item(step_dir: str, item: str, *, required: bool = True):
    """A JSON item (config, selection, checksums, metrics) of a checkpoint step directory; None if absent and not
    required."""
    path = os.path.join(step_dir, item)
    if not os.path.isdir(path):
        if required:
            raise CheckpointDamagedError(f"{step_dir} has no {item!r} item")
        return None
    # Orbax names the file 'metadata', except for an item called 'metrics', which it stores under its own name.
    filename = item if os.path.exists(os.path.join(path, item)) else "metadata"
    with _classified(path):
        with ocp.Checkpointer(ocp.JsonCheckpointHandler(filename=filename)) as reader:
            return reader.restore(path)


def restore_state(step_dir: str, target=None, *, keys=("step", "params", "other")):
    """The one restore function: the ``state`` item of a checkpoint step directory, checksums verified.

    ``target``: an abstract tree (``jax.ShapeDtypeStruct`` with shardings, any mesh) of the whole train state or any
    part of it ({step, params, other}); None: host numpy arrays of the top-level ``keys``. Raises
    `CheckpointDamagedError` or `CheckpointReadError`; a target whose arrays differ from the saved ones raises
    `IncompatibleCheckpointError` naming the paths.
    """
    _check_files_readable(step_dir)
    path = os.path.join(step_dir, "state")
    with _classified(path):
        with ocp.PyTreeCheckpointer() as reader:
            meta = reader.metadata(path)
        saved = getattr(meta, "item_metadata", meta)
        saved = dict(getattr(saved, "tree", saved))  # orbax TreeMetadata wraps the tree
    if target is None:
        target = {k: saved[k] for k in keys if k in saved}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    else:
        problems = _layout_problems(saved, target)
        if problems:  # readable, but written for other arrays: not damage
            raise IncompatibleCheckpointError(
                f"{step_dir} holds arrays that do not match this run's state (written by another imujax version or "
                f"model code):\n  " + "\n  ".join(problems) + "\nThe checkpoint is left as it is. Use a new "
                f"--workdir, or the imujax version that wrote it.")
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with _classified(path):
        with ocp.PyTreeCheckpointer() as reader:
            restored = reader.restore(path, args=ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args, partial_restore=True))
        if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(restored)):
            raise CheckpointDamagedError(f"{path}: some arrays were not restored")
    _verify_checksums(step_dir, restored, read_item(step_dir, "checksums", required=False))
    return restored


def _layout_problems(saved_tree, target, limit: int = 6) -> list[str]:
    """How the saved arrays (Orbax metadata) differ (paths, shapes) from ``target`` in the target's top-level items."""
    saved = array_layout(saved_tree)
    expected = array_layout(target)
    saved = {k: v for k, v in saved.items() if k.split("/")[0] in {e.split("/")[0] for e in expected}}
    problems = [f"this run has {p} {list(expected[p])}, the checkpoint has no such array"
                for p in sorted(set(expected) - set(saved))]
    problems += [f"the checkpoint has {p} {list(saved[p])}, this run has no such array"
                 for p in sorted(set(saved) - set(expected))]
    problems += [f"{p}: the checkpoint has shape {list(saved[p])}, this run {list(expected[p])}"
                 for p in sorted(set(saved) & set(expected)) if saved[p] != expected[p]]
    if len(problems) > limit:
        problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
    return problems


def array_layout(tree) -> dict[str, tuple[int, ...]]:
    """Path name -> shape of every array in a state, its abstract version or Orbax's metadata of one."""
    tree = getattr(tree, "tree", tree)  # orbax TreeMetadata wraps the tree
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_name(path): tuple(leaf.shape) for path, leaf in leaves if hasattr(leaf, "shape")}


# -- config compatibility ----------------------------------------------------------------------------------------------
def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _differences(saved, current, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += _differences(saved.get(key), current.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    norm = lambda x: list(x) if isinstance(x, tuple) else x
    return [] if norm(saved) == norm(current) else [f"{prefix}: checkpoint has {saved!r}, config has {current!r}"]


def config_to_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json())


def _check_compatible(where: str, saved, config: ml_collections.ConfigDict) -> None:
    if not isinstance(saved, dict):
        raise CheckpointDamagedError(f"{where}: the saved config is not a JSON object")
    current = config_to_json(config)
    problems = []
    for key in STRUCTURAL_KEYS:
        problems += _differences(_lookup(saved, key), _lookup(current, key), key)
    if problems:
        raise IncompatibleCheckpointError(
            f"{where} is a checkpoint from an incompatible config:\n  " + "\n  ".join(problems)
            + "\nUse a new --workdir, or restore the original settings to resume.")


# -- any checkpoint of a run, read-only --------------------------------------------------------------------------------
@dataclasses.dataclass
class Restored:
    step: int
    kind: str              # 'best' or 'latest'
    step_dir: str
    state: object          # restored tree (onto the target's shardings, or host arrays)


def _steps(directory: str) -> list[int]:
    if not os.path.isdir(directory):
        return []
    return sorted((int(name) for name in os.listdir(directory) if name.isdigit()), reverse=True)


def parse_source(source: str) -> tuple[str, str]:
    """'RUN_DIR[:best|:latest]' -> (path, which); which is 'auto' without a suffix."""
    path, sep, which = source.rpartition(":")
    if sep and which in ("best", "latest", "auto"):
        return path, which
    return source, "auto"


def candidates(run_dir: str, which: str = "auto") -> list[tuple[str, str]]:
    """(kind, step directory), the preferred first: the best checkpoint ('auto', 'best'), then the run's
    checkpoints newest first ('auto', 'latest'). A step directory given directly is its own only candidate."""
    if which not in ("auto", "best", "latest"):
        raise ValueError(f"checkpoint choice must be 'auto', 'best' or 'latest', got {which!r}")
    run_dir = os.path.abspath(run_dir)
    if os.path.isdir(os.path.join(run_dir, "state")):
        return [("latest", run_dir)]
    best = [("best", os.path.join(run_dir, BEST_DIR, str(s))) for s in _steps(os.path.join(run_dir, BEST_DIR))[:1]]
    latest = [("latest", os.path.join(run_dir, CHECKPOINTS_DIR, str(s)))
              for s in _steps(os.path.join(run_dir, CHECKPOINTS_DIR))]
    return {"auto": best + latest, "best": best, "latest": latest}[which]


def restore(source: str, target=None, *, which: str | None = None,
            config: ml_collections.ConfigDict | None = None, keys=("step", "params", "other")) -> Restored:
    """Read a run's checkpoint: ``source`` is 'RUN_DIR', 'RUN_DIR:best', 'RUN_DIR:latest' or a step directory.

    'auto' prefers the run's best checkpoint (model selection) and falls back to its newest checkpoint; a damaged one
    is skipped with a warning (read-only: nothing is renamed). ``config``: refuse a checkpoint from an incompatible
    config. ``target``/``keys``: as `restore_state`.
    """
    path, parsed = parse_source(source)
    which = which or parsed
    tried = []
    for kind, step_dir in candidates(path, which):
        try:
            if config is not None:
                _check_compatible(step_dir, read_item(step_dir, "config"), config)
            state = restore_state(step_dir, target, keys=keys)
        except CheckpointDamagedError as e:
            logging.warning("skipping damaged checkpoint: %s", e)
            print(f"warning: skipping damaged checkpoint {step_dir} ({str(e)[:200]})", file=sys.stderr, flush=True)
            tried.append(step_dir)
            continue
        logging.info("restored %s checkpoint %s", kind, step_dir)
        return Restored(int(os.path.basename(step_dir)), kind, step_dir, state)
    where = f"{which} checkpoint" if which != "auto" else "checkpoint"
    raise FileNotFoundError(f"{source}: no readable {where} (looked in {os.path.join(path, BEST_DIR)} and "
                            f"{os.path.join(path, CHECKPOINTS_DIR)}" + (f"; damaged: {tried}" if tried else "") + ")")


# -- starting from other weights ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class InitWeights:
    """Weights to start a run from: ``arrays`` {path name: host array} of params and non-param state (BatchNorm
    statistics); for an `imujax.convert` output also its model name, config and nnx state (for systems that graft a
    converted encoder into a larger model)."""
    origin: str
    arrays: dict[str, np.ndarray]
    converted: tuple[str, dict, object] | None = None


def outside_mesh():
    """A context without a mesh: building a converted model's abstract state must not resolve its logical axis
    names ('layers', 'embed') against the run's mesh."""
    return jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((), ()))


def is_converted(path: str) -> bool:
    from imujax.bridges.torch import conversion
    return os.path.exists(os.path.join(path, conversion.CONFIG_FILE))


def load_init_weights(source: str) -> InitWeights:
    """``config.init_from``: an `imujax.convert` output directory, or a run ('RUN_DIR' = its best checkpoint if kept,
    else its latest; 'RUN_DIR:best'; 'RUN_DIR:latest'; or a step directory). Works inside or outside a mesh."""
    path, which = parse_source(source)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"config.init_from={source}: {path} is not a directory")
    if is_converted(path):
        from imujax.bridges.torch import conversion  # the bridge is optional at train time
        with outside_mesh():
            name, converted_config, state = conversion.load_converted(path)
        from flax import nnx
        arrays = {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}
        return InitWeights(f"{path} (imujax.convert {name})", arrays, (name, converted_config, state))
    if not candidates(path, which):
        raise FileNotFoundError(f"config.init_from={source}: neither an imujax.convert output (no imujax_convert.json) "
                                f"nor a run directory with checkpoints ({CHECKPOINTS_DIR}/ or {BEST_DIR}/)")
    with outside_mesh():
        restored = restore(path, None, which=which, keys=("params", "other"))
    arrays = {}
    for key in ("params", "other"):
        for p, leaf in jax.tree_util.tree_flatten_with_path(restored.state.get(key, {}))[0]:
            arrays[path_name(p)] = np.asarray(leaf)
    return InitWeights(f"{restored.step_dir} ({restored.kind} checkpoint of {path})", arrays)


# -- the run's own checkpoints -----------------------------------------------------------------------------------------
class Checkpointer:
    def __init__(self, directory: str, *, keep: int = 3, use_async: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=use_async, create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler(),
                           "config": ocp.JsonCheckpointHandler(), "selection": ocp.JsonCheckpointHandler(),
                           "checksums": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator, config: ml_collections.ConfigDict,
             selection: dict | None = None) -> None:
        """``selection``: the model-selection record (`BestCheckpointer.record`), restored with the state."""
        items = dict(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
                     config=ocp.args.JsonSave(config_to_json(config)),
                     checksums=ocp.args.JsonSave(checksums(state)))
        if selection is not None:
            items["selection"] = ocp.args.JsonSave(selection)
        self.manager.save(step, force=True, args=ocp.args.Composite(**items))

    def saved_selection(self, step: int) -> dict | None:
        """The model-selection record saved with ``step`` (None for a checkpoint written without one)."""
        return read_item(os.path.join(self.directory, str(step)), "selection", required=False)

    def restore_latest_good(self, abstract_state, data_iterator, config: ml_collections.ConfigDict | None = None):
        """Restore the newest usable checkpoint (see the module docstring); damaged ones are set aside.

        Returns (step, state, selection record or None), or (None, None, None) when no checkpoint is usable. The
        iterator is moved only by a successful restore.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            step_dir = os.path.join(self.directory, str(step))
            try:
                saved_config = read_item(step_dir, "config")
                if config is not None:
                    _check_compatible(f"{self.directory} checkpoint step {step}", saved_config, config)
                state = restore_state(step_dir, abstract_state)
                selection = read_item(step_dir, "selection", required=False)
                self._restore_iterator(step_dir, step, data_iterator)
            except CheckpointDamagedError as e:
                logging.warning("checkpoint step %d in %s cannot be restored (%s); falling back to the previous one",
                                step, self.directory, e)
                print(f"warning: checkpoint step {step} is corrupt or truncated ({str(e)[:300]}); using the previous "
                      f"one", file=sys.stderr, flush=True)
                self._set_aside(step)
                continue
            logging.info("restored checkpoint step %d from %s", step, self.directory)
            return step, state, selection
        return None, None, None

    def _restore_iterator(self, step_dir: str, step: int, data_iterator) -> None:
        before = data_iterator.get_state()
        try:
            with _classified(os.path.join(step_dir, "data")):
                self.manager.restore(step, args=ocp.args.Composite(
                    data=grain.checkpoint.CheckpointRestore(data_iterator)))
        except BaseException:
            data_iterator.set_state(before)  # a fresh start must see the iterator of a fresh run
            raise

    def _set_aside(self, step: int) -> None:
        if jax.process_index() == 0:
            source = os.path.join(self.directory, str(step))
            target = os.path.join(self.directory, f"corrupt-{step}-{int(time.time())}")
            if os.path.exists(source):
                os.rename(source, target)
        multihost_utils.sync_global_devices(f"imujax_set_aside_{step}")
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def eval_state(state) -> dict:
    """The part of the train state an evaluation needs (no optimiser state)."""
    return {"step": state["step"], "params": state["params"], "other": state["other"]}


class BestCheckpointer:
    """Model selection: keeps the eval weights of the step with the best value of one eval metric.

    ``update`` after every periodic eval saves {step, params, other} (+ config and the eval metrics) when the metric
    improves strictly on the best so far (mode 'max' or 'min'; NaN never improves); Orbax keeps the newest, i.e. the
    best. ``record`` / ``resume`` carry the best-so-far through the regular checkpoints for exact resume.
    """

    def __init__(self, directory: str, metric: str, mode: str = "max", *, use_async: bool = True,
                 create: bool = True):
        if mode not in ("max", "min"):
            raise ValueError(f"selection mode must be 'max' or 'min', got {mode!r}")
        self.directory = os.path.abspath(directory)
        self.metric, self.mode = metric, mode
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.eval_step: int | None = None  # the last step whose eval has been taken into account
        options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=use_async, create=create)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler(),
                           "metrics": ocp.JsonCheckpointHandler(), "checksums": ocp.JsonCheckpointHandler()})

    # -- selection state ---------------------------------------------------------------------------------------------
    def record(self) -> dict:
        return {"metric": self.metric, "mode": self.mode, "best_value": self.best_value, "best_step": self.best_step,
                "eval_step": self.eval_step}

    def resume(self, record: dict | None, restored_step: int) -> None:
        """Continue from the record saved with the restored checkpoint (None: from scratch, or a checkpoint written
        before model selection existed). Best checkpoints after ``restored_step`` belong to the part of the run that
        is about to be replayed: they are removed, and the replay saves them again."""
        self.best_value = self.best_step = self.eval_step = None
        if record is not None and (record.get("metric"), record.get("mode")) == (self.metric, self.mode):
            self.best_value, self.best_step = record.get("best_value"), record.get("best_step")
            self.eval_step = record.get("eval_step")
        elif record is not None:
            logging.warning("checkpoint step %d selected by %s (%s); this run selects by %s (%s): starting the "
                            "selection afresh", restored_step, record.get("metric"), record.get("mode"), self.metric,
                            self.mode)
        for s in self.manager.all_steps():
            if s > restored_step:
                logging.warning("removing best checkpoint step %d from %s (after the restored step %d; the replay "
                                "re-evaluates it)", s, self.directory, restored_step)
                self.manager.delete(s)
        self.manager.reload()

    def eval_pending(self, step: int) -> bool:
        """True when ``step`` is the restored step and its eval was skipped (the run stopped before it)."""
        return step > 0 and self.eval_step is not None and self.eval_step < step

    def update(self, step: int, scalars: dict[str, float], state, config: ml_collections.ConfigDict) -> dict:
        """Take one eval into account; saves the eval weights when the metric improves. Returns the scalars to log
        ('best/<metric>' and 'best/step')."""
        if self.metric not in scalars:
            raise KeyError(f"model selection by {self.metric!r}, but the eval at step {step} logged only "
                           f"{sorted(scalars)}; set --config.checkpoint.best_metric to one of them (or 'none')")
        value = float(scalars[self.metric])
        self.eval_step = int(step)
        if _improves(value, self.best_value, self.mode):
            self.best_value, self.best_step = value, int(step)
            if step not in self.manager.all_steps():
                weights = eval_state(state)
                self.manager.save(step, force=True, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(weights), checksums=ocp.args.JsonSave(checksums(weights)),
                    config=ocp.args.JsonSave(config_to_json(config)),
                    metrics=ocp.args.JsonSave({"step": int(step), "metric": self.metric, "mode": self.mode,
                                               "value": value, "eval": {k: float(v) for k, v in scalars.items()}})))
            logging.info("new best %s=%.6g at step %d", self.metric, value, step)
        short = self.metric.split("/", 1)[-1]
        return {} if self.best_step is None else {f"best/{short}": self.best_value, "best/step": self.best_step}

    # -- reading it back ---------------------------------------------------------------------------------------------
    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def saved_metrics(self, step: int) -> dict:
        return read_item(os.path.join(self.directory, str(step)), "metrics")

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _improves(value: float, best: float | None, mode: str) -> bool:
    if not np.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)
