"""Audio-MAE (Huang et al., NeurIPS 2022) and its HIMU-MAE fork: spectrogram ViT MAE with a shifted-window decoder.

One model family covers both (facebookresearch/AudioMAE@bd60e29 models_mae.py, models_vit.py;
amir-goudarzi/IMU_testing@9c52aa2 src/subtrees/AudioMAE/):
* Audio-MAE: 1x1024(time)x128(mel) log-mel input, 64x8 token grid, position tables built on the swapped 8x64 grid.
* HIMU-MAE: 3x128(freq)x320(time) IMU dB spectrograms, 8x20 grid, tables on the true grid, an optional video
  feature (Omnivore 1536-d) concatenated to every encoder token before ``decoder_embed``.

Attribute names follow the PyTorch ``MaskedAutoencoderViT`` / timm ``VisionTransformer`` state_dicts
(``blocks.{i}.attn.qkv``, ``decoder_blocks.{j}.attn.meta_mlp.fc1``, ``fc_norm``, ``head`` ...), so the bridge rule
table is one line per tensor. Encoder and decoder blocks are `layers.LayerStack`s (params [depth, ...] under
``blocks/block`` and ``decoder_blocks/block``, one ``lax.scan`` per tower; the bridge sees ``blocks/<i>/...`` through
``per_layer_view``); the Swin decoder's alternation of unshifted and shifted blocks is a scanned per-layer flag. Masking takes its noise as an explicit input so runs are reproducible and the PyTorch
comparison can feed the same draw.
"""

from __future__ import annotations

import dataclasses
import functools

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imujax.models import layers
from imujax.models.layers import Attention, LayerNorm, Linear, Mlp, PatchEmbed
from imujax.models.masking import num_kept, random_masking


class FixedTable(nnx.Variable):
    """A stored constant (the sin-cos position tables): part of the checkpoint, never touched by the optimiser."""


@dataclasses.dataclass(frozen=True)
class AudioMAESizes:
    """Architecture sizes. Defaults: the released Audio-MAE ViT-B AS-2M pretraining model."""
    img_h: int = 1024               # input rows (Audio-MAE: time frames; HIMU: frequency bins)
    img_w: int = 128                # input cols (Audio-MAE: mel bins; HIMU: time samples)
    in_chans: int = 1
    patch: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    decoder_dim: int = 512
    decoder_mode: int = 1           # 1: 16 shifted-window Swin-V2-Cr blocks (released); 0: global ViT blocks
    decoder_depth: int = 16         # the Swin decoder hard-codes 16 upstream; the global decoder uses 8
    decoder_heads: int = 16         # hard-coded 16 for the Swin decoder regardless of the constructor argument
    window: tuple[int, int] = (4, 4)
    shift: tuple[int, int] = (2, 0)  # odd blocks roll by -shift; (0, 0) everywhere is upstream's no_shift
    meta_hidden: int = 384
    meta_dropout: float = 0.1       # inside the relative-bias MLP (training only)
    pos_grid_swapped: bool = True   # Audio-MAE builds its tables on a (W/p, H/p) grid; HIMU-MAE on (H/p, W/p)
    video_dim: int = 0              # width of a clip feature concatenated to every encoder token (HIMU: 1536)
    remat: bool = False             # blocks keep only weight-matmul outputs for backward (`layers.LayerStack`)

    @property
    def grid(self) -> tuple[int, int]:
        if self.img_h % self.patch or self.img_w % self.patch:
            raise ValueError(f"input {self.img_h}x{self.img_w} is not divisible by the patch size {self.patch}")
        return self.img_h // self.patch, self.img_w // self.patch

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def patch_dim(self) -> int:
        return self.patch ** 2 * self.in_chans


AUDIO_MAE = AudioMAESizes()
HIMU_MAE = AudioMAESizes(img_h=128, img_w=320, in_chans=3, pos_grid_swapped=False, video_dim=1536)


