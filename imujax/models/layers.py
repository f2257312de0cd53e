"""Shared building blocks: ViT attention/MLP/blocks, patch embeds, BatchNorm, sincos tables.

Attribute names mirror the upstream PyTorch modules (``qkv``, ``proj``, ``fc1``, ``norm1_a`` ...) so that the
torch bridge rule tables stay one line per tensor. Every parameter carries logical sharding names
(``embed``, ``heads``, ``mlp``, ``patch``, ``norm``) that ``imujax.sharding`` maps onto mesh axes; the models never
import that policy.
"""

from __future__ import annotations

import functools
import math

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.mesh_axes import BATCH_AXES
from imujax.models.chunked_attention import chunk_rows, chunked_attention

Dtype = jnp.dtype | type
xavier = nnx.initializers.xavier_uniform()
zeros = nnx.initializers.zeros_init()
ones = nnx.initializers.ones_init()


# From this many tokens XLA:CPU attention runs over query chunks (`chunked_attention`): faster there, and no T x T
# tensor; below it plain attention is faster (measurements: benchmarks/HISTORY.md).
CHUNKED_ATTENTION_MIN_TOKENS = 1024


def partitioned(init, names: tuple[str | None, ...]):
    return nnx.with_partitioning(init, names)


@functools.lru_cache(maxsize=None)
def sincos_table(num_positions: int, dim: int) -> np.ndarray:
    """1-D interleaved sinusoid table [1, n, d], computed in float64 and rounded to float32 (as upstream stores it).

    angle(pos, j) = pos / 10000^(2*floor(j/2)/d); even j -> sin, odd j -> cos. A constant, never a parameter.
    """
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = pos / np.power(10000.0, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)[None]


def constrain_batch(x: jax.Array) -> jax.Array:
    """Keep an activation [B, ...] sharded along its batch over ('data', 'fsdp', 'fsdp_inner') when a mesh is active.

    With FSDP-sharded weights XLA may otherwise gather the whole batch onto every device (per-device activation
    memory then grows with the device count); with no mesh, or a batch the axes do not divide, this is a no-op.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "fsdp"} <= set(mesh.axis_names):
        return x
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    if x.shape[0] % math.prod(mesh.shape[a] for a in axes):
        return x
    return jax.lax.with_sharding_constraint(x, jax.sharding.PartitionSpec(axes, *([None] * (x.ndim - 1))))


def compiling_for_cpu() -> bool:
    """Whether the program being traced targets CPU: the active mesh's platform, else the default backend. An
    ahead-of-time compile for TPU devices (benchmarks/tpu_aot.py) runs on a CPU host and must take the TPU code paths."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else getattr(mesh, "abstract_device", None)
    return (device.platform if device is not None else jax.default_backend()) == "cpu"


def gather_weight(w: jax.Array) -> jax.Array:
    """A weight used at every step of a `lax.scan`, replicated once before the loop when a mesh is active (the FSDP
    all-gather). Left FSDP-sharded, XLA:TPU contracted the recurrent matmul over the sharded dimension and all-reduced
    its output at every time step: PRIMUS's GRU moved 2.4 GiB per chip per step on 256 chips (benchmarks/tpu_aot.py).
    """
    if jax.sharding.get_abstract_mesh().empty:
        return w
    return jax.lax.with_sharding_constraint(w, jax.sharding.PartitionSpec())


