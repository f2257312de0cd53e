"""Seed systems: each binds a config to a model, its record transform, its loss and its eval embeddings.

``config.system = NAME`` selects ``imujax/systems/NAME.py``, whose ``System`` class is built from the config and
provides ``make_model(rngs)``, ``preprocess(record, rng | None) -> dict`` (rng None = deterministic eval transform),
``loss(model, batch, rng) -> (scalar, metrics)`` and ``embed(model, batch) -> dict`` (``imu``/``video`` for
retrieval, ``fused`` for probes). Adding a system is adding that one file and a config.
"""

import importlib
import pkgutil

import ml_collections


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def make_system(config: ml_collections.ConfigDict):
    if config.system not in available():
        raise ValueError(f"config.system={config.system!r} is not a known system (known: {available()})")
    return importlib.import_module(f"{__name__}.{config.system}").System(config)
