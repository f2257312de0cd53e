"""TSFM: the language-aligned dual-branch IMU encoder, channel-text fusion, semantic head and label bank.

Facts: alxdofficial/tsfm@308eea1 model/{encoder.py, semantic_alignment.py}. Attribute names mirror the upstream
state_dict (``encoder.transformer.transformer.layers.{i}.temporal_attn.q_proj``, ``channel_fusion.gate_sensor``,
``semantic_head.projection_head.mlp.{0,2,4}``, ``label_bank.pooling.out_projs.{k}``), so the bridge table is one line
per tensor. The dual-branch blocks are one `layers.LayerStack` (params [depth, ...] under
``encoder/transformer/transformer/layers/block``, run as one ``lax.scan``); the bridge sees them one block at a time,
``layers.{i}`` (``imujax.bridges.torch.conversion.per_layer_view``). Layout conventions:
patches [B, P, 64, C], patch_mask [B, P], channel_mask [B, C] (True = valid); the encoder output is [B, P, C, d].
Masks hide keys only: padded patches and channels are computed like any other row, as upstream does.
Dropout takes an explicit key (None = eval); every LayerNorm uses eps 1e-5 and every GELU is the exact form.
"""

from __future__ import annotations

import dataclasses

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from imujax.models.layers import LayerNorm, LayerStack, Linear, constrain_batch, dropout, gelu, partitioned
from imujax.models.memory_bank import MemoryBank
from imujax.ops import l2_normalize

normal = nnx.initializers.normal


@dataclasses.dataclass(frozen=True)
class TSFMSizes:
    """Architecture of one TSFM variant (upstream model/config.py); defaults are the ``small`` config."""
    d_model: int = 384
    num_heads: int = 8
    num_temporal_layers: int = 4
    dim_feedforward: int = 1536
    dropout: float = 0.1
    feature_extractor: str = "cnn"              # cnn | spectral_temporal
    cnn_channels: tuple[int, ...] = (32, 64)
    cnn_kernel_sizes: tuple[int, ...] = (5,)
    spectral_ratio: float = 0.25
    patch_size: int = 64
    max_positions: int = 5000
    temporal_init_scale: float = 0.1
    use_channel_encoding: bool = False          # Stage 1 only: frozen SBERT channel-description embedding
    sbert_dim: int = 384
    channel_text_fusion: bool = True
    text_dim: int = 384                         # token-state width of the contrastive text model
    channel_text_num_heads: int = 4
    channel_text_queries: int = 4
    d_model_fused: int = 384
    semantic_dim: int = 384
    num_semantic_temporal_layers: int = 2
    num_fusion_queries: int = 4
    num_pool_queries: int = 4
    fusion_self_attention: bool = True
    pool_self_attention: bool = True
    per_patch_prediction: bool = False
    learnable_label_bank: bool = True
    label_bank_num_heads: int = 4
    label_bank_num_queries: int = 4
    num_prototypes: int = 1
    siglip: bool = False                        # SigLIP criterion: adds the learnable logit_bias
    memory_bank_size: int = 0                   # > 0: a FIFO of negatives carried as training state (not weights)