# -- fixed tables -------------------------------------------------------------------------------------------------------
def sincos_2d(rows: int, cols: int, dim: int) -> np.ndarray:
    """MAE 2-D sin-cos table [1, 1 + rows*cols, dim] (cls row zero), token k at (k // cols, k % cols).

    First half: [sin, cos] of the column index, second half: [sin, cos] of the row index, frequencies
    1/10000^(m/(dim/4)). float64 maths rounded to float32, as upstream stores it.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    k = np.arange(rows * cols)

    def half(pos):
        angle = np.outer(pos.astype(np.float64), omega)
        return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)

    table = np.concatenate([half(k % cols), half(k // cols)], axis=1)
    return np.concatenate([np.zeros((1, dim)), table]).astype(np.float32)[None]


def position_table(sizes: AudioMAESizes, dim: int) -> np.ndarray:
    rows, cols = sizes.grid
    return sincos_2d(cols, rows, dim) if sizes.pos_grid_swapped else sincos_2d(rows, cols, dim)


def window_and_shift(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]):
    """timm Swin-V2-Cr rule: a window never exceeds the grid, and an axis that fits in one window is not shifted."""
    win = tuple(min(g, w) for g, w in zip(grid, window))
    sh = tuple(0 if g <= w else s for g, w, s in zip(grid, win, shift))
    return win, sh


@functools.lru_cache(maxsize=None)
def relative_coords_log(window: tuple[int, int]) -> np.ndarray:
    """[L*L, 2] sign(d)*log(1+|d|) of (dh, dw) for query i, key j of a window (row i*L + j), float32."""
    coords = np.stack(np.meshgrid(np.arange(window[0]), np.arange(window[1]), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0).reshape(-1, 2).astype(np.float32)
    return np.sign(rel) * np.log1p(np.abs(rel))


def partition_windows(x, window: tuple[int, int]):
    """[B, H, W, C] -> [B * nW, wh*ww, C], windows row-major over the window grid."""
    return einops.rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c", wh=window[0], ww=window[1])


def merge_windows(x, window: tuple[int, int], grid: tuple[int, int]):
    return einops.rearrange(x, "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c", nh=grid[0] // window[0],
                            nw=grid[1] // window[1], wh=window[0], ww=window[1])


@functools.lru_cache(maxsize=None)
def shift_mask(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> np.ndarray | None:
    """[nW, L, L] additive mask (0 / -100) that keeps rolled-in positions from attending across the seam."""
    if not any(shift):
        return None
    region = np.zeros(grid, np.float32)
    count = 0
    for hs in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for ws in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            region[hs, ws] = count  # with a zero shift on an axis the later slices overwrite (as upstream)
            count += 1
    ids = np.asarray(partition_windows(region[None, :, :, None], window))[..., 0]  # [nW, L]
    return np.where(ids[:, None, :] != ids[:, :, None], -100.0, 0.0).astype(np.float32)


# -- blocks -------------------------------------------------------------------------------------------------------------
def drop_path(x, keep_prob: jax.Array | None, key: jax.Array | None):
    """Stochastic depth: drop a sample's whole residual branch with probability 1 - ``keep_prob`` (a float32 scalar,
    possibly traced: a `layers.LayerStack` scans each layer's own), rescale the kept ones (timm DropPath). A keep
    probability of 1 keeps every sample unscaled (x / 1 == x)."""
    if key is None or keep_prob is None:
        return x
    keep = jax.random.bernoulli(key, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / jnp.asarray(keep_prob).astype(x.dtype), 0.0).astype(x.dtype)


def drop_path_keep_probs(rate: float, depth: int) -> np.ndarray:
    """Per-layer keep probabilities [depth] of timm's linearly growing stochastic-depth rule (0 .. ``rate``),
    formed in float64 and rounded to float32 once."""
    return (1.0 - np.linspace(0, rate, depth)).astype(np.float32)


class ViTBlock(nnx.Module):
    """timm-0.3.2 pre-norm ``Block``: x += attn(norm1 x); x += mlp(norm2 x). The stochastic-depth keep probability
    comes per call (each layer of a `layers.LayerStack` has its own); None: no drop path."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float, eps: float, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.norm1 = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
        self.attn = Attention(dim, num_heads, qkv_bias=True, dtype=dtype, rngs=rngs)
        self.norm2 = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)

    def __call__(self, x, key: jax.Array | None = None, keep_prob: jax.Array | None = None):
        k1, k2 = (None, None) if key is None or keep_prob is None else jax.random.split(key)
        x = layers.constrain_batch(x)
        x = x + drop_path(self.attn(self.norm1(x)), keep_prob, k1)
        return x + drop_path(self.mlp(self.norm2(x)), keep_prob, k2)


