"""PyTorch references for the EVI-MAE family with the upstream state_dict layouts (written from the spec).

Follows shared/specs/evi_mae.md §1 (EVIMAE pretraining, EVIMAEFT ``multimodal``) and §1.6 (RevalExo
``EVI_MAE_Fusion`` with its ``MultiHorizonClassifier``). Attention/MLP/Block are timm-0.4.5-style modules written here.
DGL is replaced by explicit message passing: every GIN layer sums the features of the in-neighbours along an edge list
of the complete directed 4-node graph (no self loops), so the closed form used by the JAX port is checked against the
general rule rather than against itself. Random draws (node permutation, IMU and video noise) are explicit arguments.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class RefSizes:
    """Architecture sizes; the defaults are the released model."""
    imu_dim: int = 768
    imu_depth: int = 11
    imu_heads: int = 12
    imu_channels: int = 12
    imu_time: int = 320
    imu_freq: int = 128
    patch: int = 16
    video_dim: int = 384
    video_depth: int = 12
    video_heads: int = 6
    num_frames: int = 16
    img_size: int = 224
    tubelet: int = 2
    decoder_dim: int = 192
    decoder_heads: int = 3
    decoder_depth: int = 8
    mlp_ratio: float = 4.0
    graph_hidden: int = 512
    graph_dropout: float = 0.2
    graph_mask_ratio: float = 0.5

    @property
    def imu_tokens(self) -> int:
        return (self.imu_time // self.patch) * (self.imu_freq // self.patch)

    @property
    def video_tokens(self) -> int:
        return (self.num_frames // self.tubelet) * (self.img_size // self.patch) ** 2


NUM_PARTS = 4


def sinusoid_table(n: int, d: int) -> torch.Tensor:
    """VideoMAE 1-D table, computed in float64, stored as float32 [1, n, d]."""
    table = np.arange(n, dtype=np.float64)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)


# -- timm 0.4.5-style transformer pieces ---------------------------------------------------------------------------
class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm block with joint / 'a' / 'v' LayerNorm pairs sharing attention and MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm1_a = nn.LayerNorm(dim)
        self.norm1_v = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.norm2_a = nn.LayerNorm(dim)
        self.norm2_v = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, modality: str | None = None):
        n1, n2 = {None: (self.norm1, self.norm2), "a": (self.norm1_a, self.norm2_a),
                  "v": (self.norm1_v, self.norm2_v)}[modality]
        x = x + self.attn(n1(x))
        return x + self.mlp(n2(x))


class VideoAttention(nn.Module):
    """VideoMAE attention: bias-free qkv plus q_bias / v_bias, k without bias; q scaled before the product."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class VideoBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = VideoAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class PatchEmbedVideo(nn.Module):
    def __init__(self, dim: int, patch: int, tubelet: int, img_size: int):
        super().__init__()
        self.img_size = img_size
        self.proj = nn.Conv3d(3, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, x):
        assert x.shape[-2:] == (self.img_size, self.img_size), x.shape
        return self.proj(x).flatten(2).transpose(1, 2)


