"""Heads and prototype layers: weight norm, gains, centroid stop-gradient, layouts, dtypes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxssl.models import (
    MLP,
    CARPHead,
    CentroidLayer,
    DINOHead,
    ExCBPredictor,
    ExCBProjector,
    MSNHead,
    WeightNormPrototypes,
    get_prototypes,
)

D_IN, HIDDEN, BOTTLENECK, K = 6, 16, 8, 10
_X = jax.random.normal(jax.random.key(3), (4, D_IN)) * 2.0


def _init(module, x=_X, **kw):
    return jax.jit(functools.partial(module.init, **kw))(jax.random.key(0), x)


def _cosine_logits_loop(z, kernel):
    """<w_k / |w_k|, z> with explicit Python loops in float64 (zero rows give 0)."""
    z = np.asarray(z, np.float64)
    kernel = np.asarray(kernel, np.float64)
    out = np.zeros(z.shape[:-1] + (kernel.shape[0],))
    for idx in np.ndindex(z.shape[:-1]):
        for k, w in enumerate(kernel):
            norm = np.sqrt(sum(v * v for v in w))
            out[idx + (k,)] = 0.0 if norm == 0 else sum(a * b for a, b in zip(w, z[idx])) / norm
    return out


def test_weight_norm_logits_match_loop_and_zero_rows_are_safe():
    layer = WeightNormPrototypes(num_prototypes=4)
    kernel = jnp.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0], [-3.0, 0.0, 4.0], [1e-3, 0.0, 0.0]])
    z = jnp.array([[1.0, -1.0, 0.5], [2.0, 0.0, 1.0]])
    logits = layer.apply({"params": {"kernel": kernel}}, z)
    np.testing.assert_allclose(logits, _cosine_logits_loop(z, kernel), rtol=1e-6, atol=1e-7)
    # Gradients through a zero row and a zero input stay finite.
    grads = jax.grad(
        lambda k, z: jnp.sum(layer.apply({"params": {"kernel": k}}, z)), argnums=(0, 1)
    )(kernel, jnp.zeros_like(z))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_initialised_rows_act_as_unit_vectors():
    layer = WeightNormPrototypes(num_prototypes=K)
    variables = _init(layer)
    kernel = variables["params"]["kernel"]
    assert kernel.shape == (K, D_IN)
    # Scaling the stored rows does not change the logits: only directions matter (gain 1).
    logits = layer.apply(variables, _X)
    scaled = layer.apply({"params": {"kernel": kernel * jnp.arange(1.0, K + 1)[:, None]}}, _X)
    chex.assert_trees_all_close(logits, scaled, rtol=1e-5, atol=1e-6)
    # logit = cos(w_k, z) * |z|, from numpy.
    w = np.asarray(kernel) / np.linalg.norm(kernel, axis=1, keepdims=True)
    z = np.asarray(_X)
    np.testing.assert_allclose(logits, z @ w.T, rtol=1e-5, atol=1e-6)
    cos = logits / np.linalg.norm(z, axis=1, keepdims=True)
    assert np.all(np.abs(cos) <= 1 + 1e-6)


def test_learned_gain_scales_logits_and_receives_gradient():
    layer = WeightNormPrototypes(num_prototypes=K, learn_gain=True)
    variables = _init(layer)
    params = variables["params"]
    np.testing.assert_array_equal(params["gain"], np.ones(K))
    gain = jnp.linspace(0.5, 3.0, K)
    fixed = WeightNormPrototypes(num_prototypes=K).apply(
        {"params": {"kernel": params["kernel"]}}, _X
    )
    scaled = layer.apply({"params": {"kernel": params["kernel"], "gain": gain}}, _X)
    chex.assert_trees_all_close(scaled, fixed * gain, rtol=1e-5, atol=1e-6)

    def loss(p):
        return jnp.sum(jax.nn.log_softmax(layer.apply({"params": p}, _X))[:, 0])

    grads = jax.grad(loss)(params)
    assert float(jnp.max(jnp.abs(grads["gain"]))) > 0
    # One SGD step changes the gain: it is learned, not frozen at 1.
    updates, _ = optax.sgd(0.1).update(grads, optax.sgd(0.1).init(params))
    assert not np.allclose(optax.apply_updates(params, updates)["gain"], 1.0)


def test_dino_head_is_cosine_of_l2_normalised_mlp_output():
    head = DINOHead(num_prototypes=K, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK)
    variables = _init(head)
    params = variables["params"]
    assert set(params) == {"mlp", "prototypes"}
    assert set(params["mlp"]) == {"mlp_0", "mlp_1", "mlp_2"}  # in -> hidden -> hidden -> bneck
    logits = head.apply(variables, _X)
    assert logits.shape == (4, K) and logits.dtype == jnp.float32
    z = MLP(hidden_dims=(HIDDEN, HIDDEN), out_dim=BOTTLENECK).apply({"params": params["mlp"]}, _X)
    z_unit = np.asarray(z) / np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(
        logits, _cosine_logits_loop(z_unit, params["prototypes"]["kernel"]), atol=1e-5
    )
    assert "gain" not in params["prototypes"]  # norm_last_layer=True: gain fixed at 1


def test_dino_head_on_patch_tokens_equals_flattened():
    head = DINOHead(num_prototypes=K, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK)
    tokens = jax.random.normal(jax.random.key(5), (2, 3, D_IN))
    variables = _init(head, tokens)
    out = head.apply(variables, tokens)
    assert out.shape == (2, 3, K)
    flat = head.apply(variables, tokens.reshape(6, D_IN)).reshape(2, 3, K)
    chex.assert_trees_all_close(out, flat, atol=1e-6)


def test_dino_head_norm_last_layer_false_learns_a_gain():
    head = DINOHead(
        num_prototypes=K,
        hidden_dim=HIDDEN,
        bottleneck_dim=BOTTLENECK,
        norm_last_layer=False,
        use_bn=True,
        num_layers=2,
    )
    variables = _init(head)
    assert variables["params"]["prototypes"]["gain"].shape == (K,)
    assert set(variables["params"]["mlp"]) == {"mlp_0", "bn_0", "mlp_1"}
    logits, _ = head.apply(variables, _X, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, K)


def test_carp_head_does_not_normalise_z():
    head = CARPHead(num_prototypes=K, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK)
    variables = _init(head)
    params = variables["params"]
    assert set(params["mlp"]) == {"mlp_0", "bn_0", "mlp_1", "bn_1", "mlp_2"}
    logits = head.apply(variables, _X)  # eval mode: running statistics
    z = MLP(hidden_dims=(HIDDEN, HIDDEN), out_dim=BOTTLENECK, use_bn=True).apply(
        {"params": params["mlp"], "batch_stats": variables["batch_stats"]["mlp"]}, _X
    )
    # logit_k = <w_k / |w_k|, z> with the raw (un-normalised) z: |z| acts as inverse temperature.
    np.testing.assert_allclose(
        logits, _cosine_logits_loop(z, params["prototypes"]["kernel"]), rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-2)


def test_centroid_layer_cosines_and_stop_gradient_switch():
    layer = CentroidLayer(num_prototypes=K)
    params = _init(layer)["params"]
    sims = layer.apply({"params": params}, _X)
    z_unit = np.asarray(_X) / np.linalg.norm(_X, axis=1, keepdims=True)
    np.testing.assert_allclose(
        sims, _cosine_logits_loop(z_unit, params["prototypes"]["kernel"]), atol=1e-6
    )
    assert np.all(np.abs(sims) <= 1.0)
    target = jax.nn.one_hot(jnp.arange(4) % K, K)

    def loss(p, x, sg):
        s = layer.apply({"params": p}, x, stop_gradient_centroids=sg)
        return -jnp.sum(target * jax.nn.log_softmax(s / 0.1))

    for sg in (False, True):
        g_params, g_x = jax.grad(loss, argnums=(0, 1))(params, _X, sg)
        centroid_grad = float(jnp.max(jnp.abs(g_params["prototypes"]["kernel"])))
        assert float(jnp.max(jnp.abs(g_x))) > 0  # features always get gradient
        assert (centroid_grad == 0.0) if sg else (centroid_grad > 0.0)
    # The switch changes gradients only, not values.
    chex.assert_trees_all_close(
        layer.apply({"params": params}, _X, stop_gradient_centroids=True), sims
    )


def test_excb_projector_and_predictor_layouts():
    proj_bn = ExCBProjector(hidden_dim=HIDDEN, out_dim=BOTTLENECK, use_bn=True)
    v = _init(proj_bn)
    assert set(v["params"]["mlp"]) == {"mlp_0", "bn_0", "mlp_1"}  # 2-layer MLP, BN + ReLU
    y, _ = proj_bn.apply(v, _X, train=True, mutable=["batch_stats"])
    assert y.shape == (4, BOTTLENECK) and y.dtype == jnp.float32
    proj_vit = ExCBProjector(hidden_dim=HIDDEN, out_dim=BOTTLENECK, use_bn=False)
    v = _init(proj_vit)
    assert set(v["params"]["mlp"]) == {"mlp_0", "mlp_1"} and "batch_stats" not in v
    # The ReLU (not GELU) hidden activation of the BN projector, checked by hand in eval mode.
    v = _init(proj_bn)
    p = v["params"]["mlp"]
    h = _X @ p["mlp_0"]["kernel"] + p["mlp_0"]["bias"]
    h = h / jnp.sqrt(1.0 + 1e-5) * p["bn_0"]["scale"] + p["bn_0"]["bias"]  # running mean 0, var 1
    expected = jax.nn.relu(h) @ p["mlp_1"]["kernel"] + p["mlp_1"]["bias"]
    chex.assert_trees_all_close(proj_bn.apply(v, _X), expected, atol=1e-5)

    pred = ExCBPredictor(hidden_dim=HIDDEN, out_dim=BOTTLENECK)
    z = jax.random.normal(jax.random.key(1), (4, BOTTLENECK))
    v = _init(pred, z)
    assert set(v["params"]["mlp"]) == {"bn_in", "mlp_0", "bn_0", "mlp_1"}  # BN first
    y, _ = pred.apply(v, z, train=True, mutable=["batch_stats"])
    assert y.shape == (4, BOTTLENECK)


def test_msn_head_returns_projection_and_holds_free_prototypes():
    head = MSNHead(num_prototypes=K, hidden_dim=HIDDEN, out_dim=BOTTLENECK)
    v = _init(head)
    assert set(v["params"]["mlp"]) == {"mlp_0", "bn_0", "mlp_1", "bn_1", "mlp_2"}
    protos = get_prototypes(v)
    assert protos.shape == (K, BOTTLENECK)
    # A free matrix: rows are not normalised.
    assert not np.allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-2)
    z, _ = head.apply(v, _X, train=True, mutable=["batch_stats"])
    assert z.shape == (4, BOTTLENECK) and z.dtype == jnp.float32

    # Prototypes get gradient through a loss that uses them with z.
    def loss(p):
        zz, _ = head.apply({**v, "params": p}, _X, train=True, mutable=["batch_stats"])
        return jnp.sum(jax.nn.log_softmax(zz @ get_prototypes(p).T))

    assert float(jnp.max(jnp.abs(get_prototypes(jax.grad(loss)(v["params"]))))) > 0


@pytest.mark.parametrize(
    "head, width",
    [
        (DINOHead(num_prototypes=K, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK), BOTTLENECK),
        (CARPHead(num_prototypes=K, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK), BOTTLENECK),
        (CentroidLayer(num_prototypes=K), D_IN),
        (MSNHead(num_prototypes=K, hidden_dim=HIDDEN, out_dim=BOTTLENECK), BOTTLENECK),
    ],
)
def test_get_prototypes_path_and_optax_mask(head, width):
    v = jax.eval_shape(head.init, jax.random.key(0), _X)
    assert get_prototypes(v).shape == (K, width)
    assert get_prototypes(v["params"]).shape == (K, width)
    # The trainer's freeze mask: every leaf under a "prototypes" path component, nothing else.
    mask = jax.tree_util.tree_map_with_path(
        lambda path, _: any(getattr(k, "key", None) == "prototypes" for k in path), v["params"]
    )
    flagged = [leaf for leaf in jax.tree.leaves(mask) if leaf]
    assert len(flagged) == 1


def test_get_prototypes_rejects_heads_without_prototypes():
    v = jax.eval_shape(
        ExCBProjector(hidden_dim=HIDDEN, out_dim=BOTTLENECK).init, jax.random.key(0), _X
    )
    with pytest.raises(ValueError, match="no 'prototypes/kernel' entry; top-level keys are"):
        get_prototypes(v)


@pytest.mark.parametrize("kind", ["dino", "carp", "centroids", "msn", "excb_projector"])
def test_bfloat16_heads_return_float32_close_to_float32(kind):
    def make(dtype):
        return {
            "dino": DINOHead(K, HIDDEN, BOTTLENECK, dtype=dtype),
            "carp": CARPHead(K, HIDDEN, BOTTLENECK, dtype=dtype),
            "centroids": CentroidLayer(K, dtype=dtype),
            "msn": MSNHead(K, HIDDEN, BOTTLENECK, dtype=dtype),
            "excb_projector": ExCBProjector(HIDDEN, BOTTLENECK, dtype=dtype),
        }[kind]

    f32, bf16 = make(jnp.float32), make(jnp.bfloat16)
    v = _init(f32)
    ref = f32.apply(v, _X)
    out = bf16.apply(v, _X)
    assert out.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(ref)))
    assert float(jnp.max(jnp.abs(out - ref))) < 0.05 * scale


def test_bn_axis_name_gives_global_batch_statistics_under_shard_map():
    # Four devices each see a quarter of the batch; with bn_axis_name the BN statistics are
    # averaged over the mapped axis, so the result equals the unsharded full-batch forward pass.
    devices = np.array(jax.devices()[:4])
    mesh = jax.sharding.Mesh(devices, ("batch",))
    x = jax.random.normal(jax.random.key(9), (8, D_IN)) * jnp.arange(1.0, 9.0)[:, None]
    plain = MLP(hidden_dims=(HIDDEN,), out_dim=BOTTLENECK, use_bn=True)
    synced = MLP(hidden_dims=(HIDDEN,), out_dim=BOTTLENECK, use_bn=True, bn_axis_name="batch")
    v = _init(plain, x)
    ref, _ = plain.apply(v, x, train=True, mutable=["batch_stats"])

    def local(v, x):
        out, _ = synced.apply(v, x, train=True, mutable=["batch_stats"])
        return out

    spec = jax.sharding.PartitionSpec
    out = jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=(spec(), spec("batch")), out_specs=spec("batch"))
    )(v, x)
    chex.assert_trees_all_close(out, ref, atol=1e-5)
    # Without the axis name each shard normalises with its own statistics: a different result.
    per_shard = jax.jit(
        jax.shard_map(
            lambda v, x: plain.apply(v, x, train=True, mutable=["batch_stats"])[0],
            mesh=mesh,
            in_specs=(spec(), spec("batch")),
            out_specs=spec("batch"),
        )
    )(v, x)
    assert not np.allclose(per_shard, ref, atol=1e-3)
