"""The torch-free checkpoint reader against real torch: bit-exact tensors, formats, safety and clear errors."""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile

import ml_dtypes
import numpy as np
import pytest
import torch

from imujax.bridges.torch import export, reader
from imujax.bridges.torch.reader import CheckpointFormatError, RefusedGlobal, UnsafeCheckpointError

# Independent expectation of how each torch dtype should come back.
TORCH_TO_NUMPY = {
    torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
    torch.bfloat16: ml_dtypes.bfloat16, torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16,
    torch.int8: np.int8, torch.uint8: np.uint8, torch.bool: np.bool_, torch.complex64: np.complex64,
    torch.complex128: np.complex128, torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn,
    torch.float8_e5m2: ml_dtypes.float8_e5m2, torch.uint16: np.uint16,
}


def torch_bytes(t: torch.Tensor) -> bytes:
    return t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()


def assert_bit_exact(got: np.ndarray, want: torch.Tensor, name: str = "") -> None:
    assert isinstance(got, np.ndarray), name
    assert got.shape == tuple(want.shape), name
    assert got.dtype == np.dtype(TORCH_TO_NUMPY[want.dtype]), (name, got.dtype, want.dtype)
    assert np.ascontiguousarray(got).reshape(-1).view(np.uint8).tobytes() == torch_bytes(want), name


def make_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    out = {
        "f32": torch.randn(3, 4, generator=g), "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(), "bf16": torch.randn(4, 2, generator=g).bfloat16(),
        "i64": torch.randint(-2**40, 2**40, (7,), generator=g), "i32": torch.randint(-999, 999, (2, 2), generator=g,
                                                                                  dtype=torch.int32),
        "i16": torch.tensor([-3, 4], dtype=torch.int16), "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "c64": torch.randn(3, generator=g, dtype=torch.complex64),
        "c128": torch.randn(2, generator=g, dtype=torch.complex128),
        "f8e4m3": torch.randn(5, generator=g).to(torch.float8_e4m3fn),
        "f8e5m2": torch.randn(5, generator=g).to(torch.float8_e5m2),
        "u16": torch.tensor([1, 65535], dtype=torch.int32).to(torch.uint16),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3), "empty_i": torch.zeros(2, 0, dtype=torch.int64),
        # views sharing `base`'s storage: transposed, strided with offset, a row, the base itself
        "base": base, "t_view": base.t(), "strided": base[1:5:2, ::2], "row": base[3], "col": base[:, 2],
        "expand": torch.randn(1, 3, generator=g).expand(4, 3),  # stride-0 view
        "conj": torch.randn(2, generator=g, dtype=torch.complex64).conj(),
    }
    return out


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    return make_tensors()


@pytest.fixture(scope="module")
def zip_ckpt(tmp_path_factory, tensors) -> str:
    path = str(tmp_path_factory.mktemp("zip") / "all.pth")
    torch.save({"tensors": tensors, "param": torch.nn.Parameter(torch.arange(3.0)),
                "nested": [{"a": tensors["f32"][0], "n": 3}, (1.5, "x", None)]}, path)
    return path


@pytest.mark.parametrize("mmap", [True, False])
def test_zip_every_dtype_and_view_bit_exact(zip_ckpt, tensors, mmap):
    got = reader.load_checkpoint(zip_ckpt, mmap=mmap)
    want = torch.load(zip_ckpt, weights_only=True)
    for name, t in want["tensors"].items():
        assert_bit_exact(got["tensors"][name], t.resolve_conj(), name)
    assert_bit_exact(got["param"], want["param"].detach(), "param")
    assert_bit_exact(got["nested"][0]["a"], want["nested"][0]["a"], "nested")
    assert got["nested"][0]["n"] == 3 and got["nested"][1] == (1.5, "x", None)
    # Views of one storage share its bytes (as in torch; one copy per storage, however many tensors alias it):
    # the mapped file with mmap, one owned writable buffer without. Self-overlapping (expand) views are read-only.
    for view in ("row", "t_view", "strided"):
        assert np.shares_memory(got["tensors"]["base"], got["tensors"][view]), view
    assert got["tensors"]["base"].flags.writeable != mmap
    assert not got["tensors"]["expand"].flags.writeable


