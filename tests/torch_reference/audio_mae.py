"""PyTorch references for Audio-MAE / HIMU-MAE with the upstream state_dict layouts (written from the spec).

Follows shared/specs/audio_mae_himu.md §1.2-1.3 (``MaskedAutoencoderViT`` with the 16-block Swin-V2-Cr decoder or
the global decoder), §1.3 fine-tune ``VisionTransformer`` (global pool, ``fc_norm``, ``head``) and §2.3 (HIMU:
3 channels, 8x20 grid, Omnivore feature concatenated before ``decoder_embed``). Written independently of the JAX port:
the windowed attention loops over windows explicitly and the shift mask is built from region ids per position.
Masking noise is an explicit argument. Sin-cos tables are built in the test helpers and copied in, as the checkpoint
stores them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class RefSizes:
  img_h: int = 1024
  img_w: int = 128
  in_chans: int = 1
  patch: int = 16
  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  decoder_dim: int = 512
  decoder_mode: int = 1
  decoder_depth: int = 16
  decoder_heads: int = 16
  window: tuple = (4, 4)
  shift: tuple = (2, 0)
  video_dim: int = 0
  swapped_grid: bool = True

  @property
  def grid(self):
    return self.img_h // self.patch, self.img_w // self.patch


def mae_sincos(rows: int, cols: int, dim: int) -> np.ndarray:
  """MAE ``get_2d_sincos_pos_embed`` semantics, written as explicit loops: [1 + rows*cols, dim] float64."""
  quarter = dim // 4
  out = np.zeros((1 + rows * cols, dim))
  for i in range(rows):
    for j in range(cols):
      k = 1 + i * cols + j
      for m in range(quarter):
        w = 1.0 / 10000 ** (m / quarter)
        out[k, m], out[k, quarter + m] = math.sin(j * w), math.cos(j * w)
        out[k, 2 * quarter + m], out[k, 3 * quarter + m] = math.sin(i * w), math.cos(i * w)
  return out


class Mlp(nn.Module):
  def __init__(self, din, hidden, dout=None, act=nn.GELU, drop=0.0):
    super().__init__()
    self.fc1, self.act, self.fc2 = nn.Linear(din, hidden), act(), nn.Linear(hidden, dout or din)
    self.drop = nn.Dropout(drop)

  def forward(self, x):
    return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

  def forward(self, x):
    b, n, c = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
    return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
    self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class WindowAttn(nn.Module):
  def __init__(self, dim, heads, window):
    super().__init__()
    self.heads, self.window = heads, window
    self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
    self.meta_mlp = Mlp(2, 384, heads, act=nn.ReLU, drop=0.1)
    self.tau = nn.Parameter(torch.ones(heads))
    pos = [(a, b) for a in range(window[0]) for b in range(window[1])]
    rel = torch.tensor([[pi[0] - pj[0], pi[1] - pj[1]] for pi in pos for pj in pos], dtype=torch.float32)
    self.register_buffer("rel_log", torch.sign(rel) * torch.log(1 + rel.abs()), persistent=False)

  def forward(self, x, mask):
    """x [L, C] one window; mask [L, L] or None."""
    n, c = x.shape
    q, k, v = self.qkv(x).reshape(n, 3, self.heads, c // self.heads).permute(1, 2, 0, 3)
    cos = (q @ k.transpose(-2, -1)) / (q.norm(dim=-1)[:, :, None] * k.norm(dim=-1)[:, None, :]).clamp(min=1e-6)
    logits = cos / self.tau.clamp(min=0.01)[:, None, None]
    logits = logits + self.meta_mlp(self.rel_log).T.reshape(self.heads, n, n)
    if mask is not None:
      logits = logits + mask[None]
    return self.proj((logits.softmax(-1) @ v).transpose(0, 1).reshape(n, c))


class SwinBlock(nn.Module):
  def __init__(self, dim, heads, grid, window, shift):
    super().__init__()
    self.grid = grid
    self.window = tuple(min(g, w) for g, w in zip(grid, window))
    self.shift = tuple(0 if g <= w else s for g, w, s in zip(grid, self.window, shift))
    self.attn = WindowAttn(dim, heads, self.window)
    self.norm1, self.mlp, self.norm2 = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim), nn.LayerNorm(dim, eps=1e-6)
    self.region = self._regions()

  def _regions(self):
    """Region id of each (shifted-frame) grid position: which of the three slices it falls in per shifted axis."""
    ids = torch.zeros(self.grid, dtype=torch.long)
    for axis in range(2):
      if self.shift[axis]:
        size, w, s = self.grid[axis], self.window[axis], self.shift[axis]
        coord = torch.arange(size)
        part = (coord >= size - w).long() + (coord >= size - s).long()
        ids = ids * 3 + (part[:, None] if axis == 0 else part[None, :])
    return ids

  def attend(self, x):
    b, _, c = x.shape
    h, w = self.grid
    wh, ww = self.window
    x = x.reshape(b, h, w, c)
    if any(self.shift):
      x = torch.roll(x, (-self.shift[0], -self.shift[1]), (1, 2))
    out = torch.zeros_like(x)
    for bi in range(b):
      for r in range(0, h, wh):
        for s in range(0, w, ww):
          tokens = x[bi, r:r + wh, s:s + ww].reshape(-1, c)
          mask = None
          if any(self.shift):
            ids = self.region[r:r + wh, s:s + ww].reshape(-1)
            mask = torch.where(ids[:, None] != ids[None, :], -100.0, 0.0)
          out[bi, r:r + wh, s:s + ww] = self.attn(tokens, mask).reshape(wh, ww, c)
    if any(self.shift):
      out = torch.roll(out, self.shift, (1, 2))
    return out.reshape(b, h * w, c)

  def forward(self, x):
    x = x + self.norm1(self.attend(x))
    return x + self.norm2(self.mlp(x))


class PatchEmbed(nn.Module):
  def __init__(self, chans, dim, patch):
    super().__init__()
    self.proj = nn.Conv2d(chans, dim, patch, patch)

  def forward(self, x):
    return self.proj(x).flatten(2).transpose(1, 2)


class RefMAE(nn.Module):
  def __init__(self, s: RefSizes):
    super().__init__()
    self.s = s
    rows, cols = s.grid
    n = rows * cols
    self.patch_embed = PatchEmbed(s.in_chans, s.embed_dim, s.patch)
    self.cls_token = nn.Parameter(torch.randn(1, 1, s.embed_dim) * 0.02)
    table_grid = (cols, rows) if s.swapped_grid else (rows, cols)
    self.pos_embed = nn.Parameter(torch.from_numpy(mae_sincos(*table_grid, s.embed_dim)).float()[None],
                                  requires_grad=False)
    self.blocks = nn.ModuleList([Block(s.embed_dim, s.num_heads) for _ in range(s.depth)])
    self.norm = nn.LayerNorm(s.embed_dim, eps=1e-6)
    self.decoder_embed = nn.Linear(s.embed_dim + s.video_dim, s.decoder_dim)
    self.mask_token = nn.Parameter(torch.randn(1, 1, s.decoder_dim) * 0.02)
    self.decoder_pos_embed = nn.Parameter(torch.from_numpy(mae_sincos(*table_grid, s.decoder_dim)).float()[None],
                                          requires_grad=False)
    if s.decoder_mode == 1:
      self.decoder_blocks = nn.ModuleList([
          SwinBlock(s.decoder_dim, s.decoder_heads, s.grid, s.window, (0, 0) if i % 2 == 0 else s.shift)
          for i in range(s.decoder_depth)])
    else:
      self.decoder_blocks = nn.ModuleList([Block(s.decoder_dim, s.decoder_heads) for _ in range(s.decoder_depth)])
    self.decoder_norm = nn.LayerNorm(s.decoder_dim, eps=1e-6)
    self.decoder_pred = nn.Linear(s.decoder_dim, s.patch ** 2 * s.in_chans)
    self.num_tokens = n

  def forward_encoder(self, x, noise, mask_ratio):
    x = self.patch_embed(x) + self.pos_embed[:, 1:]
    n, length, d = x.shape
    keep = int(length * (1 - mask_ratio))
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    x = torch.gather(x, 1, shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(n, length)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, restore)
    x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1), x], 1)
    for blk in self.blocks:
      x = blk(x)
    return self.norm(x), mask, restore

  def forward_decoder(self, x, restore, video=None):
    if self.s.video_dim:
      x = torch.cat([x, video[:, None].expand(-1, x.shape[1], -1)], -1)
    x = self.decoder_embed(x)
    fill = self.mask_token.repeat(x.shape[0], restore.shape[1] + 1 - x.shape[1], 1)
    body = torch.gather(torch.cat([x[:, 1:], fill], 1), 1, restore[..., None].expand(-1, -1, x.shape[2]))
    x = torch.cat([x[:, :1], body], 1) + self.decoder_pos_embed
    if self.s.decoder_mode == 1:
      x = x[:, 1:]
    for blk in self.decoder_blocks:
      x = blk(x)
    pred = self.decoder_pred(self.decoder_norm(x))
    return pred if self.s.decoder_mode == 1 else pred[:, 1:]

  def patchify(self, imgs):
    p, c = self.s.patch, self.s.in_chans
    h, w = imgs.shape[2] // p, imgs.shape[3] // p
    x = imgs.reshape(imgs.shape[0], c, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(imgs.shape[0], h * w, p * p * c)

  def forward_loss(self, imgs, pred, mask):
    target = self.patchify(imgs)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum()


class RefViT(nn.Module):
  """Fine-tuned ``VisionTransformer`` (global pool): patch_embed, cls_token, pos_embed, blocks, fc_norm, head."""

  def __init__(self, s: RefSizes, num_classes: int):
    super().__init__()
    rows, cols = s.grid
    self.patch_embed = PatchEmbed(s.in_chans, s.embed_dim, s.patch)
    self.cls_token = nn.Parameter(torch.randn(1, 1, s.embed_dim) * 0.02)
    table_grid = (cols, rows) if s.swapped_grid else (rows, cols)
    self.pos_embed = nn.Parameter(torch.from_numpy(mae_sincos(*table_grid, s.embed_dim)).float()[None],
                                  requires_grad=False)
    self.blocks = nn.ModuleList([Block(s.embed_dim, s.num_heads) for _ in range(s.depth)])
    self.fc_norm = nn.LayerNorm(s.embed_dim, eps=1e-6)
    self.head = nn.Linear(s.embed_dim, num_classes)

  def forward(self, x):
    x = self.patch_embed(x) + self.pos_embed[:, 1:]
    x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)
    for blk in self.blocks:
      x = blk(x)
    return self.head(self.fc_norm(x[:, 1:].mean(1)))


def randomize(model: nn.Module, seed: int) -> nn.Module:
  """Non-trivial weights everywhere (LayerNorm gains/biases, tau, biases) so no mapping error can hide."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "pos_embed" in name:
        continue
      if name.endswith("tau"):
        p.copy_(0.5 + torch.rand(p.shape, generator=g))
      elif p.ndim == 1 and ("norm" in name):
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
      else:
        fan_in = p.shape[1] if p.ndim >= 2 else p.shape[0]
        scale = (fan_in * (np.prod(p.shape[2:]) if p.ndim > 2 else 1)) ** -0.5
        p.copy_(torch.randn(p.shape, generator=g) * float(scale))
  return model


def state_dict_numpy(model: nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
