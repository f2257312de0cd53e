"""Parity of the NNX recurrent IMU encoders with PyTorch references that follow the upstream state_dict layouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from imujax.models import rnn_imu
from tests.torch_reference import rnn_imu as ref

TOL = 1e-5

# Key -> shape tables copied from shared/specs/rnn_imu_encoders.md §2.2 / §3.1 and shared/specs/evi_mae.md §4.
IMU2CLIP_KEYS = {
    "net.0.weight": (6,), "net.0.bias": (6,),
    "net.1.net.0.weight": (32, 6, 10), "net.2.net.0.weight": (32, 32, 5), "net.3.net.0.weight": (32, 32, 5),
    "net.4.weight": (32,), "net.4.bias": (32,),
    "net.5.weight_ih_l0": (1536, 32), "net.5.weight_hh_l0": (1536, 512),
    "net.5.bias_ih_l0": (1536,), "net.5.bias_hh_l0": (1536,),
}
PRIMUS_KEYS = {k.replace("net.", "backbone.", 1): v for k, v in IMU2CLIP_KEYS.items()} | {
    "ssl_head.weight": (512, 512), "ssl_head.bias": (512,), "mmcl_head.weight": (512, 512), "mmcl_head.bias": (512,),
}
DEEPCONVLSTM_KEYS = {
    "conv1.weight": (64, 1, 11, 1), "conv1.bias": (64,),
    **{f"conv{i}.weight": (64, 64, 11, 1) for i in (2, 3, 4)}, **{f"conv{i}.bias": (64,) for i in (2, 3, 4)},
    "lstm.weight_ih_l0": (4096, 2688), "lstm.weight_hh_l0": (4096, 1024),
    "lstm.bias_ih_l0": (4096,), "lstm.bias_hh_l0": (4096,),
    "classifier.heads.0.1.weight": (11, 1024), "classifier.heads.0.1.bias": (11,),
    "feature_projector.weight": (256, 1024), "feature_projector.bias": (256,),
}


def _nnx_target(model: nnx.Module, key: str, ndim: int) -> tuple[nnx.Variable, str]:
    """Walk the torch key through the NNX module; returns the variable and the layout change it needs."""
    *parents, leaf = key.split(".")
    node = model
    for part in parents:
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    if leaf.startswith(("weight_", "bias_")):  # recurrent weights keep their torch names, stored as [in, gates]
        return getattr(node, leaf), "transpose" if ndim == 2 else "none"
    if leaf == "bias":
        return node.bias, "none"
    if isinstance(node, nnx.GroupNorm):
        return node.scale, "none"
    return node.kernel, {2: "transpose", 3: "conv1d", 4: "conv2d"}[ndim]


def copy_torch_to_nnx(torch_module: torch.nn.Module, model: nnx.Module) -> None:
    """Copy every tensor; fail if any torch key has no target, shapes differ, or an NNX param stays unset."""
    layouts = {"none": lambda a: a, "transpose": lambda a: a.T,
               "conv1d": lambda a: a.transpose(2, 1, 0), "conv2d": lambda a: a.transpose(2, 3, 1, 0)}
    touched = set()
    for key, tensor in torch_module.state_dict().items():
        array = tensor.detach().numpy()
        variable, layout = _nnx_target(model, key, array.ndim)
        value = layouts[layout](array)
        assert variable.shape == value.shape, (key, variable.shape, value.shape)
        variable.set_value(jnp.asarray(value))
        touched.add(id(variable))
    params = jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))
    unset = [p for p in params if id(p) not in touched]
    assert not unset, f"{len(unset)} NNX params not set from torch"


def _param_count(model: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _imu(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    # Physical-looking magnitudes: gravity-sized acc, small gyro.
    x = rng.normal(size=(n, 6, t)).astype(np.float32)
    x[:, :3] = x[:, :3] * 2.0 + np.array([0.0, 0.0, 9.8], np.float32)[:, None]
    return x


def _build(cls, *args, **kwargs):
    # Abstract model (no random init to compile); copy_torch_to_nnx then sets every parameter.
    return nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0), **kwargs))


@nnx.jit
def _forward(model, x):
    return model(x)


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b.detach().numpy())))


@pytest.mark.parametrize("sizes,length", [((8, 16), 340), ((32, 512), 1000)])
def test_imu2clip_parity(sizes, length):
    input_dim, emb = sizes
    torch.manual_seed(0)
    torch_model = ref.MW2StackRNNPooling(input_dim, emb, pooled_length=input_dim).eval()
    with torch.no_grad():  # non-trivial GroupNorm affine parameters
        for norm in (torch_model.net[0], torch_model.net[4]):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    model = _build(rnn_imu.MW2StackRNNPooling, input_dim, emb)
    copy_torch_to_nnx(torch_model, model)
    x = _imu(np.random.default_rng(1), 2, length)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x))
    got = _forward(model, jnp.asarray(x))
    assert got.shape == (2, emb)
    assert _max_diff(got, expected) <= TOL


@pytest.mark.parametrize("sizes,length", [((8, 16), 123), ((8, 16), 200), ((32, 512), 250),
                                          ((32, 512), 200)])
def test_primus_parity(sizes, length):
    input_dim, emb = sizes
    torch.manual_seed(1)
    torch_model = ref.MW2StackRNNPoolingMultihead(input_dim, emb, pooled_length=input_dim).eval()
    with torch.no_grad():
        for norm in (torch_model.backbone[0], torch_model.backbone[4]):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    model = _build(rnn_imu.MW2StackRNNPoolingMultihead, input_dim, emb)
    copy_torch_to_nnx(torch_model, model)
    x = _imu(np.random.default_rng(2), 2, length)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x))
    got = _forward(model, jnp.asarray(x))
    for name in ("emb", "ssl", "mmcl"):
        assert got[name].shape == (2, emb)
        assert _max_diff(got[name], expected[name]) <= TOL, name


@pytest.mark.parametrize("full", [False, True])
def test_deepconvlstm_parity(full):
    if full:
        cfg = dict(channels=42, conv_kernels=64, conv_kernel_size=11, lstm_units=1024, feature_dim=256)
        window = 120
    else:
        cfg = dict(channels=6, conv_kernels=4, conv_kernel_size=3, lstm_units=16, feature_dim=8)
        window = 20
    torch.manual_seed(2)
    torch_model = ref.DeepConvLSTM(num_classes=11, **cfg).eval()
    model = _build(rnn_imu.DeepConvLSTM, num_classes=11, window_size=window, **cfg)
    copy_torch_to_nnx(torch_model, model)
    x = np.random.default_rng(3).normal(size=(2, window, cfg["channels"])).astype(np.float32) * 3.0
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x))
    got = _forward(model, jnp.asarray(x))
    assert got.shape == (2, cfg["feature_dim"])
    assert _max_diff(got, expected) <= TOL


def test_deepconvlstm_cpu_pieces_match_torch_forward_and_gradients(monkeypatch):
    """On CPU the conv stack runs in groups of examples (`rnn_imu.cpu_pieces`), here 2 groups of 8 examples x 42
    channels, and the LSTM input projection in time pieces, here 2 of 6 steps x 16 examples (`PROJECTION_MIN_ROWS`
    lowered to 96). Features and the gradients of every conv kernel and the LSTM input weight match torch autograd."""
    cfg = dict(channels=42, conv_kernels=4, conv_kernel_size=3, lstm_units=16, feature_dim=8)
    batch, window = 16, 20
    assert rnn_imu.cpu_pieces(batch, cfg["channels"], rnn_imu.CONV_MIN_ROWS) == 2
    monkeypatch.setattr(rnn_imu, "PROJECTION_MIN_ROWS", 96)
    assert rnn_imu.cpu_pieces(window - 4 * 2, batch, 96) == 2  # the LSTM sees 12 steps: 2 pieces of 6 x 16 rows
    torch.manual_seed(5)
    torch_model = ref.DeepConvLSTM(num_classes=11, **cfg)
    model = _build(rnn_imu.DeepConvLSTM, num_classes=11, window_size=window, **cfg)
    copy_torch_to_nnx(torch_model, model)
    x = np.random.default_rng(6).normal(size=(batch, window, cfg["channels"])).astype(np.float32)
    target = np.random.default_rng(7).normal(size=(batch, cfg["feature_dim"])).astype(np.float32)
    out = torch_model(torch.from_numpy(x))
    (torch.sin(out) * torch.from_numpy(target)).sum().backward()
    graphdef, params = nnx.split(model)

    def loss(params):
        features = nnx.merge(graphdef, params)(jnp.asarray(x))
        return jnp.sum(jnp.sin(features) * target), features

    grads, features = jax.jit(jax.grad(loss, has_aux=True))(params)
    assert _max_diff(features, out) <= TOL
    for index in range(1, 5):  # torch [out, in, k, 1] -> flax [k, 1, in, out]
        want = getattr(torch_model, f"conv{index}").weight.grad.numpy().transpose(2, 3, 1, 0)
        assert np.max(np.abs(np.asarray(grads[f"conv{index}"]["kernel"][...]) - want)) < TOL, index
    want = torch_model.lstm.weight_ih_l0.grad.numpy().T
    assert np.max(np.abs(np.asarray(grads["lstm"]["weight_ih_l0"][...]) - want)) < TOL


def test_deepconvlstm_identity_projector_and_classifier():
    # feature_dim == lstm_units -> Identity projector (no keys) and forward() = classifier on the LSTM output.
    torch.manual_seed(3)
    torch_model = ref.DeepConvLSTM(channels=6, num_classes=5, conv_kernels=4, conv_kernel_size=3, lstm_units=16,
                                   feature_dim=16).eval()
    assert not any(k.startswith("feature_projector") for k in torch_model.state_dict())
    model = _build(rnn_imu.DeepConvLSTM, channels=6, num_classes=5, window_size=20, conv_kernels=4,
                   conv_kernel_size=3, lstm_units=16, feature_dim=16)
    copy_torch_to_nnx(torch_model, model)
    model.eval()
    x = np.random.default_rng(4).normal(size=(3, 20, 6)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model.classifier.heads[0](torch_model(torch.from_numpy(x)))
    (logits,) = model.classify(jnp.asarray(x))
    assert _max_diff(logits, expected) <= TOL


def test_deepconvlstm_classify_width_mismatch_is_a_clear_error():
    model = nnx.eval_shape(lambda: rnn_imu.DeepConvLSTM(channels=6, window_size=20, conv_kernels=4,
                                                        conv_kernel_size=3, lstm_units=16, feature_dim=8,
                                                        rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="feature_dim == lstm_units"):
        model.classify(jnp.zeros((1, 20, 6)))


@pytest.mark.parametrize("torch_cls,nnx_cls,expected,count", [
    (ref.MW2StackRNNPooling, rnn_imu.MW2StackRNNPooling, IMU2CLIP_KEYS, 850_892),
    (ref.MW2StackRNNPoolingMultihead, rnn_imu.MW2StackRNNPoolingMultihead, PRIMUS_KEYS, 1_376_204),
    (ref.DeepConvLSTM, rnn_imu.DeepConvLSTM, DEEPCONVLSTM_KEYS, 15_622_347),
])
def test_full_size_state_dict_matches_spec(torch_cls, nnx_cls, expected, count):
    torch_model = torch_cls()
    assert {k: tuple(v.shape) for k, v in torch_model.state_dict().items()} == expected
    model = nnx.eval_shape(lambda: nnx_cls(rngs=nnx.Rngs(0)))
    assert _param_count(model) == count
    # Every torch key resolves to an NNX param of the right size.
    for key, shape in expected.items():
        variable, _ = _nnx_target(model, key, len(shape))
        assert int(np.prod(variable.shape)) == int(np.prod(shape)), key


def test_imu2clip_length_limits_match_torch_and_raise_clearly():
    torch_model = ref.MW2StackRNNPooling().eval()
    model = nnx.eval_shape(lambda: rnn_imu.MW2StackRNNPooling(rngs=nnx.Rngs(0)))
    assert model.valid_input_lengths() == (978, 1004)
    with torch.no_grad():
        for t in (978, 1004):
            torch_model(torch.zeros(1, 6, t))
        for t in (977, 1005):
            with pytest.raises(RuntimeError):
                torch_model(torch.zeros(1, 6, t))
    for t in (500, 977, 1005, 2000):
        with pytest.raises(ValueError, match=r"T=%d.*978 <= T <= 1004.*minimum length 978" % t):
            model(jnp.zeros((1, 6, t)))


def test_primus_minimum_length_and_layout_errors():
    torch_model = ref.MW2StackRNNPoolingMultihead().eval()
    with torch.no_grad():
        torch_model(torch.zeros(1, 6, 123))
        with pytest.raises(RuntimeError):
            torch_model(torch.zeros(1, 6, 122))
    model = nnx.eval_shape(lambda: rnn_imu.MW2StackRNNPoolingMultihead(rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="minimum length 123"):
        model(jnp.zeros((1, 6, 122)))
    with pytest.raises(ValueError, match=r"expected input \[N, 6, T\]"):
        model(jnp.zeros((1, 250, 6)))


def test_adaptive_pool_matches_torch_including_upsampling():
    rng = np.random.default_rng(5)
    for length in (9, 15, 42, 98, 31, 33):
        x = rng.normal(size=(2, 3, length)).astype(np.float32)
        expected = torch.nn.functional.adaptive_avg_pool1d(torch.from_numpy(x), 32).numpy()
        got = np.einsum("nct,to->nco", x, rnn_imu.adaptive_avg_pool_matrix(length, 32))
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_params_carry_logical_sharding_names():
    model = nnx.eval_shape(lambda: rnn_imu.MW2StackRNNPoolingMultihead(rngs=nnx.Rngs(0)))
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    assert tuple(specs["backbone"][5]["weight_hh_l0"]) == ("embed", "mlp")
    assert tuple(specs["backbone"][1]["net"][0]["kernel"]) == (None, "conv_in", "conv_out")
    assert tuple(specs["ssl_head"]["kernel"]) == ("embed", "mlp")


def test_default_init_follows_torch_bounds_and_trains():
    model = rnn_imu.MW2StackRNNPoolingMultihead(8, 16, rngs=nnx.Rngs(0))
    torch_model = ref.MW2StackRNNPoolingMultihead(8, 16, pooled_length=8)
    bounds = {  # PyTorch default init: U(+-1/sqrt(fan_in)) for conv/linear, U(+-1/sqrt(H)) for the GRU
        "backbone.1.net.0.weight": 1 / np.sqrt(60), "backbone.2.net.0.weight": 1 / np.sqrt(40),
        "backbone.5.weight_hh_l0": 1 / 4, "backbone.5.bias_ih_l0": 1 / 4, "ssl_head.weight": 1 / 4,
        "mmcl_head.bias": 1 / 4,
    }
    for key, bound in bounds.items():
        ndim = torch_model.state_dict()[key].ndim
        values = np.asarray(_nnx_target(model, key, ndim)[0][...])
        assert bound * 0.7 < np.abs(values).max() <= bound, key
    np.testing.assert_array_equal(np.asarray(model.backbone[0].scale[...]), np.ones(6))
    x = jnp.asarray(_imu(np.random.default_rng(6), 2, 200))
    grads = nnx.grad(lambda m: jnp.sum(m(x)["mmcl"] ** 2))(model)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert float(jnp.abs(grads["backbone"][5]["weight_hh_l0"][...]).max()) > 0


def _assert_gradients_match_torch(torch_rnn, select_output, model, names, x):
    """d/d(input, every named weight) of sum(sin(output) * target): torch autograd against the NNX model carrying the
    same weights (transposed as the bridge does)."""
    x_t = torch.from_numpy(x).requires_grad_(True)
    out = select_output(torch_rnn(x_t))
    target = np.random.default_rng(5).normal(size=tuple(out.shape)).astype(np.float32)
    (torch.sin(out) * torch.from_numpy(target)).sum().backward()
    for name in names:
        value = getattr(torch_rnn, name).detach().numpy()
        getattr(model, name).set_value(jnp.asarray(value.T if value.ndim == 2 else value))
    graphdef, params = nnx.split(model)

    def loss(params, x):
        return jnp.sum(jnp.sin(nnx.merge(graphdef, params)(x)) * target)

    grads, d_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))
    assert np.max(np.abs(np.asarray(d_x) - x_t.grad.numpy())) < TOL
    for name in names:
        want = getattr(torch_rnn, name).grad.numpy()
        got = np.asarray(grads[name][...])
        assert np.max(np.abs((got.T if got.ndim == 2 else got) - want)) < TOL, name


def test_gru_gradients_match_torch_autograd():
    """`gru_last_state`'s hand-written backward pass against torch.nn.GRU's autograd, every input and weight."""
    n, s, i, h = 5, 7, 4, 6
    x = np.random.default_rng(3).normal(size=(n, s, i)).astype(np.float32)
    _assert_gradients_match_torch(torch.nn.GRU(i, h, batch_first=True), lambda out: out[1][0],
                                  rnn_imu.TorchGRU(i, h, rngs=nnx.Rngs(0)),
                                  ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), x)


def test_lstm_gradients_match_torch_autograd():
    """`lstm_outputs`' hand-written backward pass against torch.nn.LSTM's autograd (two layers, a loss on every
    output), every input and weight."""
    n, t, i, h, layers = 5, 7, 4, 6, 2
    x = np.random.default_rng(4).normal(size=(n, t, i)).astype(np.float32)
    names = [f"{kind}_l{layer}" for layer in range(layers)
             for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    _assert_gradients_match_torch(torch.nn.LSTM(i, h, num_layers=layers, batch_first=True), lambda out: out[0],
                                  rnn_imu.TorchLSTM(i, h, layers, rngs=nnx.Rngs(0)), names, x)
