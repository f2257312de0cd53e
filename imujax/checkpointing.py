"""Orbax checkpoints of the whole run: train state (model, optimiser, step), grain iterator state and config.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed mid-save leaves the
previous checkpoint intact and the partial one is ignored on restart. A checkpoint that cannot be read back is set
aside (``corrupt-<step>``) and the previous one used; one that reads but holds other arrays than the run's state
(another model, or a layout from another imujax version) is refused naming the differing paths, and left alone.
Saves are asynchronous (training continues while the arrays are written); ``wait`` blocks until the last one is
committed.

Model selection (`BestCheckpointer`): when the run has a selection metric (`imujax.evaluate.selection_metric`), every
periodic eval that improves it strictly saves the eval weights {step, params, other} to ``<workdir>/best_checkpoint``
(one kept; same atomic write). The best-so-far value, its step and the last evaluated step travel in each regular
checkpoint (item ``selection``), so a resumed run compares against exactly what the interrupted one had seen; best
checkpoints newer than the restored step are dropped and re-made by the replay.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import grain
import jax
import numpy as np
import ml_collections
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

ITEMS = ("state", "data", "config", "selection")
BEST_DIR = "best_checkpoint"  # under the workdir

# Config sections that define what the saved arrays are; a checkpoint from a run that differs here cannot resume.
STRUCTURAL_KEYS = ("system", "model", "optimizer.name", "optimizer.schedule")


class IncompatibleCheckpointError(ValueError):
    """The workdir holds a checkpoint written by a run whose model/optimiser config differs from this one."""


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


class Checkpointer:
    def __init__(self, directory: str, *, keep: int = 3, use_async: bool = True):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=use_async, create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler(),
                           "config": ocp.JsonCheckpointHandler(), "selection": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator, config: ml_collections.ConfigDict,
             selection: dict | None = None) -> None:
        """``selection``: the model-selection record (`BestCheckpointer.record`), restored with the state."""
        items = dict(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
                     config=ocp.args.JsonSave(config_to_json(config)))
        if selection is not None:
            items["selection"] = ocp.args.JsonSave(selection)
        self.manager.save(step, force=True, args=ocp.args.Composite(**items))

    def saved_selection(self, step: int) -> dict | None:
        """The model-selection record saved with ``step`` (None for a checkpoint written without one)."""
        if not os.path.isdir(os.path.join(self.directory, str(step), "selection")):
            return None
        return self.manager.restore(step, args=ocp.args.Composite(selection=ocp.args.JsonRestore()))["selection"]

    def saved_config(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def check_compatible(self, step: int, config: ml_collections.ConfigDict) -> None:
        _check_compatible(self.directory, step, self.saved_config(step), config)

    def restore(self, step: int, abstract_state, data_iterator):
        """Restore the train state onto the shardings in ``abstract_state`` and the iterator in place."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
        logging.info("restored checkpoint step %d from %s", step, self.directory)
        return restored["state"]

    def restore_latest_good(self, abstract_state, data_iterator):
        """Restore the newest checkpoint that reads back; unreadable (truncated, corrupted) ones are set aside.

        Returns (step, state), or (None, None) when the directory holds no checkpoint. A bad checkpoint is renamed
        to ``corrupt-<step>`` (process 0) so it is neither retried nor in the way when that step is saved again.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return step, self.restore(step, abstract_state, data_iterator)
            except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types for damaged files
                problems = self._layout_problems(step, abstract_state)
                if problems:  # readable, but written for other arrays: not damage, so not set aside
                    raise IncompatibleCheckpointError(
                        f"{self.directory} holds checkpoint step {step}, whose arrays do not match this run's train "
                        f"state (written by another imujax version or model code):\n  " + "\n  ".join(problems)
                        + "\nThe checkpoint is left as it is. Use a new --workdir, or the imujax version that wrote "
                        "it, to resume.") from e
                logging.warning("checkpoint step %d in %s cannot be restored (%s: %s); falling back to the previous "
                                "one", step, self.directory, type(e).__name__, str(e)[:300])
                print(f"warning: checkpoint step {step} is corrupt or truncated ({type(e).__name__}); "
                      f"using the previous one", file=sys.stderr, flush=True)
                self._set_aside(step)
        return None, None

    def _layout_problems(self, step: int, abstract_state, limit: int = 6) -> list[str]:
        """How the arrays saved at ``step`` differ (paths, shapes) from ``abstract_state``; [] if they agree or the
        checkpoint's metadata cannot be read (then it is damaged)."""
        try:
            saved = array_layout(self.manager.item_metadata(step)["state"])
        except Exception:  # noqa: BLE001 - unreadable metadata is damage, handled by the caller
            return []
        expected = array_layout(abstract_state)
        problems = [f"this run has {path} {list(expected[path])}, the checkpoint has no such array"
                    for path in sorted(set(expected) - set(saved))]
        problems += [f"the checkpoint has {path} {list(saved[path])}, this run has no such array"
                     for path in sorted(set(saved) - set(expected))]
        problems += [f"{path}: the checkpoint has shape {list(saved[path])}, this run {list(expected[path])}"
                     for path in sorted(set(saved) & set(expected)) if saved[path] != expected[path]]
        if len(problems) > limit:
            problems = problems[:limit] + [f"... and {len(problems) - limit} more"]
        return problems

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


def array_layout(tree) -> dict[str, tuple[int, ...]]:
    """Path name -> shape of every array in a state, its abstract version or Orbax's metadata of one."""
    tree = getattr(tree, "tree", tree)  # orbax TreeMetadata wraps the tree
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
            for path, leaf in leaves if hasattr(leaf, "shape")}


def _check_compatible(directory: str, step: int, saved: dict, config: ml_collections.ConfigDict) -> None:
    current = config_to_json(config)
    problems = []
    for key in STRUCTURAL_KEYS:
        problems += _differences(_lookup(saved, key), _lookup(current, key), key)
    if problems:
        raise IncompatibleCheckpointError(
            f"{directory} holds checkpoint step {step} from an incompatible config:\n  "
            + "\n  ".join(problems)
            + "\nUse a new --workdir, or restore the original settings to resume.")


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
                           "metrics": ocp.JsonCheckpointHandler()})

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
                self.manager.save(step, force=True, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(eval_state(state)),
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
        return self.manager.restore(step, args=ocp.args.Composite(metrics=ocp.args.JsonRestore()))["metrics"]

    def check_compatible(self, step: int, config: ml_collections.ConfigDict) -> None:
        saved = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        _check_compatible(self.directory, step, saved, config)

    def restore(self, step: int, abstract_state) -> dict:
        """{step, params, other} onto the shardings of ``abstract_state`` (a full train state or its eval part)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(eval_state(abstract_state))))
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _improves(value: float, best: float | None, mode: str) -> bool:
    if not np.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def state_only_restore(abstract_state):
    """Restore arguments for the train state alone (evaluation needs no data iterator)."""
    return ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
