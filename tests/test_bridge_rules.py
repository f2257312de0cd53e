"""Rule engine on a toy torch model: every transform against torch/jax math, exact round trips, strict reports."""
from __future__ import annotations

import collections

import einops
import jax
import numpy as np
import pytest
import torch
from torch import nn

from imujax.bridges.torch import export as torch_export
from imujax.bridges.torch import reader
from imujax.bridges.torch.rules import (BridgeMismatchError, Rule, RuleTable, astype, conv1d, conv2d, conv3d,
                                        count_indices, export, flatten_patch, ignore, load_into, merge, reshape,
                                        shape_of, split, squeeze, strip_prefixes, transpose)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj, self.norm, self.bn = nn.Linear(8, 24), nn.Linear(8, 8), nn.LayerNorm(8), nn.BatchNorm1d(8)


class GinLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("eps", torch.zeros(1))
        self.mlp = nn.Linear(8, 8)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.conv = nn.Conv2d(8, 6, 3)
        self.conv1 = nn.Conv1d(2, 5, 3)
        self.conv3 = nn.Conv3d(2, 4, (2, 3, 3))
        self.blocks = nn.ModuleList([Block(), Block()])
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False), \
            nn.Linear(8, 8, bias=False)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 8))
        self.pos = nn.Parameter(torch.randn(1, 16, 8))
        self.half_w = nn.Parameter(torch.randn(4).half())
        self.gin = nn.ModuleList([GinLayer(), GinLayer()])


B = r"blocks\.{i}\."
TABLE = RuleTable("toy", [
    Rule(r"patch\.weight", ("patch", "kernel"), flatten_patch((3, 4, 4))),
    Rule(r"patch\.bias", ("patch", "bias")),
    Rule(r"conv\.weight", ("conv", "kernel"), conv2d),
    Rule(r"conv1\.weight", ("conv1", "kernel"), conv1d),
    Rule(r"conv3\.weight", ("conv3", "kernel"), conv3d),
    Rule(r"(?P<name>conv[13]?)\.bias", ("{name}", "bias"), torch_template="{name}.bias"),
    Rule(B + r"qkv\.weight", tuple(("blocks", "{i}", p, "kernel") for p in "qkv"), split(3, 0, transpose)),
    Rule(B + r"qkv\.bias", tuple(("blocks", "{i}", p, "bias") for p in "qkv"), split(3)),
    Rule(B + r"proj\.weight", ("blocks", "{i}", "proj", "kernel"), transpose),
    Rule(B + r"proj\.bias", ("blocks", "{i}", "proj", "bias")),
    Rule(B + r"norm\.weight", ("blocks", "{i}", "norm", "scale")),
    Rule(B + r"norm\.bias", ("blocks", "{i}", "norm", "bias")),
    Rule(B + r"bn\.weight", ("blocks", "{i}", "bn", "scale")),
    Rule(B + r"bn\.bias", ("blocks", "{i}", "bn", "bias")),
    Rule(B + r"bn\.running_mean", ("blocks", "{i}", "bn", "mean")),
    Rule(B + r"bn\.running_var", ("blocks", "{i}", "bn", "var")),
    Rule(B + r"bn\.num_batches_tracked", ("blocks", "{i}", "bn", "count"), astype(np.int32, np.int64)),
    Rule((r"q_proj\.weight", r"k_proj\.weight", r"v_proj\.weight"), ("attn", "qkv", "kernel"), merge(1, transpose)),
    Rule(r"cls_token", ("cls_token",), squeeze((0, 1))),
    Rule(r"pos", ("pos",), reshape()),
    Rule(r"half_w", ("half_w",), astype(np.float32, np.float16)),
    Rule(r"gin\.{i}\.eps", None, ignore(expect=np.zeros(1, np.float32), why="GIN eps must be 0")),
    Rule(r"gin\.{i}\.mlp\.weight", ("gin", "{i}", "mlp", "kernel"), transpose),
    Rule(r"gin\.{i}\.mlp\.bias", ("gin", "{i}", "mlp", "bias")),
], strip_prefixes=("module.", "_orig_mod."))


