"""`python -m imujax.convert --model=evi_mae` with recorded masking draws: every output against the torch reference's
upstream-layout calls (``released_forward``, ``forward_encoder``, ``forward_decoder``), <= 1e-5 fp32.

Released widths (768 IMU / 384 video, so the 768->384 pair averaging runs; one block per tower to keep CI cheap) and
reduced widths with depth-0 and depth-1 towers (a depth-0 checkpoint is legal upstream: the tokens pass through).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flax import nnx

from imujax.bridges.torch import conversion, registry
from imujax.models import evi_mae
from imujax.models.evi_mae import EVIMAESizes
from tests.torch_reference import evi_mae as ref

TOL = 1e-5
B = 3
EVIMAESIZE_FIELDS = set(EVIMAESizes.__dataclass_fields__)
RELEASED = dict(imu_dim=768, imu_depth=1, imu_heads=12, imu_time=64, imu_freq=32, video_dim=384, video_depth=1,
                video_heads=6, num_frames=4, img_size=32, decoder_dim=192, decoder_heads=3, decoder_depth=1)
REDUCED = dict(imu_dim=64, imu_heads=4, imu_time=64, imu_freq=32, video_dim=32, video_heads=2, num_frames=4,
               img_size=64, decoder_dim=16, decoder_heads=2)
UNSTORED = ("imu_heads", "video_heads", "decoder_heads", "imu_time", "imu_freq", "num_frames", "img_size")
RELEASED_TUPLE = ("loss", "loss_mae", "loss_mae_imu", "loss_mae_video", "loss_c", "mask_imu", "mask_video", "c_acc",
                  "loss_g")


def _inputs(sizes: ref.RefSizes, seed: int, **scalars) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"imu": rng.standard_normal((B, 12, sizes.imu_time, sizes.imu_freq)).astype(np.float32),
            "video": rng.standard_normal((B, 3, sizes.num_frames, sizes.img_size, sizes.img_size)).astype(np.float32),
            "node_perm": rng.permutation(4 * B), "imu_noise": rng.random((B, sizes.imu_tokens)).astype(np.float32),
            "video_noise": rng.random((B, sizes.video_tokens)).astype(np.float32),
            "node_perm_unmasked": rng.permutation(4 * B), **{k: np.float32(v) for k, v in scalars.items()}}


def torch_outputs(module: ref.EVIMAE, x: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """What a user exports from the released code: ``forward``'s tuple, ``forward_encoder``'s latents and
    ``forward_decoder``'s predictions for the same draws, and a ``forward_encoder`` call with ratios (0, 0) whose
    tokens are put back in natural order with its ids_restore (its own, different noise: the order must not matter)."""
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in x.items()}
    ratios = float(x.get("imu_mask_ratio", 0.75)), float(x.get("video_mask_ratio", 0.9))
    draws = t["imu"], t["video"], t["node_perm"], t["imu_noise"], t["video_noise"], *ratios
    rng = np.random.default_rng(seed + 100)
    s = module.s
    with torch.no_grad():
        weights = {k: float(x[k]) for k in ("mae_loss_weight", "contrast_loss_weight") if k in x}
        out = dict(zip(RELEASED_TUPLE, module.released_forward(*draws, **weights)))
        x_joint, mask_a, restore_a, mask_v, restore_v, ca, cv, _ = module.forward_encoder(*draws)
        out["pred_imu"], out["pred_video"] = module.forward_decoder(x_joint, mask_a, restore_a, mask_v, restore_v)
        out.update(joint_latent=x_joint, contrast_imu=ca, contrast_video=cv)
        noise_a = torch.from_numpy(rng.random((B, s.imu_tokens)).astype(np.float32))
        noise_v = torch.from_numpy(rng.random((B, s.video_tokens)).astype(np.float32))
        x_all, _, restore_a, _, restore_v, _, _, out["loss_g_unmasked"] = module.forward_encoder(
                t["imu"], t["video"], t["node_perm_unmasked"], noise_a, noise_v, 0.0, 0.0)
        unshuffle = lambda z, restore: torch.gather(z, 1, restore[..., None].expand(-1, -1, z.shape[-1]))
        out["joint_latent_unmasked"] = torch.cat([unshuffle(x_all[:, :s.imu_tokens], restore_a),
                                                  unshuffle(x_all[:, s.imu_tokens:], restore_v)], dim=1)
        out["latent_imu"], out["latent_video"] = module.encode_unmasked(t["imu"], t["video"])
    return {k: v.numpy() for k, v in out.items()}


def convert_and_run(sizes: dict, seed: int, **scalars):
    """A random-weight torch EVIMAE (calibrated BatchNorm statistics, eval mode), its outputs and imujax's."""
    s = ref.RefSizes(**sizes, graph_dropout=0.0)
    x = _inputs(s, seed, **scalars)
    module = ref.randomize_(ref.EVIMAE(s), seed=seed)
    t = {k: torch.from_numpy(np.ascontiguousarray(x[k])) for k in ("imu", "video", "node_perm", "imu_noise",
                                                                   "video_noise")}
    ratios = float(x.get("imu_mask_ratio", 0.75)), float(x.get("video_mask_ratio", 0.9))
    ref.calibrate_batch_norm_(module, lambda: module(*t.values(), *ratios), seed=seed).eval()
    want = torch_outputs(module, x, seed)
    state_dict = {f"module.{k}": v.detach().numpy().copy() for k, v in module.state_dict().items()}
    converted = conversion.convert_state_dict("evi_mae", state_dict, {k: str(sizes[k]) for k in UNSTORED})
    assert converted.report.ok
    return converted, want, conversion.run_forward("evi_mae", converted.model, x)