# -- GraphMAE-style GIN with explicit message passing --------------------------------------------------------------
def complete_graph_edges(num_graphs: int, num_nodes: int = NUM_PARTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge lists (src, dst) of a batch of complete directed graphs without self loops, node id = nodes*g + i."""
    src, dst = [], []
    for g in range(num_graphs):
        for i in range(num_nodes):
            for j in range(num_nodes):
                if i != j:
                    src.append(g * num_nodes + i)
                    dst.append(g * num_nodes + j)
    return torch.tensor(src), torch.tensor(dst)


class GraphMLP(nn.Module):
    """Two Linears with BatchNorm1d + PReLU between (``linears``, ``norms``, ``activations``)."""

    def __init__(self, din: int, hidden: int, dout: int):
        super().__init__()
        self.output_dim = dout
        self.linears = nn.ModuleList([nn.Linear(din, hidden), nn.Linear(hidden, dout)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(hidden)])
        self.activations = nn.ModuleList([nn.PReLU()])

    def forward(self, x):
        return self.linears[1](self.activations[0](self.norms[0](self.linears[0](x))))


class ApplyNodeFunc(nn.Module):
    def __init__(self, mlp: GraphMLP):
        super().__init__()
        self.mlp = mlp
        self.norm = nn.BatchNorm1d(mlp.output_dim)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.norm(self.mlp(x)))


class GINConv(nn.Module):
    """h'_i = apply_func((1 + eps) h_i + sum over edges j->i of h_j); eps is a buffer (not learnt)."""

    def __init__(self, apply_func: nn.Module):
        super().__init__()
        self.apply_func = apply_func
        self.register_buffer("eps", torch.zeros(1))
        self.register_buffer("res_fc", None)

    def forward(self, edges, h):
        src, dst = edges
        neigh = torch.zeros_like(h).index_add_(0, dst, h[src])
        return self.apply_func((1 + self.eps) * h + neigh)


class GIN(nn.Module):
    def __init__(self, funcs: list[nn.Module], dropout: float):
        super().__init__()
        self.layers = nn.ModuleList([GINConv(f) for f in funcs])
        self.dropout = dropout
        self.head = nn.Identity()

    def forward(self, edges, h):
        for layer in self.layers:
            h = layer(edges, F.dropout(h, p=self.dropout, training=self.training))
        return self.head(h)


def graph_encoder(s: RefSizes) -> GIN:
    return GIN([ApplyNodeFunc(GraphMLP(s.imu_dim, s.graph_hidden, s.graph_hidden)),
                ApplyNodeFunc(GraphMLP(s.graph_hidden, s.graph_hidden, s.graph_hidden))], s.graph_dropout)


# -- encoder shared by the three models ----------------------------------------------------------------------------
class Encoder(nn.Module):
    """Module attributes of EVIMAE / EVIMAEFT / EVI_MAE_Encoder in upstream registration order (no head)."""

    def __init__(self, s: RefSizes):
        super().__init__()
        self.s = s
        self.patch_embed_a = PatchEmbed(s.imu_dim, s.patch, s.imu_channels // NUM_PARTS)
        self.patch_embed_video = PatchEmbedVideo(s.video_dim, s.patch, s.tubelet, s.img_size)
        self.modality_a = nn.Parameter(torch.zeros(1, 1, s.imu_dim))
        self.modality_video = nn.Parameter(torch.zeros(1, 1, s.video_dim))
        self.pos_embed_a = sinusoid_table(s.imu_tokens, s.imu_dim)  # plain attributes: not in the state_dict
        self.pos_embed_video = sinusoid_table(s.video_tokens, s.video_dim)
        self.blocks_a = nn.ModuleList([Block(s.imu_dim, s.imu_heads, s.mlp_ratio) for _ in range(s.imu_depth)])
        self.blocks_video = nn.ModuleList([VideoBlock(s.video_dim, s.video_heads, s.mlp_ratio)
                                           for _ in range(s.video_depth)])
        self.blocks_u = nn.ModuleList([Block(s.video_dim, s.video_heads, s.mlp_ratio)])
        self.norm_a = nn.LayerNorm(s.video_dim)
        self.norm_video = nn.LayerNorm(s.video_dim)
        self.norm = nn.LayerNorm(s.video_dim)

    def embed_parts(self, a):
        """a [B, 12, X, Y] -> [4B, L_a, D_a] part-major (all left_arm samples first)."""
        c = self.s.imu_channels // NUM_PARTS
        parts = torch.cat([a[:, i * c:(i + 1) * c] for i in range(NUM_PARTS)], dim=0).transpose(2, 3)
        return self.patch_embed_a(parts) + self.pos_embed_a + self.modality_a

    def embed_video(self, v):
        return self.patch_embed_video(v) + self.pos_embed_video + self.modality_video

    def imu_blocks(self, x):
        for blk in self.blocks_a:
            x = blk(x)
        return x

    def video_blocks(self, x):
        for blk in self.blocks_video:
            x = blk(x)
        return x

    def align(self, x):
        if self.s.imu_dim == self.s.video_dim:
            return x
        return F.avg_pool1d(x, kernel_size=2, stride=2)

    def node_features(self, parts):
        """[4B, L, D] part-major -> [4B, D] in graph order (node = 4*b + part): part token means after all blocks_a."""
        batch = parts.shape[0] // NUM_PARTS
        feats = self.imu_blocks(parts).mean(dim=1)
        return feats.reshape(NUM_PARTS, batch, -1).transpose(0, 1).reshape(NUM_PARTS * batch, -1)

    def part_mean(self, parts):
        return parts.reshape(NUM_PARTS, parts.shape[0] // NUM_PARTS, *parts.shape[1:]).mean(dim=0)

    def multimodal_features(self, a, v):
        """EVIMAEFT ``multimodal``: mean over the joint tokens (after ``norm``) concatenated with the pooled graph."""
        parts = self.embed_parts(a)
        batch = a.shape[0]
        xa = self.align(self.imu_blocks(self.part_mean(parts)))
        xv = self.video_blocks(self.embed_video(v))
        x = self.norm(self.blocks_u[0](torch.cat([xa, xv], dim=1)))
        nodes = self.node_features(parts)
        g = self.graph_encoder(complete_graph_edges(batch), nodes)
        pooled_graph = g.reshape(batch, NUM_PARTS, -1).mean(dim=1)  # DGL AvgPooling per graph
        return torch.cat([x.mean(dim=1), pooled_graph], dim=1)


class EVIMAEFT(Encoder):
    """Fine-tune model, graph on, ``multimodal`` mode: LN(D_v + 512) -> Linear(n_class)."""

    def __init__(self, s: RefSizes, num_classes: int):
        super().__init__(s)
        self.graph_encoder = graph_encoder(s)
        width = s.video_dim + s.graph_hidden
        self.mlp_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))

    def forward(self, a, v):
        return self.mlp_head(self.multimodal_features(a, v))


class MultiHorizonClassifier(nn.Module):
    """Shared Linear + ReLU + Dropout(0.5), then one Linear head per prediction horizon; with one horizon or without
    shared layers each head is Sequential(Dropout, Linear) instead (keys ``heads.k.1.*``)."""

    def __init__(self, dim: int, num_classes: int, num_horizons: int = 6, shared_layers: bool = True):
        super().__init__()
        self.shared = shared_layers and num_horizons > 1
        if self.shared:
            self.shared_net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(0.5))
            self.heads = nn.ModuleList([nn.Linear(dim, num_classes) for _ in range(num_horizons)])
        else:
            self.heads = nn.ModuleList([nn.Sequential(nn.Dropout(0.5), nn.Linear(dim, num_classes))
                                        for _ in range(num_horizons)])

    def forward(self, x):
        h = self.shared_net(x) if self.shared else x
        return [head(h) for head in self.heads]


