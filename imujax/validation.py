"""Where fine-tuning selects its best checkpoint: a validation split carved from the training subjects by default.

With a selection metric (fine-tuning systems, or config.checkpoint.best_metric) and
config.checkpoint.select_on="validation", `carve` holds out config.data.validation_fraction of the training split's
groups (config.eval.group_field, default ``subject``; at least one), drawn with config.seed: the loop trains on the
rest and its periodic evaluation, logged as ``val/...``, runs on them. The eval split is then untouched until
``--mode=eval`` / ``--mode=probe``. select_on="eval" selects on the eval split instead (which, in a train/test protocol,
is the test set): it must be asked for and is logged as such. Released recipes whose upstream selects on the eval split
(e.g. RevalExo LOSO on the held-out subject) say select_on="eval" in their configs.
"""

from __future__ import annotations

import logging

import numpy as np

from imujax import evaluate, input_pipeline


class IndexedSource:
    """The records of `source` at `indices`, as a source."""

    def __init__(self, source, indices):
        self.source, self.indices = source, np.asarray(indices, np.int64)

    @property
    def dataset_info(self):
        return self.source.dataset_info

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[i])]

    def __getitems__(self, indices):
        return [self[i] for i in indices]


def _text(value) -> str:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def carve(config, system, source):
    """(training source, validation source or None) for the run's model selection; see the module docstring."""
    if evaluate.selection_metric(system, config) is None:
        return source, None
    where = config.checkpoint.get("select_on", "validation")
    if where == "eval":
        logging.warning("model selection on the eval split %r (config.checkpoint.select_on=eval): in a train/test "
                        "protocol that is the test set", config.data.eval_split)
        print(f"model selection: on the eval split {config.data.eval_split!r} (select_on=eval)", flush=True)
        return source, None
    if where != "validation":
        raise ValueError(f"config.checkpoint.select_on={where!r}; expected 'validation' or 'eval'")
    if isinstance(source, input_pipeline.Mixture):
        raise ValueError("config.checkpoint.select_on=validation carves one dataset's training subjects; a mixture run "
                         "needs select_on=eval or checkpoint.best_metric=none")
    field = config.eval.get("group_field", "subject")
    groups = []
    for i in range(len(source)):
        record = source[i]
        if field not in record:
            raise KeyError(f"config.checkpoint.select_on=validation: record {record.get('id', '?')!r} has no "
                           f"{field!r} field (config.eval.group_field) to carve a validation split by; set the field, "
                           f"or select_on=eval (the eval split), or checkpoint.best_metric=none (no selection)")
        groups.append(_text(record[field]))
    groups = np.asarray(groups)
    unique = sorted(set(groups.tolist()))
    if len(unique) < 2:
        raise ValueError(f"config.checkpoint.select_on=validation: the training split has one {field!r} "
                         f"({unique}), nothing to hold out; select_on=eval or checkpoint.best_metric=none")
    count = min(len(unique) - 1, max(1, int(round(config.data.get("validation_fraction", 0.2) * len(unique)))))
    held = set(np.random.default_rng(config.seed).choice(unique, count, replace=False).tolist())
    mask = np.isin(groups, sorted(held))
    logging.warning("model selection on a validation split: %s %s (%d records) held out of %d training records",
                    field, sorted(held), mask.sum(), len(groups))
    print(f"model selection: validation split of {field} {sorted(held)} ({int(mask.sum())} records) carved from "
          f"{config.data.train_split!r}", flush=True)
    return IndexedSource(source, np.flatnonzero(~mask)), IndexedSource(source, np.flatnonzero(mask))