def gelu(x):
    """Exact GELU in PyTorch's form, x/2 (1 + erf(x/sqrt 2)) (timm / nn.GELU). `jax.nn.gelu(approximate=False)`
    writes it with erfc, which XLA:CPU expands into an exponential and two branches: 1.7x slower forward + backward
    (benchmarks/HISTORY.md); the two agree within 1e-6."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(math.sqrt(0.5), x.dtype)))


def torch_uniform(bound: float) -> nnx.Initializer:
    """PyTorch's default U(-bound, bound) initialiser (Conv/Linear use 1/sqrt(fan_in), RNNs 1/sqrt(H))."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_linear(din: int, dout: int, rngs: nnx.Rngs, names: tuple[str | None, str | None] = ("embed", "mlp"), *,
                 use_bias: bool = True) -> nnx.Linear:
    """nnx.Linear with nn.Linear's default init (kaiming-uniform a=sqrt(5) == U(+-1/sqrt(fan_in)) for kernel and
    bias), full-precision matmuls and logical sharding names (in, out)."""
    bound = 1.0 / math.sqrt(din)
    return nnx.Linear(din, dout, use_bias=use_bias, precision=jax.lax.Precision.HIGHEST,
                      kernel_init=partitioned(torch_uniform(bound), names),
                      bias_init=partitioned(torch_uniform(bound), (names[1],)), rngs=rngs)


# Values of `jax_default_matmul_precision` that ask for f32 matmuls as one bf16 pass with f32 accumulation.
BF16_PASS_PRECISIONS = ("bfloat16", "BF16_BF16_F32")


def _bf16_pass_requested() -> bool:
    return jax.config.jax_default_matmul_precision in BF16_PASS_PRECISIONS


def bf16_pass_matmuls() -> bool:
    """Whether an f32 weight matmul traced now should take bf16 operands: JAX's default matmul precision asks for a
    single bf16 pass (what TPUs do with f32 matmuls by default) and the program is compiled for CPU, where XLA ignores
    that request and multiplies in full f32. CPUs with AMX or AVX512-BF16 run bf16 products several times faster."""
    return _bf16_pass_requested() and compiling_for_cpu()


def _bf16_dot(a, b, dims):
    return jax.lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), (dims, ((), ())),
                               preferred_element_type=jnp.float32)


@jax.custom_vjp
def bf16_pass_matmul(x, kernel):
    """f32 ``x @ kernel`` with bf16 operands and f32 accumulation, forward and both backward products (autodiff of the
    forward alone would multiply the f32 cotangent with the bf16 kernel in f32). The residuals stay f32: stacked in a
    `LayerStack` scan as bf16, XLA:CPU converted the whole [depth, ...] buffer around each layer's update."""
    return _bf16_dot(x, kernel, ((x.ndim - 1,), (0,)))


def _bf16_pass_matmul_fwd(x, kernel):
    return bf16_pass_matmul(x, kernel), (x, kernel)


def _bf16_pass_matmul_bwd(residuals, g):
    x, kernel = residuals
    x_grad = _bf16_dot(g, kernel, ((g.ndim - 1,), (1,)))
    kernel_grad = _bf16_dot(x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]), ((0,), (0,)))
    return x_grad.astype(x.dtype), kernel_grad.astype(kernel.dtype)


bf16_pass_matmul.defvjp(_bf16_pass_matmul_fwd, _bf16_pass_matmul_bwd)


def exact_precision():
    """The precision of products that match PyTorch's f32 exactly on every backend: HIGHEST (TPUs otherwise multiply
    f32 in one bf16 pass), unless JAX's default precision asks for one bf16 pass (None: the backend's default)."""
    return None if _bf16_pass_requested() else jax.lax.Precision.HIGHEST


def exact_matmul(x, kernel):
    """``x @ kernel`` at `exact_precision`; bf16 passes on CPU when asked for (as `Linear`)."""
    return bf16_pass_matmul(x, kernel) if bf16_pass_matmuls() else jnp.dot(x, kernel, precision=exact_precision())


def exact_dot_general(a, b, contracting):
    """`exact_matmul`'s choice for a `lax.dot_general` without batch dimensions inside a hand-written forward or
    backward pass (not differentiated); ``contracting`` = (a's dimensions, b's dimensions)."""
    if bf16_pass_matmuls():
        return _bf16_dot(a, b, contracting)
    return jax.lax.dot_general(a, b, (contracting, ((), ())), precision=exact_precision())