def sizes_from_config(model_cfg, **changes) -> TSFMSizes:
    """config.model (a mapping of TSFMSizes fields) -> TSFMSizes, with ``changes`` applied; unknown fields fail."""
    values = dict(model_cfg)
    known = {f.name for f in dataclasses.fields(TSFMSizes)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config.model has unknown TSFM fields {unknown}; known: {sorted(known)}")
    for key in ("cnn_channels", "cnn_kernel_sizes"):
        if key in values:
            values[key] = tuple(values[key])
    return TSFMSizes(**{**values, **changes})


class Buffer(nnx.Variable):
    """A persistent non-trainable tensor (torch ``register_buffer``): loaded from checkpoints, never optimised."""


class _Keys:
    """Hands out a fresh dropout key per call (None in eval), so modules need no stateful RNG: the n-th is
    fold_in(key, n)."""

    def __init__(self, key: jax.Array | None):
        self.key, self.count = key, 0

    def __call__(self) -> jax.Array | None:
        if self.key is None:
            return None
        self.count += 1
        return jax.random.fold_in(self.key, self.count)

    def take(self, rows: int, per_row: int) -> jax.Array | None:
        """The keys of the next ``rows * per_row`` calls as a [rows, per_row] array (None in eval): a per-layer input
        of a `LayerStack` scan, so each layer draws the keys a Python loop over the layers would."""
        if self.key is None:
            return None
        counts = self.count + 1 + jnp.arange(rows * per_row)
        self.count += rows * per_row
        return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(self.key, counts).reshape(rows, per_row)


class _KeyRow:
    """Hands out the keys of one row of `_Keys.take` in order (None in eval)."""

    def __init__(self, keys: jax.Array | None):
        self.keys, self.used = keys, 0

    def __call__(self) -> jax.Array | None:
        if self.keys is None:
            return None
        if self.used == self.keys.shape[0]:
            raise ValueError(f"a block drew more than the {self.keys.shape[0]} dropout keys it was given; raise its "
                             "NUM_KEYS")
        self.used += 1
        return self.keys[self.used - 1]


def attend(q, k, v, key_mask, rate: float = 0.0, key: jax.Array | None = None):
    """Scaled dot-product attention. q [N, Lq, H, Dh], k/v [N, Lk, H, Dh], key_mask [N, Lk] bool (True = attend).

    Attention-probability dropout (training) takes the explicit-softmax path; otherwise the fused kernel is used.
    """
    mask = None if key_mask is None else key_mask[:, None, None, :]
    if key is None or rate == 0.0:
        return jax.nn.dot_product_attention(q, k, v, mask=mask)
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    probs = dropout(jax.nn.softmax(logits, axis=-1), rate, key)
    return jnp.einsum("nhqk,nkhd->nqhd", probs, v)


class ProjAttention(nnx.Module):
    """Encoder attention with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (head h = features h*Dh...)."""

    def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(self, name, Linear(dim, dim, ("embed", "heads"), rngs=rngs))
        self.out_proj = Linear(dim, dim, ("heads", "embed"), rngs=rngs)

    def __call__(self, x, key_mask, rate: float = 0.0, key=None):
        split = lambda t: einops.rearrange(t, "n l (h d) -> n l h d", h=self.num_heads)
        out = attend(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), key_mask, rate, key)
        return self.out_proj(einops.rearrange(out, "n l h d -> n l (h d)"))


class TorchMultiheadAttention(nnx.Module):
    """``nn.MultiheadAttention`` (batch_first): fused ``in_proj`` rows q|k|v and ``out_proj``."""

    def __init__(self, dim: int, num_heads: int, dropout_rate: float = 0.0, *, rngs: nnx.Rngs):
        self.dim, self.num_heads, self.dropout_rate = dim, num_heads, dropout_rate
        self.in_proj = Linear(dim, 3 * dim, ("embed", "heads"), rngs=rngs)
        self.out_proj = Linear(dim, dim, ("heads", "embed"), rngs=rngs)

    def __call__(self, query, key_value, key_mask=None, key=None):
        w, b, d = self.in_proj.kernel[...], self.in_proj.bias[...], self.dim
        split = lambda t: einops.rearrange(t, "n l (h e) -> n l h e", h=self.num_heads)
        q = split(query @ w[:, :d] + b[:d])
        k = split(key_value @ w[:, d:2 * d] + b[d:2 * d])
        v = split(key_value @ w[:, 2 * d:] + b[2 * d:])
        out = attend(q, k, v, key_mask, self.dropout_rate, key)
        return self.out_proj(einops.rearrange(out, "n l h e -> n l (h e)"))


class MLPStack(nnx.Module):
    """Linears at torch ``nn.Sequential`` indices with GELU (or ReLU) between, no dropout: ``{0, 2, 4...}``."""

    def __init__(self, dims: tuple[int, ...], *, relu: bool = False, last_init=None, rngs: nnx.Rngs):
        layers = []
        for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(dims) - 2
            init = last_init if (last and last_init is not None) else nnx.initializers.xavier_uniform()
            layers.append(Linear(din, dout, ("embed", "mlp") if not last else ("mlp", "embed"), kernel_init=init,
                                 rngs=rngs))
        self.layers = nnx.List(layers)
        self.relu = relu

    def __call__(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x) if self.relu else gelu(x)
        return x