class MetaMlp(nnx.Module):
    """The continuous relative-position MLP: (dh, dw) log-coords -> one bias per head (ReLU, dropout 0.1)."""

    def __init__(self, hidden: int, heads: int, *, dropout: float, rngs: nnx.Rngs):
        self.fc1 = Linear(2, hidden, (None, "mlp"), rngs=rngs)
        self.fc2 = Linear(hidden, heads, ("mlp", "heads"), rngs=rngs)
        self.dropout = dropout

    def __call__(self, x, key: jax.Array | None = None):
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        h = layers.dropout(jax.nn.relu(self.fc1(x)), self.dropout, k1)
        return layers.dropout(self.fc2(h), self.dropout, k2)


class WindowAttention(nnx.Module):
    """Scaled-cosine window attention: cos(q, k) / max(tau_h, 0.01) + meta-MLP relative bias (+ shift mask)."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], *, meta_hidden: int, meta_dropout: float,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_heads, self.window = num_heads, window
        self.qkv = Linear(dim, 3 * dim, ("embed", "heads"), dtype=dtype, rngs=rngs)
        self.proj = Linear(dim, dim, ("heads", "embed"), dtype=dtype, rngs=rngs)
        self.meta_mlp = MetaMlp(meta_hidden, num_heads, dropout=meta_dropout, rngs=rngs)
        self.tau = nnx.Param(layers.partitioned(layers.ones, ("heads",))(rngs.params(), (num_heads,), jnp.float32))

    def __call__(self, x, mask: jax.Array | np.ndarray | None, key: jax.Array | None = None):
        """x [B*nW, L, C] (windows of one image consecutive), mask [nW, L, L] (all zero: unshifted) or None."""
        q, k, v = einops.rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.num_heads)
        q32, k32 = q.astype(jnp.float32), k.astype(jnp.float32)
        norms = jnp.linalg.norm(q32, axis=-1)[..., :, None] * jnp.linalg.norm(k32, axis=-1)[..., None, :]
        logits = jnp.einsum("nhid,nhjd->nhij", q32, k32) / jnp.maximum(norms, 1e-6)
        logits = logits / jnp.maximum(self.tau[...], 0.01)[None, :, None, None]
        area = self.window[0] * self.window[1]
        bias = self.meta_mlp(jnp.asarray(relative_coords_log(self.window)), key)  # [L*L, heads]
        logits = logits + bias.T.reshape(self.num_heads, area, area)[None].astype(jnp.float32)
        if mask is not None:
            logits = logits.reshape(-1, mask.shape[0], self.num_heads, area, area) + jnp.asarray(mask)[None, :, None]
            logits = logits.reshape(-1, self.num_heads, area, area)
        attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = einops.rearrange(jnp.einsum("nhij,nhjd->nhid", attn, v), "n h l d -> n l (h d)")
        return self.proj(out)


class SwinBlock(nnx.Module):
    """Swin-V2-Cr block, post-norm: x += norm1(window_attn(x)); x += norm2(mlp(x)).

    ``shift`` is the roll this block applies when it shifts; whether it does comes per call (``shifted``, a bool
    that a `layers.LayerStack` scans: upstream's blocks alternate unshifted / shifted, and one stacked block type
    serves both). ``shifted=True`` (a Python bool) is the static shifted block. An unshifted call through a block
    that can shift selects the unrolled tokens and adds an all-zero mask: the same values as no roll and no mask."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], window: tuple[int, int],
                 shift: tuple[int, int], *, mlp_ratio: float, eps: float, meta_hidden: int, meta_dropout: float,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        self.grid = grid
        self.window, self.shift = window_and_shift(grid, window, shift)
        if grid[0] % self.window[0] or grid[1] % self.window[1]:
            raise ValueError(f"decoder token grid {grid} is not divisible by the window {self.window}")
        self.attn = WindowAttention(dim, num_heads, self.window, meta_hidden=meta_hidden, meta_dropout=meta_dropout,
                                    dtype=dtype, rngs=rngs)
        self.norm1 = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)
        self.norm2 = LayerNorm(dim, eps=eps, dtype=dtype, rngs=rngs)

    def window_attention(self, x, key, shifted):
        b, _, c = x.shape
        x = x.reshape(b, *self.grid, c)
        mask = None
        if any(self.shift) and shifted is not False:
            def when_shifted(rolled, plain):
                return rolled if shifted is True else jnp.where(shifted, rolled, plain)
            x = when_shifted(jnp.roll(x, (-self.shift[0], -self.shift[1]), axis=(1, 2)), x)
            mask = when_shifted(jnp.asarray(shift_mask(self.grid, self.window, self.shift)), jnp.float32(0.0))
        out = self.attn(partition_windows(x, self.window), mask, key)
        x = merge_windows(out, self.window, self.grid)
        if mask is not None:
            x = when_shifted(jnp.roll(x, self.shift, axis=(1, 2)), x)
        return x.reshape(b, -1, c)

    def __call__(self, x, key: jax.Array | None = None, shifted: bool | jax.Array = True):
        x = layers.constrain_batch(x)
        x = x + self.norm1(self.window_attention(x, key, shifted))
        return x + self.norm2(self.mlp(x))


