"""EVI-MAE (IMU-Video-MAE, ECCV 2024): IMU-spectrogram ViT + VideoMAE ViT-S + GIN over four body parts.

Module and attribute names follow the released PyTorch ``EVIMAE`` / ``EVIMAEFT`` state_dicts one to one
(``blocks_a``, ``blocks_video``, ``blocks_u``, ``graph_encoder.layers.0.apply_func.mlp.linears.0`` ...); the
IMU, video and decoder towers are `layers.LayerStack`s, stored with a leading layer axis (``blocks_a/block/...``),
which the torch bridge presents per layer (``blocks_a.3.attn.qkv.weight``).
Facts: mf-zhang/IMU-Video-MAE@78e7666 src/models/{evi_mae.py, gin.py, pos_embed.py}. Token orders, the 768->384 pair
averaging, the closed-form GIN and the masking draw order are those of the released code, so released weights give the
same outputs.
"""

from __future__ import annotations

import dataclasses

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from imujax import patch_layout
from imujax.models import layers
from imujax.models.layers import BatchNorm, Block, LayerNorm, Linear, PatchEmbed, PReLU, VideoBlock
from imujax.models.masking import masking_ids, random_masking


@dataclasses.dataclass(frozen=True)
class EVIMAESizes:
    """Every architecture size. Defaults are the released EVI-MAE model (108,926,725 parameters)."""
    imu_dim: int = 768
    imu_depth: int = 11
    imu_heads: int = 12
    imu_channels: int = 12          # 4 body parts x 3 accelerometer axes
    imu_parts: int = 4
    imu_time: int = 320             # spectrogram frames (target_length)
    imu_freq: int = 128             # spectrogram bins (plot_height)
    patch: int = 16
    video_dim: int = 384
    video_depth: int = 12
    video_heads: int = 6
    num_frames: int = 16
    img_size: int = 224
    tubelet: int = 2
    decoder_dim: int = 192
    decoder_heads: int = 3
    decoder_depth: int = 8          # hard-coded upstream
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    graph_hidden: int = 512         # hard-coded upstream
    graph_layers: int = 2
    graph_dropout: float = 0.2
    graph_mask_ratio: float = 0.5
    remat: bool = True              # IMU blocks keep only weight-matmul outputs for backward (`layers.LayerStack`)

    @property
    def imu_tokens(self) -> int:
        return (self.imu_time // self.patch) * (self.imu_freq // self.patch)

    @property
    def video_tokens(self) -> int:
        return (self.num_frames // self.tubelet) * (self.img_size // self.patch) ** 2

    @property
    def part_channels(self) -> int:
        return self.imu_channels // self.imu_parts


class GINMLP(nnx.Module):
    """GraphMAE ``MLP`` of two Linears with BatchNorm + PReLU between (``linears``/``norms``/``activations``)."""

    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
        self.linears = nnx.List([layers.torch_linear(din, hidden, rngs, ("embed", "mlp")),
                                 layers.torch_linear(hidden, dout, rngs, ("mlp", "embed"))])
        self.norms = nnx.List([BatchNorm(hidden, rngs=rngs)])
        self.activations = nnx.List([PReLU()])

    def __call__(self, x, num_rows: int):
        h = self.activations[0](self.norms[0](self.linears[0](x), num_rows))
        return self.linears[1](h)


class ApplyNodeFunc(nnx.Module):
    """GIN encoder layer body: MLP, then BatchNorm and PReLU."""

    def __init__(self, din: int, hidden: int, *, rngs: nnx.Rngs):
        self.mlp = GINMLP(din, hidden, hidden, rngs=rngs)
        self.norm = BatchNorm(hidden, rngs=rngs)
        self.act = PReLU()

    def __call__(self, x, num_rows: int):
        return self.act(self.norm(self.mlp(x, num_rows), num_rows))


class GINLayer(nnx.Module):
    def __init__(self, apply_func: nnx.Module):
        self.apply_func = apply_func


class GIN(nnx.Module):
    """GIN on the complete 4-node body graph without self loops, in closed form.

    With eps = 0, (1+eps)*h_i + sum_{j->i} h_j is the sum of all node features, the same for every node of a graph,
    so each layer's MLP runs once per graph; BatchNorm still sees PyTorch's 4*B node rows (see BatchNorm.num_rows).
    Feature dropout is per node before each layer, as upstream.
    """

    def __init__(self, funcs: list[nnx.Module], dropout: float):
        self.layers = nnx.List([GINLayer(f) for f in funcs])
        self.dropout = dropout

    def __call__(self, nodes, keys: list[jax.Array] | None):
        """nodes [B, P, D] -> per-graph output [B, D_out] (identical for every node of the graph)."""
        num_parts = nodes.shape[1]
        h = nodes
        for i, layer in enumerate(self.layers):
            if i > 0:
                h = jnp.broadcast_to(h[:, None], (h.shape[0], num_parts, h.shape[-1]))
            h = layers.dropout(h, self.dropout, None if keys is None else keys[i])
            h = layer.apply_func(h.sum(axis=1), num_rows=nodes.shape[0] * num_parts)
        return h


def _gin_keys(key, n):
    return None if key is None else list(jax.random.split(key, n))


class EVIMAEEncoder(nnx.Module):
    """The encoder shared by pretraining (``EVIMAE``) and fine-tuning (``EVIMAEFT``, RevalExo ``EVI_MAE_Encoder``)."""

    def __init__(self, sizes: EVIMAESizes, *, use_graph: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
        s = self.sizes = sizes
        self.use_graph = use_graph
        if s.imu_dim != s.video_dim and s.imu_dim != 2 * s.video_dim:
            raise ValueError(f"EVI-MAE supports imu_dim == video_dim or imu_dim == 2*video_dim (768->384 pair averaging); "
                             f"got imu_dim={s.imu_dim}, video_dim={s.video_dim}")
        normal = nnx.initializers.normal(0.02)
        self.modality_a = nnx.Param(layers.partitioned(normal, (None, None, "embed"))(rngs.params(), (1, 1, s.imu_dim)))
        self.modality_video = nnx.Param(
                layers.partitioned(normal, (None, None, "embed"))(rngs.params(), (1, 1, s.video_dim)))
        self.patch_embed_a = PatchEmbed(s.part_channels * s.patch ** 2, s.imu_dim, dtype=dtype, rngs=rngs)
        self.patch_embed_video = PatchEmbed(3 * s.tubelet * s.patch ** 2, s.video_dim, dtype=dtype, rngs=rngs)
        block = dict(mlp_ratio=s.mlp_ratio, eps=s.norm_eps, dtype=dtype)
        self.blocks_a = layers.LayerStack(lambda r: Block(s.imu_dim, s.imu_heads, qkv_bias=s.qkv_bias, **block, rngs=r),
                                          s.imu_depth, rngs=rngs)
        self.blocks_video = layers.LayerStack(lambda r: VideoBlock(s.video_dim, s.video_heads, **block, rngs=r),
                                              s.video_depth, rngs=rngs)
        self.blocks_u = nnx.List([Block(s.video_dim, s.video_heads, qkv_bias=s.qkv_bias, **block, rngs=rngs)])
        self.norm_a = LayerNorm(s.video_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        self.norm_video = LayerNorm(s.video_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        self.norm = LayerNorm(s.video_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        if use_graph:
            funcs = [ApplyNodeFunc(s.imu_dim if i == 0 else s.graph_hidden, s.graph_hidden, rngs=rngs)
                     for i in range(s.graph_layers)]
            self.graph_encoder = GIN(funcs, s.graph_dropout)
        self.dtype = dtype

    # -- embeddings ------------------------------------------------------------------------------------------------
    # Every entry point takes the IMU as a spectrogram [B, 12, X, Y] or as `patches.imu_patches` vectors
    # [B, L_a, 12*p*p], and the video as a clip [B, 3, T, H, W] or `patches.video_patches` vectors [B, L_v, kt*p*p*3]
    # (what training batches carry: patchifying costs far less in the input pipeline than inside the step).
    def imu_patches(self, imu):
        s = self.sizes
        if imu.ndim == 4:
            if imu.shape[1] != s.imu_channels:
                raise ValueError(f"imu must have {s.imu_channels} channels on axis 1, got shape {imu.shape}")
            tokens = (imu.shape[2] // s.patch) * (imu.shape[3] // s.patch)
            if tokens != s.imu_tokens:
                raise ValueError(f"imu spectrogram {imu.shape[2:]} gives {tokens} patches; the model expects "
                                 f"{s.imu_tokens} ({s.imu_time}x{s.imu_freq} with patch {s.patch})")
            imu = patch_layout.imu_patches(imu, s.patch)
        if imu.shape[1:] != (s.imu_tokens, s.imu_channels * s.patch ** 2):
            raise ValueError(f"imu must be [B, {s.imu_channels}, {s.imu_time}, {s.imu_freq}] or patches "
                             f"[B, {s.imu_tokens}, {s.imu_channels * s.patch ** 2}], got {imu.shape}")
        return imu

    def video_patches(self, video):
        s = self.sizes
        if video.ndim == 5:
            if video.shape[1:] != (3, s.num_frames, s.img_size, s.img_size):
                raise ValueError(f"video must be [B, 3, {s.num_frames}, {s.img_size}, {s.img_size}], got {video.shape}")
            video = patch_layout.video_patches(video, s.tubelet, s.patch)
        if video.shape[1:] != (s.video_tokens, 3 * s.tubelet * s.patch ** 2):
            raise ValueError(f"video must be [B, 3, {s.num_frames}, {s.img_size}, {s.img_size}] or patches "
                             f"[B, {s.video_tokens}, {3 * s.tubelet * s.patch ** 2}], got {video.shape}")
        return video

    def embed_imu_parts(self, imu):
        """imu -> per-part tokens [B, P, L_a, D_a] (batch-major, see `imu_streams`).

        Upstream swaps the last two axes before a 16x16 conv, so the patch grid runs row-major over (Y, X): with the
        pretraining layout (time=320, freq=128) the token index is f*20 + t. A part's patch is its (c, kh, kw) slice.
        """
        s = self.sizes
        parts = einops.rearrange(self.imu_patches(imu), "b l (n k) -> b n l k", n=s.imu_parts)
        tokens = self.patch_embed_a(parts.astype(self.dtype))
        pos = layers.sincos_table(s.imu_tokens, s.imu_dim)
        return tokens + pos.astype(tokens.dtype) + self.modality_a[...].astype(tokens.dtype)

    def embed_video(self, video, keep=None):
        """video -> tokens [B, L_v, D_v] in (t, h, w) order, or only the tokens ``keep`` [B, K] names (the MAE
        encoder's visible ones: embedding only those is the same math at a tenth of the cost)."""
        s = self.sizes
        patches = self.video_patches(video)
        pos = layers.sincos_table(s.video_tokens, s.video_dim)[0]
        if keep is not None:
            patches = jnp.take_along_axis(patches, keep[..., None], axis=1)
            pos = jnp.asarray(pos)[keep]
        tokens = self.patch_embed_video(patches.astype(self.dtype), channels_last=3)
        return tokens + pos.astype(tokens.dtype) + self.modality_video[...].astype(tokens.dtype)

    # -- towers ----------------------------------------------------------------------------------------------------
    def run_imu_blocks(self, *streams):
        """Each stream [N, L, D_a] through all IMU blocks, all in one scan."""
        return self.blocks_a(streams, remat=self.sizes.remat)

    def run_video_blocks(self, x):
        (x,) = self.blocks_video((x,))
        return x

    def to_video_width(self, x):
        """768 -> 384 by averaging adjacent feature pairs (F.avg_pool1d over features); identity when widths agree."""
        if self.sizes.imu_dim == self.sizes.video_dim:
            return x
        return x.reshape(*x.shape[:-1], self.sizes.video_dim, 2).mean(axis=-1)

    def imu_streams(self, parts):
        """parts [B, P, L, D] -> every part on its own (the graph nodes' input) and the part mean (the IMU token
        stream), shaped [B*P, L, D] and [B, L, D] for `run_imu_blocks`.

        Batch-major, so each device's rows of [B*P] are the parts of its own examples: a part-major [P*B] split over
        the batch devices mixed parts and examples per device, and XLA then all-gathered the global-batch [P, B, L, D]
        embeddings and their gradient for the patch-embed kernel gradient (480 MiB per device at 256 devices)."""
        return parts.reshape(-1, *parts.shape[2:]), parts.mean(axis=1)

    @staticmethod
    def graph_nodes(encoded_parts, num_parts: int):
        """Encoded parts [B*P, L, D] -> node features [B, P, D] (each part's token mean)."""
        return encoded_parts.mean(axis=1).reshape(-1, num_parts, encoded_parts.shape[-1])

    def encode_multimodal(self, imu, video, dropout_key=None):
        """Fine-tune ``multimodal`` forward: [B, D_v + 512] = pooled joint tokens concatenated with the graph feature."""
        parts = self.embed_imu_parts(imu)
        all_parts, part_mean = self.imu_streams(parts)
        if self.use_graph:
            encoded_parts, a = self.run_imu_blocks(all_parts, part_mean)
        else:
            (a,) = self.run_imu_blocks(part_mean)
        a = self.to_video_width(a)
        v = self.run_video_blocks(self.embed_video(video))
        x = self.norm(self.blocks_u[0](jnp.concatenate([a, v], axis=1)))
        pooled = x.mean(axis=1)
        if not self.use_graph:
            return pooled
        graph = self.graph_encoder(self.graph_nodes(encoded_parts, parts.shape[1]),
                                   _gin_keys(dropout_key, len(self.graph_encoder.layers)))
        return jnp.concatenate([pooled, graph.astype(pooled.dtype)], axis=-1)


class EVIMAE(EVIMAEEncoder):
    """The pretraining model: masked IMU/video encoders, joint block, contrastive branch, decoder and graph MAE."""

    def __init__(self, sizes: EVIMAESizes = EVIMAESizes(), *, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(sizes, use_graph=True, dtype=dtype, rngs=rngs)
        s = sizes
        normal = nnx.initializers.normal(0.02)
        tok = lambda d: nnx.Param(layers.partitioned(normal, (None, None, "embed"))(rngs.params(), (1, 1, d)))
        self.mask_token = tok(s.decoder_dim)
        self.decoder_modality_a = tok(s.decoder_dim)
        self.decoder_modality_video = tok(s.decoder_dim)
        self.decoder_embed = Linear(s.video_dim, s.decoder_dim, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.decoder_blocks = layers.LayerStack(
                lambda r: Block(s.decoder_dim, s.decoder_heads, mlp_ratio=s.mlp_ratio, qkv_bias=s.qkv_bias,
                                eps=s.norm_eps, dtype=dtype, rngs=r), s.decoder_depth, rngs=rngs)
        self.decoder_norm = LayerNorm(s.decoder_dim, eps=s.norm_eps, dtype=dtype, rngs=rngs)
        self.decoder_pred_a = Linear(s.decoder_dim, s.patch ** 2 * s.imu_channels, ("embed", "patch"),
                                     dtype=dtype, rngs=rngs)
        self.decoder_pred_video = Linear(s.decoder_dim, s.tubelet * s.patch ** 2 * 3, ("embed", "patch"),
                                         dtype=dtype, rngs=rngs)
        self.graph_enc_mask_token = nnx.Param(jnp.zeros((1, s.imu_dim), jnp.float32))
        self.graph_decoder = GIN([GINMLP(s.graph_hidden, s.graph_hidden, s.imu_dim, rngs=rngs)], s.graph_dropout)
        self.graph_encoder_to_decoder = layers.torch_linear(s.graph_hidden, s.graph_hidden, rngs, ("mlp", "embed"),
                                                              use_bias=False)

    def draw_masks(self, key, batch: int) -> dict[str, jax.Array]:
        """The three random draws of one forward, in upstream order: node permutation, IMU noise, video noise."""
        k_nodes, k_imu, k_video = jax.random.split(key, 3)
        s = self.sizes
        return {"node_perm": jax.random.permutation(k_nodes, batch * s.imu_parts),
                "imu_noise": jax.random.uniform(k_imu, (batch, s.imu_tokens)),
                "video_noise": jax.random.uniform(k_video, (batch, s.video_tokens))}

    def graph_mae(self, nodes, node_perm, dropout_key):
        """GraphMAE on body-part nodes [B, P, D]: returns (reconstruction [B, P, D], masked-node indicator [B, P])."""
        batch, num_parts, _ = nodes.shape
        num_mask = int(self.sizes.graph_mask_ratio * batch * num_parts)
        masked = jnp.zeros(batch * num_parts, bool).at[node_perm[:num_mask]].set(True).reshape(batch, num_parts)
        token = self.graph_enc_mask_token[...].astype(nodes.dtype)
        enc_in = jnp.where(masked[..., None], token, nodes)
        k_enc, k_dec = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        enc = self.graph_encoder(enc_in, _gin_keys(k_enc, len(self.graph_encoder.layers)))
        rep = self.graph_encoder_to_decoder(enc)
        rep = jnp.where(masked[..., None], 0.0, jnp.broadcast_to(rep[:, None], (batch, num_parts, rep.shape[-1])))
        recon = self.graph_decoder(rep, _gin_keys(k_dec, 1))
        return jnp.broadcast_to(recon[:, None], nodes.shape), masked

    def __call__(self, imu, video, *, masks: dict[str, jax.Array], imu_mask_ratio: float = 0.75,
                 video_mask_ratio: float = 0.9, dropout_key: jax.Array | None = None) -> dict[str, jax.Array]:
        """Pretraining forward. ``masks`` holds the draws of ``draw_masks`` (explicit, so runs are reproducible and
        the PyTorch comparison can feed the same ones). Returns the predictions, targets and pieces the losses need;
        IMU patch vectors are in the `patches.imu_patches` order (`patches.imu_vectors_from_upstream` maps upstream's)."""
        imu, video = self.imu_patches(imu), self.video_patches(video)
        parts = self.embed_imu_parts(imu)

        all_parts, part_mean = self.imu_streams(parts)
        a, mask_a, restore_a = random_masking(part_mean, masks["imu_noise"], imu_mask_ratio)
        encoded_parts, a = self.run_imu_blocks(all_parts, a)  # the graph nodes' unmasked pass and the MAE pass
        nodes = self.graph_nodes(encoded_parts, parts.shape[1])
        graph_recon, graph_masked = self.graph_mae(nodes, masks["node_perm"], dropout_key)

        keep_v, mask_v, restore_v = masking_ids(masks["video_noise"], video_mask_ratio)
        a = self.to_video_width(a)
        v = self.run_video_blocks(self.embed_video(video, keep=keep_v))

        joint = self.norm(self.blocks_u[0](jnp.concatenate([a, v], axis=1)))
        contrast_tokens_imu = self.norm_a(self.blocks_u[0](a, "a"))
        contrast_tokens_video = self.norm_video(self.blocks_u[0](v, "v"))

        pred_a, pred_v = self.decode(joint, a.shape[1], restore_a, restore_v)
        return {"pred_imu": pred_a, "pred_video": pred_v, "mask_imu": mask_a, "mask_video": mask_v,
                "target_imu": imu, "target_video": video,
                "contrast_imu": contrast_tokens_imu.mean(axis=1), "contrast_video": contrast_tokens_video.mean(axis=1),
                "graph_nodes": nodes, "graph_recon": graph_recon, "graph_masked": graph_masked,
                "latent_imu": a, "latent_video": v,
                # what upstream's forward_encoder returns besides the masks: the joint latent (visible tokens,
                # ids_shuffle order) and the contrastive tokens before pooling (unused by the loss: compiled away)
                "joint": joint, "contrast_tokens_imu": contrast_tokens_imu,
                "contrast_tokens_video": contrast_tokens_video}

    def decode(self, joint, num_kept_a: int, restore_a, restore_v):
        s = self.sizes
        x = self.decoder_embed(joint)
        batch, dim = x.shape[0], x.shape[-1]

        def unshuffle(kept, restore, total):
            fill = jnp.broadcast_to(self.mask_token[...].astype(x.dtype), (batch, total - kept.shape[1], dim))
            return jnp.take_along_axis(jnp.concatenate([kept, fill], axis=1), restore[..., None], axis=1)

        xa = unshuffle(x[:, :num_kept_a], restore_a, s.imu_tokens) + self.decoder_modality_a[...].astype(x.dtype)
        xv = unshuffle(x[:, num_kept_a:], restore_v, s.video_tokens) + self.decoder_modality_video[...].astype(x.dtype)
        pos = jnp.concatenate([layers.sincos_table(s.imu_tokens, dim), layers.sincos_table(s.video_tokens, dim)], axis=1)
        x = jnp.concatenate([xa, xv], axis=1) + pos.astype(x.dtype)
        (x,) = self.decoder_blocks((x,))
        x = self.decoder_norm(x)
        pred_video = layers.linear_with(self.decoder_pred_video, x[:, s.imu_tokens:], wide_output=True)
        return self._predict_imu(x[:, :s.imu_tokens]), pred_video

    def _predict_imu(self, x):
        """``decoder_pred_a`` emits upstream's (y, x, channel) vectors; its weight columns are permuted instead so the
        output is in the input's `patches.imu_patches` order and the target needs no transpose."""
        linear, channels = self.decoder_pred_a, self.sizes.imu_channels
        return layers.linear_with(linear, x, patch_layout.imu_vectors_from_upstream(linear.kernel[...], channels),
                                  patch_layout.imu_vectors_from_upstream(linear.bias[...], channels), wide_output=True)

    def encode_unmasked(self, imu, video):
        """Unmasked encoder outputs in natural token order (``latent_imu`` [B, L_a, D_v], ``latent_video``)."""
        (a,) = self.run_imu_blocks(self.embed_imu_parts(imu).mean(axis=1))
        a = self.to_video_width(a)
        v = self.run_video_blocks(self.embed_video(video))
        return a, v

    def encode_unmasked_joint(self, imu, video, node_perm=None):
        """Upstream's ``forward_encoder`` with mask ratios (0, 0), tokens put back in natural order: the encoder
        outputs, the joint latent of all L_a + L_v tokens after ``blocks_u`` and ``norm`` and, given the call's node
        permutation, the graph MAE pieces (reconstruction, original nodes, masked indicator) for its SCE loss."""
        parts = self.embed_imu_parts(imu)
        all_parts, part_mean = self.imu_streams(parts)
        if node_perm is None:
            (a,) = self.run_imu_blocks(part_mean)
        else:
            encoded_parts, a = self.run_imu_blocks(all_parts, part_mean)
        a = self.to_video_width(a)
        v = self.run_video_blocks(self.embed_video(video))
        out = {"latent_imu": a, "latent_video": v,
               "joint": self.norm(self.blocks_u[0](jnp.concatenate([a, v], axis=1)))}
        if node_perm is not None:
            nodes = self.graph_nodes(encoded_parts, parts.shape[1])
            out["graph_recon"], out["graph_masked"] = self.graph_mae(nodes, node_perm, None)
            out["graph_nodes"] = nodes
        return out


class EVIMAEFT(EVIMAEEncoder):
    """Fine-tune model (``multimodal`` mode): LayerNorm(D_v + 512) -> Linear(n_class) on the fused feature."""

    def __init__(self, sizes: EVIMAESizes, num_classes: int, *, use_graph: bool = True, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        super().__init__(sizes, use_graph=use_graph, dtype=dtype, rngs=rngs)
        width = sizes.video_dim + (sizes.graph_hidden if use_graph else 0)
        self.mlp_head = nnx.List([LayerNorm(width, eps=sizes.norm_eps, dtype=dtype, rngs=rngs),
                                  Linear(width, num_classes, ("embed", "vocab"), dtype=dtype, rngs=rngs)])

    def __call__(self, imu, video, dropout_key=None):
        return self.mlp_head[1](self.mlp_head[0](self.encode_multimodal(imu, video, dropout_key)))