# -- feature extractors ------------------------------------------------------------------------------------------------
class ConvGroupNorm(nnx.Module):
    """``MultiScaleConv1D`` branch: Conv1d(bias=False, padding k//2) -> GroupNorm(1 group, eps 1e-5) -> GELU."""

    def __init__(self, cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(cin, cout, (kernel,), padding=[(kernel // 2, kernel // 2)], use_bias=False,
                             kernel_init=partitioned(nnx.initializers.lecun_normal(), (None, "conv_in", "conv_out")),
                             rngs=rngs)
        self.norm_scale = nnx.Param(jnp.ones((cout,), jnp.float32))
        self.norm_bias = nnx.Param(jnp.zeros((cout,), jnp.float32))

    def __call__(self, x):  # x [N, L, Cin] -> [N, L, Cout]
        y = self.conv(x)
        mean = y.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(y - mean).mean(axis=(1, 2), keepdims=True)
        y = (y - mean) * jax.lax.rsqrt(var + 1e-5) * self.norm_scale[...] + self.norm_bias[...]
        return gelu(y)


def _conv_stack(sizes: TSFMSizes, rngs: nnx.Rngs) -> nnx.List:
    if len(sizes.cnn_kernel_sizes) != 1:
        raise ValueError(f"cnn_kernel_sizes={sizes.cnn_kernel_sizes}: only single-branch MultiScaleConv1D is "
                         "supported (every upstream config uses one kernel size)")
    widths = (1,) + tuple(sizes.cnn_channels)
    return nnx.List([ConvGroupNorm(a, b, sizes.cnn_kernel_sizes[0], rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])


class ChannelIndependentCNN(nnx.Module):
    """``cnn`` variant: conv stack -> average pool -> ``projection`` Linear(64->d) -> GELU -> dropout."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.layers = _conv_stack(sizes, rngs)
        self.projection = Linear(sizes.cnn_channels[-1], sizes.d_model, ("conv_out", "embed"), rngs=rngs)
        self.rate = sizes.dropout

    def __call__(self, series, keys: _Keys):  # series [N, 64, 1] -> [N, d]
        for layer in self.layers:
            series = dropout(layer(series), self.rate, keys())
        return dropout(gelu(self.projection(series.mean(axis=1))), self.rate, keys())


class SpectralTemporalExtractor(nnx.Module):
    """``spectral_temporal`` variant: conv branch (d - d_spec) concatenated with an |rfft| MLP branch (d_spec)."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        d_spec = int(sizes.spectral_ratio * sizes.d_model)
        d_temp = sizes.d_model - d_spec
        self.temporal_layers = _conv_stack(sizes, rngs)
        self.temporal_proj = Linear(sizes.cnn_channels[-1], d_temp, ("conv_out", "embed"), rngs=rngs)
        self.temporal_norm = LayerNorm(d_temp, rngs=rngs)
        bins = sizes.patch_size // 2 + 1
        self.spectral_mlp = nnx.List([Linear(bins, 2 * d_spec, (None, "mlp"), rngs=rngs),
                                      Linear(2 * d_spec, d_spec, ("mlp", "embed"), rngs=rngs)])
        self.spectral_norm = LayerNorm(d_spec, rngs=rngs)
        self.rate, self.patch_size = sizes.dropout, sizes.patch_size

    def __call__(self, series, keys: _Keys):
        t = series
        for layer in self.temporal_layers:
            t = dropout(layer(t), self.rate, keys())
        temporal = self.temporal_norm(self.temporal_proj(t.mean(axis=1)))
        spectrum = jnp.abs(jnp.fft.rfft(series[..., 0], n=self.patch_size, axis=-1)).astype(series.dtype)
        s = dropout(gelu(self.spectral_mlp[0](spectrum)), self.rate, keys())
        spectral = self.spectral_norm(self.spectral_mlp[1](s))
        return jnp.concatenate([temporal, spectral], axis=-1)


class FeatureExtractor(nnx.Module):
    """Holds one variant under its upstream attribute (``cnn.*`` or the spectral-temporal keys at this level)."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.kind = sizes.feature_extractor
        if self.kind == "cnn":
            self.cnn = ChannelIndependentCNN(sizes, rngs=rngs)
        elif self.kind == "spectral_temporal":
            self.spectral_temporal = SpectralTemporalExtractor(sizes, rngs=rngs)
        else:
            raise ValueError(f"feature_extractor={self.kind!r}; expected 'cnn' or 'spectral_temporal'")

    def __call__(self, patches, keys: _Keys):  # [B, P, T, C] -> [B, P, C, d]
        b, p, _, c = patches.shape
        series = constrain_batch(einops.rearrange(constrain_batch(patches), "b p t c -> (b p c) t 1"))
        net = self.cnn if self.kind == "cnn" else self.spectral_temporal
        return constrain_batch(einops.rearrange(constrain_batch(net(series, keys)), "(b p c) d -> b p c d", b=b, p=p,
                                                c=c))


# -- positional / channel encodings ------------------------------------------------------------------------------------
def temporal_table(num_positions: int, dim: int) -> jax.Array:
    """Interleaved sinusoid table built in float32 (even dims sin, odd cos, div = exp(-2i ln(1e4)/d))."""
    pos = jnp.arange(num_positions, dtype=jnp.float32)[:, None]
    div = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-jnp.log(10000.0) / dim))
    table = jnp.zeros((num_positions, dim), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(pos * div))
    return table.at[:, 1::2].set(jnp.cos(pos * div[: dim // 2]))


class TemporalEncoding(nnx.Module):
    def __init__(self, sizes: TSFMSizes):
        self.pe = Buffer(temporal_table(sizes.max_positions, sizes.d_model))
        self.scale = nnx.Param(jnp.asarray(sizes.temporal_init_scale, jnp.float32))

    def __call__(self, num_patches: int):
        return self.scale[...] * self.pe[...][:num_patches]


class ChannelSemanticEncoding(nnx.Module):
    """Stage 1: frozen sentence embedding per channel description -> residual MLP -> learnable scale, per channel."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        d = sizes.d_model
        if sizes.sbert_dim != d:
            self.sbert_to_model = Linear(sizes.sbert_dim, d, (None, "embed"), rngs=rngs)
        self.pad_channel_embedding = nnx.Param(normal(0.02)(rngs.params(), (d,), jnp.float32))
        self.projection = MLPStack((d, d, d), last_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.scale = nnx.Param(jnp.asarray(sizes.temporal_init_scale, jnp.float32))

    def __call__(self, sentence_emb, channel_mask):  # [B, C, sbert], [B, C] -> [B, C, d]
        e = self.sbert_to_model(sentence_emb) if hasattr(self, "sbert_to_model") else sentence_emb
        e = jnp.where(channel_mask[..., None], e, self.pad_channel_embedding[...])
        return self.scale[...] * (e + self.projection(e))


class PositionalEncoding(nnx.Module):
    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.temporal_encoding = TemporalEncoding(sizes)
        if sizes.use_channel_encoding:
            self.channel_encoding = ChannelSemanticEncoding(sizes, rngs=rngs)


# -- dual-branch transformer -------------------------------------------------------------------------------------------
class FeedForward(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.fc1 = Linear(dim, hidden, ("embed", "mlp"), rngs=rngs)
        self.fc2 = Linear(hidden, dim, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x, rate: float, keys: _Keys | _KeyRow):
        return dropout(self.fc2(dropout(gelu(self.fc1(x)), rate, keys())), rate, keys())


class DualBranchBlock(nnx.Module):
    """Post-norm: temporal attention per channel, cross-channel attention per patch, FFN (each LN(x + drop(f)))."""

    NUM_KEYS = 7  # dropout keys one call draws in training: two attentions and their residuals, the FFN's three

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        d = sizes.d_model
        self.temporal_attn = ProjAttention(d, sizes.num_heads, rngs=rngs)
        self.cross_channel_attn = ProjAttention(d, sizes.num_heads, rngs=rngs)
        self.feed_forward = FeedForward(d, sizes.dim_feedforward, rngs=rngs)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(d, rngs=rngs) for _ in range(3))
        self.rate = sizes.dropout

    def __call__(self, x, patch_mask, channel_mask, dropout_keys: jax.Array | None = None):
        """x [B, P, C, d]; dropout_keys: this block's [NUM_KEYS] keys (None = eval)."""
        b, p, c, _ = x.shape
        r, keys = self.rate, _KeyRow(dropout_keys)
        # Every regrouped batch ((b c), (b p)) is constrained to the batch sharding: b is its major part, so a chip
        # keeps its own examples. Unconstrained, XLA:TPU all-reduced global-batch activations (issue 24).
        t = constrain_batch(einops.rearrange(constrain_batch(x), "b p c d -> (b c) p d"))
        t_mask = constrain_batch(einops.repeat(patch_mask, "b p -> (b c) p", c=c))
        t = constrain_batch(self.norm1(t + dropout(self.temporal_attn(t, t_mask, r, keys()), r, keys())))
        s = constrain_batch(einops.rearrange(t, "(b c) p d -> (b p) c d", b=b))
        s_mask = constrain_batch(einops.repeat(channel_mask, "b c -> (b p) c", p=p))
        s = constrain_batch(self.norm2(s + dropout(self.cross_channel_attn(s, s_mask, r, keys()), r, keys())))
        s = constrain_batch(self.norm3(s + dropout(self.feed_forward(s, r, keys), r, keys())))
        return constrain_batch(einops.rearrange(s, "(b p) c d -> b p c d", b=b))


class _Layers(nnx.Module):
    """``layers``: the blocks as one `LayerStack` (the bridge sees ``layers.{i}`` through ``per_layer_view``)."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.layers = LayerStack(lambda r: DualBranchBlock(sizes, rngs=r), sizes.num_temporal_layers, rngs=rngs)


class IMUTransformer(nnx.Module):
    """``transformer.transformer.layers.{i}``: upstream nests DualBranchTransformer inside IMUTransformer."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.transformer = _Layers(sizes, rngs=rngs)

    def __call__(self, x, patch_mask, channel_mask, keys: _Keys):
        """The blocks run as one ``lax.scan`` over their stacked weights: one block body is compiled whatever the depth
        (unrolled, XLA:TPU compiled every block of both Stage-1 views and their gradients separately;
        benchmarks/HISTORY.md, issue 24). Block i draws the dropout keys a Python loop would: its j-th is
        fold_in(key, start + i n + j), taken from a per-layer [depth, n] array."""
        stack = self.transformer.layers
        block_keys = keys.take(stack.depth, DualBranchBlock.NUM_KEYS)
        per_layer = {} if block_keys is None else {"dropout_keys": block_keys}
        (x,) = stack((x,), patch_mask, channel_mask, per_layer=per_layer)
        return x


class TSFMEncoder(nnx.Module):
    """Feature extractor -> token substitution -> positional (+ channel) encodings -> dual-branch blocks."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        d = sizes.d_model
        self.sizes = sizes
        token_init = normal(0.1 / d ** 0.5)
        self.mask_token = nnx.Param(token_init(rngs.params(), (1, 1, 1, d), jnp.float32))
        self.pad_token = nnx.Param(token_init(rngs.params(), (1, 1, 1, d), jnp.float32))
        self.feature_extractor = FeatureExtractor(sizes, rngs=rngs)
        self.positional_encoding = PositionalEncoding(sizes, rngs=rngs)
        self.transformer = IMUTransformer(sizes, rngs=rngs)

    def __call__(self, patches, patch_mask, channel_mask, *, mae_mask=None, channel_drop=None, channel_sentence=None,
                 dropout_key=None):
        """patches [B, P, 64, C] -> [B, P, C, d]. mae_mask [B, P] and channel_drop [B, C] get the mask token."""
        keys = _Keys(dropout_key)
        x = self.feature_extractor(patches, keys)
        if mae_mask is not None:
            x = jnp.where(mae_mask[:, :, None, None], self.mask_token[...], x)
        x = jnp.where(patch_mask[:, :, None, None], x, self.pad_token[...])
        if channel_drop is not None:
            x = jnp.where(channel_drop[:, None, :, None], self.mask_token[...], x)
        x = x + self.positional_encoding.temporal_encoding(x.shape[1])[None, :, None, :]
        if self.sizes.use_channel_encoding:
            if channel_sentence is None:
                raise ValueError("use_channel_encoding=True needs channel_sentence [B, C, sbert_dim]")
            x = x + self.positional_encoding.channel_encoding(channel_sentence, channel_mask)[:, None]
        return self.transformer(x, patch_mask, channel_mask, keys)


# -- Stage 2 modules ---------------------------------------------------------------------------------------------------
class ChannelTextFusion(nnx.Module):
    """Per-channel description tokens -> 4 learned queries cross-attend -> channel embedding -> gated add."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        d = sizes.d_model
        if sizes.text_dim != d:
            self.text_proj = Linear(sizes.text_dim, d, (None, "embed"), rngs=rngs)
        q = sizes.channel_text_queries
        self.queries = nnx.Param(normal(0.02)(rngs.params(), (q, d), jnp.float32))
        self.cross_attn = TorchMultiheadAttention(d, sizes.channel_text_num_heads, sizes.dropout, rngs=rngs)
        self.norm1 = LayerNorm(d, rngs=rngs)
        self.out_proj = MLPStack((q * d, d, d), rngs=rngs)
        self.gate_sensor = Linear(d, d, ("embed", "mlp"), use_bias=False, rngs=rngs)
        self.gate_channel = Linear(d, d, ("embed", "mlp"), rngs=rngs)

    def __call__(self, x, text_tokens, text_mask, dropout_key=None):
        """x [B, P, C, d]; text_tokens [B, C, S, text_dim]; text_mask [B, C, S] -> fused [B, P, C, d]."""
        b, _, c, _ = x.shape
        tokens = self.text_proj(text_tokens) if hasattr(self, "text_proj") else text_tokens
        tokens = einops.rearrange(tokens, "b c s d -> (b c) s d")
        mask = einops.rearrange(text_mask.astype(bool), "b c s -> (b c) s")
        mask = mask.at[:, 0].set(mask[:, 0] | ~mask.any(axis=1))  # all-padding rows keep position 0
        queries = jnp.broadcast_to(self.queries[...], (b * c,) + self.queries[...].shape)
        a = self.norm1(queries + self.cross_attn(queries, tokens, mask, dropout_key))
        channel_emb = self.out_proj(einops.rearrange(a, "n q d -> n (q d)"))
        channel_emb = einops.rearrange(channel_emb, "(b c) d -> b 1 c d", b=b)
        gate = jax.nn.sigmoid(self.gate_sensor(x) + self.gate_channel(channel_emb))
        return x + gate * channel_emb


class MultiQueryAttention(nnx.Module):
    """Q learned queries cross-attend over a set; optional self-attention; out_proj(flatten) + mean over queries."""

    def __init__(self, dim: int, num_queries: int, num_heads: int, dropout_rate: float, self_attention: bool, *,
                 rngs: nnx.Rngs):
        self.queries = nnx.Param(normal(0.02)(rngs.params(), (num_queries, dim), jnp.float32))
        self.cross_attn = TorchMultiheadAttention(dim, num_heads, dropout_rate, rngs=rngs)
        self.norm1 = LayerNorm(dim, rngs=rngs)
        self.use_self_attention = self_attention
        if self_attention:
            self.self_attn = TorchMultiheadAttention(dim, num_heads, dropout_rate, rngs=rngs)
            self.norm2 = LayerNorm(dim, rngs=rngs)
        self.out_proj = MLPStack((num_queries * dim, dim, dim), last_init=normal(0.01), rngs=rngs)

    def __call__(self, x, mask, keys: _Keys):  # x [N, L, d], mask [N, L] -> [N, d]
        q = jnp.broadcast_to(self.queries[...], (x.shape[0],) + self.queries[...].shape)
        a = self.norm1(q + self.cross_attn(q, x, mask, keys()))
        if self.use_self_attention:
            a = self.norm2(a + self.self_attn(a, a, None, keys()))
        return self.out_proj(einops.rearrange(a, "n q d -> n (q d)")) + a.mean(axis=1)


class _MQAHolder(nnx.Module):
    """``*.attention.*``: upstream wraps the MultiQueryAttention one level down."""

    def __init__(self, attention: MultiQueryAttention, input_dim: int | None = None, *, rngs: nnx.Rngs):
        if input_dim is not None:
            self.input_proj = Linear(input_dim, attention.queries[...].shape[1], ("embed", "mlp"), rngs=rngs)
        self.attention = attention


class PreNormEncoderLayer(nnx.Module):
    """``nn.TransformerEncoderLayer(norm_first=True, activation=gelu)``: x += SA(LN1 x); x += FF(LN2 x)."""

    def __init__(self, dim: int, num_heads: int, dropout_rate: float, *, rngs: nnx.Rngs):
        self.self_attn = TorchMultiheadAttention(dim, num_heads, dropout_rate, rngs=rngs)
        self.linear1 = Linear(dim, 4 * dim, ("embed", "mlp"), rngs=rngs)
        self.linear2 = Linear(4 * dim, dim, ("mlp", "embed"), rngs=rngs)
        self.norm1, self.norm2 = LayerNorm(dim, rngs=rngs), LayerNorm(dim, rngs=rngs)
        self.rate = dropout_rate

    def __call__(self, x, mask, keys: _Keys):
        h = self.norm1(x)
        x = x + dropout(self.self_attn(h, h, mask, keys()), self.rate, keys())
        h = dropout(gelu(self.linear1(self.norm2(x))), self.rate, keys())
        return x + dropout(self.linear2(h), self.rate, keys())


class _EncoderLayers(nnx.Module):
    def __init__(self, layers: list):
        self.layers = nnx.List(layers)


class _TemporalAttention(nnx.Module):
    def __init__(self, dim: int, num_heads: int, num_layers: int, dropout_rate: float, *, rngs: nnx.Rngs):
        self.transformer = _EncoderLayers([PreNormEncoderLayer(dim, num_heads, dropout_rate, rngs=rngs)
                                           for _ in range(num_layers)])


class _ProjectionHead(nnx.Module):
    def __init__(self, d_fused: int, out_dim: int, *, rngs: nnx.Rngs):
        self.mlp = MLPStack((d_fused, 2 * d_fused, 2 * d_fused, out_dim), rngs=rngs)


class SemanticAlignmentHead(nnx.Module):
    """Channel fusion (MQA over channels per patch) -> per-patch projection, or temporal encoder + pooling."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        df, h, r = sizes.d_model_fused, sizes.num_heads, sizes.dropout
        self.per_patch = sizes.per_patch_prediction
        self.cross_channel_fusion = _MQAHolder(
            MultiQueryAttention(df, sizes.num_fusion_queries, h, r, sizes.fusion_self_attention, rngs=rngs),
            input_dim=sizes.d_model, rngs=rngs)
        self.temporal_attention = _TemporalAttention(df, h, sizes.num_semantic_temporal_layers, r, rngs=rngs)
        self.attention_pooling = _MQAHolder(
            MultiQueryAttention(df, sizes.num_pool_queries, h, r, sizes.pool_self_attention, rngs=rngs), rngs=rngs)
        self.projection_head = _ProjectionHead(df, sizes.semantic_dim, rngs=rngs)

    def __call__(self, x, channel_mask, patch_mask, dropout_key=None):
        """x [B, P, C, d] -> L2-normalised [B, P, D] (per-patch) or [B, D]."""
        keys = _Keys(dropout_key)
        b, p, c, _ = x.shape
        fusion = self.cross_channel_fusion
        h = fusion.input_proj(einops.rearrange(x, "b p c d -> (b p) c d"))
        h = fusion.attention(h, einops.repeat(channel_mask, "b c -> (b p) c", p=p), keys)
        h = einops.rearrange(h, "(b p) d -> b p d", b=b)
        if not self.per_patch:
            for layer in self.temporal_attention.transformer.layers:
                h = layer(h, patch_mask, keys)
            h = self.attention_pooling.attention(h, patch_mask, keys)
        return l2_normalize(self.projection_head.mlp(h))


# -- label bank --------------------------------------------------------------------------------------------------------
class LabelPooling(nnx.Module):
    """``LabelAttentionPooling`` (K=1: ``out_proj``) and ``MultiPrototypeLabelPooling`` (K>1: ``out_projs.{k}``).

    a = norm(CA(queries, tokens)) without a residual; e_k = out_proj_k(flatten a_k) + mean(a_k), L2-normalised.
    """

    def __init__(self, dim: int, num_queries: int, num_heads: int, num_prototypes: int, *, rngs: nnx.Rngs):
        self.k = num_prototypes
        shape = (num_queries, dim) if num_prototypes == 1 else (num_prototypes, num_queries, dim)
        self.queries = nnx.Param(normal(dim ** -0.5)(rngs.params(), shape, jnp.float32))
        self.cross_attn = TorchMultiheadAttention(dim, num_heads, 0.0, rngs=rngs)
        self.norm = LayerNorm(dim, rngs=rngs)
        make = lambda: MLPStack((num_queries * dim, dim, dim), last_init=normal(0.01), rngs=rngs)
        if num_prototypes == 1:
            self.out_proj = make()
        else:
            self.out_projs = nnx.List([make() for _ in range(num_prototypes)])

    def __call__(self, tokens, mask):  # [L, S, d], [L, S] -> [L, K, d]
        queries = self.queries[...].reshape(self.k, -1, tokens.shape[-1])
        heads = [self.out_proj] if self.k == 1 else list(self.out_projs)
        out = []
        for k, head in enumerate(heads):
            q = jnp.broadcast_to(queries[k], (tokens.shape[0],) + queries[k].shape)
            a = self.norm(self.cross_attn(q, tokens, mask.astype(bool)))
            out.append(l2_normalize(head(einops.rearrange(a, "l q d -> l (q d)")) + a.mean(axis=1)))
        return jnp.stack(out, axis=1)


def encode_frozen(tokens, mask):
    """Parameter-free label embedding: masked mean of the token states, L2-normalised. [L, S, d] -> [L, d]."""
    m = mask.astype(tokens.dtype)[..., None]
    return l2_normalize((tokens * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9))


class LabelBank(nnx.Module):
    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.learnable = sizes.learnable_label_bank
        if self.learnable:
            self.pooling = LabelPooling(sizes.semantic_dim, sizes.label_bank_num_queries, sizes.label_bank_num_heads,
                                        sizes.num_prototypes, rngs=rngs)

    def __call__(self, tokens, mask):  # -> [L, K, D]
        return self.pooling(tokens, mask) if self.learnable else encode_frozen(tokens, mask)[:, None]


# -- full models -------------------------------------------------------------------------------------------------------
def masked_mean_pool(per_patch, patch_mask):
    """Σ_p m_p e_p / max(Σ_p m_p, 1), re-normalised, in float32. [B, P, D], [B, P] -> [B, D]."""
    m = patch_mask.astype(jnp.float32)[..., None]
    pooled = (per_patch.astype(jnp.float32) * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
    return l2_normalize(pooled)


class TSFM(nnx.Module):
    """Stage-2 ``SemanticAlignmentModel`` + label bank + the criterion's ``logit_scale`` (and SigLIP ``logit_bias``)."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        if sizes.d_model_fused % sizes.num_heads or sizes.d_model % sizes.num_heads:
            raise ValueError(f"d_model {sizes.d_model} / d_model_fused {sizes.d_model_fused} must divide by "
                             f"num_heads {sizes.num_heads}")
        self.sizes = sizes
        self.encoder = TSFMEncoder(dataclasses.replace(sizes, use_channel_encoding=False), rngs=rngs)
        if sizes.channel_text_fusion:
            self.channel_fusion = ChannelTextFusion(sizes, rngs=rngs)
        self.semantic_head = SemanticAlignmentHead(sizes, rngs=rngs)
        self.label_bank = LabelBank(sizes, rngs=rngs)
        self.logit_scale = nnx.Param(jnp.asarray(jnp.log(1 / 0.07), jnp.float32))
        if sizes.siglip:
            self.logit_bias = nnx.Param(jnp.zeros((), jnp.float32))
        if sizes.memory_bank_size:
            self.memory_bank = MemoryBank(  # training-only state; the bridge never builds it
                sizes.memory_bank_size, sizes.semantic_dim)

    def encode(self, patches, patch_mask, channel_mask, text_tokens=None, text_mask=None, dropout_key=None):
        """-> per-patch [B, P, D] (per_patch_prediction) or [B, D] head output, L2-normalised."""
        k_enc, k_fuse, k_head = (None,) * 3 if dropout_key is None else jax.random.split(dropout_key, 3)
        x = self.encoder(patches, patch_mask, channel_mask, dropout_key=k_enc)
        if self.sizes.channel_text_fusion:
            if text_tokens is None:
                raise ValueError("channel_text_fusion needs text_tokens [B, C, S, text_dim] and text_mask [B, C, S]")
            x = self.channel_fusion(x, text_tokens, text_mask, k_fuse)
        return self.semantic_head(x, channel_mask, patch_mask, k_head)

    def embed_session(self, patches, patch_mask, channel_mask, text_tokens=None, text_mask=None, dropout_key=None):
        """Session embedding [B, D]: mean-pooled valid patch embeddings for per-patch models."""
        out = self.encode(patches, patch_mask, channel_mask, text_tokens, text_mask, dropout_key)
        return masked_mean_pool(out, patch_mask) if self.sizes.per_patch_prediction else out

    def zero_shot_scores(self, emb, label_tokens, label_mask):
        """emb [B, D] x label-bank embeddings [L, K, D] -> max over prototypes [B, L]."""
        return jnp.einsum("bd,lkd->blk", emb, self.label_bank(label_tokens, label_mask)).max(axis=-1)


class TSFMPretrain(nnx.Module):
    """Stage-1 ``PretrainingModel``: encoder (channel encoding on), projection and reconstruction heads."""

    def __init__(self, sizes: TSFMSizes, *, rngs: nnx.Rngs):
        self.sizes = sizes
        self.encoder = TSFMEncoder(sizes, rngs=rngs)
        self.projection_head = MLPStack((sizes.d_model, 512, 256), relu=True, rngs=rngs)
        self.reconstruction_head = Linear(sizes.d_model, sizes.patch_size, ("embed", None), rngs=rngs)
        # EMA of (L_mae, L_con) for the Stage-1 loss balancing: training state, not weights
        self.loss_ema = nnx.BatchStat(jnp.zeros((2,), jnp.float32))
        self.loss_ema_ready = nnx.BatchStat(jnp.zeros((), bool))

    def __call__(self, patches, patch_mask, channel_mask, *, mae_mask=None, channel_drop=None, channel_sentence=None,
                 dropout_key=None):
        """-> (features [B, P, C, d], projections [B, P, C, 256], reconstruction [B, P, 64, C])."""
        feats = self.encoder(patches, patch_mask, channel_mask, mae_mask=mae_mask, channel_drop=channel_drop,
                             channel_sentence=channel_sentence, dropout_key=dropout_key)
        recon = einops.rearrange(self.reconstruction_head(feats), "b p c t -> b p t c")
        return feats, self.projection_head(feats), recon