def test_legacy_format(tmp_path, tensors):
    path = str(tmp_path / "legacy.pth")
    legacy = {k: v for k, v in tensors.items() if v.dtype not in (torch.float8_e4m3fn, torch.float8_e5m2,
                                                                   torch.uint16)}
    torch.save({"sd": legacy, "p": torch.nn.Parameter(torch.ones(2)), "epoch": 4}, path,
               _use_new_zipfile_serialization=False)
    with open(path, "rb") as fh:
        assert not fh.read(4).startswith(b"PK")
    want = torch.load(path, weights_only=True)
    for mmap in (True, False):
        got = reader.load_checkpoint(path, mmap=mmap)
        for name, t in want["sd"].items():
            assert_bit_exact(got["sd"][name], t.resolve_conj(), name)
        assert_bit_exact(got["p"], want["p"].detach())
        assert got["epoch"] == 4


def test_lightning_like_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    ckpt = {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": collections.OrderedDict((f"model.{k}", v) for k, v in model.state_dict().items()),
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()],
            "hyper_parameters": {"args": argparse.Namespace(lr=1e-3, depth=2, name="run"), "tags": {"a", "b"},
                                 "np_scalar": np.float32(0.5), "np_array": np.arange(4)},
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.25)}}}
    path = str(tmp_path / "best_model.ckpt")
    torch.save(ckpt, path)
    got = reader.load_checkpoint(path)
    sd = reader.find_state_dict(got)
    assert list(sd) == list(ckpt["state_dict"])
    for k, v in ckpt["state_dict"].items():
        assert_bit_exact(sd[k], v, k)
    state = got["optimizer_states"][0]["state"]
    for idx, entry in opt.state_dict()["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert_bit_exact(state[idx][name], entry[name], name)
    args = got["hyper_parameters"]["args"]
    assert isinstance(args, RefusedGlobal) and args.global_name == "argparse.Namespace"
    assert args.attributes() == {"lr": 1e-3, "depth": 2, "name": "run"}
    assert got["hyper_parameters"]["tags"] == {"a", "b"}
    assert got["hyper_parameters"]["np_scalar"] == np.float32(0.5)
    np.testing.assert_array_equal(got["hyper_parameters"]["np_array"], np.arange(4))
    assert got["epoch"] == 3 and got["lr_schedulers"][0]["step_size"] == 10


def test_whole_module_pickle_gives_reachable_params(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.GRU(3, 4, batch_first=True))
    path = str(tmp_path / "model.pt")
    torch.save(model, path)
    got = reader.load_checkpoint(path)
    assert isinstance(got, RefusedGlobal) and got.global_name == "torch.nn.modules.container.Sequential"
    sd = reader.find_state_dict(got)
    want = model.state_dict()
    assert set(sd) == set(want)
    for k, v in want.items():
        assert_bit_exact(sd[k], v, k)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.container.Sequential"):
        reader.load_checkpoint(path, allow_placeholders=False)


def test_find_state_dict_wrappers_and_flatten():
    w = np.ones((2, 2), np.float32)
    assert list(reader.find_state_dict({"model_state_dict": {"a": w}, "epoch": 1})) == ["a"]
    assert list(reader.find_state_dict({"model": {"enc": {"b": w}}, "args": 1})) == ["enc.b"]
    assert list(reader.find_state_dict({"x.y": w, "step": 3})) == ["x.y"]
    flat = reader.flatten_state_dict({"a": [w, {"b": 2}], "c": (w,)}, sep="/")
    assert list(flat) == ["a/0", "a/1/b", "c/0"] and flat["a/1/b"] == 2
    with pytest.raises(CheckpointFormatError, match="no tensors"):
        reader.find_state_dict({"epoch": 1})


# ---------------------------------------------------------------------------------------------- safetensors


def test_safetensors_own_writer_and_package(tmp_path, tensors):
    import safetensors.torch

    st_dtypes = {torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
                 torch.int16, torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2}
    chosen = {k: v.contiguous() for k, v in tensors.items() if v.dtype in st_dtypes and k not in ("t_view",)}
    pkg_path = str(tmp_path / "pkg.safetensors")
    safetensors.torch.save_file({k: v.clone() for k, v in chosen.items()}, pkg_path, metadata={"format": "pt"})
    got = reader.load_checkpoint(pkg_path)
    assert set(got) == set(chosen)
    for k, v in chosen.items():
        assert_bit_exact(got[k], v, k)
    assert reader.safetensors_metadata(pkg_path) == {"format": "pt"}

    own_path = str(tmp_path / "own.safetensors")
    export.write_safetensors(own_path, got, metadata={"source": "imujax"})
    back = safetensors.torch.load_file(own_path)  # the reference implementation accepts our file
    for k, v in chosen.items():
        assert_bit_exact(back[k].numpy() if v.dtype not in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)
                         else reader.load_checkpoint(own_path)[k], v, k)
        assert torch_bytes(back[k]) == torch_bytes(v), k


