"""PyTorch reference of TSFM Stage 2 written from shared/specs/tsfm.md, with the upstream state_dict layout.

Used only by the parity tests: ``SemanticAlignmentModel`` (encoder + channel_fusion + semantic_head) produces the
``model_state_dict`` keys, ``LabelBank`` the ``label_bank_state_dict`` keys (``pooling.*``). The raw-input path
(``preprocess_raw``) uses torch's own ``unfold`` / ``F.interpolate`` / ``std(unbiased=False)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# -- preprocessing -----------------------------------------------------------------------------------------------------
def preprocess_recording(x: torch.Tensor, rate: float, patch_sec: float, target: int = 64, max_patches: int = 48):
    """x [T, C] -> [P, 64, C] via unfold, F.interpolate(linear, align_corners=False) and a per-patch z-score."""
    size = int(rate * patch_sec)
    patches = x.unfold(0, size, size)  # [P, C, size]
    if size != target:
        patches = F.interpolate(patches, size=target, mode="linear", align_corners=False)
    mean = patches.mean(dim=-1, keepdim=True)
    std = patches.std(dim=-1, keepdim=True, unbiased=False).clamp(min=1e-8)
    return ((patches - mean) / std).permute(0, 2, 1)[:max_patches]


def preprocess_raw(imu, attention_mask, rates, patch_secs):
    out = [preprocess_recording(imu[b, :int(attention_mask[b].sum())], float(rates[b]), float(patch_secs[b]))
           for b in range(imu.shape[0])]
    p = max(o.shape[0] for o in out)
    patches = torch.zeros(len(out), p, 64, imu.shape[2])
    mask = torch.zeros(len(out), p, dtype=torch.bool)
    for b, o in enumerate(out):
        patches[b, :o.shape[0]] = o
        mask[b, :o.shape[0]] = True
    return patches, mask


# -- encoder -----------------------------------------------------------------------------------------------------------
class MultiScaleConv1D(nn.Module):
    def __init__(self, cin, cout, kernel):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False),
                                                     nn.GroupNorm(1, cout, eps=1e-5), nn.GELU(), nn.Dropout(0.1))])

    def forward(self, x):
        return self.branches[0](x)


class ChannelIndependentCNN(nn.Module):
    def __init__(self, d, channels=(32, 64), kernel=5):
        super().__init__()
        widths = (1,) + tuple(channels)
        self.layers = nn.ModuleList([MultiScaleConv1D(a, b, kernel) for a, b in zip(widths[:-1], widths[1:])])
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.projection = nn.Sequential(nn.Linear(channels[-1], d), nn.GELU(), nn.Dropout(0.1))

    def forward(self, x):  # [N, 1, 64]
        for layer in self.layers:
            x = layer(x)
        return self.projection(self.pool(x).squeeze(-1))


class FixedPatchCNN(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.cnn = ChannelIndependentCNN(d)

    def forward(self, x):
        return self.cnn(x)


class SpectralTemporalExtractor(nn.Module):
    def __init__(self, d, channels=(32, 64), kernel=5, ratio=0.25):
        super().__init__()
        d_spec = int(ratio * d)
        widths = (1,) + tuple(channels)
        self.temporal_layers = nn.ModuleList([MultiScaleConv1D(a, b, kernel) for a, b in zip(widths[:-1], widths[1:])])
        self.temporal_proj = nn.Linear(channels[-1], d - d_spec)
        self.temporal_norm = nn.LayerNorm(d - d_spec)
        self.spectral_mlp = nn.Sequential(nn.Linear(33, 2 * d_spec), nn.GELU(), nn.Dropout(0.1),
                                          nn.Linear(2 * d_spec, d_spec))
        self.spectral_norm = nn.LayerNorm(d_spec)

    def forward(self, x):
        t = x
        for layer in self.temporal_layers:
            t = layer(t)
        temporal = self.temporal_norm(self.temporal_proj(t.mean(dim=-1)))
        spectral = self.spectral_norm(self.spectral_mlp(torch.fft.rfft(x[:, 0], n=64).abs()))
        return torch.cat([temporal, spectral], dim=-1)


class SeparateAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, key_mask):
        n, l, d = x.shape
        split = lambda t: t.view(n, l, self.heads, d // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                             attn_mask=key_mask[:, None, None, :])
        return self.out_proj(out.transpose(1, 2).reshape(n, l, d))


class FeedForward(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class DualBranchTransformerBlock(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.temporal_attn = SeparateAttention(d, heads)
        self.cross_channel_attn = SeparateAttention(d, heads)
        self.feed_forward = FeedForward(d, ff)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x, patch_mask, channel_mask):
        b, p, c, d = x.shape
        t = x.permute(0, 2, 1, 3).reshape(b * c, p, d)
        t = self.norm1(t + self.temporal_attn(t, patch_mask.repeat_interleave(c, dim=0)))
        s = t.view(b, c, p, d).permute(0, 2, 1, 3).reshape(b * p, c, d)
        s = self.norm2(s + self.cross_channel_attn(s, channel_mask.repeat_interleave(p, dim=0)))
        s = self.norm3(s + self.feed_forward(s))
        return s.view(b, p, c, d)


class DualBranchTransformer(nn.Module):
    def __init__(self, d, heads, ff, layers):
        super().__init__()
        self.layers = nn.ModuleList([DualBranchTransformerBlock(d, heads, ff) for _ in range(layers)])


class IMUTransformer(nn.Module):
    def __init__(self, d, heads, ff, layers):
        super().__init__()
        self.transformer = DualBranchTransformer(d, heads, ff, layers)


class TemporalEncoding(nn.Module):
    def __init__(self, d, max_len=5000):
        super().__init__()
        pe = torch.zeros(max_len, d)
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.scale = nn.Parameter(torch.tensor(0.1))


class IMUPositionalEncoding(nn.Module):
    def __init__(self, d, max_len=5000):
        super().__init__()
        self.temporal_encoding = TemporalEncoding(d, max_len)


class Encoder(nn.Module):
    def __init__(self, d, heads, layers, ff, extractor="cnn", max_len=5000):
        super().__init__()
        self.feature_extractor = FixedPatchCNN(d) if extractor == "cnn" else SpectralTemporalExtractor(d)
        self.mask_token = nn.Parameter(torch.randn(1, 1, 1, d) * 0.1 / d ** 0.5)
        self.pad_token = nn.Parameter(torch.randn(1, 1, 1, d) * 0.1 / d ** 0.5)
        self.positional_encoding = IMUPositionalEncoding(d, max_len)
        self.transformer = IMUTransformer(d, heads, ff, layers)

    def forward(self, patches, channel_mask, patch_mask):
        b, p, t, c = patches.shape
        x = self.feature_extractor(patches.permute(0, 1, 3, 2).reshape(b * p * c, 1, t)).view(b, p, c, -1)
        x = torch.where(patch_mask[:, :, None, None], x, self.pad_token)
        te = self.positional_encoding.temporal_encoding
        x = x + te.scale * te.pe[:p][None, :, None, :]
        for layer in self.transformer.transformer.layers:
            x = layer(x, patch_mask, channel_mask)
        return x


# -- stage 2 -----------------------------------------------------------------------------------------------------------
class ChannelTextFusion(nn.Module):
    def __init__(self, d, text_dim, heads, nq=4):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, d) if text_dim != d else nn.Identity()
        self.queries = nn.Parameter(torch.randn(nq, d) * 0.02)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.out_proj = nn.Sequential(nn.Linear(nq * d, d), nn.GELU(), nn.Linear(d, d))
        self.gate_sensor = nn.Linear(d, d, bias=False)
        self.gate_channel = nn.Linear(d, d)

    def forward(self, x, tokens, mask):
        b, p, c, d = x.shape
        tokens = self.text_proj(tokens).reshape(b * c, tokens.shape[2], d)
        mask = mask.reshape(b * c, -1).bool().clone()
        empty = ~mask.any(dim=1)
        mask[empty, 0] = True
        q = self.queries[None].expand(b * c, -1, -1)
        attended, _ = self.cross_attn(q, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        a = self.norm1(q + attended)
        emb = self.out_proj(a.reshape(b * c, -1)).view(b, 1, c, d)
        gate = torch.sigmoid(self.gate_sensor(x) + self.gate_channel(emb))
        return x + gate * emb


class MultiQueryAttention(nn.Module):
    def __init__(self, d, nq, heads, self_attn):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(nq, d) * 0.02)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.use_self = self_attn
        if self_attn:
            self.self_attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
            self.norm2 = nn.LayerNorm(d)
        self.out_proj = nn.Sequential(nn.Linear(nq * d, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, x, mask):
        q = self.queries[None].expand(x.shape[0], -1, -1)
        a = self.norm1(q + self.cross_attn(q, x, x, key_padding_mask=~mask, need_weights=False)[0])
        if self.use_self:
            a = self.norm2(a + self.self_attn(a, a, a, need_weights=False)[0])
        return self.out_proj(a.flatten(1)) + a.mean(dim=1)


class CrossChannelFusion(nn.Module):
    def __init__(self, d, df, nq, heads, self_attn):
        super().__init__()
        self.input_proj = nn.Linear(d, df)
        self.attention = MultiQueryAttention(df, nq, heads, self_attn)


class AttentionPooling(nn.Module):
    def __init__(self, df, nq, heads, self_attn):
        super().__init__()
        self.attention = MultiQueryAttention(df, nq, heads, self_attn)


class TemporalAttention(nn.Module):
    def __init__(self, df, heads, layers):
        super().__init__()
        layer = nn.TransformerEncoderLayer(df, heads, 4 * df, dropout=0.1, activation="gelu", norm_first=True,
                                           batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ProjectionHead(nn.Module):
    def __init__(self, df, out):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(df, 2 * df), nn.GELU(), nn.Linear(2 * df, 2 * df), nn.GELU(),
                                 nn.Linear(2 * df, out))


class SemanticAlignmentHead(nn.Module):
    def __init__(self, d, df, out, heads, temporal_layers, fq, pq, fusion_self, pool_self, per_patch):
        super().__init__()
        self.per_patch = per_patch
        self.cross_channel_fusion = CrossChannelFusion(d, df, fq, heads, fusion_self)
        self.temporal_attention = TemporalAttention(df, heads, temporal_layers)
        self.attention_pooling = AttentionPooling(df, pq, heads, pool_self)
        self.projection_head = ProjectionHead(df, out)

    def forward(self, x, channel_mask, patch_mask):
        b, p, c, d = x.shape
        f = self.cross_channel_fusion
        h = f.attention(f.input_proj(x.reshape(b * p, c, d)), channel_mask.repeat_interleave(p, dim=0)).view(b, p, -1)
        if not self.per_patch:
            h = self.temporal_attention.transformer(h, src_key_padding_mask=~patch_mask)
            h = self.attention_pooling.attention(h, patch_mask)
        return F.normalize(self.projection_head.mlp(h), dim=-1)


class SemanticAlignmentModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        d, df = cfg["d_model"], cfg["d_model_fused"]
        self.encoder = Encoder(d, cfg["num_heads"], cfg["num_temporal_layers"], cfg["dim_feedforward"],
                               cfg["feature_extractor"], cfg["max_positions"])
        self.channel_fusion = ChannelTextFusion(d, cfg["text_dim"], cfg["channel_text_num_heads"])
        self.semantic_head = SemanticAlignmentHead(
            d, df, cfg["semantic_dim"], cfg["num_heads"], cfg["num_semantic_temporal_layers"],
            cfg["num_fusion_queries"], cfg["num_pool_queries"], cfg["fusion_self_attention"],
            cfg["pool_self_attention"], cfg["per_patch_prediction"])

    def forward(self, patches, patch_mask, channel_mask, tokens, token_mask):
        x = self.encoder(patches, channel_mask, patch_mask)
        x = self.channel_fusion(x, tokens, token_mask)
        out = self.semantic_head(x, channel_mask, patch_mask)
        if self.cfg["per_patch_prediction"]:
            m = patch_mask.float()[..., None]
            out = F.normalize((out * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)
        return out


class LabelPooling(nn.Module):
    def __init__(self, d, nq, heads, k):
        super().__init__()
        self.k = k
        self.queries = nn.Parameter(torch.randn(*((nq, d) if k == 1 else (k, nq, d))) / d ** 0.5)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(d)
        make = lambda: nn.Sequential(nn.Linear(nq * d, d), nn.GELU(), nn.Linear(d, d))
        if k == 1:
            self.out_proj = make()
        else:
            self.out_projs = nn.ModuleList([make() for _ in range(k)])

    def forward(self, tokens, mask):
        qs = self.queries[None] if self.k == 1 else self.queries
        heads = [self.out_proj] if self.k == 1 else list(self.out_projs)
        out = []
        for q, head in zip(qs, heads):
            q = q[None].expand(tokens.shape[0], -1, -1)
            a = self.norm(self.cross_attn(q, tokens, tokens, key_padding_mask=~mask.bool(), need_weights=False)[0])
            out.append(F.normalize(head(a.flatten(1)) + a.mean(1), dim=-1))
        return torch.stack(out, dim=1)


class LabelBank(nn.Module):
    def __init__(self, d, nq, heads, k):
        super().__init__()
        self.pooling = LabelPooling(d, nq, heads, k)
