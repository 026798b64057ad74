"""The DeepSDF decoder: size, output, weight-norm initialisation, precision modes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from benchmarks.profile import dot_generals
from sdfjax.models import decoder as decoder_lib


@pytest.mark.slow
def test_default_decoder_has_deepsdf_parameter_count():
    params = decoder_lib.init_params(decoder_lib.Decoder(), jax.random.key(0))
    assert decoder_lib.count_params(params) == 1_843_195
    layers = params["params"]
    assert layers["layer3"]["v"].shape == (512, 512 - 259)  # the layer before the skip
    assert layers["layer4"]["v"].shape == (512, 512)  # its output + [z, x] again
    assert "g" not in layers["layer8"]


@pytest.mark.slow
def test_output_shape_range_and_broadcast_of_codes():
    decoder = decoder_lib.Decoder(latent_dim=8, hidden_dim=32, num_layers=4, skip_layers=(2,))
    params = decoder_lib.init_params(decoder, jax.random.key(1))
    z = jax.random.normal(jax.random.key(2), (3, 1, 8))
    xyz = jax.random.uniform(jax.random.key(3), (3, 50, 3), minval=-1, maxval=1)
    sdf = decoder.apply(params, z, xyz)
    assert sdf.shape == (3, 50) and bool(jnp.all(jnp.abs(sdf) < 1))
    explicit = decoder.apply(params, jnp.broadcast_to(z, (3, 50, 8)), xyz)
    np.testing.assert_allclose(sdf, explicit, rtol=1e-6)


def _plain_mlp(params, decoder, z, xyz, weight_norm=False):
    """The same network written out on [z, x] concatenated, with w = v (what weight norm equals at init)
    or, with `weight_norm`, w = g v / ||v||."""
    inputs = jnp.concatenate([z, xyz], -1)
    h = inputs
    for i in range(decoder.num_layers):
        if i in decoder.skip_layers:
            h = jnp.concatenate([h, inputs], -1)
        p = params["params"][f"layer{i}"]
        w = p["v"] * (p["g"] / jnp.linalg.norm(p["v"], axis=0)) if weight_norm else p["v"]
        h = jax.nn.relu(h @ w + p["bias"])
    p = params["params"][f"layer{decoder.num_layers}"]
    return jnp.tanh(h @ p["v"] + p["bias"])[..., 0]


@pytest.mark.slow
def test_weight_norm_at_init_equals_unnormalised_layer():
    decoder = decoder_lib.Decoder(latent_dim=16, hidden_dim=64, num_layers=6, skip_layers=(3,))
    params = decoder_lib.init_params(decoder, jax.random.key(4))
    for i in range(decoder.num_layers):
        p = params["params"][f"layer{i}"]
        np.testing.assert_allclose(p["g"], np.linalg.norm(p["v"], axis=0), rtol=1e-6)
    z = jax.random.normal(jax.random.key(5), (40, 16))
    xyz = jax.random.uniform(jax.random.key(6), (40, 3), minval=-1, maxval=1)
    np.testing.assert_allclose(decoder.apply(params, z, xyz), _plain_mlp(params, decoder, z, xyz), atol=1e-6)
    # Doubling g doubles every hidden layer's weights: the plain MLP must then differ.
    doubled = jax.tree_util.tree_map_with_path(
        lambda path, x: 2 * x if path[-1].key == "g" else x, params)
    assert not np.allclose(decoder.apply(doubled, z, xyz), _plain_mlp(params, decoder, z, xyz), atol=1e-4)


@pytest.mark.slow
def test_dropout_only_in_training_and_bfloat16_close_to_float32():
    kwargs = dict(latent_dim=16, hidden_dim=64, num_layers=4, skip_layers=(2,))
    f32 = decoder_lib.Decoder(**kwargs)
    bf16 = decoder_lib.Decoder(**kwargs, compute_dtype="bfloat16")
    params = decoder_lib.init_params(f32, jax.random.key(7))
    z, xyz = jnp.ones((100, 16)) * 0.1, jax.random.uniform(jax.random.key(8), (100, 3))
    a, b = f32.apply(params, z, xyz), f32.apply(params, z, xyz)
    np.testing.assert_array_equal(a, b)
    c = f32.apply(params, z, xyz, train=True, rngs={"dropout": jax.random.key(9)})
    assert not np.allclose(a, c)
    low = bf16.apply(params, z, xyz)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, a, atol=2e-2 * float(jnp.abs(a).max()) + 1e-3)


def test_dropout_keeps_units_with_probability_one_minus_rate():
    x = jnp.ones((200, 1000))
    out = decoder_lib.dropout(x, 0.2, jax.random.key(0))
    kept = np.asarray(out > 0)
    assert abs(kept.mean() - 0.8) < 3e-3
    np.testing.assert_allclose(np.asarray(out)[kept], 1 / 0.8, rtol=1e-6)  # inverted scaling: mean kept
    assert abs(kept[:, ::2].mean() - kept[:, 1::2].mean()) < 6e-3  # both halves of a word are used alike
    np.testing.assert_array_equal(decoder_lib.dropout(x, 0.2, jax.random.key(0)), out)  # a key is one mask
    for row in (kept.mean(axis=1), kept.mean(axis=0)):  # no point and no unit favoured (binomial spread)
        spread = np.sqrt(0.8 * 0.2 / (kept.size / len(row)))
        assert np.abs(row - 0.8).max() < 5 * spread
    flat = kept.reshape(-1).astype(float)
    for other in (jax.random.key(1), jax.random.fold_in(jax.random.key(0), 1)):  # other layers, other steps
        again = np.asarray(decoder_lib.dropout(x, 0.2, other) > 0).reshape(-1).astype(float)
        assert abs(np.corrcoef(flat, again)[0, 1]) < 0.01
    # The counter is linear in the index, so a first seed larger by k * GOLDEN alone would give the same words
    # shifted by k (a layer's mask a copy of another's); the second seed is what keeps them apart.
    seeds = np.array([12345, 678], np.uint32)
    shifted = np.array([(12345 + 1000 * decoder_lib.GOLDEN) % 2**32, 678], np.uint32)
    a, b = (np.asarray(decoder_lib.hashed_bits(jnp.asarray(s), 5000)) for s in (seeds, shifted))
    np.testing.assert_array_equal(a[1000:], b[:4000])  # the hazard is real with one seed ...
    apart = np.asarray(decoder_lib.hashed_bits(jnp.asarray(shifted + np.array([0, 1], np.uint32)), 5000))
    assert (a[1000:] == apart[:4000]).mean() < 0.01  # ... and gone with the second
    bits = np.asarray(decoder_lib.dropout_bits(jax.random.key(3), 200_000))
    ones = np.unpackbits(bits.view(np.uint8)).reshape(-1, 32).mean(axis=0)
    assert np.abs(ones - 0.5).max() < 0.005  # every bit position is a fair coin


def _training_grad_jaxpr(decoder, params, scenes=2, points=32):
    z = jax.random.normal(jax.random.key(11), (scenes, decoder.latent_dim))
    xyz = jax.random.uniform(jax.random.key(12), (scenes, points, 3), minval=-1, maxval=1)

    def loss(params, z):
        pred = decoder.apply(params, z[:, None, :], xyz, train=True, rngs={"dropout": jax.random.key(13)})
        return jnp.mean(jnp.abs(pred - 0.01))

    return jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, z).jaxpr, loss, z


@pytest.mark.slow
def test_latent_block_is_multiplied_once_per_scene_and_its_gradient_summed():
    decoder = decoder_lib.Decoder(latent_dim=16, hidden_dim=64, num_layers=6, skip_layers=(3,))
    params = decoder_lib.init_params(decoder, jax.random.key(10))
    jaxpr, loss, z = _training_grad_jaxpr(decoder, params, scenes=2, points=32)
    # No product ever sees the latent at the points' shape: (2, 32, 16) or the concatenated (2, 32, 16 + 3).
    for eqn in dot_generals(jaxpr):
        for var in eqn.invars:
            assert tuple(var.aval.shape[-2:]) not in ((32, 16), (32, 19)), eqn
    # Values and gradients equal the concatenated network written out (no dropout: eval mode).
    xyz = jax.random.uniform(jax.random.key(14), (2, 32, 3), minval=-1, maxval=1)
    folded = lambda p, z: jnp.sum(decoder.apply(p, z[:, None, :], xyz) ** 2)
    plain = lambda p, z: jnp.sum(_plain_mlp(p, decoder, jnp.broadcast_to(z[:, None, :], (2, 32, 16)), xyz,
                                                   weight_norm=True) ** 2)
    for a, b in zip(jax.tree.leaves(jax.grad(folded, (0, 1))(params, z)),
                    jax.tree.leaves(jax.grad(plain, (0, 1))(params, z))):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


@pytest.mark.slow
def test_narrow_input_columns_and_the_output_column_are_fused_sums_not_products():
    for k in (1, 3, decoder_lib.NARROW):
        x = jax.random.normal(jax.random.key(k), (2, 5, k))
        w = jax.random.normal(jax.random.key(k + 20), (k, 7))
        np.testing.assert_allclose(decoder_lib.narrow_matmul(x, w), x @ w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(decoder_lib.input_matmul(x, w), x @ w, rtol=1e-5, atol=1e-6)
    wide = jax.random.normal(jax.random.key(30), (2, 5, decoder_lib.NARROW + 1))
    w = jax.random.normal(jax.random.key(31), (decoder_lib.NARROW + 1, 7))
    np.testing.assert_allclose(decoder_lib.input_matmul(wide, w), wide @ w, rtol=1e-5, atol=1e-6)
    h = jax.random.normal(jax.random.key(32), (2, 5, 64))
    w = jax.random.normal(jax.random.key(33), (64, 1))
    np.testing.assert_allclose(decoder_lib.column_matmul(h, w), h @ w, rtol=1e-5, atol=1e-5)
    # In a training step's gradient, no product has xyz (32 points x 3) or the one-column output at the
    # points' shape as an operand or result (each would be a pass of its own at a few GFLOP/s).
    decoder = decoder_lib.Decoder(latent_dim=16, hidden_dim=64, num_layers=6, skip_layers=(3,))
    params = decoder_lib.init_params(decoder, jax.random.key(34))
    jaxpr, _, _ = _training_grad_jaxpr(decoder, params, scenes=2, points=32)
    products = dot_generals(jaxpr)
    assert products
    for eqn in products:
        for var in (*eqn.invars, *eqn.outvars):
            assert tuple(var.aval.shape[-2:]) not in ((32, 3), (32, 1)), eqn


@pytest.mark.slow
def test_bfloat16_backward_products_are_bfloat16_with_float32_accumulation():
    decoder = decoder_lib.Decoder(latent_dim=16, hidden_dim=64, num_layers=6, skip_layers=(3,),
                                  compute_dtype="bfloat16")
    params = decoder_lib.init_params(decoder, jax.random.key(15))
    jaxpr, loss, z = _training_grad_jaxpr(decoder, params)
    hidden_products = 0
    for eqn in dot_generals(jaxpr):
        dtypes = {var.aval.dtype for var in eqn.invars}
        assert len(dtypes) == 1, f"mixed-precision product {eqn}"  # no f32 cotangent against a bf16 weight
        assert eqn.outvars[0].aval.dtype == jnp.float32
        if any(d == jnp.bfloat16 for d in dtypes):
            hidden_products += 1
    # Layers 1..5 multiply hidden activations: forward, activation gradient and weight gradient each in bf16.
    assert hidden_products == 3 * (decoder.num_layers - 1)
    f32 = decoder_lib.Decoder(latent_dim=16, hidden_dim=64, num_layers=6, skip_layers=(3,))
    low, high = (jax.grad(loss)(params, z) for loss in (loss, _training_grad_jaxpr(f32, params)[1]))
    for a, b in zip(jax.tree.leaves(low), jax.tree.leaves(high)):  # the same gradient, to bf16 rounding
        assert float(jnp.linalg.norm(a - b)) <= 0.15 * float(jnp.linalg.norm(b)) + 1e-6


def test_auto_compute_dtype_is_bfloat16_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    from sdfjax import parallel
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    for flags, expected in (({"avx2", "fma"}, "float32"), ({"avx2", "avx512f"}, "float32"),
                            ({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16", "amx_tile"}, "bfloat16")):
        monkeypatch.setattr(parallel, "cpu_flags", lambda flags=flags: flags)
        assert parallel.resolve_compute_dtype("auto") == expected, flags
        model = ml_collections.ConfigDict({"latent_dim": 8, "hidden_dim": 16, "num_layers": 2, "skip_layers": (1,),
                                           "dropout_rate": 0.0, "weight_norm": True, "compute_dtype": "auto"})
        assert decoder_lib.from_config(model).compute_dtype == expected
    assert parallel.resolve_compute_dtype("float32") == "float32"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert parallel.resolve_compute_dtype("auto") == "bfloat16"
    with pytest.raises(ValueError, match="compute_dtype='float16'"):
        parallel.resolve_compute_dtype("float16")


def test_profile_counts_a_scan_bodys_products_once_per_iteration():
    def chunked(w, xs):
        return jax.lax.scan(lambda c, x: (c + jnp.sum(x @ w), None), 0.0, xs)[0]

    jaxpr = jax.make_jaxpr(jax.grad(chunked))(jnp.ones((8, 8)), jnp.ones((4, 16, 8))).jaxpr
    products = dot_generals(jaxpr)
    assert len(products) == 2 * 4  # forward and weight gradient, in each of the 4 iterations
    assert {tuple(e.invars[0].aval.shape) for e in products} <= {(16, 8)}


def test_folded_weight_norm_params_give_the_same_decoder_and_gradients():
    decoder = decoder_lib.Decoder(latent_dim=16, hidden_dim=64, num_layers=6, skip_layers=(3,))
    params = decoder_lib.init_params(decoder, jax.random.key(40))
    params = jax.tree.map(lambda a: a * 1.3, params)  # g no longer ||v||: the fold must apply it
    z = jax.random.normal(jax.random.key(41), (2, 1, 16))
    xyz = jax.random.uniform(jax.random.key(42), (2, 32, 3), minval=-1, maxval=1)
    plain = decoder.clone(weight_norm=False)
    folded = decoder_lib.fold_weight_norm(params)
    assert "g" not in folded["params"]["layer0"] and set(folded["params"]) == set(params["params"])
    np.testing.assert_allclose(plain.apply(folded, z, xyz), decoder.apply(params, z, xyz), rtol=1e-5, atol=1e-6)
    direct = jax.grad(lambda p: jnp.sum(decoder.apply(p, z, xyz) ** 2))(params)
    through = jax.grad(lambda p: jnp.sum(plain.apply(decoder_lib.fold_weight_norm(p), z, xyz) ** 2))(params)
    for a, b in zip(jax.tree.leaves(through), jax.tree.leaves(direct)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
