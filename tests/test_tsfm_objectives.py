"""TSFM losses against direct torch / numpy formulations that slice out padding and the unfilled queue explicitly."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from imujax.models.memory_bank import MemoryBank
from imujax.objectives import prototypes as P
from imujax.objectives import tsfm_pretrain as S1

RNG = np.random.default_rng(0)


def _unit(*shape):
    x = RNG.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# -- Stage 1 -------------------------------------------------------------------------------------------------------------
def test_mae_loss_matches_loop():
    b, p, t, c = 2, 5, 8, 4
    recon, patches = RNG.normal(size=(2, b, p, t, c)).astype(np.float32)
    mae = RNG.random((b, p)) < 0.5
    pm = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool)
    cm = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    drop = np.zeros((b, c), bool)
    drop[0, 1] = True
    got = S1.mae_loss(jnp.asarray(recon), jnp.asarray(patches), jnp.asarray(mae), jnp.asarray(pm), jnp.asarray(cm),
                      jnp.asarray(drop))
    per_patch = []
    for i in range(b):
        for j in range(p):
            if not (mae[i, j] and pm[i, j]):
                continue
            errs = []
            for k in range(c):
                if cm[i, k] and not drop[i, k]:
                    x = patches[i, j, :, k].astype(np.float64)
                    target = (x - x.mean()) / max(x.std(), 1e-6)
                    errs.append(np.mean((recon[i, j, :, k] - target) ** 2))
            per_patch.append(np.mean(errs))
    np.testing.assert_allclose(float(got), np.mean(per_patch), rtol=1e-5)


def test_patch_nt_xent_matches_torch_on_valid_patches():
    b, p, c, d = 2, 4, 3, 6
    p1, p2 = RNG.normal(size=(2, b, p, c, d)).astype(np.float32)
    pm = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    cm = np.array([[1, 1, 0], [1, 1, 1]], bool)
    loss, _ = S1.patch_nt_xent(jnp.asarray(p1), jnp.asarray(p2), jnp.asarray(pm), jnp.asarray(cm), 0.2)

    def pool(x):
        x = torch.as_tensor(x)
        w = torch.as_tensor(cm, dtype=torch.float32)[:, None, :, None]
        return F.normalize((x * w).sum(2) / w.sum(2), dim=-1)[torch.as_tensor(pm)]

    z = torch.cat([pool(p1), pool(p2)])
    n = z.shape[0] // 2
    sim = z @ z.T / 0.2
    sim.fill_diagonal_(float("-inf"))
    labels = torch.cat([torch.arange(n) + n, torch.arange(n)])
    np.testing.assert_allclose(float(loss), F.cross_entropy(sim, labels).item(), rtol=1e-5)


def test_ema_balance_first_step_and_decay():
    total, ema = S1.ema_balanced_total(jnp.float32(4.0), jnp.float32(2.0), jnp.zeros(2), jnp.bool_(False))
    np.testing.assert_allclose(float(total), 2.0)
    np.testing.assert_allclose(np.asarray(ema), [4.0, 2.0])
    total, ema = S1.ema_balanced_total(jnp.float32(2.0), jnp.float32(2.0), ema, jnp.bool_(True))
    np.testing.assert_allclose(np.asarray(ema), [0.99 * 4 + 0.01 * 2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(float(total), 2.0 / 3.98 + 1.0, rtol=1e-6)


# -- Stage 2 -------------------------------------------------------------------------------------------------------------
def _torch_soft_info_nce(z, t, f, qz, qt, scale, w=1.0, temp=0.5):
    z, t, f, qz, qt = (torch.as_tensor(a, dtype=torch.float64) for a in (z, t, f, qz, qt))
    s = min(max(np.exp(scale), 1.0), 50.0)
    b = z.shape[0]
    i2t = s * z @ torch.cat([t, qt]).T
    t2i = s * t @ torch.cat([z, qz]).T
    sim = f @ f.T
    soft = torch.softmax((sim - sim.mean()) / torch.clamp(sim.std(), min=0.1) / temp, dim=-1)
    soft = torch.cat([soft, torch.zeros(b, qz.shape[0], dtype=soft.dtype)], dim=1)
    hard = torch.cat([torch.eye(b, dtype=soft.dtype), torch.zeros(b, qz.shape[0], dtype=soft.dtype)], dim=1)
    tg = (1 - w) * hard + w * soft
    ce = lambda lg: -(tg * torch.log_softmax(lg, -1)).sum(-1).mean()
    return 0.5 * (ce(i2t) + ce(t2i)).item()


def test_soft_info_nce_uses_only_the_filled_queue():
    b, d, q, filled = 6, 8, 10, 4
    z, t, f = _unit(b, d), _unit(b, d), _unit(b, d)
    qz, qt = _unit(q, d), _unit(q, d)
    valid = np.arange(q) < filled
    got, _ = P.soft_info_nce(jnp.asarray(z), jnp.asarray(t), jnp.float32(np.log(1 / 0.07)),
                             frozen_text=jnp.asarray(f), queue_imu=jnp.asarray(qz), queue_text=jnp.asarray(qt),
                             queue_valid=jnp.asarray(valid), soft_weight=0.7)
    want = _torch_soft_info_nce(z, t, f, qz[:filled], qt[:filled], np.log(1 / 0.07), w=0.7)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_hard_info_nce_is_symmetric_cross_entropy():
    z, t = _unit(5, 4), _unit(5, 4)
    got, _ = P.soft_info_nce(jnp.asarray(z), jnp.asarray(t), jnp.float32(0.0), use_soft=False)
    lg = torch.as_tensor(z @ t.T, dtype=torch.float64)  # scale clamps to 1
    want = 0.5 * (F.cross_entropy(lg, torch.arange(5)) + F.cross_entropy(lg.T, torch.arange(5)))
    np.testing.assert_allclose(float(got), want.item(), rtol=1e-5)


def test_multi_prototype_matches_loops():
    b, k, d = 4, 3, 6
    z, t = _unit(b, d), _unit(b, k, d)
    scale = 2.0
    got, out = P.multi_prototype_info_nce(jnp.asarray(z), jnp.asarray(t), jnp.float32(scale), soft_weight=0.5)
    s = np.exp(scale)
    pos = np.einsum("bd,bkd->bk", z, t).astype(np.float64)
    proto = np.exp(pos / 0.1) / np.exp(pos / 0.1).sum(1, keepdims=True)
    L = np.array([[max(t[i, a] @ t[j, c] for a in range(k) for c in range(k)) for j in range(b)] for i in range(b)])
    std = L.std(ddof=1)
    sc = (L - L.mean()) / max(std, 0.1) / 0.5
    wts = np.exp(sc) / np.exp(sc).sum(1, keepdims=True)
    loss_i2t = 0.0
    for i in range(b):
        logits = np.array([s * z[i] @ t[j, c] for j in range(b) for c in range(k)])
        logp = logits - np.log(np.exp(logits).sum())
        target = np.zeros(b * k)
        target[i * k:(i + 1) * k] += 0.5 * proto[i]
        target += 0.5 * np.repeat(wts[i] / k, k)
        loss_i2t += -(target * logp).sum() / b
    best = pos.argmax(1)
    loss_t2i = 0.0
    for i in range(b):
        logits = np.array([s * t[i, best[i]] @ z[j] for j in range(b)])
        loss_t2i += -(logits[i] - np.log(np.exp(logits).sum())) / b
    np.testing.assert_allclose(float(got), 0.5 * (loss_i2t + loss_t2i), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["best_prototype"]), best)


def test_siglip_matches_formula():
    z, t = _unit(4, 5), _unit(4, 5)
    got, _ = P.siglip_loss(jnp.asarray(z), jnp.asarray(t), jnp.float32(np.log(10.0)), jnp.float32(-1.0))
    lg = 10.0 * z @ t.T - 1.0
    y = 2 * np.eye(4) - 1
    want = np.mean(np.log1p(np.exp(-y * lg)))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_memory_bank_fifo_wraps_and_rejects_bad_pairs():
    bank = MemoryBank(5, 3)
    batches = [_unit(3, 3) for _ in range(3)]
    for x in batches:
        assert int(bank.enqueue(jnp.asarray(x), jnp.asarray(-x))) == 0
    flat = np.concatenate(batches)  # 9 pairs into 5 slots: slots hold pairs 5..8 then 4 (wrap-around order)
    expect = np.empty((5, 3), np.float32)
    for i, row in enumerate(flat):
        expect[i % 5] = row
    np.testing.assert_allclose(np.asarray(bank.imu_queue[...]), expect, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bank.text_queue[...]), -expect, rtol=1e-6)
    assert int(bank.filled[...]) == 5 and int(bank.ptr[...]) == 9 % 5
    bad = _unit(2, 3)
    bad[0] = np.nan
    before = np.asarray(bank.imu_queue[...]).copy()
    assert int(bank.enqueue(jnp.asarray(bad), jnp.asarray(bad))) == 1
    after = np.asarray(bank.imu_queue[...])
    np.testing.assert_allclose(after[4], bad[1], rtol=1e-6)
    np.testing.assert_allclose(np.delete(after, 4, 0), np.delete(before, 4, 0))
    assert np.isfinite(after).all()
