"""ResNet behaviour: torchvision layout, batch norm modes, zero-init residual, precision, init."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import BasicBlock, Bottleneck, ResNet, resnet18, resnet50, resnet_tiny

# Two stages of one basic block, width 4: the smallest model that has a downsample branch. Its
# jitted init is shared by the tests so it compiles once per module.
_TINY = ResNet(stage_sizes=(1, 1), block="basic", width=4, small_stem=True)
_TINY_INIT = jax.jit(_TINY.init)
_X = jax.random.normal(jax.random.key(7), (4, 8, 8, 3))


@pytest.fixture(scope="module")
def tiny_vars():
    return _TINY_INIT(jax.random.key(0), _X)


def _apply(model, variables, x, **kw):
    return jax.jit(functools.partial(model.apply, **kw))(variables, x)


def _abstract_params(model):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))


def _torch_shape(flax_kernel_shape):
    kh, kw, cin, cout = flax_kernel_shape
    return (cout, cin, kh, kw)


@pytest.mark.parametrize(
    "factory, path, torch_shape",
    [
        # Shapes of torchvision state-dict entries (key layer{i}.{j}.x -> flax layer{i}_{j}/x).
        (resnet18, ("conv1",), (64, 3, 7, 7)),
        (resnet18, ("layer1_0", "conv1"), (64, 64, 3, 3)),
        (resnet18, ("layer2_0", "downsample_conv"), (128, 64, 1, 1)),
        (resnet18, ("layer4_1", "conv2"), (512, 512, 3, 3)),
        (resnet50, ("layer1_0", "conv3"), (256, 64, 1, 1)),
        (resnet50, ("layer1_0", "downsample_conv"), (256, 64, 1, 1)),
        (resnet50, ("layer3_5", "conv2"), (256, 256, 3, 3)),
        (resnet50, ("layer4_2", "conv1"), (512, 2048, 1, 1)),
    ],
)
def test_torchvision_layout(factory, path, torch_shape):
    params = _abstract_params(factory())["params"]
    node = params
    for name in path:
        node = node[name]
    assert _torch_shape(node["kernel"].shape) == torch_shape


def test_resnet18_module_names_match_torchvision_blocks():
    params = _abstract_params(resnet18())["params"]
    blocks = sorted(k for k in params if k.startswith("layer"))
    assert blocks == [f"layer{i}_{j}" for i in range(1, 5) for j in range(2)]
    with_downsample = sorted(k for k in blocks if "downsample_conv" in params[k])
    assert with_downsample == ["layer2_0", "layer3_0", "layer4_0"]
    expected = {"conv1", "bn1", "conv2", "bn2", "downsample_conv", "downsample_bn"}
    assert set(params["layer2_0"]) == expected


def test_small_stem_has_3x3_stride1_conv_and_keeps_resolution():
    model = resnet_tiny()
    x = jnp.zeros((2, 28, 28, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert variables["params"]["conv1"]["kernel"].shape == (3, 3, 3, 32)
    # 28 px, stride-1 stem, no max-pool, three stride-2 stages: 28 -> 28 -> 14 -> 7 -> 4.
    _, inter = jax.eval_shape(
        functools.partial(model.apply, capture_intermediates=True), variables, x
    )
    assert inter["intermediates"]["layer4_0"]["__call__"][0].shape == (2, 4, 4, 256)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 256)
    assert model.num_features == 256


def test_imagenet_stem_downsamples_by_4():
    model = resnet18()
    x = jnp.zeros((1, 64, 64, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    _, inter = jax.eval_shape(
        functools.partial(model.apply, capture_intermediates=True), variables, x
    )
    # 7x7 stride-2 conv then 3x3 stride-2 max-pool: 64 -> 32 -> 16 at layer1.
    assert inter["intermediates"]["layer1_0"]["__call__"][0].shape == (1, 16, 16, 64)
    assert inter["intermediates"]["layer4_1"]["__call__"][0].shape == (1, 2, 2, 512)


@pytest.mark.parametrize(
    "block, in_channels, last_bn", [(BasicBlock, 3, "bn2"), (Bottleneck, 8, "bn3")]
)
def test_zero_init_residual_blocks_start_as_identity(block, in_channels, last_bn):
    # planes * expansion == in_channels, stride 1: identity shortcut. With the last BN scale zero
    # (and bias zero) the residual branch outputs 0, so the block computes relu(x).
    module = block(planes=in_channels // block.expansion, zero_init_residual=True)
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, in_channels))
    variables = jax.jit(functools.partial(module.init, train=False))(jax.random.key(0), x)
    params = variables["params"]
    assert not np.any(params[last_bn]["scale"])
    assert np.all(params["bn1"]["scale"] == 1.0)
    out = _apply(module, variables, x, train=True, mutable=["batch_stats"])[0]
    chex.assert_trees_all_close(out, jax.nn.relu(x), atol=1e-6)
    # Without the option the same block is not the identity.
    plain = block(planes=in_channels // block.expansion)
    out = _apply(
        plain,
        variables
        | {
            "params": params
            | {
                last_bn: {
                    "scale": jnp.ones_like(params[last_bn]["scale"]),
                    "bias": params[last_bn]["bias"],
                }
            }
        },
        x,
        train=True,
        mutable=["batch_stats"],
    )[0]
    assert not np.allclose(out, jax.nn.relu(x), atol=1e-3)


def test_batch_norm_uses_batch_statistics_in_train_mode(tiny_vars):
    other = _X.at[1:].set(jax.random.normal(jax.random.key(3), (3, 8, 8, 3)) * 3.0 + 1.0)

    def train_out(batch):
        return _apply(_TINY, tiny_vars, batch, train=True, mutable=["batch_stats"])[0][0]

    def eval_out(batch):
        return _apply(_TINY, tiny_vars, batch, train=False)[0]

    # Train mode: sample 0 is normalised with the batch's statistics, so the rest of the batch
    # changes its features; eval mode uses the stored running statistics only.
    assert not np.allclose(train_out(_X), train_out(other), atol=1e-4)
    chex.assert_trees_all_close(eval_out(_X), eval_out(other), atol=1e-6)


def test_batch_norm_running_statistics_update_with_torch_momentum(tiny_vars):
    _, inter = _apply(_TINY, tiny_vars, _X, capture_intermediates=True)
    stem_conv = np.asarray(inter["intermediates"]["conv1"]["__call__"][0], np.float64)
    _, updates = _apply(_TINY, tiny_vars, _X, train=True, mutable=["batch_stats"])
    stats = updates["batch_stats"]["bn1"]
    # new = 0.9 * old + 0.1 * batch value (torch momentum 0.1); old mean 0, old var 1.
    np.testing.assert_allclose(stats["mean"], 0.1 * stem_conv.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * stem_conv.var(axis=(0, 1, 2)), rtol=1e-5)


def test_eval_mode_normalises_with_running_statistics(tiny_vars):
    # Known running statistics on the stem BN; its eval output is (conv - mean) / sqrt(var + eps).
    mean = jnp.linspace(-1.0, 1.0, 4)
    var = jnp.linspace(0.5, 2.0, 4)
    stats = dict(tiny_vars["batch_stats"])
    stats["bn1"] = {"mean": mean, "var": var}
    variables = {"params": tiny_vars["params"], "batch_stats": stats}
    _, inter = _apply(_TINY, variables, _X, capture_intermediates=True)
    conv = inter["intermediates"]["conv1"]["__call__"][0]
    bn = inter["intermediates"]["bn1"]["__call__"][0]
    chex.assert_trees_all_close(bn, (conv - mean) / jnp.sqrt(var + 1e-5), atol=1e-5)


def test_bfloat16_compute_close_to_float32(tiny_vars):
    bf16 = ResNet(stage_sizes=(1, 1), block="basic", width=4, small_stem=True, dtype=jnp.bfloat16)
    # The bf16 model uses the same float32 parameters (param_dtype stays float32).
    chex.assert_trees_all_equal_shapes_and_dtypes(
        tiny_vars, jax.eval_shape(bf16.init, jax.random.key(0), _X)
    )
    ref, _ = _apply(_TINY, tiny_vars, _X, train=True, mutable=["batch_stats"])
    out, _ = _apply(bf16, tiny_vars, _X, train=True, mutable=["batch_stats"])
    assert out.dtype == jnp.float32
    # bf16 keeps ~3 significant digits and errors compound over layers: compare relative to the
    # feature scale; a float32 run of the same code would agree to ~1e-6.
    err = float(jnp.max(jnp.abs(out - ref)))
    scale = float(jnp.max(jnp.abs(ref)))
    assert 0.0 < err < 0.05 * scale


def test_same_key_same_init_different_key_different_init(tiny_vars):
    again = _TINY_INIT(jax.random.key(0), _X)
    other = _TINY_INIT(jax.random.key(1), _X)
    chex.assert_trees_all_equal(tiny_vars, again)
    assert not np.allclose(
        tiny_vars["params"]["conv1"]["kernel"], other["params"]["conv1"]["kernel"]
    )


def test_conv_init_is_kaiming_fan_out(tiny_vars):
    # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") -> std sqrt(2 / fan_out)
    # with fan_out = kh * kw * out_channels. Pool all conv kernels after dividing by that std.
    kernels = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tiny_vars["params"])
        if path[-1].key == "kernel"
    ]
    standardised = np.concatenate(
        [np.ravel(k) / np.sqrt(2.0 / (k.shape[0] * k.shape[1] * k.shape[3])) for k in kernels]
    )
    assert standardised.size > 1000
    assert abs(standardised.std() - 1.0) < 0.1


def test_bad_input_rank_raises():
    with pytest.raises(ValueError, match=r"x must be \[B, H, W, C\], got shape \(8, 8, 3\)"):
        jax.eval_shape(_TINY.init, jax.random.key(0), jnp.zeros((8, 8, 3)))


def test_unknown_block_raises():
    with pytest.raises(ValueError, match="block must be one of"):
        _ = ResNet(block="wide").num_features
