"""InfoNCE conventions against torch-written reference formulas, and global negatives on an 8-device mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.sharding import NamedSharding, PartitionSpec as P

from imujax.objectives import infonce

B, D = 16, 12


def _embeddings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(B, D)).astype(np.float32)
    b = (a + rng.normal(size=(B, D)) * 1.5).astype(np.float32)  # correlated pairs, not unit norm
    return a, b


# --- torch references (written from the upstream formulas) ----------------------------------------------------------

def torch_imu2clip(q, k, tau, mask=None):
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits = q @ k.T
    labels = torch.arange(len(q))
    if mask is None:
        return (F.nll_loss(F.log_softmax(logits / tau, dim=0), labels)
                + F.nll_loss(F.log_softmax(logits / tau, dim=1), labels))
    if mask.sum() == 0:
        return torch.tensor(0.0)
    li = F.nll_loss(F.log_softmax(logits / tau, dim=0), labels, reduction="none")
    lt = F.nll_loss(F.log_softmax(logits / tau, dim=1), labels, reduction="none")
    return (li * mask).sum() / mask.sum() + (lt * mask).sum() / mask.sum()


def torch_revalexo(q, k, tau):
    logits = F.normalize(q, p=2, dim=1) @ F.normalize(k, p=2, dim=1).T / tau
    labels = torch.arange(len(q))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def torch_one_direction(q, k, tau):
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T / tau
    return F.cross_entropy(logits, torch.arange(len(q)))


def torch_evi_mae(imu, video, tau=0.05):
    total = F.normalize(imu, dim=-1) @ F.normalize(video, dim=-1).T / tau
    nce = -torch.mean(torch.diag(F.log_softmax(total, dim=0)))
    c_acc = (torch.argmax(F.softmax(total, dim=0), dim=0) == torch.arange(total.shape[0])).sum() / total.shape[0]
    return nce, c_acc


def _torch_value_and_grads(fn, a, b, tau):
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ttau = torch.tensor(tau, requires_grad=True)
    loss = fn(ta, tb, ttau)
    loss.backward()
    return loss.item(), ta.grad.numpy(), tb.grad.numpy(), ttau.grad.item()


CASES = {
    "imu2clip_symmetric_sum": (lambda a, b, t: infonce.info_nce_symmetric_sum(a, b, t), torch_imu2clip),
    "revalexo_symmetric_mean": (infonce.info_nce_symmetric_mean, torch_revalexo),
    "one_direction": (lambda a, b, t: infonce.info_nce(a, b, t), torch_one_direction),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_reference_with_learnable_temperature(name):
    jax_fn, torch_fn = CASES[name]
    a, b = _embeddings(0)
    tau = 0.1
    loss, (ga, gb, gt) = jax.value_and_grad(jax_fn, argnums=(0, 1, 2))(jnp.asarray(a), jnp.asarray(b), jnp.float32(tau))
    t_loss, t_ga, t_gb, t_gt = _torch_value_and_grads(torch_fn, a, b, tau)
    np.testing.assert_allclose(float(loss), t_loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ga), t_ga, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gb), t_gb, atol=1e-6)
    np.testing.assert_allclose(float(gt), t_gt, rtol=1e-5)


def test_symmetric_sum_is_twice_the_mean_convention():
    a, b = _embeddings(1)
    s = infonce.info_nce_symmetric_sum(jnp.asarray(a), jnp.asarray(b), 0.1)
    m = infonce.info_nce_symmetric_mean(jnp.asarray(a), jnp.asarray(b), 0.1)
    np.testing.assert_allclose(float(s), 2 * float(m), rtol=1e-6)


def test_primus_mask_weighting_and_all_masked():
    a, b = _embeddings(2)
    mask = (np.arange(B) % 3 != 0).astype(np.float32)
    got = infonce.info_nce_symmetric_sum(jnp.asarray(a), jnp.asarray(b), 0.1, mask=jnp.asarray(mask))
    expected = torch_imu2clip(torch.tensor(a), torch.tensor(b), 0.1, torch.tensor(mask)).item()
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    zero = infonce.info_nce_symmetric_sum(jnp.asarray(a), jnp.asarray(b), 0.1, mask=jnp.zeros(B))
    assert float(zero) == 0.0
    grads = jax.grad(lambda x: infonce.info_nce_symmetric_sum(x, jnp.asarray(b), 0.1, mask=jnp.zeros(B)))(
        jnp.asarray(a))
    assert np.all(np.isfinite(np.asarray(grads)))


def test_evi_mae_one_direction_and_accuracy():
    a, b = _embeddings(3)
    loss, c_acc = infonce.evi_mae_info_nce(jnp.asarray(a), jnp.asarray(b))
    t_loss, t_acc = torch_evi_mae(torch.tensor(a), torch.tensor(b))
    np.testing.assert_allclose(float(loss), t_loss.item(), rtol=1e-6)
    assert float(c_acc) == pytest.approx(t_acc.item())
    b_loss, b_acc = infonce.evi_mae_info_nce(jnp.asarray(a), jnp.asarray(b), bidirectional=True)
    t_loss2, t_acc2 = torch_evi_mae(torch.tensor(b), torch.tensor(a))  # transposed similarity = other direction
    np.testing.assert_allclose(float(b_loss), 0.5 * (t_loss.item() + t_loss2.item()), rtol=1e-6)
    assert float(b_acc) == pytest.approx(0.5 * (t_acc.item() + t_acc2.item()))
    # Softmax over IMU rows is not the row direction: the two differ on asymmetric data.
    row_dir = infonce.info_nce(jnp.asarray(a), jnp.asarray(b), 0.05)
    assert abs(float(row_dir) - float(loss)) > 1e-4


def test_zero_vectors_normalise_to_zero_like_torch():
    x = np.zeros((2, 4), np.float32)
    x[1] = [3.0, 4.0, 0.0, 0.0]
    np.testing.assert_allclose(np.asarray(infonce.l2_normalize(jnp.asarray(x))),
                               F.normalize(torch.tensor(x), dim=-1).numpy())


def test_shape_errors_name_the_function():
    with pytest.raises(ValueError, match="info_nce_symmetric_sum: expected two \\[B, D\\]"):
        infonce.info_nce_symmetric_sum(jnp.zeros((4, 3)), jnp.zeros((5, 3)))


# --- global negatives -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) >= 8, "tests/conftest.py must force 8 fake CPU devices"
    return jax.make_mesh((2, 4), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_batch_gives_global_negatives(mesh, name):
    jax_fn, _ = CASES[name]
    a, b = _embeddings(4)
    tau = jnp.float32(0.07)
    value_and_grad = jax.jit(jax.value_and_grad(jax_fn, argnums=(0, 1, 2)))

    single = value_and_grad(jnp.asarray(a), jnp.asarray(b), tau)

    batch_sharding = NamedSharding(mesh, P(("data", "fsdp")))
    a_sharded = jax.device_put(jnp.asarray(a), batch_sharding)
    b_sharded = jax.device_put(jnp.asarray(b), batch_sharding)
    assert len(a_sharded.sharding.device_set) == 8
    assert a_sharded.addressable_shards[0].data.shape == (B // 8, D)
    sharded = value_and_grad(a_sharded, b_sharded, tau)

    loss, (ga, gb, gt) = single
    s_loss, (s_ga, s_gb, s_gt) = sharded
    assert abs(float(loss) - float(s_loss)) <= 1e-6
    np.testing.assert_allclose(np.asarray(s_ga), np.asarray(ga), atol=1e-6)
    np.testing.assert_allclose(np.asarray(s_gb), np.asarray(gb), atol=1e-6)
    assert abs(float(gt) - float(s_gt)) <= 1e-6 * max(1.0, abs(float(gt)))

    # Per-device (upstream DDP-style) losses would see only 2 samples each and give a different value.
    local = np.mean([float(jax_fn(jnp.asarray(a[i:i + 2]), jnp.asarray(b[i:i + 2]), tau)) for i in range(0, B, 2)])
    assert abs(local - float(s_loss)) > 1e-3


def _supcon_by_loops(z: np.ndarray, labels: np.ndarray, tau: float) -> float:
    """Khosla et al. (2020) eq. 2 anchor by anchor, in float64."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        log_denominator = np.log(sum(np.exp(z[i] @ z[j] / tau) for j in others))
        positives = [j for j in others if labels[j] == labels[i]]
        if positives:
            losses.append(-np.mean([z[i] @ z[p] / tau - log_denominator for p in positives]))
    return float(np.mean(losses))


