"""VisionTransformer behaviour: MSN patch dropping, iBOT masking, position-embedding interpolation,
drop-path, precision and initialisation."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import VisionTransformer, vit_nano
from jaxssl.models.vit import DropPath, interpolate_pos_embed

P = 4  # patch size
G = 4  # patch grid side at the configured 16 px, so N = 16 patches
_VIT = VisionTransformer(patch_size=P, embed_dim=16, depth=2, num_heads=2, img_size=16)
_X = jax.random.normal(jax.random.key(7), (2, 16, 16, 3))


@pytest.fixture(scope="module")
def variables():
    return jax.jit(_VIT.init)(jax.random.key(0), _X)


@functools.partial(
    jax.jit, static_argnames=("model", "train", "deterministic", "return_patch_tokens")
)
def _run(
    model,
    variables,
    x,
    keep_indices=None,
    mask=None,
    train=False,
    deterministic=None,
    return_patch_tokens=False,
    rngs=None,
):
    return model.apply(
        variables,
        x,
        train=train,
        deterministic=deterministic,
        keep_indices=keep_indices,
        mask=mask,
        return_patch_tokens=return_patch_tokens,
        rngs=rngs,
    )


def _perturb_patches(x, patch_ids, key):
    """Returns x with fresh random pixels in the given patches (row-major patch index)."""
    x = np.array(x)
    noise = np.asarray(jax.random.normal(key, x.shape)) * 5.0
    for p in patch_ids:
        r, c = divmod(int(p), G)
        x[:, r * P : (r + 1) * P, c * P : (c + 1) * P] = noise[
            :, r * P : (r + 1) * P, c * P : (c + 1) * P
        ]
    return jnp.asarray(x)


def test_num_features_without_init():
    assert _VIT.num_features == 16
    assert vit_nano().num_features == 128


def test_msn_dropped_patches_do_not_influence_output(variables):
    keep = jnp.array([0, 2, 5, 7, 8, 13, 15])
    dropped = sorted(set(range(G * G)) - set(keep.tolist()))
    cls, tokens = _run(_VIT, variables, _X, keep_indices=keep, return_patch_tokens=True)
    assert cls.shape == (2, 16) and tokens.shape == (2, keep.size, 16)  # CLS kept, 7 patches
    x_dropped_changed = _perturb_patches(_X, dropped, jax.random.key(1))
    cls2, tokens2 = _run(
        _VIT, variables, x_dropped_changed, keep_indices=keep, return_patch_tokens=True
    )
    chex.assert_trees_all_close((cls, tokens), (cls2, tokens2), atol=1e-6)
    # The test can fail: changing a KEPT patch changes the output.
    x_kept_changed = _perturb_patches(_X, [5], jax.random.key(2))
    cls3 = _run(_VIT, variables, x_kept_changed, keep_indices=keep)
    assert not np.allclose(cls, cls3, atol=1e-4)


def test_msn_positions_travel_with_kept_tokens(variables):
    # Attention is permutation-invariant, so if position embeddings are added BEFORE dropping, the
    # CLS output does not depend on the order of keep_indices; keeping all patches in order
    # reproduces the plain forward pass.
    full = _run(_VIT, variables, _X)
    chex.assert_trees_all_close(
        _run(_VIT, variables, _X, keep_indices=jnp.arange(G * G)), full, atol=1e-6
    )
    keep = jnp.array([3, 9, 1, 12])
    a = _run(_VIT, variables, _X, keep_indices=keep)
    b = _run(_VIT, variables, _X, keep_indices=keep[::-1])
    chex.assert_trees_all_close(a, b, atol=1e-5)


def test_msn_per_sample_keep_indices(variables):
    keep = jnp.array([[0, 1, 2, 3], [12, 4, 9, 15]])
    both = _run(_VIT, variables, _X, keep_indices=keep)
    for b in range(2):
        single = _run(_VIT, variables, _X[b : b + 1], keep_indices=keep[b])
        chex.assert_trees_all_close(both[b : b + 1], single, atol=1e-5)


def test_ibot_masked_patches_are_replaced(variables):
    mask = jnp.zeros((2, G * G), bool).at[:, jnp.array([1, 6, 11])].set(True)
    cls, tokens = _run(_VIT, variables, _X, mask=mask, return_patch_tokens=True)
    assert tokens.shape == (2, G * G, 16)
    changed = _perturb_patches(_X, [1, 6, 11], jax.random.key(3))
    cls2, tokens2 = _run(_VIT, variables, changed, mask=mask, return_patch_tokens=True)
    chex.assert_trees_all_close((cls, tokens), (cls2, tokens2), atol=1e-6)
    # An all-False mask is the plain forward pass; a real mask changes it.
    chex.assert_trees_all_close(
        _run(_VIT, variables, _X, mask=jnp.zeros_like(mask)), _run(_VIT, variables, _X), atol=1e-6
    )
    assert not np.allclose(cls, _run(_VIT, variables, _X), atol=1e-4)


def test_ibot_mask_token_is_used(variables):
    # Independent check of "replace the patch embedding by the mask token": set the mask token to
    # the embedding of the masked patch itself, computed by hand (flattened patch @ kernel + bias);
    # the output must then equal the unmasked output. A different mask token changes it.
    params = variables["params"]
    kernel = np.asarray(params["patch_embed_proj"]["kernel"])  # [P, P, 3, D]
    bias = np.asarray(params["patch_embed_proj"]["bias"])
    r, c = 2, 1
    x1 = _X[:1]
    patch = np.asarray(x1[0, r * P : (r + 1) * P, c * P : (c + 1) * P])  # [P, P, 3]
    embedding = np.einsum("ijc,ijcd->d", patch, kernel) + bias
    mask = jnp.zeros((1, G * G), bool).at[0, r * G + c].set(True)
    swapped = {"params": params | {"mask_token": jnp.asarray(embedding)[None, None]}}
    chex.assert_trees_all_close(
        _run(_VIT, swapped, x1, mask=mask), _run(_VIT, variables, x1), atol=1e-5
    )
    other = {"params": params | {"mask_token": jnp.ones((1, 1, 16))}}
    assert not np.allclose(
        _run(_VIT, other, x1, mask=mask), _run(_VIT, swapped, x1, mask=mask), atol=1e-4
    )


def test_bad_mask_and_keep_indices_raise(variables):
    with pytest.raises(ValueError, match=r"mask must have shape \(B, N\) = \(2, 16\)"):
        _VIT.apply(variables, _X, mask=jnp.zeros((2, 15), bool))
    with pytest.raises(ValueError, match="keep_indices must be"):
        _VIT.apply(variables, _X, keep_indices=jnp.zeros((3, 4), jnp.int32))
    with pytest.raises(ValueError, match="not a multiple of patch_size 4"):
        _VIT.apply(variables, jnp.zeros((1, 10, 10, 3)))
    no_token = VisionTransformer(
        patch_size=P, embed_dim=16, depth=1, num_heads=2, img_size=16, use_mask_token=False
    )
    with pytest.raises(ValueError, match="use_mask_token=False"):
        jax.eval_shape(
            functools.partial(no_token.init, mask=jnp.zeros((2, 16), bool)), jax.random.key(0), _X
        )


def test_position_embedding_interpolation(variables):
    def pos(v, h, w):
        return interpolate_pos_embed(v["params"]["pos_embed"], h, w)

    stored = variables["params"]["pos_embed"]
    cls_pos, patch_pos = pos(variables, G, G)
    # Same grid: the stored table, untouched.
    chex.assert_trees_all_close(jnp.concatenate([cls_pos, patch_pos], 1), stored)
    # Other grids: the CLS entry is unchanged and a constant table stays constant (the
    # interpolation weights sum to one), whatever the output grid.
    const = stored.at[:, 1:].set(jnp.arange(16.0))
    for h, w in [(2, 2), (6, 6), (3, 5)]:
        cls_pos, patch_pos = pos({"params": variables["params"] | {"pos_embed": const}}, h, w)
        assert patch_pos.shape == (1, h * w, 16)
        chex.assert_trees_all_close(
            patch_pos, jnp.broadcast_to(jnp.arange(16.0), (1, h * w, 16)), atol=1e-5
        )
        chex.assert_trees_all_close(cls_pos, const[:, :1])
    # A real table is resized, not copied or zeroed: the 2x2 grid lies within its value range.
    _, small = pos(variables, 2, 2)
    assert float(jnp.max(jnp.abs(small))) > 0
    # Different input sizes with the 16-px configuration work: 8 px and 24 px images.
    for size, n in [(8, 4), (24, 36)]:
        cls, tokens = _run(
            _VIT,
            variables,
            _X[:, :size, :size] if size < 16 else jnp.tile(_X, (1, 2, 2, 1))[:, :size, :size],
            return_patch_tokens=True,
        )
        assert cls.shape == (2, 16) and tokens.shape == (2, n, 16)
        assert bool(jnp.all(jnp.isfinite(cls)))


def test_drop_path_training(variables):
    # drop_path_rate adds no parameters, so the tiny model's variables are reused.
    model = VisionTransformer(
        patch_size=P, embed_dim=16, depth=2, num_heads=2, img_size=16, drop_path_rate=0.5
    )
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(functools.partial(model.apply, deterministic=False), variables, _X)
    eval_out = _run(model, variables, _X)
    chex.assert_trees_all_close(eval_out, _run(_VIT, variables, _X), atol=1e-6)
    outs = [
        _run(model, variables, _X, deterministic=False, rngs={"dropout": jax.random.key(i)})
        for i in range(3)
    ]
    # Depth 2: rates 0 and 0.5, so the second block is dropped for about half of the samples and
    # the outputs vary with the dropout key.
    assert any(not np.allclose(outs[0], o, atol=1e-5) for o in outs[1:])
    chex.assert_trees_all_close(
        outs[0],
        _run(model, variables, _X, deterministic=False, rngs={"dropout": jax.random.key(0)}),
    )


def test_train_and_deterministic_are_separate(variables):
    """``train=True, deterministic=True`` (an EMA teacher) needs no rng and ignores it: the
    output equals the eval-mode output for every key; ``deterministic`` defaults to
    ``not train``, so ``train=True`` alone is stochastic."""
    model = VisionTransformer(
        patch_size=P, embed_dim=16, depth=2, num_heads=2, img_size=16, drop_path_rate=0.5
    )
    eval_out = _run(model, variables, _X)
    # No "dropout" rng is needed for a deterministic training-mode call.
    shape = jax.eval_shape(
        functools.partial(model.apply, train=True, deterministic=True), variables, _X
    ).shape
    assert shape == (2, 16)
    for i in range(3):
        teacher = _run(model, variables, _X, train=True, deterministic=True,
                       rngs={"dropout": jax.random.key(i)})
        np.testing.assert_array_equal(np.asarray(teacher), np.asarray(eval_out))
    stochastic = [_run(model, variables, _X, train=True, rngs={"dropout": jax.random.key(i)})
                  for i in range(3)]
    assert any(not np.allclose(stochastic[0], o, atol=1e-5) for o in stochastic[1:])


def test_drop_path_rate_increases_linearly_over_depth():
    rates = VisionTransformer(depth=12, drop_path_rate=0.1).drop_path_rates
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.1, 12), atol=1e-12)
    assert VisionTransformer(depth=1, drop_path_rate=0.1).drop_path_rates == (0.0,)
    # timm / DINO: torch.linspace(0, rate, depth), so depth 2 already has an active last block.
    assert VisionTransformer(depth=2, drop_path_rate=0.1).drop_path_rates == (0.0, 0.1)


def test_drop_path_drops_whole_samples_and_rescales():
    y = DropPath(rate=0.25).apply(
        {}, jnp.ones((4000, 3)), deterministic=False, rngs={"dropout": jax.random.key(0)}
    )
    rows = np.asarray(y)
    # Each sample is either dropped entirely (0) or kept and scaled by 1 / (1 - 0.25).
    assert np.all(np.isclose(rows, 0.0) | np.isclose(rows, 1 / 0.75))
    assert np.all(rows.min(axis=1) == rows.max(axis=1))
    assert abs((rows[:, 0] == 0).mean() - 0.25) < 0.03  # 3 sigma for n = 4000 is 0.021


def test_bfloat16_compute_close_to_float32(variables):
    bf16 = VisionTransformer(
        patch_size=P, embed_dim=16, depth=2, num_heads=2, img_size=16, dtype=jnp.bfloat16
    )
    ref = _run(_VIT, variables, _X)
    out = _run(bf16, variables, _X)
    assert out.dtype == jnp.float32  # final LayerNorm in float32
    err = float(jnp.max(jnp.abs(out - ref)))
    # Outputs are LayerNorm-ed (unit scale); bf16 has 8 mantissa bits, so ~1e-2 errors are normal.
    assert 0.0 < err < 0.1


def test_same_key_same_init_different_key_different_init(variables):
    init = jax.jit(_VIT.init)
    again = init(jax.random.key(0), _X)
    other = init(jax.random.key(1), _X)
    chex.assert_trees_all_equal(variables, again)
    assert not np.allclose(variables["params"]["pos_embed"], other["params"]["pos_embed"])


def test_vit_nano_shapes_on_fashion_mnist_sizes():
    model = vit_nano()
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert v["params"]["pos_embed"].shape == (1, 1 + 49, 128)
    for size in (28, 16, 12):
        out = jax.eval_shape(model.apply, v, jax.ShapeDtypeStruct((4, size, size, 1), jnp.float32))
        assert out.shape == (4, 128)