def expected_targets() -> dict:
    f32 = np.float32
    t = {("patch", "kernel"): (48, 8), ("patch", "bias"): (8,), ("conv", "kernel"): (3, 3, 8, 6),
         ("conv", "bias"): (6,), ("conv1", "kernel"): (3, 2, 5), ("conv1", "bias"): (5,),
         ("conv3", "kernel"): (2, 3, 3, 2, 4), ("conv3", "bias"): (4,), ("attn", "qkv", "kernel"): (8, 24),
         ("cls_token",): (8,), ("pos",): (4, 4, 8), ("half_w",): (4,)}
    for i in range(2):
        for p in "qkv":
            t[("blocks", i, p, "kernel")], t[("blocks", i, p, "bias")] = (8, 8), (8,)
        t[("blocks", i, "proj", "kernel")], t[("blocks", i, "proj", "bias")] = (8, 8), (8,)
        for leaf in ("scale", "bias"):
            t[("blocks", i, "norm", leaf)] = (8,)
        for leaf in ("scale", "bias", "mean", "var"):
            t[("blocks", i, "bn", leaf)] = (8,)
        t[("gin", i, "mlp", "kernel")], t[("gin", i, "mlp", "bias")] = (8, 8), (8,)
    out = {k: jax.ShapeDtypeStruct(v, f32) for k, v in t.items()}
    for i in range(2):
        out[("blocks", i, "bn", "count")] = jax.ShapeDtypeStruct((), np.int32)
    return out


@pytest.fixture(scope="module")
def toy() -> Toy:
    torch.manual_seed(0)
    model = Toy()
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            block.bn.running_mean.normal_()
            block.bn.running_var.uniform_(0.5, 2.0)
            block.bn.num_batches_tracked.fill_(1000 + i)
    return model


@pytest.fixture(scope="module")
def loaded(toy, tmp_path_factory):
    """The toy state_dict saved as DataParallel + torch.compile would, read back without torch, then mapped."""
    path = tmp_path_factory.mktemp("ckpt") / "toy.pth"
    torch.save({"epoch": 1, "model_state_dict": collections.OrderedDict(
        ("module._orig_mod." + k, v) for k, v in toy.state_dict().items())}, path)
    sd = reader.find_state_dict(reader.load_checkpoint(path))
    params, report = load_into(expected_targets(), sd, TABLE)
    return sd, params, report


def test_all_params_set_and_buffers_consumed(loaded):
    _sd, params, report = loaded
    assert report.ok and set(params) == set(expected_targets())
    assert sorted(report.ignored) == ["module._orig_mod.gin.0.eps", "module._orig_mod.gin.1.eps"]
    assert params[("blocks", 1, "bn", "count")].dtype == np.int32 and params[("blocks", 1, "bn", "count")] == 1001
    assert report.dtype_casts == []  # astype rules cast explicitly; nothing was cast implicitly


def test_implicit_dtype_cast_is_reported():
    table = RuleTable("c", [Rule(r"w", ("w",))])
    params, report = load_into({("w",): jax.ShapeDtypeStruct((2,), np.float32)},
                               {"w": np.array([1.5, -2], np.float16)}, table)
    assert params[("w",)].dtype == np.float32 and params[("w",)].tolist() == [1.5, -2.0]
    assert [(k, p, str(a), str(b)) for k, p, a, b in report.dtype_casts] == [("w", ("w",), "float16", "float32")]
    assert "dtype casts" in report.format()


def test_linear_split_and_merge_compute_like_torch(toy, loaded):
    _sd, p, _r = loaded
    x = torch.randn(5, 8)
    xn = x.numpy()
    qkv = toy.blocks[1].qkv(x).detach().numpy()
    for j, name in enumerate("qkv"):
        got = xn @ p[("blocks", 1, name, "kernel")] + p[("blocks", 1, name, "bias")]
        np.testing.assert_allclose(got, qkv[:, 8 * j: 8 * (j + 1)], rtol=1e-5, atol=1e-6)
    merged = torch.cat([toy.q_proj(x), toy.k_proj(x), toy.v_proj(x)], -1).detach().numpy()
    np.testing.assert_allclose(xn @ p[("attn", "qkv", "kernel")], merged, rtol=1e-5, atol=1e-6)