def test_supervised_contrastive_matches_the_formula_anchor_by_anchor():
    a, b = _embeddings(5)
    z = np.concatenate([a, b]).astype(np.float64)
    labels = np.array([0, 1, 2, 3] * 4 + [9] + [0, 1, 2, 3] * 3 + [7, 8, 5])  # 9, 7, 8, 5: anchors with no positive
    got = infonce.supervised_contrastive(jnp.asarray(z, jnp.float32), jnp.asarray(labels), 0.2)
    np.testing.assert_allclose(float(got), _supcon_by_loops(z, labels, 0.2), rtol=1e-5)


def test_supervised_contrastive_with_only_view_pairs_is_nt_xent():
    """Labels that pair only the two views of each window turn SupCon into SimCLR's NT-Xent over 2B embeddings."""
    a, b = _embeddings(6)
    z = np.concatenate([a, b])
    got = infonce.supervised_contrastive(jnp.asarray(z), jnp.asarray(np.tile(np.arange(B), 2)), 0.1)
    zn = torch.nn.functional.normalize(torch.from_numpy(z).double(), dim=1)
    logits = (zn @ zn.T / 0.1).fill_diagonal_(-float("inf"))
    want = F.cross_entropy(logits, torch.cat([torch.arange(B, 2 * B), torch.arange(B)]))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
