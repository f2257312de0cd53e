"""PRIMUS objective (queue, nearest-neighbour positives, two temperatures) against a torch reference; augmentations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from imujax.objectives import primus
from imujax.transforms import augment_imu

D = 8


# --- torch reference, written from the spec (upstream FeatureQueue with the intended stacked enqueue) -------------

class TorchQueue:
    def __init__(self, size, dim):
        self.size, self.queue, self.ptr = size, torch.zeros(size, dim), 0

    def enqueue(self, rows):
        end = (self.ptr + rows.shape[0]) % self.size
        if end > self.ptr:
            self.queue[self.ptr:end] = rows
        else:  # two-part copy across the end of the buffer
            first = self.size - self.ptr
            self.queue[self.ptr:] = rows[:first]
            self.queue[:end] = rows[first:]
        self.ptr = end

    def nearest(self, x):
        sims = F.cosine_similarity(x.unsqueeze(1), self.queue.unsqueeze(0), dim=2)
        return torch.topk(sims, 1, dim=1)[1].view(-1)


def torch_nce(q, k, tau):
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits, labels = q @ k.T / tau, torch.arange(len(q))
    return F.nll_loss(F.log_softmax(logits, dim=0), labels) + F.nll_loss(F.log_softmax(logits, dim=1), labels)


def torch_primus_step(y, queues, tau_mm, tau_ss, lam=0.5):
    loss = 0.0
    for t in ("text", "video"):
        loss = loss + (1 - lam) * torch_nce(y["mmcl"], y[t], tau_mm)
    loss = loss + lam * torch_nce(y["ssl0"], y["ssl1"], tau_ss)
    slots = queues["video"].nearest(y["video"])
    nn = {name: q.queue[slots].clone() for name, q in queues.items()}
    for t in ("text", "video"):
        loss = loss + (1 - lam) * torch_nce(y["mmcl"], nn[t], tau_mm)
    loss = loss + lam * torch_nce(y["ssl0"], nn["imu"], tau_ss)
    queues["video"].enqueue(y["video"].detach())
    queues["text"].enqueue(y["text"].detach())
    queues["imu"].enqueue(y["ssl0"].detach())
    return loss


def _step_inputs(rng, batch):
    video = rng.normal(size=(batch, D)).astype(np.float32)
    return {
        "mmcl": (video + rng.normal(size=(batch, D))).astype(np.float32),
        "ssl0": rng.normal(size=(batch, D)).astype(np.float32),
        "ssl1": rng.normal(size=(batch, D)).astype(np.float32),
        "text": (video + 0.5 * rng.normal(size=(batch, D))).astype(np.float32),
        "video": video,
    }


@pytest.fixture(scope="module")
def jitted_step():
    def loss_fn(mmcl, ssl0, ssl1, tau_mm, tau_ss, text, video, queue):
        loss, new_queue, metrics = primus.primus_loss(mmcl, ssl0, ssl1, {"text": text, "video": video},
                                                      tau_mm, tau_ss, queue, ssl_coeff=0.5)
        return loss, (new_queue, metrics)

    return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 3, 4), has_aux=True))


def test_matches_torch_over_steps_with_wraparound(jitted_step):
    size, batch, steps = 8, 3, 6  # pointer 0,3,6,1,4,7,2: wraps twice, mid-batch
    rng = np.random.default_rng(0)
    queue = primus.init_feature_queue(size, {"video": D, "text": D, "imu": D})
    t_queues = {name: TorchQueue(size, D) for name in ("video", "text", "imu")}
    tau_mm, tau_ss = 0.1, 0.2
    for _ in range(steps):
        y = _step_inputs(rng, batch)
        (loss, (queue, metrics)), (g_mmcl, g_ssl0, g_tmm, g_tss) = jitted_step(
            y["mmcl"], y["ssl0"], y["ssl1"], jnp.float32(tau_mm), jnp.float32(tau_ss), y["text"], y["video"], queue)
        ty = {k: torch.tensor(v, requires_grad=k in ("mmcl", "ssl0")) for k, v in y.items()}
        t_tmm = torch.tensor(tau_mm, requires_grad=True)
        t_tss = torch.tensor(tau_ss, requires_grad=True)
        t_loss = torch_primus_step(ty, t_queues, t_tmm, t_tss)
        t_loss.backward()
        np.testing.assert_allclose(float(loss), t_loss.item(), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(g_mmcl), ty["mmcl"].grad.numpy(), atol=1e-5)
        np.testing.assert_allclose(np.asarray(g_ssl0), ty["ssl0"].grad.numpy(), atol=1e-5)
        np.testing.assert_allclose(float(g_tmm), t_tmm.grad.item(), rtol=1e-5, atol=2e-5)
        np.testing.assert_allclose(float(g_tss), t_tss.grad.item(), rtol=1e-5, atol=2e-5)
        assert int(queue.ptr) == t_queues["video"].ptr
        for name in ("video", "text", "imu"):
            np.testing.assert_array_equal(np.asarray(queue.feats[name]), t_queues[name].queue.numpy())
    assert set(metrics) == {"mm_imu2text", "mm_imu2video", "ssl", "nn_imu2text", "nn_imu2video", "nn_ssl", "loss"}


def test_ring_buffer_wraparound_against_numpy():
    size = 5
    queue = primus.init_feature_queue(size, {"imu": 2})
    expected, ptr = np.zeros((size, 2), np.float32), 0
    for step in range(4):
        rows = np.arange(6, dtype=np.float32).reshape(3, 2) + 10 * step
        queue = primus.enqueue(queue, {"imu": jnp.asarray(rows)})
        for r in rows:
            expected[ptr] = r
            ptr = (ptr + 1) % size
        np.testing.assert_array_equal(np.asarray(queue.feats["imu"]), expected)
        assert int(queue.ptr) == ptr
    # After 12 writes into 5 slots the oldest surviving row is from step 2, row 1 (write #7).
    assert expected[2, 0] == 22.0


def test_enqueue_skips_rows_and_checks_inputs():
    queue = primus.init_feature_queue(4, {"imu": 1, "video": 1})
    rows = jnp.arange(3, dtype=jnp.float32)[:, None] + 1
    queue = primus.enqueue(queue, {"imu": rows, "video": rows}, keep=jnp.array([1, 0, 1]))
    np.testing.assert_array_equal(np.asarray(queue.feats["imu"][:, 0]), [1, 3, 0, 0])
    assert int(queue.ptr) == 2
    with pytest.raises(ValueError, match="larger than the queue size 4"):
        primus.enqueue(queue, {"imu": jnp.zeros((5, 1)), "video": jnp.zeros((5, 1))})
    with pytest.raises(ValueError, match="queue holds"):
        primus.enqueue(queue, {"imu": rows})


def test_imu_only_samples_use_the_imu_queue_and_are_not_enqueued():
    rng = np.random.default_rng(1)
    size, batch = 6, 4
    queue = primus.init_feature_queue(size, {"video": D, "text": D, "imu": D})
    queue = primus.enqueue(queue, {k: jnp.asarray(rng.normal(size=(size, D)), jnp.float32)
                                   for k in ("video", "text", "imu")})
    y = _step_inputs(rng, batch)
    mask = np.array([1, 0, 1, 0], np.float32)
    _, new_queue, _ = primus.primus_loss(jnp.asarray(y["mmcl"]), jnp.asarray(y["ssl0"]), jnp.asarray(y["ssl1"]),
                                         {"text": jnp.asarray(y["text"]), "video": jnp.asarray(y["video"])},
                                         0.1, 0.1, queue, mask=jnp.asarray(mask))
    # numpy reference of the lookup: cosine top-1 in the video queue, or in the imu queue for IMU-only rows.
    def cos_top1(q, keys):
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        kn = keys / np.linalg.norm(keys, axis=1, keepdims=True)
        return np.argmax(qn @ kn.T, axis=1)
    slots = np.where(mask > 0, cos_top1(y["video"], np.asarray(queue.feats["video"])),
                     cos_top1(y["ssl0"], np.asarray(queue.feats["imu"])))
    got_slots = jnp.where(jnp.asarray(mask) > 0,
                          primus.nearest_slots(queue.feats["video"], jnp.asarray(y["video"])),
                          primus.nearest_slots(queue.feats["imu"], jnp.asarray(y["ssl0"])))
    np.testing.assert_array_equal(np.asarray(got_slots), slots)
    # Only rows 0 and 2 were written, at slots 0 and 1 (the pointer had wrapped to 0).
    np.testing.assert_array_equal(np.asarray(new_queue.feats["video"][:2]), y["video"][[0, 2]])
    np.testing.assert_array_equal(np.asarray(new_queue.feats["video"][2:]), np.asarray(queue.feats["video"][2:]))
    assert int(new_queue.ptr) == 2


def test_without_queue_and_bad_targets():
    rng = np.random.default_rng(2)
    y = {k: jnp.asarray(v) for k, v in _step_inputs(rng, 4).items()}
    loss, q, metrics = primus.primus_loss(y["mmcl"], y["ssl0"], y["ssl1"], {"video": y["video"]}, 0.1, 0.1)
    assert q is None and set(metrics) == {"mm_imu2video", "ssl", "loss"}
    expected = 0.5 * torch_nce(torch.tensor(np.asarray(y["mmcl"])), torch.tensor(np.asarray(y["video"])), 0.1) \
        + 0.5 * torch_nce(torch.tensor(np.asarray(y["ssl0"])), torch.tensor(np.asarray(y["ssl1"])), 0.1)
    np.testing.assert_allclose(float(loss), expected.item(), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown target modalities \\['audio'\\]"):
        primus.primus_loss(y["mmcl"], y["ssl0"], y["ssl1"], {"audio": y["video"]}, 0.1, 0.1)


# --- augmentations -----------------------------------------------------------------------------------------------

def test_scaling_is_per_time_step_and_shared_across_channels():
    x = np.random.default_rng(3).uniform(1.0, 2.0, size=(64, 6, 250))
    out = augment_imu.scaling(x, np.random.default_rng(4))
    factor = out / x
    np.testing.assert_allclose(factor, np.broadcast_to(factor[:, :1], factor.shape), rtol=1e-12)
    assert abs(factor[:, 0].mean() - 1.0) < 0.01 and abs(factor[:, 0].std() - 0.25) < 0.01
    assert factor[:, 0].std(axis=1).min() > 0.1  # varies along time within each sample


def test_segment_permutation_reorders_contiguous_pieces():
    batch, length = 16, 250
    x = np.broadcast_to(np.arange(length, dtype=np.float64), (batch, 6, length)) + np.arange(6)[:, None] * 1000
    out = augment_imu.time_segment_permutation(x, np.random.default_rng(5))
    assert out.shape == x.shape
    t = out[:, 0]
    np.testing.assert_array_equal(out - out[:, :1], x - x[:, :1])  # channels move together
    for row in t:
        assert sorted(row) == list(range(length))
        assert np.count_nonzero(np.diff(row) != 1) <= 4  # at most 5 contiguous runs
    assert np.any(t != np.arange(length))
    with pytest.raises(ValueError, match="B \\* num_segments"):
        augment_imu.time_segment_permutation(np.zeros((100, 6, 250)), np.random.default_rng(0))


def test_cut_points_follow_the_batched_draw_without_replacement():
    # The cut points consume one rng.choice over the whole batch, then one permutation per sample.
    batch, length = 8, 40
    x = np.broadcast_to(np.arange(length, dtype=np.float64), (batch, 1, length))
    out = augment_imu.time_segment_permutation(x, np.random.default_rng(6))
    rng = np.random.default_rng(6)
    cuts = np.sort(rng.choice(length, size=(batch, 4), replace=False), axis=1)
    assert len(np.unique(cuts)) == batch * 4
    for i in range(batch):
        pieces = np.split(np.arange(length), cuts[i])
        order = rng.permutation(len(pieces))
        np.testing.assert_array_equal(out[i, 0], np.concatenate([pieces[j] for j in order]))


def test_primus_augment_is_float32_and_reproducible():
    x = np.random.default_rng(7).normal(size=(4, 6, 250)).astype(np.float32)
    a = augment_imu.primus_augment(x, np.random.default_rng(8))
    b = augment_imu.primus_augment(x, np.random.default_rng(8))
    assert a.dtype == np.float32 and a.shape == x.shape and np.array_equal(a, b)
    assert not np.allclose(a, x)


def test_rotation_preserves_norms_and_uses_one_matrix_for_acc_and_gyro():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(5, 6, 30))
    x[:, 3:] = x[:, :3] * 2.0  # gyro = 2 * acc, so the same rotation keeps that relation
    out = augment_imu.rotation(x, np.random.default_rng(10))
    np.testing.assert_allclose(np.linalg.norm(out[:, :3], axis=1), np.linalg.norm(x[:, :3], axis=1), rtol=1e-12)
    np.testing.assert_allclose(out[:, 3:], 2.0 * out[:, :3], rtol=1e-12)
    # Independent reference: scipy's rotation of the same draws, applied to row vectors (x @ R).
    draw = np.random.default_rng(10)
    axes, angles = draw.uniform(-1, 1, (5, 3)), draw.uniform(-np.pi, np.pi, 5)
    mats = Rotation.from_rotvec(axes / np.linalg.norm(axes, axis=1, keepdims=True) * angles[:, None]).as_matrix()
    np.testing.assert_allclose(out[:, :3], np.einsum("bit,bij->bjt", x[:, :3], mats), atol=1e-12)
    np.testing.assert_array_equal(augment_imu.time_flip(x)[..., 0], x[..., -1])
