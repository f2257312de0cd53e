"""End to end: torch.save'd reference checkpoints -> `python -m imujax.convert` -> Orbax -> forward -> export -> torch.

The command line is driven in process (absl flags parsed per call) except one subprocess run that checks the real
entry point and its exit status on a bad checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from flax import nnx

from imujax import convert
from imujax.bridges.torch import conversion, rules
from tests.torch_reference import evi_mae as ref

TINY = ref.RefSizes(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=32, imu_freq=32, video_dim=16, video_depth=1,
                    video_heads=2, num_frames=4, img_size=32, decoder_dim=8, decoder_heads=2, decoder_depth=1,
                    graph_hidden=16)
HEADS = ["imu_heads=2", "video_heads=2", "decoder_heads=2"]
B = 2
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def flags():
    return convert._define_flags()


def cli(flags, *args):
    flags.unparse_flags()
    argv = flags(["imujax.convert", *args])
    return convert._main(argv, flags)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    imu = rng.standard_normal((B, 12, 32, 32)).astype(np.float32)
    return {"imu": imu, "imu_freq_time": np.ascontiguousarray(np.swapaxes(imu, 2, 3)),
            "video": rng.standard_normal((B, 3, 4, 32, 32)).astype(np.float32)}


def _calibrated(module, run, seed):
    ref.randomize_(module, seed=seed)
    ref.calibrate_batch_norm_(module, run, seed=seed)
    return module.eval()


def _ft_module(arrays, seed=0):
    m = ref.EVIMAEFT(TINY, 5)
    return _calibrated(m, lambda: m(torch.from_numpy(arrays["imu"]), torch.from_numpy(arrays["video"])), seed)


def _save_dataparallel(module, path):
    torch.save({"module." + k: v for k, v in module.state_dict().items()}, path)


def _assert_same_state_dict(loaded, original, prefix=""):
    assert list(sorted(loaded)) == sorted(prefix + k for k in original)
    for key, tensor in original.items():
        got = loaded[prefix + key]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, key
        assert torch.equal(got, tensor), key


def test_evi_mae_ft_cli_round_trip(tmp_path, flags, arrays):
    module = _ft_module(arrays)
    src = tmp_path / "best_evi_model.pth"
    _save_dataparallel(module, src)
    np.savez(tmp_path / "in.npz", imu=arrays["imu"], video=arrays["video"])
    out_dir, out_npz = tmp_path / "orbax", tmp_path / "out.npz"
    assert cli(flags, "--model=evi_mae_ft", f"--src={src}", f"--out={out_dir}", *[f"--set={s}" for s in HEADS],
               f"--inputs={tmp_path / 'in.npz'}", f"--outputs={out_npz}") == 0

    with torch.no_grad():
        expected = module(torch.from_numpy(arrays["imu"]), torch.from_numpy(arrays["video"])).numpy()
    got = np.load(out_npz)["logits"]
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-5

    name, config, state = conversion.load_converted(str(out_dir))
    assert name == "evi_mae_ft" and config["num_classes"] == 5
    # position sizes came from the input arrays, widths and depths from the checkpoint
    assert (config["imu_time"], config["imu_freq"], config["num_frames"], config["img_size"]) == (32, 32, 4, 32)
    assert (config["imu_dim"], config["video_dim"], config["graph_hidden"]) == (32, 16, 16)
    assert isinstance(state, nnx.State)

    pth = tmp_path / "back.pth"
    assert cli(flags, "--export", f"--src={out_dir}", f"--out={pth}") == 0
    _assert_same_state_dict(torch.load(pth, weights_only=True), module.state_dict(), prefix="module.")

    meta_path = out_dir / conversion.CONFIG_FILE  # an output of an older parameter layout is refused, not misread
    text = meta_path.read_text()
    meta_path.write_text(text.replace('"format_version": 4', '"format_version": 2'))  # EVI-MAE's layout: same in 2
    assert conversion.load_converted(str(out_dir))[0] == "evi_mae_ft"
    meta_path.write_text(text.replace('"format_version": 4', '"format_version": 1'))
    with pytest.raises(ValueError, match="format_version 1, this imujax reads 2, 3 or 4 for evi_mae_ft"):
        conversion.load_converted(str(out_dir))


def test_fusion_and_pretraining_round_trip(tmp_path, arrays):
    """RevalExo best_model.pt wrapper dict and an EVIMAE checkpoint: outputs match torch, export is bit-exact."""
    fusion = ref.EVIMAEFusion(TINY, 3, feature_dim=24)
    _calibrated(fusion, lambda: fusion(torch.from_numpy(arrays["imu_freq_time"]), torch.from_numpy(arrays["video"])), 1)
    torch.save({"epoch": 3, "model_state_dict": fusion.state_dict(), "optimizer_state_dict": {"state": {}},
                "metrics": {"f1": 0.5}, "prediction_horizons": [0, 0.1, 0.2, 0.3, 0.5, 1.0]}, tmp_path / "best_model.pt")
    np.savez(tmp_path / "fin.npz", imu=arrays["imu_freq_time"], video=arrays["video"])
    conversion.convert_file("revalexo_evi_mae_fusion", str(tmp_path / "best_model.pt"), str(tmp_path / "f"),
                         dict(s.split("=") for s in HEADS), inputs_path=str(tmp_path / "fin.npz"),
                         outputs_path=str(tmp_path / "fout.npz"))
    with torch.no_grad():
        logits, features = fusion(torch.from_numpy(arrays["imu_freq_time"]), torch.from_numpy(arrays["video"]))
    out = np.load(tmp_path / "fout.npz")
    assert out["logits_per_horizon"].shape == (6, B, 3)
    assert np.abs(out["logits_per_horizon"] - torch.stack(logits).numpy()).max() <= 1e-5
    assert np.abs(out["encoder_features"] - features.numpy()).max() <= 1e-5
    conversion.export_converted(str(tmp_path / "f"), str(tmp_path / "f.pth"))
    _assert_same_state_dict(torch.load(tmp_path / "f.pth", weights_only=True), fusion.state_dict())

    pre = ref.randomize_(ref.EVIMAE(TINY), seed=2).eval()
    _save_dataparallel(pre, tmp_path / "pre.pth")
    np.savez(tmp_path / "pin.npz", imu=arrays["imu"], video=arrays["video"])
    conversion.convert_file("evi_mae", str(tmp_path / "pre.pth"), str(tmp_path / "p"), dict(s.split("=") for s in HEADS),
                         inputs_path=str(tmp_path / "pin.npz"), outputs_path=str(tmp_path / "pout.npz"))
    with torch.no_grad():
        latent_a, latent_v = pre.encode_unmasked(torch.from_numpy(arrays["imu"]), torch.from_numpy(arrays["video"]))
    out = np.load(tmp_path / "pout.npz")
    assert np.abs(out["latent_imu"] - latent_a.numpy()).max() <= 1e-5
    assert np.abs(out["latent_video"] - latent_v.numpy()).max() <= 1e-5
    conversion.export_converted(str(tmp_path / "p"), str(tmp_path / "p.pth"))
    _assert_same_state_dict(torch.load(tmp_path / "p.pth", weights_only=True), pre.state_dict(), prefix="module.")


def test_single_horizon_fusion_uses_dropout_linear_heads(arrays):
    """One horizon: upstream keys the head ``classifier.heads.0.1`` (Dropout, Linear) and has no shared trunk."""
    fusion = ref.EVIMAEFusion(TINY, 4, feature_dim=24, num_horizons=1)
    _calibrated(fusion, lambda: fusion(torch.from_numpy(arrays["imu_freq_time"]), torch.from_numpy(arrays["video"])), 4)
    sd = {k: v.numpy().copy() for k, v in fusion.state_dict().items()}
    assert "classifier.heads.0.1.weight" in sd and not any("shared_net" in k for k in sd)
    overrides = dict(s.split("=") for s in [*HEADS, "imu_time=32", "imu_freq=32", "num_frames=4", "img_size=32"])
    converted = conversion.convert_state_dict("revalexo_evi_mae_fusion", sd, overrides)
    assert (converted.config["num_horizons"], converted.config["shared_layers"]) == (1, False)
    out = conversion.run_forward("revalexo_evi_mae_fusion", converted.model,
                              {"imu": arrays["imu_freq_time"], "video": arrays["video"]})
    with torch.no_grad():
        logits, _ = fusion(torch.from_numpy(arrays["imu_freq_time"]), torch.from_numpy(arrays["video"]))
    assert np.abs(out["logits_per_horizon"][0] - logits[0].numpy()).max() <= 1e-5
    back = conversion.export_state_dict("revalexo_evi_mae_fusion", converted.config, nnx.state(converted.model))
    assert sorted(back) == sorted(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)


def _ft_state_dict(arrays):
    return {"module." + k: v.numpy().copy() for k, v in _ft_module(arrays).state_dict().items()}


def _convert(sd, *extra, strict=True):
    overrides = dict(s.split("=") for s in [*HEADS, "imu_time=32", "imu_freq=32", "num_frames=4", "img_size=32", *extra])
    return conversion.convert_state_dict("evi_mae_ft", sd, overrides, strict=strict)


def test_mismatched_checkpoints_give_the_table_error(arrays):
    sd = _ft_state_dict(arrays)
    broken = dict(sd)
    del broken["module.blocks_a.0.attn.proj.bias"]
    broken["module.blocks_a.0.attn.extra"] = np.zeros(3, np.float32)
    broken["module.mlp_head.0.weight"] = np.ones(7, np.float32)
    with pytest.raises(rules.BridgeMismatchError) as err:
        _convert(broken)
    text = str(err.value)
    assert "missing NNX params" in text and "blocks_a/0/attn/proj/bias" in text
    assert "unexpected torch keys" in text and "module.blocks_a.0.attn.extra" in text
    assert "shape mismatches" in text and "module.mlp_head.0.weight" in text

    nonzero_eps = dict(sd, **{"module.graph_encoder.layers.1.eps": np.full(1, 0.5, np.float32)})
    with pytest.raises(rules.BridgeMismatchError, match="GIN eps must be 0"):
        _convert(nonzero_eps)
    with pytest.raises(ValueError, match="contradicts the checkpoint"):
        _convert(sd, "imu_dim=64")
    with pytest.raises(ValueError, match="unknown --set key"):
        _convert(sd, "imu_width=64")
    with pytest.raises(KeyError, match="similar keys"):  # a fusion checkpoint given as evi_mae_ft
        _convert({"encoder." + k[len("module."):]: v for k, v in sd.items()})


def test_nostrict_starts_fine_tuning_from_a_pretraining_checkpoint(arrays):
    """EVIMAE weights into EVIMAEFT: decoder keys reported unexpected, the new head missing and freshly initialised."""
    pre = ref.randomize_(ref.EVIMAE(dataclasses.replace(TINY, imu_depth=2)), seed=3)
    sd = {"module." + k: v.numpy().copy() for k, v in pre.state_dict().items()}
    del sd["module.blocks_a.1.mlp.fc2.bias"]  # one layer of a stacked param missing: only that layer keeps its init
    with pytest.raises(ValueError, match="num_classes"):
        _convert(sd, strict=False)
    converted = _convert(sd, "num_classes=4", strict=False)
    report = converted.report
    assert {p for p, _, _ in report.missing} == {("mlp_head", 0, "scale"), ("mlp_head", 0, "bias"),
                                                 ("mlp_head", 1, "kernel"), ("mlp_head", 1, "bias"),
                                                 ("blocks_a", 1, "mlp", "fc2", "bias")}
    fc2_bias = np.asarray(converted.model.blocks_a.block.mlp.fc2.bias[...])
    np.testing.assert_array_equal(fc2_bias[0], sd["module.blocks_a.0.mlp.fc2.bias"])
    assert not np.array_equal(fc2_bias[1], pre.state_dict()["blocks_a.1.mlp.fc2.bias"].numpy())
    assert any(k == "module.decoder_embed.weight" for k, *_ in report.unexpected)
    np.testing.assert_array_equal(np.asarray(converted.model.blocks_a.block.attn.qkv.kernel[...][0]),
                                  sd["module.blocks_a.0.attn.qkv.weight"].T)
    logits = conversion.run_forward("evi_mae_ft", converted.model, {"imu": arrays["imu"], "video": arrays["video"]})
    assert logits["logits"].shape == (B, 4) and np.isfinite(logits["logits"]).all()
    with pytest.raises(ValueError, match="lack \\['video'\\]"):
        conversion.run_forward("evi_mae_ft", converted.model, {"imu": arrays["imu"]})


def test_cli_entry_point_fails_cleanly_on_a_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    proc = subprocess.run([sys.executable, "-m", "imujax.convert", "--model=evi_mae_ft", f"--src={bad}",
                           f"--out={tmp_path / 'o'}"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "o").exists()