class RevalExoEncoder(Encoder):
    def __init__(self, s: RefSizes, feature_dim: int):
        super().__init__(s)
        self.graph_encoder = graph_encoder(s)
        width = s.video_dim + s.graph_hidden
        self.mlp_head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, feature_dim))

    def forward(self, a, v):
        return self.mlp_head(self.multimodal_features(a, v))


class EVIMAEFusion(nn.Module):
    """RevalExo ``EVI_MAE_Fusion``: IMU in (freq, time) layout [B, 12, F, T]; returns (list of logits, features)."""

    def __init__(self, s: RefSizes, num_classes: int, feature_dim: int = 768, num_horizons: int = 6,
                 shared_layers: bool = True):
        super().__init__()
        self.encoder = RevalExoEncoder(s, feature_dim)
        self.classifier = MultiHorizonClassifier(feature_dim, num_classes, num_horizons, shared_layers)

    def forward(self, raw_imu, video):
        features = self.encoder(raw_imu, video)
        return self.classifier(features), features


class EVIMAE(Encoder):
    """Pretraining model. ``forward`` takes the three random draws explicitly and returns the loss pieces."""

    def __init__(self, s: RefSizes):
        super().__init__(s)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, s.decoder_dim))
        self.decoder_modality_a = nn.Parameter(torch.zeros(1, 1, s.decoder_dim))
        self.decoder_modality_video = nn.Parameter(torch.zeros(1, 1, s.decoder_dim))
        self.decoder_pos_embed_a = sinusoid_table(s.imu_tokens, s.decoder_dim)
        self.decoder_pos_embed_video = sinusoid_table(s.video_tokens, s.decoder_dim)
        self.decoder_embed = nn.Linear(s.video_dim, s.decoder_dim)
        self.decoder_blocks = nn.ModuleList([Block(s.decoder_dim, s.decoder_heads, s.mlp_ratio)
                                             for _ in range(s.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(s.decoder_dim)
        self.decoder_pred_a = nn.Linear(s.decoder_dim, s.patch ** 2 * s.imu_channels)
        self.decoder_pred_video = nn.Linear(s.decoder_dim, s.tubelet * s.patch ** 2 * 3)
        self.graph_encoder = graph_encoder(s)
        self.graph_decoder = GIN([GraphMLP(s.graph_hidden, s.graph_hidden, s.imu_dim)], s.graph_dropout)
        self.graph_encoder_to_decoder = nn.Linear(s.graph_hidden, s.graph_hidden, bias=False)
        self.graph_enc_mask_token = nn.Parameter(torch.zeros(1, s.imu_dim))

    @staticmethod
    def random_masking(x, noise, ratio: float):
        n, length, d = x.shape
        keep = int(length * (1 - ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        kept = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(n, length)
        mask[:, :keep] = 0
        return kept, torch.gather(mask, 1, ids_restore), ids_restore

    def graph_mae(self, nodes, node_perm, batch: int):
        """GraphMAE: mask nodes, encode, map, zero masked rows, decode; returns (recon [4B, D], masked ids)."""
        edges = complete_graph_edges(batch)
        num_mask = int(self.s.graph_mask_ratio * nodes.shape[0])
        mask_nodes = node_perm[:num_mask]
        x = nodes.clone()
        x[mask_nodes] = 0.0
        x[mask_nodes] += self.graph_enc_mask_token
        rep = self.graph_encoder_to_decoder(self.graph_encoder(edges, x))
        rep[mask_nodes] = 0
        return self.graph_decoder(edges, rep), mask_nodes

    def encode(self, a, v, node_perm, noise_a, noise_v, ratio_a: float, ratio_v: float) -> dict:
        """Everything upstream's ``forward_encoder`` computes (graph MAE first, then the masked MAE encoders)."""
        batch = a.shape[0]
        parts = self.embed_parts(a)
        xv = self.embed_video(v)
        nodes = self.node_features(parts)
        recon, mask_nodes = self.graph_mae(nodes, node_perm, batch)
        g_loss = (1 - (F.normalize(recon[mask_nodes], dim=-1) * F.normalize(nodes[mask_nodes], dim=-1)).sum(-1)).mean()

        xa, mask_a, restore_a = self.random_masking(self.part_mean(parts), noise_a, ratio_a)
        xv, mask_v, restore_v = self.random_masking(xv, noise_v, ratio_v)
        xa = self.align(self.imu_blocks(xa))
        xv = self.video_blocks(xv)
        joint = self.norm(self.blocks_u[0](torch.cat([xa, xv], dim=1)))
        ca = self.norm_a(self.blocks_u[0](xa, "a"))
        cv = self.norm_video(self.blocks_u[0](xv, "v"))
        return {"joint": joint, "mask_a": mask_a, "restore_a": restore_a, "mask_v": mask_v, "restore_v": restore_v,
                "ca": ca, "cv": cv, "g_loss": g_loss, "nodes": nodes, "recon": recon, "mask_nodes": mask_nodes,
                "xa": xa, "xv": xv}

    def forward_encoder(self, a, v, node_perm, noise_a, noise_v, ratio_a: float, ratio_v: float):
        """Upstream's return tuple: (x, mask_a, ids_restore_a, mask_v, ids_restore_v, ca, cv, g_loss)."""
        e = self.encode(a, v, node_perm, noise_a, noise_v, ratio_a, ratio_v)
        return e["joint"], e["mask_a"], e["restore_a"], e["mask_v"], e["restore_v"], e["ca"], e["cv"], e["g_loss"]

    def forward_decoder(self, x, mask_a, restore_a, mask_v, restore_v):
        """Mask tokens appended per modality (counts from the first sample's mask), unshuffled, decoded."""
        s = self.s
        x = self.decoder_embed(x)
        batch, dim = x.shape[0], x.shape[-1]
        masked_a, masked_v = int(mask_a[0].sum()), int(mask_v[0].sum())
        keep_a = s.imu_tokens - masked_a
        fill_a = self.mask_token.repeat(batch, masked_a, 1)
        fill_v = self.mask_token.repeat(batch, masked_v, 1)
        da = torch.gather(torch.cat([x[:, :keep_a], fill_a], 1), 1, restore_a[..., None].expand(-1, -1, dim))
        dv = torch.gather(torch.cat([x[:, keep_a:], fill_v], 1), 1, restore_v[..., None].expand(-1, -1, dim))
        x = torch.cat([da, dv], dim=1) + torch.cat([self.decoder_pos_embed_a, self.decoder_pos_embed_video], dim=1)
        x = torch.cat([x[:, :s.imu_tokens] + self.decoder_modality_a, x[:, s.imu_tokens:] + self.decoder_modality_video],
                      dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred_a(x[:, :s.imu_tokens]), self.decoder_pred_video(x[:, s.imu_tokens:])

    def forward_mae_loss(self, inputs, pred, mask, modality: str, norm_pix_loss: bool = True):
        target = self.targets(inputs, None)[0] if modality == "a" else self.targets(None, inputs)[1]
        return self.masked_mse(pred, target, mask, norm_pix_loss)

    @staticmethod
    def forward_contrastive(imu_rep, video_rep):
        """One direction (video -> IMU), tau 0.05; c_acc = fraction of video columns whose argmax row matches."""
        total = F.normalize(imu_rep, dim=-1) @ F.normalize(video_rep, dim=-1).T / 0.05
        nce = -torch.mean(torch.diag(F.log_softmax(total, dim=0)))
        c_acc = (total.argmax(dim=0) == torch.arange(total.shape[0])).sum() / total.shape[0]
        return nce, c_acc

    def released_forward(self, a, v, node_perm, noise_a, noise_v, ratio_a: float = 0.75, ratio_v: float = 0.9,
                         mae_loss_weight: float = 1.0, contrast_loss_weight: float = 0.01, norm_pix_loss: bool = True):
        """Upstream ``forward``'s return tuple: (loss, loss_mae, loss_mae_a, loss_mae_v, loss_c, mask_a, mask_v,
        c_acc, loss_g), the weights applied as upstream (the graph weight 10 is hard-coded)."""
        x, mask_a, restore_a, mask_v, restore_v, ca, cv, loss_g = self.forward_encoder(a, v, node_perm, noise_a,
                                                                                       noise_v, ratio_a, ratio_v)
        zero = torch.tensor(0.0)
        if mae_loss_weight != 0:
            pred_a, pred_v = self.forward_decoder(x, mask_a, restore_a, mask_v, restore_v)
            loss_mae_a = self.forward_mae_loss(a, pred_a, mask_a, "a", norm_pix_loss)
            loss_mae_v = self.forward_mae_loss(v, pred_v, mask_v, "v", norm_pix_loss)
            loss_mae = mae_loss_weight * (loss_mae_a + loss_mae_v)
        else:
            loss_mae_a = loss_mae_v = loss_mae = zero
        if contrast_loss_weight != 0:
            loss_c, c_acc = self.forward_contrastive(ca.mean(dim=1), cv.mean(dim=1))
            loss_c = contrast_loss_weight * loss_c
        else:
            loss_c = c_acc = zero
        loss = loss_mae + loss_c + loss_g * 10
        return loss, loss_mae, loss_mae_a, loss_mae_v, loss_c, mask_a, mask_v, c_acc, loss_g

    def forward(self, a, v, node_perm, noise_a, noise_v, ratio_a: float = 0.75, ratio_v: float = 0.9):
        """All pieces of one pretraining forward as a dict (the imujax model's outputs, for the step tests)."""
        e = self.encode(a, v, node_perm, noise_a, noise_v, ratio_a, ratio_v)
        pred_a, pred_v = self.forward_decoder(e["joint"], e["mask_a"], e["restore_a"], e["mask_v"], e["restore_v"])
        target_a, target_v = self.targets(a, v)
        mae_a = self.masked_mse(pred_a, target_a, e["mask_a"])
        mae_v = self.masked_mse(pred_v, target_v, e["mask_v"])
        c_loss, _ = self.forward_contrastive(e["ca"].mean(dim=1), e["cv"].mean(dim=1))
        return {"target_imu": target_a, "target_video": target_v, "mae_imu": mae_a, "mae_video": mae_v,
                "pred_imu": pred_a, "pred_video": pred_v, "mask_imu": e["mask_a"], "mask_video": e["mask_v"],
                "contrast_imu": e["ca"].mean(dim=1), "contrast_video": e["cv"].mean(dim=1), "graph_nodes": e["nodes"],
                "graph_recon": e["recon"], "graph_mask_nodes": e["mask_nodes"], "latent_imu": e["xa"],
                "latent_video": e["xv"], "g_loss": e["g_loss"], "c_loss": c_loss}

    def targets(self, a, v):
        """MAE targets (either may be None): IMU transposed to (freq, time), patch vectors (p, q, channel); video
        (p0, p1, p2, c)."""
        p, t = self.s.patch, self.s.tubelet
        x = y = None
        if a is not None:
            x = a.transpose(2, 3)
            b, c, h, w = x.shape
            x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p),
                                                                                        p * p * c)
        if v is not None:
            b, c, f, hh, ww = v.shape
            y = v.reshape(b, c, f // t, t, hh // p, p, ww // p, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
            y = y.reshape(b, (f // t) * (hh // p) * (ww // p), t * p * p * c)
        return x, y

    @staticmethod
    def masked_mse(pred, target, mask, norm_pix_loss: bool = True):
        """norm_pix_loss MSE: per-patch (x - mean) / sqrt(unbiased var + 1e-6), mean over masked tokens only."""
        if norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return (((pred - target) ** 2).mean(dim=-1) * mask).sum() / mask.sum()

    def encode_unmasked(self, a, v):
        """Encoder outputs without masking in natural token order (IMU already reduced to D_v)."""
        xa = self.align(self.imu_blocks(self.part_mean(self.embed_parts(a))))
        return xa, self.video_blocks(self.embed_video(v))


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights for parity with O(1) activations: weights ~ N(0, 1/fan_in), norms ~ 1 + N(0, 0.1), random
    BatchNorm running statistics (positive variances) and counters; GIN ``eps`` stays 0 as upstream."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            randn = torch.randn(tensor.shape, generator=gen)
            if name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(0, 1000, (1,), generator=gen)))
            elif name.endswith(".eps"):
                continue
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("activations.0.weight") or name.endswith("act.weight"):
                tensor.copy_(0.25 + 0.1 * randn)  # PReLU slope
            elif tensor.ndim >= 2 and "token" not in name and "modality" not in name:
                tensor.copy_(randn / np.sqrt(tensor[0].numel()))  # Linear / conv weight: fan_in = numel of one row
            elif name.endswith(".weight"):
                tensor.copy_(1 + 0.1 * randn)  # LayerNorm / BatchNorm scale
            elif "token" in name or "modality" in name:
                tensor.copy_(0.5 * randn)
            else:
                tensor.copy_(0.1 * randn)  # biases, q/v biases, running means
    return module


def calibrate_batch_norm_(module: nn.Module, run, seed: int = 0) -> nn.Module:
    """Realistic yet random BatchNorm running statistics: the batch statistics of one ``run()`` in train mode, then
    randomly perturbed (mean shifted by 0.2 std, variance plus 0.5-1.5) with random counters. Keeps eval-mode
    activations O(1), as in a trained checkpoint, and keeps tiny small-batch variances from amplifying float32
    rounding, so the comparisons stay meaningful."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]
    was_training = module.training
    for m in norms:
        m.momentum = 1.0
    module.train()
    with torch.no_grad():
        run()
        for m in norms:
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean += 0.2 * std * torch.randn(std.shape, generator=gen)
            m.running_var += 0.5 + torch.rand(std.shape, generator=gen)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    module.train(was_training)
    return module