def exact_einsum(spec: str, a, b):
    """`exact_matmul`'s choice for an einsum inside a hand-written forward or backward pass (not differentiated)."""
    if bf16_pass_matmuls():
        return jnp.einsum(spec, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    return jnp.einsum(spec, a, b, precision=exact_precision())


class Linear(nnx.Linear):
    """nnx.Linear with xavier-uniform kernel, zero bias and logical sharding names for (in, out). In f32 it follows
    `jax.default_matmul_precision("bfloat16")` on CPU as well (`bf16_pass_matmuls`; config.matmul_precision)."""

    def __init__(self, din: int, dout: int, names: tuple[str | None, str | None], *, use_bias: bool = True,
                 dtype: Dtype = jnp.float32, rngs: nnx.Rngs, kernel_init=xavier):
        super().__init__(din, dout, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                         kernel_init=partitioned(kernel_init, names), bias_init=partitioned(zeros, (names[1],)),
                         rngs=rngs)

    def __call__(self, inputs, out_sharding=None):
        if jnp.dtype(self.dtype or inputs.dtype) != jnp.float32 or not bf16_pass_matmuls():
            return super().__call__(inputs, out_sharding)
        out = bf16_pass_matmul(inputs.astype(jnp.float32), self.kernel[...])
        return out if self.bias is None else out + self.bias[...]


@jax.custom_vjp
def matmul_wide(x, kernel):
    """``x @ kernel`` for a kernel far wider than tall (a decoder head onto patch pixels): same values and gradients.

    Autodiff's kernel gradient x^T g made XLA:CPU copy the wide output gradient g [rows, out] into column-major order
    for the dot (a measurable share of the demo step, benchmarks/HISTORY.md); forming it as (g^T x)^T makes XLA reorder
    the narrow x instead."""
    return jnp.dot(x, kernel)


def _matmul_wide_fwd(x, kernel):
    return jnp.dot(x, kernel), (x, kernel)


def _matmul_wide_bwd(residuals, g):
    x, kernel = residuals
    rows_x, rows_g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    kernel_grad_t = jax.lax.dot_general(rows_g, rows_x, (((0,), (0,)), ((), ())))  # [out, in]
    return jnp.dot(g, kernel.T), kernel_grad_t.T


matmul_wide.defvjp(_matmul_wide_fwd, _matmul_wide_bwd)


def linear_with(linear: nnx.Linear, x, kernel=None, bias=None, *, wide_output: bool = False):
    """``linear``'s computation in its compute dtype, with its own or a given (e.g. row- or column-permuted) kernel and
    bias; ``wide_output`` uses `matmul_wide`."""
    dtype = linear.dtype or x.dtype
    if kernel is None:
        kernel, bias = linear.kernel[...], linear.bias[...] if linear.use_bias else None
    out = (matmul_wide if wide_output else jnp.dot)(x.astype(dtype), kernel.astype(dtype))
    return out if bias is None else out + bias.astype(dtype)


class LayerNorm(nnx.LayerNorm):
    """PyTorch-equivalent LayerNorm: two-pass variance, eps given explicitly (EVI-MAE uses 1e-5)."""

    def __init__(self, dim: int, *, eps: float = 1e-5, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        super().__init__(dim, epsilon=eps, dtype=dtype, param_dtype=jnp.float32, use_fast_variance=False,
                         scale_init=partitioned(ones, ("norm",)), bias_init=partitioned(zeros, ("norm",)),
                         rngs=rngs)


class Attention(nnx.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (timm 0.4.5 layout).

    ``qv_bias=True`` gives the VideoMAE variant: no bias inside ``qkv``, separate ``q_bias``/``v_bias`` and a zero k bias.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, qv_bias: bool = False,
                 dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qv_bias = qv_bias
        self.qkv = Linear(dim, 3 * dim, ("embed", "heads"), use_bias=qkv_bias and not qv_bias, dtype=dtype, rngs=rngs)
        if qv_bias:
            self.q_bias = nnx.Param(partitioned(zeros, ("heads",))(rngs.params(), (dim,), jnp.float32))
            self.v_bias = nnx.Param(partitioned(zeros, ("heads",))(rngs.params(), (dim,), jnp.float32))
        self.proj = Linear(dim, dim, ("heads", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        qkv = self.qkv(x)
        if self.qv_bias:
            k_bias = jnp.zeros_like(self.q_bias[...])
            qkv = qkv + jnp.concatenate([self.q_bias[...], k_bias, self.v_bias[...]]).astype(qkv.dtype)
        if not compiling_for_cpu():
            q, k, v = einops.rearrange(qkv, "b n (three h d) -> three b n h d", three=3, h=self.num_heads)
            out = jax.nn.dot_product_attention(q, k, v, scale=self.head_dim ** -0.5)
            return self.proj(einops.rearrange(out, "b n h d -> b n (h d)"))
        # XLA:CPU runs jax.nn.dot_product_attention's [B, T, H, D] einsums with transposes around every batched
        # matmul; heads-major plain matmuls are faster forward + backward (benchmarks/HISTORY.md).
        q, k, v = einops.rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if x.shape[1] >= CHUNKED_ATTENTION_MIN_TOKENS:
            out = chunked_attention(q, k, v, self.head_dim ** -0.5, chunk_rows(x.shape[1]))
        else:
            scores = jnp.einsum("bhtd,bhsd->bhts", q, k) * jnp.asarray(self.head_dim ** -0.5, q.dtype)
            weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
            out = jnp.einsum("bhts,bhsd->bhtd", weights, v)
        return self.proj(einops.rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        self.fc1 = Linear(dim, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.fc2(gelu(self.fc1(x)))


class Block(nnx.Module):
    """Pre-norm ViT block with three LayerNorm sets sharing one attention and MLP (CAV-MAE / EVI-MAE ``Block``).

    ``modality`` None uses ``norm1``/``norm2``; ``'a'`` uses ``norm1_a``/``norm2_a``; ``'v'`` uses ``norm1_v``/``norm2_v``.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True, eps: float = 1e-5,
                 dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        for name in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
            setattr(self, name, LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs))
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)

    def __call__(self, x, modality: str | None = None):
        suffix = "" if modality is None else f"_{modality}"
        x = constrain_batch(x)
        x = x + self.attn(getattr(self, "norm1" + suffix)(x))
        return x + self.mlp(getattr(self, "norm2" + suffix)(x))


class LayerStack(nnx.Module):
    """``depth`` blocks of one architecture stored as one module: every param of ``block`` has a leading layer axis
    [depth, ...] (sharding name "layers": never sharded), and a call runs them in order as one ``lax.scan``.

    Stored stacked, the scan reads the weights in place: a list of blocks would be stacked into a fresh copy on
    every step (0.3 GB for EVI-MAE's IMU tower) and its stacked gradients unstacked again. A scan is also a fusion
    boundary: unrolled, XLA:CPU fused the residual stream's gradient of all later blocks into every block's
    weight-gradient transpose and recomputed it per element (quadratic in depth). ``remat`` keeps only the weight
    matmuls' outputs for the backward pass and recomputes the norms, softmax, attention and GELU.

    Checkpoint paths read ``<name>/block/...``; the torch bridge sees one ``<name>/<i>/...`` entry per layer
    (``imujax.bridges.torch.conversion.per_layer_view``)."""

    def __init__(self, make_block, depth: int, *, rngs: nnx.Rngs):
        self.depth = depth

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=depth, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def make(layer_rngs):
            return make_block(layer_rngs)

        self.block = make(rngs)

    def __call__(self, streams: tuple[jax.Array, ...], *args, per_layer: dict | None = None,
                 remat: bool = False) -> tuple[jax.Array, ...]:
        """``for i, layer in enumerate(layers): x = layer(x, *args, **{k: v[i] for k, v in per_layer.items()})`` for
        every x in ``streams``; the streams share one scan, so one read of each layer's weights and one accumulation
        of its gradients serve them all. ``per_layer`` holds arrays with a leading [depth] axis that the scan slices
        next to the weights (a layer's dropout key, stochastic-depth rate, whether it shifts its windows)."""
        graphdef, stacked = nnx.split(self.block)
        per_layer = dict(per_layer or {})

        def body(hs, xs):
            layer_state, layer_kwargs = xs
            block = nnx.merge(graphdef, layer_state)
            return tuple(block(h, *args, **layer_kwargs) for h in hs), None

        if remat:
            body = jax.checkpoint(body, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
        return jax.lax.scan(body, tuple(streams), (stacked, per_layer))[0]

    def layer(self, i: int) -> nnx.Module:
        """Layer ``i`` as a stand-alone block (a copy of its weights)."""
        graphdef, stacked = nnx.split(self.block)
        return nnx.merge(graphdef, jax.tree.map(lambda x: x[i], stacked))


class VideoBlock(nnx.Module):
    """VideoMAE encoder block: q/v-bias attention, no layer-scale (init_values 0)."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, eps: float = 1e-5,
                 dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
        self.attn = Attention(dim, num_heads, qv_bias=True, dtype=dtype, rngs=rngs)
        self.norm2 = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = constrain_batch(x)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nnx.Module):
    """Conv patch embedding in its exact matmul form: patches flattened in PyTorch (c, k...) order, times ``proj``.

    A stride=kernel convolution equals this matmul, which avoids layout transposes around a conv on every backend.
    ``proj.kernel`` is [c*prod(kernel), dim]; the bridge reshapes the torch conv weight [dim, c, *kernel] into it.
    """

    def __init__(self, in_features: int, dim: int, *, dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        self.proj = Linear(in_features, dim, ("patch", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, patches, channels_last: int = 0):
        """``channels_last=c``: patch vectors arrive in (k..., c) order; the kernel rows are permuted to match (cheaper
        than permuting the activations)."""
        if not channels_last:
            return self.proj(patches)
        kernel = einops.rearrange(self.proj.kernel[...], "(c k) d -> (k c) d", c=channels_last)
        return linear_with(self.proj, patches, kernel, self.proj.bias[...] if self.proj.use_bias else None)


class BatchNorm(nnx.Module):
    """PyTorch BatchNorm1d over the last axis: biased batch variance to normalise, unbiased for the running update.

    ``count`` mirrors ``num_batches_tracked`` so checkpoints round-trip. ``num_rows`` lets a caller that deduplicated
    identical rows (the closed-form GIN) still apply PyTorch's unbiased factor for the true row count.
    """

    def __init__(self, dim: int, *, eps: float = 1e-5, momentum: float = 0.1, rngs: nnx.Rngs):
        self.eps, self.momentum = eps, momentum
        self.use_running_average = False
        self.scale = nnx.Param(ones(rngs.params(), (dim,), jnp.float32))
        self.bias = nnx.Param(zeros(rngs.params(), (dim,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x, num_rows: int | None = None):
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            xf = x.astype(jnp.float32)
            mean = xf.mean(axis=0)
            var = jnp.square(xf - mean).mean(axis=0)
            n = num_rows or x.shape[0]
            m = self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
            self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
            self.count[...] = self.count[...] + 1
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class PReLU(nnx.Module):
    """PReLU with a single shared slope (PyTorch default num_parameters=1, init 0.25)."""

    def __init__(self):
        self.weight = nnx.Param(jnp.full((1,), 0.25, jnp.float32))

    def __call__(self, x):
        return jnp.where(x >= 0, x, self.weight[...].astype(x.dtype) * x)


def dropout(x, rate: float, key: jax.Array | None):
    """Inverted dropout; identity when ``key`` is None (eval) or rate is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)
