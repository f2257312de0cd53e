"""Recurrent IMU encoders: IMU2CLIP / PRIMUS "MW2 stack-RNN pooling" and RevalExo DeepConvLSTM.

Facts: facebookresearch/imu2clip@6353031 lib/imu_models.py, Nokia-Bell-Labs/pretrained-imu-encoders@562e142
lib/imu_models.py and revalexo/revalexo@6ca9000 pretrain/contrastive/src/models/deepconvlstm.py. The upstream quirks are
kept:

* MW2: no activations; GroupNorm(2, 6) on the raw input, three bias-free dilated conv blocks, GroupNorm(4, 32),
  then a GRU whose *sequence axis is the 32 conv channels* and whose features are the 32 pooled time bins.
  The IMU2CLIP variant max-pools in block 3 and so only runs for a narrow band of input lengths
  (978..1004 at the released sizes); PRIMUS uses an adaptive average pool there and runs for T >= 123.
* DeepConvLSTM: four ReLU (k, 1) convs that shrink time by k-1 each, features flattened as k * channels + c,
  an LSTM whose last output is projected; the declared dropout is never applied to the features.

Inputs use the upstream layouts: [N, 6, T] for the MW2 family, [B, T, C] for DeepConvLSTM.

Parameter paths mirror the torch state_dict names so the bridge rule table is only layout changes:

| torch key                                   | NNX path                                  | transform            |
|---------------------------------------------|-------------------------------------------|----------------------|
| `net.0.weight` / `.bias` (GroupNorm)         | `net/0/scale` / `net/0/bias`              | none                 |
| `net.{1,2,3}.net.0.weight` [O, I, K]         | `net/{1,2,3}/net/0/kernel` [K, I, O]      | transpose (2, 1, 0)  |
| `net.4.weight` / `.bias` (GroupNorm)         | `net/4/scale` / `net/4/bias`              | none                 |
| `net.5.weight_ih_l0` [3H, I]                 | `net/5/weight_ih_l0` [I, 3H]              | transpose            |
| `net.5.weight_hh_l0` [3H, H]                 | `net/5/weight_hh_l0` [H, 3H]              | transpose            |
| `net.5.bias_{ih,hh}_l0` [3H]                 | `net/5/bias_{ih,hh}_l0` [3H]              | none                 |
| `{ssl,mmcl}_head.weight` [O, I] / `.bias`    | `{ssl,mmcl}_head/kernel` [I, O] / `bias`  | transpose / none     |
| `convK.weight` [O, I, k, 1] / `.bias`        | `convK/kernel` [k, 1, I, O] / `bias`      | transpose (2,3,1,0)  |
| `lstm.weight_{ih,hh}_lL` [4H, I]             | `lstm/weight_{ih,hh}_lL` [I, 4H]          | transpose            |
| `lstm.bias_{ih,hh}_lL`, `feature_projector.*`, `classifier.heads.h.1.*` / `classifier.shared_net.0.*` / `classifier.heads.h.*` | same names (`weight` -> `kernel`, transposed) | as Linear |

The PRIMUS model uses `backbone` where IMU2CLIP uses `net`. Gate column order is PyTorch's
(GRU: r, z, n; LSTM: i, f, g, o) and the ih/hh biases are kept separate for bit-closeness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.models.layers import (bf16_pass_matmuls, compiling_for_cpu, constrain_batch, exact_dot_general,
                                  exact_einsum, exact_matmul, gather_weight, torch_linear, torch_uniform)

HIGHEST = jax.lax.Precision.HIGHEST


def _partitioned(init: nnx.Initializer, names: tuple[str | None, ...]) -> nnx.Initializer:
    return nnx.with_partitioning(init, names)


def weight_gradient(x: jax.Array, d_out: jax.Array) -> jax.Array:
    """sum over (t, n) of x[t, n, :]^T d_out[t, n, :] for time-major [T, N, F] buffers -> [F_x, F_out].

    Contracted in the stored (t, n) order, XLA:CPU transposes only x and runs a plain matmul (YNNPACK) on d_out as
    it lies; the einsum contracted in (n, t) order and transposed d_out too, and a 2-D `x.T @ d_out` went to Eigen's
    transposed-operand matmul, much slower on this CPU. Used by the GRU; the LSTM's einsums measured no slower
    (benchmarks/HISTORY.md, issue 25).
    """
    return exact_dot_general(x, d_out, ((0, 1), (0, 1)))


# ----------------------------------------------------------------------------------------------------------------------
# Recurrent cells written as lax.scan over PyTorch-layout weights.
# ----------------------------------------------------------------------------------------------------------------------


class TorchGRU(nnx.Module):
    """Single-layer batch-first GRU with PyTorch's parameterisation; returns the final hidden state h_n[0]."""

    def __init__(self, input_size: int, hidden_size: int, *, rngs: nnx.Rngs):
        init = torch_uniform(1.0 / math.sqrt(hidden_size))
        self.weight_ih_l0 = nnx.Param(_partitioned(init, ("embed", "mlp"))(rngs.params(), (input_size, 3 * hidden_size)))
        self.weight_hh_l0 = nnx.Param(
            _partitioned(init, ("embed", "mlp"))(rngs.params(), (hidden_size, 3 * hidden_size))
        )
        self.bias_ih_l0 = nnx.Param(_partitioned(init, ("mlp",))(rngs.params(), (3 * hidden_size,)))
        self.bias_hh_l0 = nnx.Param(_partitioned(init, ("mlp",))(rngs.params(), (3 * hidden_size,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [N, S, I] (batch, sequence, features) -> final hidden state [N, H]; h0 = 0."""
        # Input projections for every step at once; only the recurrent matmul stays inside the scan. The (small) input
        # goes time-major first, so the projection is one 2-D matmul whose [S * N, 3H] rows are the scan's layout:
        # projected from [N, S, I], XLA:CPU transposed the projection and its gradient (3 x 12 MB at PRIMUS's sizes).
        n, s, i = x.shape
        rows = jnp.swapaxes(x, 0, 1).reshape(s * n, i)
        x_proj = exact_matmul(rows, self.weight_ih_l0[...]).reshape(s, n, -1) + self.bias_ih_l0[...]
        return gru_last_state(x_proj, gather_weight(self.weight_hh_l0[...]), self.bias_hh_l0[...])


@jax.custom_vjp
def gru_last_state(x_proj: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> jax.Array:
    """The GRU recurrence from h0 = 0 over input projections x_proj [S, N, 3H] (gates r, z, n) -> h_S [N, H].

    The hand-written backward pass forms the recurrent weight's gradient once, as one [H, S*N] x [S*N, 3H] matmul
    after the reverse scan; autodiff accumulated it step by step inside the loop (S small matmuls, S full-size adds).
    """
    return _gru_forward(x_proj, w_hh, b_hh)[0]


def _recurrent_weight(w_hh):
    """The recurrent weight as the scan multiplies it: cast to bf16 once, outside the loop, for bf16 passes on CPU."""
    return w_hh.astype(jnp.bfloat16) if bf16_pass_matmuls() else w_hh


def _gru_forward(x_proj, w_hh, b_hh):
    hidden = w_hh.shape[0]
    w = _recurrent_weight(w_hh)

    def step(h, xg):
        hg = exact_matmul(h, w) + b_hh
        r = jax.nn.sigmoid(xg[:, :hidden] + hg[:, :hidden])
        z = jax.nn.sigmoid(xg[:, hidden : 2 * hidden] + hg[:, hidden : 2 * hidden])
        hn = hg[:, 2 * hidden :]
        n = jnp.tanh(xg[:, 2 * hidden :] + r * hn)
        return (1.0 - z) * n + z * h, (h, r, z, n, hn)

    h0 = jnp.zeros((x_proj.shape[1], hidden), x_proj.dtype)
    h_last, saved = jax.lax.scan(step, h0, x_proj)
    return h_last, (w_hh, saved)


def _gru_backward(residuals, d_last):
    w_hh, saved = residuals
    w_t = _recurrent_weight(w_hh).T

    def step(dh, xs):
        h, r, z, n, hn = xs
        d_n = dh * (1.0 - z) * (1.0 - n * n)       # through n = tanh(x_n + r * hn)
        d_r = d_n * hn * r * (1.0 - r)               # through r = sigmoid(x_r + h_r)
        d_z = dh * (h - n) * z * (1.0 - z)           # through z = sigmoid(x_z + h_z)
        d_hg = jnp.concatenate([d_r, d_z, d_n * r], axis=-1)
        d_prev = dh * z + exact_matmul(d_hg, w_t)
        return d_prev, (d_hg, jnp.concatenate([d_r, d_z, d_n], axis=-1))

    _, (d_hg, d_x) = jax.lax.scan(step, d_last, saved, reverse=True)
    d_w = weight_gradient(saved[0], d_hg)
    return d_x, d_w, d_hg.sum(axis=(0, 1))


gru_last_state.defvjp(_gru_forward, _gru_backward)


def cpu_pieces(units: int, rows_per_unit: int, min_rows: int) -> int:
    """How many equal pieces of `units` (each `rows_per_unit` matrix rows) a large op runs in: on CPU the most that
    keep >= `min_rows` rows each, elsewhere 1. XLA:CPU's matmul and convolution kernels, and the transposes around
    them, run faster on cache-sized pieces than on one [5120, 2688] or [2688 x T, 64] operand."""
    if not compiling_for_cpu():
        return 1
    return max(p for p in range(1, units + 1) if units % p == 0 and (units // p * rows_per_unit >= min_rows or p == 1))


# The DeepConvLSTM conv stack runs in groups of examples of >= 256 rows (examples x IMU channels) and the LSTM input
# projection in time pieces of >= 1024 rows: the sizes that made the train step fastest on CPU (measurements:
# benchmarks/HISTORY.md).
CONV_MIN_ROWS = 256
PROJECTION_MIN_ROWS = 1024


class TorchLSTM(nnx.Module):
    """Stacked batch-first LSTM with PyTorch's parameterisation (gates i, f, g, o); returns all outputs of the top layer."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *, rngs: nnx.Rngs):
        self.num_layers = num_layers
        init = torch_uniform(1.0 / math.sqrt(hidden_size))
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size
            # Every layer's input dimension is FSDP-sharded: DeepConvLSTM's [2688, 4096] layer-0 weight (42 MiB) was
            # replicated on every chip (benchmarks/tpu_aot.py).
            setattr(self, f"weight_ih_l{layer}",
                    nnx.Param(_partitioned(init, ("embed", "mlp"))(rngs.params(), (layer_in, 4 * hidden_size))))
            setattr(self, f"weight_hh_l{layer}",
                    nnx.Param(_partitioned(init, ("embed", "mlp"))(rngs.params(), (hidden_size, 4 * hidden_size))))
            setattr(self, f"bias_ih_l{layer}", nnx.Param(_partitioned(init, ("mlp",))(rngs.params(), (4 * hidden_size,))))
            setattr(self, f"bias_hh_l{layer}", nnx.Param(_partitioned(init, ("mlp",))(rngs.params(), (4 * hidden_size,))))

    def _layer(self, layer: int, x_time_major: jax.Array) -> jax.Array:
        w_ih = getattr(self, f"weight_ih_l{layer}")[...]
        w_hh = getattr(self, f"weight_hh_l{layer}")[...]
        b_ih = getattr(self, f"bias_ih_l{layer}")[...]
        b_hh = getattr(self, f"bias_hh_l{layer}")[...]
        # Both weights gathered once (the FSDP all-gather): left sharded over its input dimension, w_ih made XLA:TPU
        # all-reduce the [T, global batch, 4H] projection instead (DeepConvLSTM: 80 MiB per chip at 8 v5p chips).
        return lstm_outputs(input_projection(x_time_major, gather_weight(w_ih)) + b_ih, gather_weight(w_hh), b_hh)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, T, I] -> outputs [B, T, H] of the last layer; zero initial states."""
        y = jnp.swapaxes(constrain_batch(x), 0, 1)
        for layer in range(self.num_layers):
            y = self._layer(layer, y)
        return jnp.swapaxes(y, 0, 1)


def _project_in_pieces(x: jax.Array, w: jax.Array) -> jax.Array:
    # Unrolled slices and one concatenate: a `lax.map` over the pieces cost more (a zero-filled output buffer and a
    # re-laid copy of x) than the pieces saved.
    pieces = cpu_pieces(x.shape[0], x.shape[1], PROJECTION_MIN_ROWS)
    return jnp.concatenate([exact_einsum("tni,ig->tng", piece, w) for piece in jnp.split(x, pieces)])


@jax.custom_vjp
def input_projection(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [T, N, I] @ w [I, G] -> [T, N, G], over time pieces on CPU (`cpu_pieces`). The input gradient runs in the
    same pieces; the weight gradient stays one matmul (summing per-piece gradients would add [I, G] per piece)."""
    return _project_in_pieces(x, w)


def _input_projection_fwd(x, w):
    return _project_in_pieces(x, w), (x, w)


def _input_projection_bwd(residuals, d_out):
    x, w = residuals
    return _project_in_pieces(d_out, w.T), exact_einsum("tni,tng->ig", x, d_out)


input_projection.defvjp(_input_projection_fwd, _input_projection_bwd)


@jax.custom_vjp
def lstm_outputs(x_proj: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> jax.Array:
    """The LSTM recurrence from h0 = c0 = 0 over input projections x_proj [T, N, 4H] (gates i, f, g, o) -> every
    output h_t [T, N, H].

    As in `gru_last_state`, the backward pass forms the recurrent weight's gradient once, as one [H, T*N] x [T*N, 4H]
    matmul after the reverse scan, instead of T small matmuls and T adds of a full [H, 4H] gradient inside the loop.
    """
    return _lstm_forward(x_proj, w_hh, b_hh)[0]


def _lstm_forward(x_proj, w_hh, b_hh):
    hidden = w_hh.shape[0]
    w = _recurrent_weight(w_hh)

    def step(carry, xg):
        h, c = carry
        gates = xg + (exact_matmul(h, w) + b_hh)
        i, f, o = (jax.nn.sigmoid(gates[:, k * hidden:(k + 1) * hidden]) for k in (0, 1, 3))
        g = jnp.tanh(gates[:, 2 * hidden:3 * hidden])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

    zeros = jnp.zeros((x_proj.shape[1], hidden), x_proj.dtype)
    _, (hs, cs, acts) = jax.lax.scan(step, (zeros, zeros), x_proj)
    return hs, (w_hh, hs, cs, acts)


def _lstm_backward(residuals, d_hs):
    w_hh, hs, cs, acts = residuals
    hidden = w_hh.shape[0]
    w_t = _recurrent_weight(w_hh).T
    c_prev = jnp.concatenate([jnp.zeros_like(cs[:1]), cs[:-1]])

    def step(carry, xs):
        dh_next, dc_next = carry
        d_out, c, c_before, act = xs
        i, f, g, o = (act[:, k * hidden:(k + 1) * hidden] for k in range(4))
        dh = d_out + dh_next
        tanh_c = jnp.tanh(c)
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)  # through h = o * tanh(c)
        # Through c = f * c_before + i * g and h = o * tanh(c), times each gate's sigmoid / tanh slope.
        d_gates = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_before * f * (1.0 - f), dc * i * (1.0 - g * g),
                                   dh * tanh_c * o * (1.0 - o)], axis=-1)
        return (exact_matmul(d_gates, w_t), dc * f), d_gates

    zeros = jnp.zeros_like(hs[0])
    _, d_gates = jax.lax.scan(step, (zeros, zeros), (d_hs, cs, c_prev, acts), reverse=True)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
    d_w = exact_einsum("tnh,tng->hg", h_prev, d_gates)
    return d_gates, d_w, d_gates.sum(axis=(0, 1))