# -- masking ------------------------------------------------------------------------------------------------------------
def grid_line_masks(noise_rows, noise_cols, row_ratio: float, col_ratio: float):
    """Per-sample row / column drop masks [B, R], [B, C] (1 = dropped) from their noise, int-truncated keep counts."""
    def line_mask(noise, ratio):
        keep = num_kept(noise.shape[1], ratio)
        ranks = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
        return (ranks >= keep).astype(jnp.float32)
    return line_mask(noise_rows, row_ratio), line_mask(noise_cols, col_ratio)


def random_masking_2d(x, grid: tuple[int, int], noise_rows, noise_cols, row_ratio: float, col_ratio: float):
    """Pretraining time/frequency masking: a token is removed if its grid row or column is.

    Kept tokens stay in natural order (upstream sorts index + 999*mask). Returns (kept, mask [B, L], ids_restore).
    """
    rows, cols = grid
    mask_r, mask_c = grid_line_masks(noise_rows, noise_cols, row_ratio, col_ratio)
    mask = (1 - (1 - mask_r[:, :, None]) * (1 - mask_c[:, None, :])).reshape(x.shape[0], rows * cols)
    keep = num_kept(rows, row_ratio) * num_kept(cols, col_ratio)
    order = jnp.argsort(mask * (rows * cols) + jnp.arange(rows * cols)[None], axis=1)
    kept = jnp.take_along_axis(x, order[:, :keep, None], axis=1)
    return kept, mask, jnp.argsort(order, axis=1)


def patchify(images, patch: int):
    """[B, C, H, W] -> [B, L, p*q*C], per-patch order (row-in-patch, col-in-patch, channel) as upstream."""
    return einops.rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=patch, q=patch)


def unpatchify(tokens, patch: int, grid: tuple[int, int], chans: int):
    return einops.rearrange(tokens, "b (h w) (p q c) -> b c (h p) (w q)", h=grid[0], w=grid[1], p=patch, q=patch,
                            c=chans)


