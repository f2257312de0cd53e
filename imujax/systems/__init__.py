"""Seed systems: each binds a config to a model, its record transform, its loss and its eval embeddings.

A system object provides ``make_model(rngs)``, ``preprocess(record, rng|None) -> dict``,
``loss(model, batch, rng) -> (scalar, metrics)`` and ``embed(model, batch) -> dict`` (keys ``imu``, ``video`` for
retrieval, ``fused`` for probes).
"""

import importlib

import ml_collections

SYSTEMS = {
    "evi_mae": "imujax.systems.evi_mae:EVIMAESystem",
}


def make_system(config: ml_collections.ConfigDict):
    if config.system not in SYSTEMS:
        raise ValueError(f"config.system={config.system!r} is not a known system (known: {sorted(SYSTEMS)})")
    module, cls = SYSTEMS[config.system].split(":")
    return getattr(importlib.import_module(module), cls)(config)
