"""imujax.models.chunked_attention: plain softmax attention's values and gradients without any T x T residual."""

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imujax.models import chunked_attention as ca
from imujax.models import layers


def _plain(q, k, v, scale):
    weights = jax.nn.softmax(jnp.einsum("bhtd,bhsd->bhts", q, k) * scale, axis=-1)
    return jnp.einsum("bhts,bhsd->bhtd", weights, v)


def _qkv(shape, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(2 * rng.standard_normal(shape), dtype) for _ in range(4)]


def _value_and_grads(attend, q, k, v, cotangent):
    out, vjp = jax.vjp(attend, q, k, v)
    return out, vjp(cotangent)


@pytest.mark.parametrize("length,rows", [(100, 32), (96, 32), (37, 37), (50, 7)])
def test_values_and_gradients_match_plain_attention(length, rows):
    """Chunk sizes that divide the length, that do not (the last chunk is padded), one chunk, many."""
    q, k, v, cotangent = _qkv((2, 3, length, 8))
    scale = 8 ** -0.5
    got, got_grads = jax.jit(lambda *a: _value_and_grads(lambda q, k, v: ca.chunked_attention(q, k, v, scale, rows),
                                                         *a))(q, k, v, cotangent)
    want, want_grads = jax.jit(lambda *a: _value_and_grads(lambda q, k, v: _plain(q, k, v, scale), *a))(
        q, k, v, cotangent)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    # The chunked backward sums the softmax-weighted terms in another order than autodiff of the plain form; on some
    # CPUs (AVX-512 codegen) single elements of dq then differ by ~1.5e-5 at |2 sigma| inputs.
    for name, g, w in zip("qkv", got_grads, want_grads):
        np.testing.assert_allclose(g, w, atol=3e-5, rtol=1e-5, err_msg=f"d{name}")


def test_no_t_by_t_tensor_is_formed_anywhere_in_forward_and_backward():
    length, rows = 96, 32
    q, k, v, cotangent = _qkv((1, 2, length, 4))
    jaxpr = jax.make_jaxpr(lambda *a: _value_and_grads(
        lambda q, k, v: ca.chunked_attention(q, k, v, 0.5, rows), *a))(q, k, v, cotangent)

    def shapes(jaxpr):
        for eqn in jaxpr.eqns:
            yield from (var.aval.shape for var in eqn.outvars if hasattr(var.aval, "shape"))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                yield from shapes(sub)

    seen = list(shapes(jaxpr.jaxpr))
    assert any(shape[-2:] == (rows, length) for shape in seen)  # the chunk scores are there ...
    assert not any(shape[-2:] == (length, length) for shape in seen)  # ... and never the full score matrix


def test_bfloat16_inputs_give_bfloat16_outputs_close_to_float32():
    q, k, v, cotangent = _qkv((1, 2, 64, 8))
    half = [x.astype(jnp.bfloat16) for x in (q, k, v, cotangent)]
    out, grads = _value_and_grads(lambda q, k, v: ca.chunked_attention(q, k, v, 8 ** -0.5, 16), *half)
    want, want_grads = _value_and_grads(lambda q, k, v: _plain(q, k, v, 8 ** -0.5), q, k, v, cotangent)
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=0.1)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(np.asarray(g, np.float32), w, atol=0.1 * float(jnp.abs(w).max()))


@pytest.mark.parametrize("length", [1, 383, 384, 385, 1728, 5000])
def test_chunk_rows_cover_the_length_in_near_equal_chunks(length):
    rows = ca.chunk_rows(length)
    chunks = -(-length // rows)
    assert rows <= ca.TARGET_ROWS and chunks * rows >= length > (chunks - 1) * rows
    assert chunks == -(-length // ca.TARGET_ROWS)


def test_attention_layer_takes_the_chunked_path_from_the_threshold_with_the_same_result(monkeypatch):
    attention = layers.Attention(16, 2, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 40, 16)), jnp.float32)

    def value_and_grad(x):
        return jax.value_and_grad(lambda x: jnp.sum(jnp.tanh(attention(x))))(x)

    monkeypatch.setattr(layers, "CHUNKED_ATTENTION_MIN_TOKENS", 10 ** 9)
    plain = value_and_grad(x)
    called = []
    monkeypatch.setattr(layers, "CHUNKED_ATTENTION_MIN_TOKENS", 40)
    monkeypatch.setattr(layers, "chunked_attention", lambda *a: called.append(a[-1]) or ca.chunked_attention(*a))
    chunked = value_and_grad(x)
    assert called == [ca.chunk_rows(40)]
    np.testing.assert_allclose(chunked[0], plain[0], rtol=1e-6)
    np.testing.assert_allclose(chunked[1], plain[1], atol=1e-6)