def test_safetensors_header_out_of_range(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", 10_000) + header + b"\0" * 16)
    with pytest.raises(CheckpointFormatError, match="header length 10000 is out of range"):
        reader.load_checkpoint(str(path))
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)  # data shorter than the offsets
    with pytest.raises(CheckpointFormatError, match="'w' data_offsets"):
        reader.load_checkpoint(str(path))


# ---------------------------------------------------------------------------------------------- without torch

_BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def test_reader_works_with_torch_blocked(tmp_path, zip_ckpt, tensors):
    legacy = str(tmp_path / "legacy.pth")
    torch.save({"w": tensors["t_view"], "b": tensors["bf16"]}, legacy, _use_new_zipfile_serialization=False)
    st = str(tmp_path / "x.safetensors")
    export.write_safetensors(st, {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    script = _BLOCK_TORCH + textwrap.dedent(f"""
        import hashlib, json
        import numpy as np
        try:
            import torch
            raise SystemExit("torch import was not blocked")
        except ImportError:
            pass
        from imujax.bridges.torch import reader, export, rules
        out = {{}}
        z = reader.load_checkpoint({zip_ckpt!r})
        out["zip"] = {{k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in z["tensors"].items()}}
        lg = reader.load_checkpoint({legacy!r})
        out["legacy"] = hashlib.sha256(np.ascontiguousarray(lg["w"]).tobytes()).hexdigest()
        out["st"] = reader.load_checkpoint({st!r})["w"].tolist()
        export.write_torch_state_dict({str(tmp_path / "w.pth")!r}, {{"x": lg["w"]}})
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print(json.dumps(out))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=os.getcwd(),
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    import hashlib
    for k, t in tensors.items():
        assert out["zip"][k] == hashlib.sha256(torch_bytes(t.resolve_conj())).hexdigest(), k
    assert out["legacy"] == hashlib.sha256(torch_bytes(tensors["t_view"])).hexdigest()
    assert out["st"] == [[0, 1, 2], [3, 4, 5]]
    assert torch.equal(torch.load(tmp_path / "w.pth", weights_only=True)["x"], tensors["t_view"])


# ---------------------------------------------------------------------------------------------- safety


class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: str) -> dict[str, tuple]:
    return {
        "posix.system": (os.system, (f"touch {marker}",)),
        "builtins.eval": (eval, (f"open({marker!r}, 'w').close()",)),
        "subprocess.Popen": (subprocess.Popen, (["touch", marker],)),
    }


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("which", ["posix.system", "builtins.eval", "subprocess.Popen"])
def test_code_execution_payloads_are_refused(tmp_path, which, legacy):
    marker = str(tmp_path / "pwned")
    func, args = _payloads(marker)[which]
    path = str(tmp_path / "evil.pth")
    torch.save({"w": torch.ones(2), "x": _Payload(func, args)}, path, _use_new_zipfile_serialization=not legacy)
    for allow in (True, False):
        with pytest.raises(UnsafeCheckpointError, match=which.split(".")[-1]) as err:
            reader.load_checkpoint(path, allow_placeholders=allow)
        assert f"refusing pickled global '{which}'" in str(err.value)
    assert not os.path.exists(marker)


def test_payload_is_live_under_plain_pickle(tmp_path):
    """Control: the same os.system payload does run under an unrestricted unpickler."""
    marker = str(tmp_path / "ran")
    path = str(tmp_path / "evil.pth")
    torch.save({"x": _Payload(os.system, (f"touch {marker}",))}, path)
    data = zipfile.ZipFile(path).read("evil/data.pkl")
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=data, check=True, timeout=60)
    assert os.path.exists(marker)


def test_unknown_global_is_an_inert_placeholder(tmp_path):
    marker = str(tmp_path / "touched")
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "imujax_test_evil_mod.py").write_text(
        "def touch(path, payload):\n    open(path, 'w').close()\n    return payload\n")
    sys.path.insert(0, str(mod_dir))
    try:
        import imujax_test_evil_mod
        path = str(tmp_path / "odd.pth")
        torch.save({"x": _Payload(imujax_test_evil_mod.touch, (marker, torch.arange(3)))}, path)
    finally:
        sys.path.remove(str(mod_dir))
        sys.modules.pop("imujax_test_evil_mod", None)
    got = reader.load_checkpoint(path)
    assert "imujax_test_evil_mod" not in sys.modules and not os.path.exists(marker)
    placeholder = got["x"]
    assert isinstance(placeholder, RefusedGlobal) and placeholder.global_name == "imujax_test_evil_mod.touch"
    assert placeholder.args[0] == marker
    np.testing.assert_array_equal(placeholder.args[1], np.arange(3))  # tensors inside stay reachable
    with pytest.raises(UnsafeCheckpointError, match="imujax_test_evil_mod.touch"):
        reader.load_checkpoint(path, allow_placeholders=False)


# ---------------------------------------------------------------------------------------------- broken files


def _rewrite_zip(src: str, dst: str, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


@pytest.fixture()
def small_ckpt(tmp_path) -> str:
    path = str(tmp_path / "small.pth")
    torch.save({"a": torch.arange(10.0), "b": torch.ones(3, dtype=torch.int64)}, path)
    return path


def test_truncated_zip(small_ckpt, tmp_path):
    data = open(small_ckpt, "rb").read()
    bad = tmp_path / "trunc.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match="truncated or corrupt") as err:
        reader.load_checkpoint(str(bad))
    assert "trunc.pth" in str(err.value)


def test_truncated_legacy(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"a": torch.arange(1000.0)}, str(path), _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(CheckpointFormatError, match="too short"):
        reader.load_checkpoint(str(path))


def test_wrong_magic(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(CheckpointFormatError, match="not a PyTorch checkpoint"):
        reader.load_checkpoint(str(junk))
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointFormatError, match="wrong magic number"):
        reader.load_checkpoint(str(plain))
    with pytest.raises(CheckpointFormatError, match="no such checkpoint"):
        reader.load_checkpoint(str(tmp_path / "absent.pth"))


def test_short_storage_names_the_key(small_ckpt, tmp_path):
    bad = str(tmp_path / "short.pth")
    _rewrite_zip(small_ckpt, bad, lambda name, data: data[:12] if name.endswith("data/0") else data)
    with pytest.raises(CheckpointFormatError, match="storage '0' is too short"):
        reader.load_checkpoint(bad)


def test_missing_data_record(small_ckpt, tmp_path):
    bad = str(tmp_path / "missing.pth")
    _rewrite_zip(small_ckpt, bad, lambda name, data: None if name.endswith("data/1") else data)
    with pytest.raises(CheckpointFormatError, match="missing data record 'small/data/1'"):
        reader.load_checkpoint(bad)


def test_view_beyond_storage(tmp_path):
    """A hand-made pickle whose tensor view asks for more elements than its storage holds."""
    class Storage:
        pass

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, Storage) else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"w": _Payload(torch._utils._rebuild_tensor_v2,
                                                 (Storage(), 2, (3,), (1,), False, collections.OrderedDict()))})
    path = str(tmp_path / "view.pth")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("view/data.pkl", buf.getvalue())
        zf.writestr("view/data/0", np.arange(4, dtype=np.float32).tobytes())
        zf.writestr("view/byteorder", "little")
    with pytest.raises(CheckpointFormatError, match="needs 5 elements but storage '0' holds only 4"):
        reader.load_checkpoint(path)