# -- encoder ------------------------------------------------------------------------------------------------------------
class AudioViTEncoder(nnx.Module):
    """Patch embedding, cls token, fixed position table and the pre-norm ViT blocks (shared by MAE and fine-tune)."""

    def __init__(self, sizes: AudioMAESizes, *, drop_path: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
        s = self.sizes = sizes
        self.dtype = dtype
        self.patch_embed = PatchEmbed(s.patch_dim, s.embed_dim, dtype=dtype, rngs=rngs)
        normal = nnx.initializers.normal(0.02)
        self.cls_token = nnx.Param(layers.partitioned(normal, (None, None, "embed"))(rngs.params(), (1, 1, s.embed_dim)))
        self.pos_embed = FixedTable(jnp.asarray(position_table(s, s.embed_dim)))
        self.drop_path = drop_path
        self.blocks = layers.LayerStack(lambda r: ViTBlock(s.embed_dim, s.num_heads, mlp_ratio=s.mlp_ratio,
                                                           eps=s.norm_eps, dtype=dtype, rngs=r), s.depth, rngs=rngs)

    def embed_patches(self, images):
        """[B, C, H, W] -> tokens [B, L, D] + pos (no cls), row-major over the (H/p, W/p) grid."""
        s = self.sizes
        if images.ndim != 4 or images.shape[1:] != (s.in_chans, s.img_h, s.img_w):
            raise ValueError(f"input must be [B, {s.in_chans}, {s.img_h}, {s.img_w}], got {images.shape}")
        patches = einops.rearrange(images, "b c (h p) (w q) -> b (h w) (c p q)", p=s.patch, q=s.patch)
        tokens = self.patch_embed(patches.astype(self.dtype))
        return tokens + self.pos_embed[...][:, 1:].astype(tokens.dtype)

    def with_cls(self, tokens):
        cls = (self.cls_token[...] + self.pos_embed[...][:, :1]).astype(tokens.dtype)
        return jnp.concatenate([jnp.broadcast_to(cls, (tokens.shape[0], 1, tokens.shape[-1])), tokens], axis=1)

    def run_blocks(self, x, key: jax.Array | None = None):
        """The ViT blocks as one scan; with ``key`` and a drop-path rate, layer i drops its residual branches with
        timm's linearly growing rate (each layer its own key of ``split(key, depth)``)."""
        per_layer = {}
        if key is not None and self.drop_path:
            per_layer = {"key": jax.random.split(key, self.sizes.depth),
                         "keep_prob": jnp.asarray(drop_path_keep_probs(self.drop_path, self.sizes.depth))}
        (x,) = self.blocks((x,), per_layer=per_layer, remat=self.sizes.remat)
        return x


class AudioMAE(AudioViTEncoder):
    """``MaskedAutoencoderViT`` (decoder_mode 1 or 0), optionally conditioned on a video feature in the decoder."""

    def __init__(self, sizes: AudioMAESizes = AUDIO_MAE, *, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(sizes, dtype=dtype, rngs=rngs)
        s = sizes
        self.norm = LayerNorm(s.embed_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        self.decoder_embed = Linear(s.embed_dim + s.video_dim, s.decoder_dim, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        normal = nnx.initializers.normal(0.02)
        self.mask_token = nnx.Param(layers.partitioned(normal, (None, None, "embed"))(rngs.params(),
                                                                                     (1, 1, s.decoder_dim)))
        self.decoder_pos_embed = FixedTable(jnp.asarray(position_table(s, s.decoder_dim)))
        if s.decoder_mode == 1:  # every block built able to shift; the odd ones do (a scanned flag, `run_decoder_blocks`)
            self.decoder_blocks = layers.LayerStack(
                lambda r: SwinBlock(s.decoder_dim, s.decoder_heads, s.grid, s.window, s.shift, mlp_ratio=s.mlp_ratio,
                                    eps=s.norm_eps, meta_hidden=s.meta_hidden, meta_dropout=s.meta_dropout,
                                    dtype=dtype, rngs=r), s.decoder_depth, rngs=rngs)
        elif s.decoder_mode == 0:
            self.decoder_blocks = layers.LayerStack(
                lambda r: ViTBlock(s.decoder_dim, s.decoder_heads, mlp_ratio=s.mlp_ratio, eps=s.norm_eps, dtype=dtype,
                                   rngs=r), s.decoder_depth, rngs=rngs)
        else:
            raise ValueError(f"decoder_mode must be 0 (global) or 1 (shifted windows), got {s.decoder_mode}")
        self.decoder_norm = LayerNorm(s.decoder_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        self.decoder_pred = Linear(s.decoder_dim, s.patch_dim, ("embed", "patch"), dtype=dtype, rngs=rngs)

    def draw_noise(self, key: jax.Array, batch: int, mask_2d: bool = False) -> dict[str, jax.Array]:
        """The uniform draws one masked forward consumes: per-token noise, or per-row / per-column noise."""
        rows, cols = self.sizes.grid
        if not mask_2d:
            return {"noise": jax.random.uniform(key, (batch, rows * cols))}
        k_r, k_c = jax.random.split(key)
        return {"noise_rows": jax.random.uniform(k_r, (batch, rows)),
                "noise_cols": jax.random.uniform(k_c, (batch, cols))}

    def forward_encoder(self, images, noise: dict[str, jax.Array], *, mask_ratio: float = 0.8,
                        mask_row_ratio: float = 0.6, mask_col_ratio: float = 0.5):
        """Returns (latent [B, 1+K, D] = cls + kept tokens after ``norm``, mask [B, L], ids_restore [B, L])."""
        x = self.embed_patches(images)
        if "noise" in noise:
            x, mask, ids_restore = random_masking(x, noise["noise"], mask_ratio)
        else:
            x, mask, ids_restore = random_masking_2d(x, self.sizes.grid, noise["noise_rows"], noise["noise_cols"],
                                                     mask_row_ratio, mask_col_ratio)
        return self.norm(self.run_blocks(self.with_cls(x))), mask, ids_restore

    def forward_decoder(self, latent, ids_restore, video=None, key: jax.Array | None = None):
        """latent [B, 1+K, D] (+ video [B, D_v]) -> per-patch predictions [B, L, p*p*C] in natural token order."""
        s = self.sizes
        if s.video_dim:
            if video is None or video.shape != (latent.shape[0], s.video_dim):
                raise ValueError(f"this model is video-conditioned: video must be [B, {s.video_dim}], got "
                                 f"{None if video is None else video.shape}")
            tiled = jnp.broadcast_to(video[:, None].astype(latent.dtype), latent.shape[:2] + (s.video_dim,))
            latent = jnp.concatenate([latent, tiled], axis=-1)
        x = self.decoder_embed(latent)
        batch, dim = x.shape[0], x.shape[-1]
        fill = jnp.broadcast_to(self.mask_token[...].astype(x.dtype), (batch, s.num_tokens + 1 - x.shape[1], dim))
        tokens = jnp.take_along_axis(jnp.concatenate([x[:, 1:], fill], axis=1), ids_restore[..., None], axis=1)
        x = jnp.concatenate([x[:, :1], tokens], axis=1) + self.decoder_pos_embed[...].astype(x.dtype)
        if s.decoder_mode == 1:
            x = x[:, 1:]  # the windowed decoder runs on the token grid only
        x = self.run_decoder_blocks(x, key)
        pred = self.decoder_pred(self.decoder_norm(x))
        return pred if s.decoder_mode == 1 else pred[:, 1:]

    def run_decoder_blocks(self, x, key: jax.Array | None = None):
        """The decoder blocks as one scan. Shifted-window blocks alternate unshifted (even i) and shifted (odd i), a
        per-layer flag; ``key`` feeds block i's meta-MLP dropout with ``split(key, depth)[i]``."""
        s = self.sizes
        per_layer = {}
        if s.decoder_mode == 1:
            if key is not None:
                per_layer["key"] = jax.random.split(key, s.decoder_depth)
            per_layer["shifted"] = jnp.asarray(np.arange(s.decoder_depth) % 2 == 1)
        (x,) = self.decoder_blocks((x,), per_layer=per_layer, remat=s.remat)
        return x

    def __call__(self, images, noise: dict[str, jax.Array], *, video=None, mask_ratio: float = 0.8,
                 mask_row_ratio: float = 0.6, mask_col_ratio: float = 0.5, key: jax.Array | None = None):
        """Pretraining forward: {'pred', 'target', 'mask', 'latent'}; ``key`` drives the decoder's meta dropout."""
        latent, mask, ids_restore = self.forward_encoder(images, noise, mask_ratio=mask_ratio,
                                                         mask_row_ratio=mask_row_ratio, mask_col_ratio=mask_col_ratio)
        pred = self.forward_decoder(latent, ids_restore, video, key)
        return {"pred": pred, "target": patchify(images, self.sizes.patch), "mask": mask, "latent": latent}

    def encode_unmasked(self, images):
        """All patch tokens after ``norm`` in natural order [B, L, D] (HIMU ``extract_feats`` up to token order)."""
        x = self.norm(self.run_blocks(self.with_cls(self.embed_patches(images))))
        return x[:, 1:]


# -- fine-tuning / probing heads -----------------------------------------------------------------------------------------
class GELU(nnx.Module):
    """Parameter-free placeholder keeping torch ``Sequential`` indices (``late_fusion.model.2``)."""

    def __call__(self, x, key=None):
        return layers.gelu(x)


class Dropout(nnx.Module):
    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, x, key=None):
        return layers.dropout(x, self.rate, key)


class FeatureBatchNorm(nnx.Module):
    """BatchNorm1d(affine=False) (the MAE linear-probe ``head.0``): running statistics only."""

    def __init__(self, dim: int, *, eps: float = 1e-6, momentum: float = 0.1):
        self.eps, self.momentum = eps, momentum
        self.use_running_average = False
        self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x, key=None):
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = x.mean(axis=0), x.var(axis=0)
            n = x.shape[0]
            self.mean[...] = (1 - self.momentum) * self.mean[...] + self.momentum * jax.lax.stop_gradient(mean)
            self.var[...] = ((1 - self.momentum) * self.var[...]
                             + self.momentum * jax.lax.stop_gradient(var) * (n / max(n - 1, 1)))
            self.count[...] = self.count[...] + 1
        return (x - mean) * jax.lax.rsqrt(var + self.eps)


def run_sequential(modules, x, key: jax.Array | None):
    keys = [None] * len(modules) if key is None else list(jax.random.split(key, len(modules)))
    for m, k in zip(modules, keys):
        x = m(x, k) if isinstance(m, (GELU, Dropout, FeatureBatchNorm)) else m(x)
    return x


class TorchMLP(nnx.Module):
    """torchmultimodal ``MLP``: per hidden size Linear -> BatchNorm1d -> GELU -> Dropout, then a last Linear."""

    def __init__(self, din: int, hidden: tuple[int, ...], dout: int, *, dropout: float = 0.5, rngs: nnx.Rngs):
        mods: list = []
        for width in hidden:
            mods += [Linear(din, width, ("embed", "mlp"), rngs=rngs), layers.BatchNorm(width, rngs=rngs), GELU(),
                     Dropout(dropout)]
            din = width
        self.model = nnx.List(mods + [Linear(din, dout, ("mlp", "vocab"), rngs=rngs)])

    def __call__(self, x, key=None):
        return run_sequential(self.model, x, key)


class AudioMAEViT(AudioViTEncoder):
    """Fine-tune / linear-probe model (``models_vit.VisionTransformer``, global pool): mean of patch tokens ->
    ``fc_norm`` -> head, with the HIMU-MAE video fusion variants.

    fusion:
      'none'         head(fc_norm(mean tokens))                                  (Audio-MAE / HIMU IMU-only)
      'late_sum'     head(feat) + omni_classifier(video)                         (HIMU commit 466ffd4)
      'interfuse'    head(interfuse([feat ; video]))  Linear -> BN -> GELU -> Dropout  (HIMU linear probe)
      'late_mlp'     late_fusion([feat ; video]) torchmultimodal MLP 2304 -> 1024/512/256 -> C  (HIMU fine-tune)
    ``probe_bn`` puts the MAE linear-probe BatchNorm1d(affine=False) before the head (keys ``head.0``/``head.1``).
    """

    FUSIONS = ("none", "late_sum", "interfuse", "late_mlp")

    def __init__(self, sizes: AudioMAESizes, num_classes: int, *, fusion: str = "none", probe_bn: bool = False,
                 drop_path: float = 0.0, fusion_dropout: float = 0.1, mlp_hidden: tuple[int, ...] = (1024, 512, 256),
                 dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(sizes, drop_path=drop_path, dtype=dtype, rngs=rngs)
        if fusion not in self.FUSIONS:
            raise ValueError(f"fusion must be one of {self.FUSIONS}, got {fusion!r}")
        if fusion != "none" and not sizes.video_dim:
            raise ValueError(f"fusion {fusion!r} needs sizes.video_dim > 0 (the clip feature width)")
        s = sizes
        self.fusion, self.probe_bn = fusion, probe_bn
        self.fc_norm = LayerNorm(s.embed_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        head_in = s.embed_dim
        if fusion == "late_mlp":
            self.late_fusion = TorchMLP(s.embed_dim + s.video_dim, tuple(mlp_hidden), num_classes, rngs=rngs)
            return
        if fusion == "interfuse":
            self.interfuse = nnx.List([Linear(s.embed_dim + s.video_dim, s.embed_dim, ("embed", "mlp"), rngs=rngs),
                                       layers.BatchNorm(s.embed_dim, rngs=rngs), GELU(), Dropout(fusion_dropout)])
        if fusion == "late_sum":
            self.omni_classifier = Linear(s.video_dim, num_classes, ("embed", "vocab"), rngs=rngs)
        head_init = nnx.initializers.truncated_normal(2e-5)
        linear = Linear(head_in, num_classes, ("embed", "vocab"), kernel_init=head_init, dtype=dtype, rngs=rngs)
        self.head = nnx.List([FeatureBatchNorm(head_in), linear]) if probe_bn else linear

    def features(self, images, noise: dict[str, jax.Array] | None = None, *, mask_row_ratio: float = 0.0,
                 mask_col_ratio: float = 0.0, key: jax.Array | None = None):
        """Pooled, normalised encoder feature [B, D]. With ``noise`` (rows/cols) applies the fine-tune 2-D masking:
        keep int(R(1-p_r)) random grid rows and int(C(1-p_c)) random columns, in noise order."""
        x = self.embed_patches(images)
        if noise is not None and (mask_row_ratio > 0 or mask_col_ratio > 0):
            rows, cols = self.sizes.grid
            grid = x.reshape(x.shape[0], rows, cols, x.shape[-1])
            keep_r = jnp.argsort(noise["noise_rows"], axis=1)[:, :num_kept(rows, mask_row_ratio)]
            keep_c = jnp.argsort(noise["noise_cols"], axis=1)[:, :num_kept(cols, mask_col_ratio)]
            grid = jnp.take_along_axis(grid, keep_r[:, :, None, None], axis=1)
            grid = jnp.take_along_axis(grid, keep_c[:, None, :, None], axis=2)
            x = grid.reshape(x.shape[0], -1, x.shape[-1])
        x = self.run_blocks(self.with_cls(x), key)
        return self.fc_norm(x[:, 1:].mean(axis=1))

    def classify(self, feature, video=None, key: jax.Array | None = None):
        if self.fusion != "none" and video is None:
            raise ValueError(f"fusion {self.fusion!r} needs the video feature [B, {self.sizes.video_dim}]")
        if self.fusion == "late_mlp":
            return self.late_fusion(jnp.concatenate([feature, video.astype(feature.dtype)], axis=-1), key)
        if self.fusion == "interfuse":
            feature = run_sequential(self.interfuse, jnp.concatenate([feature, video.astype(feature.dtype)], -1), key)
        logits = run_sequential(self.head, feature, None) if self.probe_bn else self.head(feature)
        if self.fusion == "late_sum":
            logits = logits + self.omni_classifier(video.astype(feature.dtype))
        return logits

    def __call__(self, images, video=None, noise=None, *, mask_row_ratio: float = 0.0, mask_col_ratio: float = 0.0,
                 key: jax.Array | None = None):
        k_enc, k_head = (None, None) if key is None else jax.random.split(key)
        feature = self.features(images, noise, mask_row_ratio=mask_row_ratio, mask_col_ratio=mask_col_ratio,
                                key=k_enc)
        return self.classify(feature, video, k_head)