def assert_outputs_match(got: dict, want: dict) -> None:
    described = {s.name for s in registry.get_family("evi_mae").outputs}
    assert set(got) == set(want) == described
    for key, expected in want.items():
        assert got[key].shape == expected.shape, (key, got[key].shape, expected.shape)
        diff = float(np.abs(got[key] - expected).max())
        assert diff <= TOL, f"{key}: max abs diff {diff:.2e} (scale {float(np.abs(expected).max()):.2e})"


def test_released_widths_every_output():
    """768 -> 384 averaging, released head widths; video ratio 0.5 so the few test tokens keep 4 of 8 visible."""
    converted, want, got = convert_and_run(RELEASED, seed=1, video_mask_ratio=0.5)
    assert converted.config["imu_dim"] == 768 and converted.config["video_dim"] == 384
    assert got["joint_latent"].shape == (B, 2 + 4, 384) and got["pred_imu"].shape == (B, 8, 16 * 16 * 12)
    assert float(np.abs(want["joint_latent"]).max()) > 0.5 and want["loss"] > 1  # meaningful scales
    assert_outputs_match(got, want)


def test_reduced_widths_depth_0():
    """Released mask ratios (3 of 32 video tokens visible), other loss weights; depth-0 towers (only the joint block
    and the graph run; the released-width test covers depth 1)."""
    sizes = dict(REDUCED, imu_depth=0, video_depth=0, decoder_depth=0)
    converted, want, got = convert_and_run(sizes, seed=2, mae_loss_weight=0.5, contrast_loss_weight=0.1)
    assert (converted.config["imu_depth"], converted.config["video_depth"], converted.config["decoder_depth"]) == (
            0, 0, 0)
    assert got["joint_latent"].shape == (B, 2 + 3, 32)
    np.testing.assert_allclose(got["loss_mae"], 0.5 * (want["loss_mae_imu"] + want["loss_mae_video"]), rtol=1e-6)
    assert_outputs_match(got, want)


def test_draws_are_checked():
    """Only some of the three draws, or a node_perm that is not a permutation, is a named error."""
    s = ref.RefSizes(**dict(REDUCED, imu_depth=0, video_depth=0, decoder_depth=0))
    x = _inputs(s, 0)
    sizes = EVIMAESizes(**{k: v for k, v in vars(s).items() if k in EVIMAESIZE_FIELDS})
    model = nnx.eval_shape(lambda: evi_mae.EVIMAE(sizes, rngs=nnx.Rngs(0)))  # never run: inputs are checked first
    forward = registry.get_family("evi_mae").forward
    with pytest.raises(ValueError, match="needs all of"):
        forward(model, {k: x[k] for k in ("imu", "video", "imu_noise")})
    with pytest.raises(ValueError, match="permutation"):
        forward(model, dict(x, node_perm=np.zeros(4 * B, np.int64)))
    with pytest.raises(ValueError, match=r"imu_noise must be float noise of shape \[B, L\] = \[3, 8\]"):
        forward(model, dict(x, imu_noise=x["imu_noise"][:, :4]))
    with pytest.raises(ValueError, match="keeps no token"):
        forward(model, dict(x, video_mask_ratio=np.float32(0.99)))
