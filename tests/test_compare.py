"""`python -m imujax.compare`: a torch checkpoint + inputs + the torch outputs -> per-output table, exit status.

Two families: evi_mae_ft in process (passing, failing, missing-output, convert-directory --src) and deepconvlstm through
the real entry point in a subprocess (a failing comparison exits 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from imujax import compare
from imujax.bridges.torch import conversion
from tests.torch_reference import evi_mae as evi_ref
from tests.torch_reference import rnn_imu as rnn_ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = evi_ref.RefSizes(imu_dim=32, imu_depth=1, imu_heads=2, imu_time=32, imu_freq=32, video_dim=16, video_depth=1,
                        video_heads=2, num_frames=2, img_size=32)
HEADS = ["imu_heads=2", "video_heads=2"]


def _flags(**kw):
    base = dict(model=None, src=None, inputs=None, reference=None, atol=compare.DEFAULT_ATOL,
                rtol=compare.DEFAULT_RTOL, set=[], strict=True)
    return types.SimpleNamespace(**{**base, **kw})


def test_compare_arrays_rules():
    ref = np.array([1.0, -2.0, 0.0, np.nan], np.float32)
    same = compare.compare_arrays("x", ref.copy(), ref, 1e-4, 1e-3)
    assert same.ok and same.max_abs == 0.0
    near = compare.compare_arrays("x", ref + np.float32(1.5e-3), ref, 1e-4, 1e-3)  # 1.5e-3 <= 1e-4 + 1e-3 * |-2|
    assert not near.ok and near.max_abs == pytest.approx(1.5e-3, rel=1e-3)
    assert near.max_rel == pytest.approx(1.5e-3, rel=1e-3)  # the worst non-zero element: 1.5e-3 / 1
    assert compare.compare_arrays("x", ref + np.float32(1.5e-3), ref, 2e-3, 0.0).ok  # the element at 0 needs atol
    nan_mismatch = compare.compare_arrays("x", np.array([1.0, -2.0, np.nan, np.nan]), ref, 1e-4, 1e-3)
    assert not nan_mismatch.ok and "NaN" in nan_mismatch.note
    assert not compare.compare_arrays("x", ref[:3], ref, 1, 1).ok
    assert not compare.compare_arrays("x", None, ref, 1, 1).ok


@pytest.fixture(scope="module")
def ft_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare_ft")
    rng = np.random.default_rng(0)
    x = {"imu": rng.standard_normal((2, 12, 32, 32)).astype(np.float32),
         "video": rng.standard_normal((2, 3, 2, 32, 32)).astype(np.float32)}
    module = evi_ref.randomize_(evi_ref.EVIMAEFT(TINY, 4), seed=0).eval()
    torch.save({"module." + k: v for k, v in module.state_dict().items()}, tmp / "ft.pth")
    with torch.no_grad():
        logits = module(torch.from_numpy(x["imu"]), torch.from_numpy(x["video"])).numpy()
    np.savez(tmp / "in.npz", **x)
    np.savez(tmp / "ref.npz", logits=logits)
    wrong = logits.copy()
    wrong[1, 2] += 0.05
    np.savez(tmp / "wrong.npz", logits=wrong)
    np.savez(tmp / "missing.npz", logits=logits, latent=np.zeros(3, np.float32))
    return tmp


def test_evi_mae_ft_pass_fail_and_missing(ft_files, capsys):
    args = dict(model="evi_mae_ft", src=str(ft_files / "ft.pth"), inputs=str(ft_files / "in.npz"), set=HEADS)
    assert compare._main(["imujax.compare"], _flags(**args, reference=str(ft_files / "ref.npz"))) == 0
    out = capsys.readouterr().out
    assert "logits" in out and "(2, 4)" in out and "pass" in out and "1 of 1 outputs pass" in out

    assert compare._main(["imujax.compare"], _flags(**args, reference=str(ft_files / "wrong.npz"))) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("logits"))
    assert "FAIL" in line and float(line.split()[3]) == pytest.approx(0.05, rel=1e-3)  # max abs column
    assert "0 of 1 outputs pass" in out

    comparisons, extra = compare.compare("evi_mae_ft", args["src"], args["inputs"], str(ft_files / "missing.npz"),
                                         overrides={"imu_heads": "2", "video_heads": "2"})
    assert [c.ok for c in comparisons] == [True, False] and comparisons[1].note == "not produced by the model"
    assert extra == []


def test_convert_directory_as_src(ft_files):
    """An imujax.convert output compares the same as its torch checkpoint; a family mismatch is a named error."""
    out_dir = ft_files / "converted"
    conversion.convert_file("evi_mae_ft", str(ft_files / "ft.pth"), str(out_dir), {"imu_heads": "2", "video_heads": "2"},
                         inputs_path=str(ft_files / "in.npz"), outputs_path=str(ft_files / "out.npz"))
    comparisons, _ = compare.compare("evi_mae_ft", str(out_dir), str(ft_files / "in.npz"), str(ft_files / "ref.npz"),
                                     atol=1e-5, rtol=0)
    assert all(c.ok for c in comparisons)
    with pytest.raises(ValueError, match="holds a evi_mae_ft conversion"):
        compare.compare("evi_mae", str(out_dir), str(ft_files / "in.npz"), str(ft_files / "ref.npz"))


def test_deepconvlstm_entry_point_exit_status(tmp_path):
    torch.manual_seed(0)
    module = rnn_ref.DeepConvLSTM(channels=6, conv_kernels=4, conv_kernel_size=3, lstm_units=16, feature_dim=8,
                                  num_classes=3).eval()
    torch.save(module.state_dict(), tmp_path / "imu_encoder_best.pt")
    x = np.random.default_rng(1).normal(size=(2, 20, 6)).astype(np.float32)
    with torch.no_grad():
        features = module(torch.from_numpy(x)).numpy()
    np.savez(tmp_path / "in.npz", imu=x)
    np.savez(tmp_path / "ref.npz", features=features * 1.01)  # 1% off: beyond rtol 1e-3
    command = [sys.executable, "-m", "imujax.compare", "--model=deepconvlstm", f"--src={tmp_path / 'imu_encoder_best.pt'}",
               f"--inputs={tmp_path / 'in.npz'}", f"--reference={tmp_path / 'ref.npz'}"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "features" in proc.stdout and "FAIL" in proc.stdout and "(2, 8)" in proc.stdout

    proc = subprocess.run(command[:-1] + [f"--reference={tmp_path / 'absent.npz'}"], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "reference file" in proc.stderr and "does not exist" in proc.stderr