lstm_outputs.defvjp(_lstm_forward, _lstm_backward)


# ----------------------------------------------------------------------------------------------------------------------
# MW2 stack-RNN pooling family (IMU2CLIP, PRIMUS).
# ----------------------------------------------------------------------------------------------------------------------


def _group_norm(channels: int, groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    # Exact (two-pass) variance like torch, eps 1e-5.
    return nnx.GroupNorm(
        channels, num_groups=groups, epsilon=1e-5, use_fast_variance=False,
        scale_init=_partitioned(nnx.initializers.ones, (None,)),
        bias_init=_partitioned(nnx.initializers.zeros, (None,)),
        rngs=rngs,
    )


def adaptive_avg_pool_matrix(length: int, output_size: int) -> np.ndarray:
    """[length, output_size] averaging matrix of torch AdaptiveAvgPool1d: bin i spans floor(i*L/O)..ceil((i+1)*L/O)."""
    matrix = np.zeros((length, output_size), np.float32)
    for i in range(output_size):
        start = (i * length) // output_size
        end = -((-(i + 1) * length) // output_size)
        matrix[start:end, i] = 1.0 / (end - start)
    return matrix


class ConvPoolBlock(nnx.Module):
    """torch `Block`: `net` = Sequential(Conv1d(dilation 2, no bias, no padding), MaxPool1d(3) | AdaptiveAvgPool1d)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, dilation: int, pool: str,
                 pool_size: int, rngs: nnx.Rngs):
        if pool not in ("max", "adaptive"):
            raise ValueError(f"ConvPoolBlock: pool must be 'max' or 'adaptive', got {pool!r}")
        self.kernel_size, self.dilation, self.pool, self.pool_size = kernel_size, dilation, pool, pool_size
        conv = nnx.Conv(
            in_channels, out_channels, kernel_size=(kernel_size,), kernel_dilation=(dilation,), padding="VALID",
            use_bias=False, precision=HIGHEST,
            kernel_init=_partitioned(torch_uniform(1.0 / math.sqrt(in_channels * kernel_size)),
                                     (None, "conv_in", "conv_out")),
            rngs=rngs,
        )
        # Index 0 mirrors torch's `net.0`; the pooling at `net.1` has no parameters.
        self.net = nnx.List([conv])

    def output_length(self, length: int) -> int:
        conv_len = length - self.dilation * (self.kernel_size - 1)
        if conv_len < 1:
            return 0
        return conv_len // self.pool_size if self.pool == "max" else self.pool_size

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [N, T, C] (NWC)."""
        x = self.net[0](x)
        if self.pool == "max":
            kept = (x.shape[1] // self.pool_size) * self.pool_size  # floor mode drops the tail
            return einops.reduce(x[:, :kept], "n (t k) c -> n t c", "max", k=self.pool_size)
        weights = jnp.asarray(adaptive_avg_pool_matrix(x.shape[1], self.pool_size))
        return jnp.einsum("ntc,to->noc", x, weights, precision=HIGHEST)


def _mw2_layers(in_channels: int, input_dim: int, size_embeddings: int, kernel_sizes: Sequence[int], dilation: int,
                max_pool: int, last_pool: str, input_norm_groups: int, feature_norm_groups: int,
                rngs: nnx.Rngs) -> nnx.List:
    """The six-entry torch Sequential: GroupNorm, 3 blocks, GroupNorm, GRU."""
    if len(kernel_sizes) != 3:
        raise ValueError(f"MW2 encoder: kernel_sizes must have 3 entries, got {tuple(kernel_sizes)}")
    last_pool_size = max_pool if last_pool == "max" else input_dim
    return nnx.List([
        _group_norm(in_channels, input_norm_groups, rngs),
        ConvPoolBlock(in_channels, input_dim, kernel_sizes[0], dilation=dilation, pool="max", pool_size=max_pool,
                      rngs=rngs),
        ConvPoolBlock(input_dim, input_dim, kernel_sizes[1], dilation=dilation, pool="max", pool_size=max_pool,
                      rngs=rngs),
        ConvPoolBlock(input_dim, input_dim, kernel_sizes[2], dilation=dilation, pool=last_pool,
                      pool_size=last_pool_size, rngs=rngs),
        _group_norm(input_dim, feature_norm_groups, rngs),
        # GRU features are the pooled time bins, so input_size must equal the final pooled length (= input_dim).
        TorchGRU(input_dim, size_embeddings, rngs=rngs),
    ])


def _final_length(layers: nnx.List, length: int) -> int:
    for block in (layers[1], layers[2], layers[3]):
        length = block.output_length(length)
        if length < 1:
            return 0
    return length


def _valid_lengths(layers: nnx.List, input_dim: int, search_up_to: int = 1 << 16) -> tuple[int, int] | None:
    """(min, max) input length whose final pooled length equals input_dim; None if there is none."""
    valid = [t for t in range(1, search_up_to) if _final_length(layers, t) == input_dim]
    return (valid[0], valid[-1]) if valid else None


def _mw2_forward(layers: nnx.List, x: jax.Array, in_channels: int, input_dim: int, model_name: str) -> jax.Array:
    if x.ndim != 3 or x.shape[1] != in_channels:
        raise ValueError(f"{model_name}: expected input [N, {in_channels}, T] (channels first), got {x.shape}")
    length = x.shape[2]
    if _final_length(layers, length) != input_dim:
        valid = _valid_lengths(layers, input_dim)
        span = f"{valid[0]} <= T <= {valid[1]}" if valid else "no length"
        minimum = valid[0] if valid else "none"
        raise ValueError(
            f"{model_name}: input length T={length} is not supported; the GRU needs exactly {input_dim} pooled time "
            f"bins, which requires {span} (minimum length {minimum}); got {_final_length(layers, length)} bins"
        )
    # Batch-sharded from the start: a caller's concatenation (PRIMUS's two views) loses the batch sharding, and XLA then
    # sharded the GRU input projection over its contraction and all-reduced a [3H, global batch, S] activation
    # (2.6 GiB per chip per step on 256 v5p chips, benchmarks/tpu_aot.py).
    h = constrain_batch(einops.rearrange(x, "n c t -> n t c"))
    h = layers[0](h)
    h = layers[3](layers[2](layers[1](h)))
    h = layers[4](h)
    # The quirk: torch feeds [N, channels, time] to a batch_first GRU, so it scans over channels.
    return layers[5](einops.rearrange(h, "n t c -> n c t"))


class MW2StackRNNPooling(nnx.Module):
    """IMU2CLIP encoder: [N, 6, T] -> final GRU state [N, size_embeddings]; max-pool in block 3 (T in 978..1004).

    `pool_type="adaptive"` gives PRIMUS's single-head `MW2StackRNNPooling` (same keys, adaptive pool in block 3).
    """

    def __init__(self, input_dim: int = 32, size_embeddings: int = 512, *, in_channels: int = 6,
                 kernel_sizes: Sequence[int] = (10, 5, 5), dilation: int = 2, max_pool: int = 3,
                 input_norm_groups: int = 2, feature_norm_groups: int = 4, pool_type: str = "max",
                 rngs: nnx.Rngs):
        self.in_channels, self.input_dim = in_channels, input_dim
        self.net = _mw2_layers(in_channels, input_dim, size_embeddings, kernel_sizes, dilation, max_pool, pool_type,
                               input_norm_groups, feature_norm_groups, rngs)

    def valid_input_lengths(self) -> tuple[int, int] | None:
        return _valid_lengths(self.net, self.input_dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _mw2_forward(self.net, x, self.in_channels, self.input_dim, type(self).__name__)


class MW2StackRNNPoolingMultihead(nnx.Module):
    """PRIMUS encoder: adaptive pool in block 3 (any T >= 123), returns {'emb', 'ssl', 'mmcl'} each [N, size_embeddings]."""

    def __init__(self, input_dim: int = 32, size_embeddings: int = 512, *, in_channels: int = 6,
                 kernel_sizes: Sequence[int] = (10, 5, 5), dilation: int = 2, max_pool: int = 3,
                 input_norm_groups: int = 2, feature_norm_groups: int = 4, rngs: nnx.Rngs):
        self.in_channels, self.input_dim = in_channels, input_dim
        self.backbone = _mw2_layers(in_channels, input_dim, size_embeddings, kernel_sizes, dilation, max_pool,
                                    "adaptive", input_norm_groups, feature_norm_groups, rngs)
        self.ssl_head = torch_linear(size_embeddings, size_embeddings, rngs)
        self.mmcl_head = torch_linear(size_embeddings, size_embeddings, rngs)

    def valid_input_lengths(self) -> tuple[int, int] | None:
        return _valid_lengths(self.backbone, self.input_dim)

    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        emb = _mw2_forward(self.backbone, x, self.in_channels, self.input_dim, type(self).__name__)
        return {"emb": emb, "ssl": self.ssl_head(emb), "mmcl": self.mmcl_head(emb)}


# ----------------------------------------------------------------------------------------------------------------------
# RevalExo DeepConvLSTM.
# ----------------------------------------------------------------------------------------------------------------------


class MultiHorizonClassifier(nnx.Module):
    """RevalExo classifier: one horizon (or no sharing) -> heads[h] = (Dropout, Linear); else shared_net + heads[h]."""

    def __init__(self, input_dim: int, num_classes: int, num_horizons: int = 1, *, dropout: float = 0.5,
                 shared_layers: bool = True, rngs: nnx.Rngs):
        self.input_dim = input_dim
        self.shared = shared_layers and num_horizons > 1
        if self.shared:
            self.shared_net = nnx.List([torch_linear(input_dim, input_dim, rngs), nnx.Dropout(dropout)])
            self.heads = nnx.List([torch_linear(input_dim, num_classes, rngs) for _ in range(num_horizons)])
        else:
            self.heads = nnx.List([
                nnx.List([nnx.Dropout(dropout), torch_linear(input_dim, num_classes, rngs)])
                for _ in range(num_horizons)
            ])

    def __call__(self, features: jax.Array, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
        """Logits per horizon; dropout needs `rngs` in train mode (the model keeps no RNG state)."""
        if features.shape[-1] != self.input_dim:
            raise ValueError(
                f"MultiHorizonClassifier: features have width {features.shape[-1]} but the classifier expects "
                f"{self.input_dim} (upstream builds it on lstm_units, so forward() only works when "
                f"feature_dim == lstm_units)"
            )
        if self.shared:
            shared = self.shared_net[1](jax.nn.relu(self.shared_net[0](features)), rngs=rngs)
            return [head(shared) for head in self.heads]
        return [head[1](head[0](features, rngs=rngs)) for head in self.heads]


def _time_conv(conv: nnx.Conv, h: jax.Array) -> jax.Array:
    """`conv` (an nnx.Conv with a (k, 1) kernel [k, 1, I, O], VALID, stride 1) applied to h [N, T, I] as a 1-D conv
    over T; the parameters keep the 2-D layout of the torch Conv2d."""
    kernel = conv.kernel[...][:, 0]
    y = jax.lax.conv_general_dilated(h, kernel.astype(h.dtype), (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"),
                                     precision=conv.precision)
    return y + conv.bias[...].astype(y.dtype)


class DeepConvLSTM(nnx.Module):
    """RevalExo DeepConvLSTM: [B, T, C] -> features [B, feature_dim] (`encode_features`, the pretraining path).

    Defaults are the released X3D contrastive config: 42 channels, window 120, 64 kernels of size 11, LSTM 1024,
    feature_dim 256, one 11-class horizon head (unused in pretraining, present in `imu_encoder_best.pt`).
    """

    def __init__(self, channels: int = 42, num_classes: int = 11, window_size: int = 120, *, conv_kernels: int = 64,
                 conv_kernel_size: int = 11, lstm_units: int = 1024, lstm_layers: int = 1, dropout: float = 0.5,
                 feature_dim: int | None = 256, num_horizons: int = 1, shared_classifier_layers: bool = True,
                 rngs: nnx.Rngs):
        feature_dim = feature_dim or lstm_units
        self.channels, self.window_size, self.feature_dim = channels, window_size, feature_dim
        self.final_seq_len = window_size - 4 * (conv_kernel_size - 1)
        if self.final_seq_len < 1:
            raise ValueError(f"DeepConvLSTM: window_size {window_size} is too short for 4 convs of size "
                             f"{conv_kernel_size} (needs > {4 * (conv_kernel_size - 1)})")
        for index in range(4):
            in_ch = 1 if index == 0 else conv_kernels
            bound = 1.0 / math.sqrt(in_ch * conv_kernel_size)
            setattr(self, f"conv{index + 1}", nnx.Conv(
                in_ch, conv_kernels, kernel_size=(conv_kernel_size, 1), padding="VALID", precision=HIGHEST,
                kernel_init=_partitioned(torch_uniform(bound), (None, None, "conv_in", "conv_out")),
                bias_init=_partitioned(torch_uniform(bound), ("conv_out",)),
                rngs=rngs,
            ))
        self.lstm = TorchLSTM(channels * conv_kernels, lstm_units, lstm_layers, rngs=rngs)
        # Declared upstream but never applied in encode_features; kept for a faithful module inventory.
        self.dropout = nnx.Dropout(dropout)
        self.classifier = MultiHorizonClassifier(lstm_units, num_classes, num_horizons, dropout=dropout,
                                                 shared_layers=shared_classifier_layers, rngs=rngs)
        self.feature_projector = (torch_linear(lstm_units, feature_dim, rngs) if feature_dim != lstm_units
                                  else None)  # None = nn.Identity (no keys)

    def encode_features(self, x: jax.Array) -> jax.Array:
        if x.ndim != 3 or x.shape[2] != self.channels:
            raise ValueError(f"DeepConvLSTM: expected input [B, T, {self.channels}] (time, channel), got {x.shape}")
        if x.shape[1] <= 4 * (self.conv1.kernel_size[0] - 1):
            raise ValueError(f"DeepConvLSTM: input length {x.shape[1]} is too short for the four convolutions")
        x = constrain_batch(x)  # the convs' activations stay with their examples (XLA:TPU gathered them otherwise)
        groups = cpu_pieces(x.shape[0], self.channels, CONV_MIN_ROWS)
        h = jnp.concatenate([self._conv_stack(part) for part in jnp.split(x, groups)])
        features = self.lstm(h)[:, -1]
        return features if self.feature_projector is None else self.feature_projector(features)

    def _conv_stack(self, x: jax.Array) -> jax.Array:
        """[B, T, C] -> LSTM inputs [B, T', K * C]."""
        # The (k, 1) convs never mix IMU channels, so each runs as a 1-D conv over time with the IMU channel folded
        # into the batch: [B * C, T, K]. Same sums as the NHWC 2-D conv, but XLA:CPU runs the 1-D form (and above
        # all its kernel gradient) several times faster.
        h = constrain_batch(einops.rearrange(x, "b t c -> (b c) t 1"))
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            h = jax.nn.relu(_time_conv(conv, h))
        # torch permutes [B, K, T', C] -> [B, T', K, C] and flattens: feature index = k * C + c.
        return einops.rearrange(h, "(b c) t k -> b t (k c)", b=x.shape[0])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.encode_features(x)

    def classify(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> list[jax.Array]:
        """Upstream `forward`: encode then classify; only valid when feature_dim == lstm_units (as upstream)."""
        if self.classifier.input_dim != self.feature_dim:
            raise ValueError(
                f"DeepConvLSTM.classify: the classifier expects width {self.classifier.input_dim} but features are "
                f"{self.feature_dim} wide (upstream forward() only works when feature_dim == lstm_units)"
            )
        return self.classifier(self.encode_features(x), rngs=rngs)
