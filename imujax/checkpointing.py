"""Orbax checkpoints of the whole run: train state (model, optimiser, step), grain iterator state and config.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed mid-save leaves the
previous checkpoint intact and the partial one is ignored on restart. Saves are asynchronous (training continues
while the arrays are written); ``wait`` blocks until the last one is committed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

ITEMS = ("state", "data", "config")

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
                           "config": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iterator, config: ml_collections.ConfigDict) -> None:
        self.manager.save(step, force=True, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            config=ocp.args.JsonSave(config_to_json(config))))

    def saved_config(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def check_compatible(self, step: int, config: ml_collections.ConfigDict) -> None:
        saved, current = self.saved_config(step), config_to_json(config)
        problems = []
        for key in STRUCTURAL_KEYS:
            problems += _differences(_lookup(saved, key), _lookup(current, key), key)
        if problems:
            raise IncompatibleCheckpointError(
                f"{self.directory} holds checkpoint step {step} from an incompatible config:\n  "
                + "\n  ".join(problems)
                + "\nUse a new --workdir, or restore the original settings to resume.")

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
                logging.warning("checkpoint step %d in %s cannot be restored (%s: %s); falling back to the previous "
                                "one", step, self.directory, type(e).__name__, str(e)[:300])
                print(f"warning: checkpoint step {step} is corrupt or truncated ({type(e).__name__}); "
                      f"using the previous one", file=sys.stderr, flush=True)
                self._set_aside(step)
        return None, None

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


def state_only_restore(abstract_state):
    """Restore arguments for the train state alone (evaluation needs no data iterator)."""
    return ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
