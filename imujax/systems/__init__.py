"""Systems: each binds a config to a model, its record transform, its loss and its evaluation.

``config.system = NAME`` selects ``imujax/systems/NAME.py``, whose ``System`` class subclasses `System` below and is
built from the config. Adding a system is adding that one file and a config (docs/architecture.md). A system imports
no other system: shared pieces live in models/, transforms/, objectives/ or eval/.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from typing import Any, Callable, ClassVar

import jax
import ml_collections
import numpy as np
from flax import nnx

Batch = dict[str, jax.Array]


class System(abc.ABC):
    """The contract between a system and the loop, the evaluator and the figures, declared once.

    Required: the abstract methods below (a subclass missing one cannot be built). Optional hooks are attributes that
    are None here; a system provides one by defining the method of that name (with the signature in its annotation).
    """

    config: ml_collections.ConfigDict

    # -- optional hooks -------------------------------------------------------------------------------------------
    # () -> imujax.eval.classification.ClassificationSpec: the model's own logits and the best-checkpoint metric.
    classification_spec: ClassVar[Callable[[], Any] | None] = None
    # (graphdef, state, eval source) -> {name: float}: the system's own evaluation protocol, logged under eval/.
    evaluate: ClassVar[Callable[[nnx.GraphDef, dict, Any], dict[str, float]] | None] = None
    # (eval-mode model, batch, key) -> {figure name: imujax.eval.reconstruction.Reconstruction}: arrays for the
    # end-of-run figures (jitted by imujax.figures, which draws each as its kind says).
    pictures: ClassVar[Callable[[nnx.Module, Batch, jax.Array], dict[str, Any]] | None] = None
    # (train-state params, converted name, converted config, converted state) -> params: place a converted
    # checkpoint inside a larger model (e.g. an IMU encoder inside a contrastive model).
    init_from_converted: ClassVar[Callable[[nnx.State, str, dict, nnx.State], nnx.State] | None] = None
    # (global batch size) -> {loss metric: (value, why)}: what each term reads when nothing is learned (imujax.alarms).
    trivial_values: ClassVar[Callable[[int], dict[str, tuple[float, str]]] | None] = None

    # -- required ---------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """The model, built from self.config."""

    @abc.abstractmethod
    def preprocess(self, record: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """One decoded record -> one example; rng None is the deterministic evaluation transform."""

    @abc.abstractmethod
    def loss(self, model: nnx.Module, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(scalar loss, metrics) of one training batch; the step's key makes masking and dropout reproducible."""

    @abc.abstractmethod
    def embed(self, model: nnx.Module, batch: Batch) -> dict[str, jax.Array]:
        """Eval-mode features: 'imu' / 'video' for retrieval, 'fused' for probes, logits for classification."""


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def make_system(config: ml_collections.ConfigDict) -> System:
    if config.system not in available():
        raise ValueError(f"config.system={config.system!r} is not a known system (known: {available()})")
    cls = importlib.import_module(f"{__name__}.{config.system}").System
    if not issubclass(cls, System) or cls.__abstractmethods__:
        raise TypeError(f"imujax/systems/{config.system}.py: System must subclass imujax.systems.System and define "
                        f"{', '.join(sorted(System.__abstractmethods__))} (missing: "
                        f"{sorted(getattr(cls, '__abstractmethods__', ())) or 'the base class'})")
    return cls(config)