def test_conv_layouts_compute_like_torch(toy, loaded):
    _sd, p, _r = loaded
    cases = [(toy.conv, ("conv",), (2, 8, 7, 9), ("NCHW", "HWIO", "NCHW")),
             (toy.conv1, ("conv1",), (2, 2, 11), ("NCH", "HIO", "NCH")),
             (toy.conv3, ("conv3",), (2, 2, 4, 6, 7), ("NCDHW", "DHWIO", "NCDHW"))]
    for module, name, shape, dims in cases:
        x = torch.randn(*shape)
        want = module(x).detach().numpy()
        got = jax.lax.conv_general_dilated(x.numpy(), p[name + ("kernel",)], (1,) * (len(shape) - 2), "VALID",
                                           dimension_numbers=dims)
        bias = p[name + ("bias",)].reshape((1, -1) + (1,) * (len(shape) - 2))
        np.testing.assert_allclose(np.asarray(got) + bias, want, rtol=1e-4, atol=1e-5)


def test_flatten_patch_matches_strided_conv(toy, loaded):
    _sd, p, _r = loaded
    img = torch.randn(2, 3, 8, 12)
    want = einops.rearrange(toy.patch(img).detach().numpy(), "b o h w -> b (h w) o")
    patches = einops.rearrange(img.numpy(), "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=4, p2=4)
    np.testing.assert_allclose(patches @ p[("patch", "kernel")] + p[("patch", "bias")], want, rtol=1e-5, atol=1e-5)


def test_squeeze_reshape_astype_values(toy, loaded):
    _sd, p, _r = loaded
    np.testing.assert_array_equal(p[("cls_token",)], toy.cls_token.detach().numpy()[0, 0])
    np.testing.assert_array_equal(p[("pos",)], toy.pos.detach().numpy().reshape(4, 4, 8))
    assert p[("half_w",)].dtype == np.float32
    np.testing.assert_array_equal(p[("half_w",)], toy.half_w.detach().float().numpy())


def test_round_trip_is_bit_identical_and_torch_loadable(toy, loaded, tmp_path):
    sd, params, report = loaded
    back = export(params, TABLE, torch_shapes=report.torch_shapes)
    original = strip_prefixes(sd, TABLE.strip_prefixes)
    assert set(back) == set(original)  # GIN eps buffers come back from the ignore rule's constant
    for key, value in original.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        assert back[key].tobytes() == np.ascontiguousarray(value).tobytes(), key
    path = tmp_path / "exported.pth"
    torch_export.write_torch_state_dict(path, back)
    fresh = Toy()
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for key, value in toy.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_strict_report_lists_every_problem(toy, loaded):
    sd, _p, _r = loaded
    broken = collections.OrderedDict(sd)
    del broken["module._orig_mod.blocks.1.proj.bias"]                        # -> missing NNX param
    broken["module._orig_mod.head.weight"] = np.zeros((3, 8), np.float32)    # -> no rule matches
    broken["module._orig_mod.blocks.0.proj.weight"] = np.zeros((8, 9), np.float32)  # -> shape mismatch
    targets = expected_targets()
    del targets[("gin", 1, "mlp", "bias")]                                   # -> maps to a path the model lacks
    with pytest.raises(BridgeMismatchError) as err:
        load_into(targets, broken, TABLE)
    text = str(err.value)
    assert "missing NNX params" in text and "blocks/1/proj/bias" in text
    assert "unexpected torch keys" in text and "module._orig_mod.head.weight" in text and "no rule matches" in text
    assert "maps to gin/1/mlp/bias, not in model" in text
    assert "shape mismatches" in text and "(8, 9)" in text and "(9, 8)" in text and "blocks/0/proj/kernel" in text
    report = err.value.report
    assert [m[0] for m in report.missing] == [("blocks", 0, "proj", "kernel"), ("blocks", 1, "proj", "bias")]
    params, report2 = load_into(targets, broken, TABLE, strict=False)
    assert not report2.ok and ("blocks", 1, "proj", "bias") not in params and ("blocks", 0, "proj", "bias") in params
    assert len(params) == len(targets) - 2


def test_ignore_check_refuses_other_values_even_when_lenient(loaded):
    sd, _p, _r = loaded
    bad = collections.OrderedDict(sd)
    bad["module._orig_mod.gin.1.eps"] = np.array([0.1], np.float32)
    with pytest.raises(BridgeMismatchError, match=r"gin\.1\.eps.*GIN eps must be 0"):
        load_into(expected_targets(), bad, TABLE, strict=False)


def test_prefix_stripping_and_collisions():
    table = RuleTable("p", [Rule(r"w", ("w",))], strip_prefixes=("module.", "encoder.", "imu_encoder."))
    target = {("w",): jax.ShapeDtypeStruct((2,), np.float32)}
    for key in ("w", "module.w", "module.encoder.w", "imu_encoder.w"):
        params, _ = load_into(target, {key: np.ones(2, np.float32)}, table)
        np.testing.assert_array_equal(params[("w",)], np.ones(2))
    with pytest.raises(BridgeMismatchError, match="same key as 'module.w'"):
        load_into(target, {"module.w": np.ones(2, np.float32), "w": np.ones(2, np.float32)}, table)
    exported = export({("w",): np.ones(2, np.float32)}, RuleTable("p", table.rules, export_prefix="encoder."))
    assert list(exported) == ["encoder.w"]


def test_int_cast_overflow_is_an_error():
    table = RuleTable("c", [Rule(r"n", ("count",), astype(np.int32, np.int64))])
    target = {("count",): jax.ShapeDtypeStruct((), np.int32)}
    with pytest.raises(BridgeMismatchError, match="changes values"):
        load_into(target, {"n": np.array(2 ** 40, np.int64)}, table)


def test_transform_errors_and_non_invertible_regex():
    table = RuleTable("t", [Rule(r"(?:a|b)\.w", ("w",), transpose)])
    with pytest.raises(BridgeMismatchError, match=r"transpose failed on shape \(2, 2, 2\)"):
        load_into({("w",): jax.ShapeDtypeStruct((2, 2), np.float32)}, {"a.w": np.zeros((2, 2, 2))}, table)
    with pytest.raises(BridgeMismatchError, match="torch_template"):
        export({("w",): np.zeros((2, 3))}, table)
    with pytest.raises(BridgeMismatchError, match="no rule covers"):
        export({("other",): np.zeros(2)}, table)
    with pytest.raises(ValueError, match="placeholders"):
        Rule(r"blocks\.{i}\.w", ("blocks", "w"))


def test_every_transform_inverts():
    rng = np.random.default_rng(0)
    cases = [(transpose, (3, 4)), (conv1d, (5, 2, 3)), (conv2d, (6, 3, 2, 4)), (conv3d, (4, 2, 2, 3, 3)),
             (flatten_patch((3, 2, 2)), (5, 3, 2, 2)), (reshape((4, 6), (2, 12)), (2, 12)), (squeeze(0), (1, 7)),
             (astype(np.float64, np.float32), (3,))]
    for t, shape in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        y = t.forward(x)
        assert t.inverse(y, shape).tobytes() == x.tobytes() and t.inverse(y, shape).shape == shape, t.name
    s = split(3, 0, transpose)
    x = rng.standard_normal((12, 5)).astype(np.float32)
    assert np.array_equal(s.inverse(s.forward(x)), x)
    m = merge(1, transpose)
    parts = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(m.inverse(m.forward(parts), [(4, 5)] * 3), parts))


def test_size_helpers(loaded):
    sd, _p, _r = loaded
    short = strip_prefixes(sd, ("module.", "_orig_mod."))
    assert count_indices(short, r"blocks\.{i}\.") == 2 and count_indices(short, r"decoder\.{i}\.") == 0
    assert shape_of(short, "blocks.0.qkv.weight") == (24, 8)
    with pytest.raises(KeyError, match="similar keys"):
        shape_of(short, "blocks.0.qkv.weights")
    with pytest.raises(ValueError, match="not consecutive"):
        count_indices({"b.0.w": 1, "b.2.w": 1}, r"b\.{i}\.")
