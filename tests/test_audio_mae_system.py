"""HIMU-MAE system: record preprocessing, a training step that lowers the loss, embeddings and reconstruction PNGs."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from PIL import Image

from configs import himu_mae as himu_config
from imujax import figures
from imujax.eval import reconstruction
from imujax.systems.himu_mae import System


@pytest.fixture(scope="module")
def system():
    config = himu_config.get_config("demo")
    config.model.update(dict(img_h=32, img_w=32, patch=8, embed_dim=32, depth=1, num_heads=2, decoder_dim=16,
                             decoder_depth=2, decoder_heads=2, meta_hidden=16))
    return System(config)


def _record(rng, label=0):
    names = [f"left_arm/acc_{a}" for a in "xyz"] + ["head/acc_x"]
    return {"imu": rng.normal(size=(200, 4)).astype(np.float32), "imu_rate_hz": np.float32(100.0),
            "channels": [n.encode() for n in names], "label": np.int64(label), "id": b"r"}


def test_preprocess_shapes_and_errors(system):
    rng = np.random.default_rng(0)
    out = system.preprocess(_record(rng), None)
    assert out["spec"].shape == (3, 32, 32) and out["spec"].dtype == np.float32 and out["label"] == 0
    again = system.preprocess(_record(np.random.default_rng(0)), None)
    np.testing.assert_array_equal(out["spec"], again["spec"])
    bad = _record(rng)
    bad["channels"][0] = b"right_arm/acc_x"
    with pytest.raises(KeyError, match="left_arm/acc_x"):
        system.preprocess(bad, None)


def test_loss_steps_embed_and_reconstruct(system, tmp_path):
    rng = np.random.default_rng(1)
    batch = [system.preprocess(_record(rng, i % 2), None) for i in range(4)]
    batch = {k: np.stack([b[k] for b in batch]) for k in batch[0]}
    model = system.make_model(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        (loss, metrics), grads = nnx.value_and_grad(lambda m: system.loss(m, batch, jax.random.key(0)),
                                                    has_aux=True)(model)
        opt.update(model, grads)
        return loss, metrics

    losses = [float(step(model, opt, batch)[0]) for _ in range(15)]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]  # same masking each step: it must fit
    assert float(step(model, opt, batch)[1]["mask_fraction"]) == pytest.approx(1 - 4 / 16)  # int(16 * 0.25) kept

    model.eval()
    emb = nnx.jit(lambda m, b: system.embed(m, b))(model, batch)
    assert emb["fused"].shape == (4, 32)
    pics = nnx.jit(system.pictures)(model, batch, jax.random.key(0))["reconstruction_spectrogram"]
    assert pics.kind == reconstruction.SPECTROGRAM
    assert pics.recon.shape == pics.inputs.shape == (4, 3, 32, 32)
    visible = np.asarray(pics.masked) != 0
    np.testing.assert_allclose(np.asarray(pics.recon)[visible], np.asarray(batch["spec"])[visible], atol=1e-6)
    path = figures.draw(jax.device_get(pics), str(tmp_path / "r.png"))
    with Image.open(path) as im:
        assert im.size == (3 * 3 * 220, 4 * 220)  # 3 channels x (input, masked, reconstruction), 4 examples


def test_fusion_heads():
    """late_sum adds the omni classifier's logits; interfuse / late_mlp consume [feature ; video] (key layouts)."""
    from imujax.models.audio_mae import AudioMAESizes, AudioMAEViT
    sizes = AudioMAESizes(img_h=16, img_w=32, in_chans=3, patch=8, embed_dim=16, depth=1, num_heads=2, video_dim=8,
                          pos_grid_swapped=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 16, 32)).astype(np.float32)
    video = rng.normal(size=(4, 8)).astype(np.float32)
    late = AudioMAEViT(sizes, 5, fusion="late_sum", rngs=nnx.Rngs(0))
    late.eval()
    feat = late.features(x)
    np.testing.assert_allclose(late(x, video), late.head(feat) + late.omni_classifier(video), atol=1e-6)
    inter = AudioMAEViT(sizes, 5, fusion="interfuse", rngs=nnx.Rngs(0))
    assert inter.interfuse[0].kernel.shape == (24, 16) and inter(x, video, key=jax.random.key(0)).shape == (4, 5)
    mlp = AudioMAEViT(sizes, 5, fusion="late_mlp", mlp_hidden=(12, 6), rngs=nnx.Rngs(0))
    assert [type(m).__name__ for m in mlp.late_fusion.model] == ["Linear", "BatchNorm", "GELU", "Dropout"] * 2 + [
        "Linear"]
    mlp.eval()
    assert mlp(x, video).shape == (4, 5)
    probe = AudioMAEViT(sizes, 5, probe_bn=True, rngs=nnx.Rngs(0))
    probe(x)  # training mode: updates the running statistics of head.0
    assert int(probe.head[0].count[...]) == 1
    with pytest.raises(ValueError, match="needs the video feature"):
        late(x)
