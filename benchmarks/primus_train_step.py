"""PRIMUS encoder + InfoNCE train step: samples/s in JAX against the PyTorch reference on this CPU, same batch.

    python benchmarks/primus_train_step.py [--batch 64] [--length 250] [--steps 10] [--warmup 3] [--threads 2]

Both sides run the released-size `MW2StackRNNPoolingMultihead` (1,376,204 params) on [B, 6, T] raw IMU, the
symmetric-sum InfoNCE of the `mmcl` head against a fixed batch of 512-d target embeddings with a learnable raw
temperature, backward, and one Adam (lr 2e-4) update. JAX: `imujax.models.rnn_imu` + `objectives.infonce`, jitted
with the state donated. torch: `tests/torch_reference/rnn_imu.py` in eager mode with `torch.optim.Adam`. Each step
is timed on its own (JAX: until the outputs are ready); the figure is the median over `--steps` steps after
`--warmup` steps. Prints one markdown row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def jax_samples_per_s(batch: int, length: int, steps: int, warmup: int) -> tuple[float, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from imujax.models.rnn_imu import MW2StackRNNPoolingMultihead
    from imujax.objectives.infonce import info_nce_symmetric_sum

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.imu_encoder = MW2StackRNNPoolingMultihead(rngs=rngs)
            self.temperature = nnx.Param(jnp.asarray(0.1, jnp.float32))

    graphdef, params = nnx.split(Model(nnx.Rngs(0)), nnx.Param)
    tx = optax.adam(2e-4)
    state = (params, tx.init(params))
    rng = np.random.default_rng(0)
    imu = jnp.asarray(rng.normal(size=(batch, 6, length)).astype(np.float32))
    target = jnp.asarray(rng.normal(size=(batch, 512)).astype(np.float32))

    def step(state, imu, target):
        params, opt_state = state

        def loss_fn(p):
            model = nnx.merge(graphdef, p)
            return info_nce_symmetric_sum(model.imu_encoder(imu)["mmcl"], target, model.temperature[...])

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    step = jax.jit(step, donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, imu, target).compile()
    compile_s = time.perf_counter() - start
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, loss = compiled(state, imu, target)
        jax.block_until_ready((state, loss))
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times), compile_s


def torch_samples_per_s(batch: int, length: int, steps: int, warmup: int, threads: int) -> float:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from tests.torch_reference.rnn_imu import MW2StackRNNPoolingMultihead

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MW2StackRNNPoolingMultihead()
    temperature = torch.nn.Parameter(torch.tensor(0.1))
    opt = torch.optim.Adam(list(model.parameters()) + [temperature], lr=2e-4)
    rng = np.random.default_rng(0)
    imu = torch.from_numpy(rng.normal(size=(batch, 6, length)).astype(np.float32))
    target = torch.from_numpy(rng.normal(size=(batch, 512)).astype(np.float32))
    labels = torch.arange(batch)

    def step():
        opt.zero_grad(set_to_none=True)
        q = F.normalize(model(imu)["mmcl"], dim=-1)
        logits = q @ F.normalize(target, dim=-1).T / temperature
        loss = F.cross_entropy(logits.T, labels) + F.cross_entropy(logits, labels)
        loss.backward()
        opt.step()

    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=250)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    if args.steps < 5:
        parser.error("--steps must be >= 5 (the figure is a median)")
    jax_rate, compile_s = jax_samples_per_s(args.batch, args.length, args.steps, args.warmup)
    torch_rate = torch_samples_per_s(args.batch, args.length, args.steps, args.warmup, args.threads)
    print("| system | input | JAX samples/s | torch eager samples/s | JAX / torch | JAX compile s |")
    print("|---|---|---|---|---|---|")
    print(f"| PRIMUS encoder + InfoNCE (Adam) | [{args.batch},6,{args.length}] | {jax_rate:.1f} | {torch_rate:.1f} | "
          f"{jax_rate / torch_rate:.2f} | {compile_s:.1f} |")


if __name__ == "__main__":
    main()
