"""EgoNCE against a torch reference of the EgoVLPv2 formula; positive-mask rules; scene-aware negatives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import NamedSharding, PartitionSpec as P

from imujax.objectives import egonce

N, D, V, M = 16, 10, 6, 7


def torch_sim_matrix(a, b, eps=1e-8):
    a_n = a / torch.clamp(a.norm(dim=1, keepdim=True), min=eps)
    b_n = b / torch.clamp(b.norm(dim=1, keepdim=True), min=eps)
    return a_n @ b_n.T


def torch_egonce(text, video, verbs, nouns, tau=0.05):
    x = torch_sim_matrix(text, video)
    mask = torch_sim_matrix(verbs, verbs) * torch_sim_matrix(nouns, nouns) + torch.eye(x.shape[0])
    mask_bool = mask > 0
    i_sm = torch.softmax(x / tau, dim=1)
    j_sm = torch.softmax(x.t() / tau, dim=1)
    loss_i = torch.log(torch.sum(i_sm * mask_bool, dim=1)).mean()
    loss_j = torch.log(torch.sum(j_sm * mask_bool, dim=1)).mean()
    return -loss_i - loss_j


def _data(seed):
    rng = np.random.default_rng(seed)
    verbs = (rng.uniform(size=(N, V)) < 0.25).astype(np.float32)
    nouns = (rng.uniform(size=(N, M)) < 0.25).astype(np.float32)
    verbs[:3] = verbs[0]  # rows 0-2 share the same tags -> off-diagonal positives exist
    nouns[:3] = nouns[0]
    verbs[0, 0] = nouns[0, 0] = 1.0
    text = rng.normal(size=(N, D)).astype(np.float32)
    video = (text + rng.normal(size=(N, D))).astype(np.float32)
    return text, video, verbs, nouns


def test_matches_torch_loss_and_gradients():
    text, video, verbs, nouns = _data(0)
    mask = egonce.action_positive_mask(jnp.asarray(verbs), jnp.asarray(nouns))
    assert int(mask.sum()) > N  # there are multi-positives
    loss, (g_t, g_v) = jax.value_and_grad(egonce.egonce_loss, argnums=(0, 1))(jnp.asarray(text), jnp.asarray(video),
                                                                               mask)
    tt, tv = torch.tensor(text, requires_grad=True), torch.tensor(video, requires_grad=True)
    t_loss = torch_egonce(tt, tv, torch.tensor(verbs), torch.tensor(nouns))
    t_loss.backward()
    np.testing.assert_allclose(float(loss), t_loss.item(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_t), tt.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(g_v), tv.grad.numpy(), atol=1e-5)


def test_positive_mask_needs_shared_verb_and_noun():
    verbs = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 0]], np.float32)
    nouns = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [1, 0]], np.float32)
    both = np.asarray(egonce.action_positive_mask(jnp.asarray(verbs), jnp.asarray(nouns)))
    shares_verb = verbs @ verbs.T > 0
    shares_noun = nouns @ nouns.T > 0
    np.testing.assert_array_equal(both, (shares_verb & shares_noun) | np.eye(5, dtype=bool))
    noun_only = np.asarray(egonce.action_positive_mask(jnp.asarray(verbs), jnp.asarray(nouns), use_verb=False))
    np.testing.assert_array_equal(noun_only, shares_noun | np.eye(5, dtype=bool))
    verb_only = np.asarray(egonce.action_positive_mask(jnp.asarray(verbs), jnp.asarray(nouns), use_noun=False))
    np.testing.assert_array_equal(verb_only, shares_verb | np.eye(5, dtype=bool))


def test_diagonal_mask_reduces_to_symmetric_infonce():
    text, video, _, _ = _data(1)
    loss = egonce.egonce_loss(jnp.asarray(text), jnp.asarray(video), jnp.eye(N, dtype=bool), 0.05)
    x = torch_sim_matrix(torch.tensor(text), torch.tensor(video)) / 0.05
    labels = torch.arange(N)
    expected = torch.nn.functional.cross_entropy(x, labels) + torch.nn.functional.cross_entropy(x.T, labels)
    np.testing.assert_allclose(float(loss), expected.item(), rtol=1e-6)


def test_global_batch_on_eight_devices():
    text, video, verbs, nouns = _data(2)
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    fn = jax.jit(lambda a, b, v, n: egonce.egonce_loss(a, b, egonce.action_positive_mask(v, n)))
    single = fn(jnp.asarray(text), jnp.asarray(video), jnp.asarray(verbs), jnp.asarray(nouns))
    shard = NamedSharding(mesh, P(("data", "fsdp")))
    sharded = fn(*(jax.device_put(jnp.asarray(x), shard) for x in (text, video, verbs, nouns)))
    assert abs(float(single) - float(sharded)) <= 1e-6


def test_scene_negatives_share_video_and_chunk():
    uids = ["a"] * 5 + ["b"] * 4
    times = np.array([1.0, 30.0, 59.0, 61.0, 119.0, 5.0, 10.0, 70.0, 200.0])
    segments = egonce.scene_segment_ids(uids, times)
    np.testing.assert_array_equal(segments, ["a_0", "a_0", "a_0", "a_1", "a_1", "b_0", "b_0", "b_1", "b_3"])
    rng = np.random.default_rng(3)
    picks = np.stack([egonce.sample_scene_negatives(segments, np.arange(9), rng) for _ in range(200)])
    assert np.all(segments[picks] == segments[None, :])
    assert set(picks[:, 0]) == {0, 1, 2}  # every member of the chunk is drawn
    np.testing.assert_array_equal(picks[:, 8], 8)  # a singleton segment can only return itself
    merged = egonce.with_scene_negatives({"imu": np.zeros((2, 3))}, {"imu": np.ones((2, 3))})
    assert merged["imu"].shape == (4, 3) and merged["imu"][2:].all()
    with pytest.raises(ValueError, match="differ from negative keys"):
        egonce.with_scene_negatives({"imu": np.zeros(1)}, {"video": np.zeros(1)})
