"""imujax.models.layers pieces that change how a computation is written, not what it computes."""

import jax
import jax.numpy as jnp
import numpy as np

from imujax.models import layers


def _loss(matmul):
    def loss(x, kernel, target):
        out = matmul(x, kernel)
        return jnp.sum(jnp.sin(out) * target)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def test_matmul_wide_has_the_values_and_gradients_of_a_plain_matmul():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 7, 8)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((8, 96)), jnp.float32)
    target = jnp.asarray(rng.standard_normal((3, 7, 96)), jnp.float32)
    (value, (dx, dk)) = _loss(layers.matmul_wide)(x, kernel, target)
    (ref_value, (ref_dx, ref_dk)) = _loss(jnp.dot)(x, kernel, target)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dk, ref_dk, rtol=1e-5, atol=1e-5)
    assert dx.shape == x.shape and dk.shape == kernel.shape


def test_matmul_wide_keeps_the_compute_dtype_of_its_inputs():
    x = jnp.ones((2, 4, 8), jnp.bfloat16)
    kernel = jnp.ones((8, 48), jnp.bfloat16)
    grads = jax.grad(lambda x, k: layers.matmul_wide(x, k).astype(jnp.float32).sum(), argnums=(0, 1))(x, kernel)
    assert layers.matmul_wide(x, kernel).dtype == jnp.bfloat16
    assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.bfloat16]
    np.testing.assert_array_equal(np.asarray(grads[1], np.float32), np.full((8, 48), 8.0))


def test_layer_stack_runs_every_stream_through_every_layer_with_or_without_remat():
    """Values, input gradients and the stacked weight gradients equal those of a Python loop over the layers."""
    from flax import nnx
    stack = layers.LayerStack(lambda r: layers.Block(16, 2, rngs=r), 3, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(stack)
    qkv = params["block"]["attn"]["qkv"]["kernel"]
    assert qkv.shape == (3, 16, 48) and qkv.get_metadata()["out_sharding"] == ("layers", "embed", "heads")
    assert not np.allclose(qkv[...][0], qkv[...][1])  # every layer has its own initialisation
    rng = np.random.default_rng(0)
    streams = (jnp.asarray(rng.standard_normal((2, 5, 16)), jnp.float32),
               jnp.asarray(rng.standard_normal((3, 7, 16)), jnp.float32))

    def looped(stack, xs):
        outs = []
        for x in xs:
            for i in range(stack.depth):
                x = stack.layer(i)(x)
            outs.append(x)
        return tuple(outs)

    def loss_of(run):
        def loss(params, xs):
            return sum(jnp.sum(jnp.sin(out)) for out in run(nnx.merge(graphdef, params), xs))
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    want_value, want_grads = loss_of(looped)(params, streams)
    for remat in (False, True):
        value, grads = loss_of(lambda stack, xs: stack(xs, remat=remat))(params, streams)
        np.testing.assert_allclose(value, want_value, rtol=1e-5)
        for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(want_grads)):
            np.testing.assert_allclose(g, w, atol=1e-5, err_msg=jax.tree_util.keystr(path))
