"""config.matmul_precision="bfloat16": f32 weight matmuls as one bf16 pass with f32 accumulation on CPU, as TPUs
compute f32 matmuls by default (`layers.bf16_pass_matmul`, `layers.Linear`)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from imujax import config_checks
from imujax.models import layers


def _bf16_rounded(a):
    return np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    linear = layers.Linear(24, 40, ("embed", "mlp"), rngs=nnx.Rngs(0))
    linear.bias[...] = jnp.asarray(rng.standard_normal(40), jnp.float32)
    x = jnp.asarray(rng.standard_normal((3, 5, 24)), jnp.float32)
    weights = jnp.asarray(rng.standard_normal((3, 5, 40)), jnp.float32)  # d loss / d output

    def loss(linear, x):
        return jnp.sum(linear(x) * weights)

    def run(precision):
        with jax.default_matmul_precision(precision):
            out = jax.jit(lambda m, x: m(x))(linear, x)
            grads, x_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))(linear, x)
        return np.asarray(out), np.asarray(x_grad), np.asarray(grads.kernel[...]), np.asarray(grads.bias[...])

    return linear, np.asarray(x, np.float64), np.asarray(weights, np.float64), run


def test_default_precision_multiplies_in_full_f32(case):
    linear, x, weights, run = case
    out, x_grad, kernel_grad, _ = run("default")
    kernel = np.asarray(linear.kernel[...], np.float64)
    np.testing.assert_allclose(out, x @ kernel + np.asarray(linear.bias[...]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_grad, weights @ kernel.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kernel_grad, x.reshape(-1, 24).T @ weights.reshape(-1, 40), rtol=1e-5, atol=1e-5)


def test_bfloat16_precision_rounds_the_operands_of_all_three_products_and_accumulates_in_f32(case):
    """Forward and both backward products equal exact products of bf16-rounded operands (the f32 cotangent rounded
    too), and differ from the full-f32 ones by the rounding: the bf16 path was taken, not XLA's exact CPU dot."""
    linear, x, weights, run = case
    out, x_grad, kernel_grad, bias_grad = run("bfloat16")
    kernel, xb, wb = _bf16_rounded(linear.kernel[...]), _bf16_rounded(x), _bf16_rounded(weights)
    bias = np.asarray(linear.bias[...])
    np.testing.assert_allclose(out, xb @ kernel + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_grad, wb @ kernel.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kernel_grad, xb.reshape(-1, 24).T @ wb.reshape(-1, 40), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bias_grad, weights.sum((0, 1)), rtol=1e-5, atol=1e-5)  # not a product: f32
    exact, _, exact_kernel_grad, _ = run("default")
    assert 1e-4 < np.abs(out - exact).max() < 0.1
    assert 1e-4 < np.abs(kernel_grad - exact_kernel_grad).max() < 0.5
    assert out.dtype == x_grad.dtype == kernel_grad.dtype == np.float32


def test_a_bf16_compute_dtype_keeps_its_own_path():
    linear = layers.Linear(8, 4, ("embed", "mlp"), dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 8), jnp.float32)
    with jax.default_matmul_precision("bfloat16"):
        assert linear(x).dtype == jnp.bfloat16


def test_config_rejects_an_unknown_matmul_precision():
    config = ml_collections.ConfigDict(dict(matmul_precision="bf16", total_steps=1))
    with pytest.raises(config_checks.ConfigError, match="matmul_precision='bf16'"):
        config_checks.check(config, "eval")
    config.matmul_precision = "bfloat16"
    config_checks.check(config, "eval")


def test_the_train_step_traced_under_bfloat16_has_bf16_products_and_the_default_has_none():
    from imujax import sharding, systems, train
    from tests.test_train_step import random_batch, tiny_config
    config = tiny_config()
    config.batch_size = 2
    batch = random_batch(config)
    system = systems.make_system(config)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 10, 100))
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    with jax.set_mesh(mesh):
        graphdef, state, _ = train.create_state(system, config, tx, mesh)

        def program(precision):
            with jax.default_matmul_precision(precision):
                step = train.make_train_step(system, graphdef, tx, config.seed)
                return jax.jit(step).lower(state, sharding.global_batch(batch, mesh)).as_text()

        assert "bf16" not in program("default")
        assert program("bfloat16").count("bf16") > 10


def test_a_training_run_traces_under_its_configured_matmul_precision(monkeypatch):
    from imujax import train
    seen = []
    monkeypatch.setattr(train, "_train", lambda config, workdir, stop: seen.append(
        jax.config.jax_default_matmul_precision) or {})
    config = ml_collections.ConfigDict(dict(matmul_precision="bfloat16", total_steps=1, log_every_steps=1))
    train.train_and_evaluate(config, "unused")
    assert seen == ["bfloat16"] and jax.config.jax_default_matmul_precision in (None, "default")


@pytest.mark.parametrize("cell", ["TorchGRU", "TorchLSTM"])
def test_the_recurrent_cells_take_bf16_passes_only_when_asked_and_stay_close_to_exact(cell):
    """PRIMUS's GRU and DeepConvLSTM's LSTM (hand-written backward passes, HIGHEST-precision products): the bf16-pass
    recurrence and gradients stay within bf16 rounding of the exact ones, and the program multiplies in bf16 only
    under the setting."""
    from imujax.models import rnn_imu
    gru = getattr(rnn_imu, cell)(6, 16, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 12, 6)), jnp.float32)

    def loss(gru, x):
        return jnp.sum(jnp.sin(gru(x)))

    def run(precision):
        with jax.default_matmul_precision(precision):
            fn = jax.jit(jax.value_and_grad(loss))
            text = fn.lower(gru, x).as_text()
            value, grads = fn(gru, x)
        return text, float(value), np.asarray(grads.weight_hh_l0[...]), np.asarray(grads.weight_ih_l0[...])

    exact_text, exact, exact_hh, exact_ih = run("default")
    text, value, hh, ih = run("bfloat16")
    assert "bf16" not in exact_text and "bf16" in text
    assert value != exact and abs(value - exact) < 2e-2 * abs(exact)
    for got, want in ((hh, exact_hh), (ih, exact_ih)):
        assert np.abs(got - want).max() < 3e-2 * np.abs(want).max()
