"""Parameter table of a config's model, computed with jax.eval_shape: no weights are allocated."""

from __future__ import annotations

import collections

import ml_collections
import numpy as np
from flax import nnx

from imujax import systems


def count_parameters(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Trainable parameters (nnx.Param) per top-level submodule; BatchNorm statistics and constants excluded."""
    system = systems.make_system(config)
    model = nnx.eval_shape(lambda: system.make_model(nnx.Rngs(0)))
    counts: dict[str, int] = collections.OrderedDict()
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        counts[str(path[0])] = counts.get(str(path[0]), 0) + int(np.prod(leaf.shape))
    return counts


def parameter_table(config: ml_collections.ConfigDict) -> str:
    counts = count_parameters(config)
    width = max(len(k) for k in counts)
    lines = [f"{'module':<{width}}  {'params':>12}", "-" * (width + 14)]
    lines += [f"{name:<{width}}  {n:>12,}" for name, n in counts.items()]
    lines.append(f"params: {sum(counts.values())}")
    return "\n".join(lines)
