"""Tests for jaxssl.export: torch key names / shapes against the published architectures, and
(with torch installed) the same features from a PyTorch model built from those architectures."""

from __future__ import annotations

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl.export import __main__ as export_cli
from jaxssl.export import backbone_from_state, export, load_backbone, msgpack_bytes
from jaxssl.export.torch_names import torch_state_dict
from jaxssl.models import ResNet, VisionTransformer, create_backbone, resnet50, vit_small


def _abstract_variables(model, size: int) -> dict:
    """Zero-memory numpy stand-ins with the shapes of ``model``'s variables."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, size, size, 3)))
    return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)


def _torchvision_resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision resnet50's state dict without ``fc``, written out from the paper's Table 1
    (bottleneck 1x1/3x3/1x1, expansion 4, 3-4-6-3 blocks, downsample in each stage's block 0)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(name: str, c: int) -> None:
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{leaf}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    bn("bn1", 64)
    inplanes = 64
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        planes = 64 * 2 ** (stage - 1)
        for j in range(blocks):
            p = f"layer{stage}.{j}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if j == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    return shapes


def _timm_vit_small_shapes() -> dict[str, tuple[int, ...]]:
    """timm vit_small_patch16_224 (num_classes=0): D 384, 12 blocks, MLP 1536, 14x14 + 1 tokens."""
    d, hidden = 384, 1536
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 197, d),
        "patch_embed.proj.weight": (d, 3, 16, 16),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(12):
        for name, w, b in [("norm1", (d,), (d,)), ("attn.qkv", (3 * d, d), (3 * d,)),
                           ("attn.proj", (d, d), (d,)), ("norm2", (d,), (d,)),
                           ("mlp.fc1", (hidden, d), (hidden,)), ("mlp.fc2", (d, hidden), (d,))]:
            shapes[f"blocks.{i}.{name}.weight"] = w
            shapes[f"blocks.{i}.{name}.bias"] = b
    shapes["norm.weight"] = shapes["norm.bias"] = (d,)
    return shapes


def test_resnet50_names_and_shapes_match_torchvision():
    v = _abstract_variables(resnet50(), 224)
    sd = torch_state_dict("resnet50", v["params"], v["batch_stats"])
    expected = _torchvision_resnet50_shapes()
    assert list(sd) == list(expected)  # same keys, in torchvision's registration order
    assert {k: a.shape for k, a in sd.items()} == expected
    assert len(sd) == 318  # torchvision resnet50 has 320 entries with fc.weight / fc.bias
    assert sd["bn1.num_batches_tracked"].dtype == np.int64
    # 25,557,032 published parameters minus the 2048 x 1000 + 1000 classifier.
    n_params = sum(a.size for k, a in sd.items() if k.endswith(("weight", "bias")))
    assert n_params == 23_508_032


def test_vit_small_names_and_shapes_match_timm():
    v = _abstract_variables(vit_small(patch_size=16), 224)
    sd = torch_state_dict("vit_small", v["params"])
    expected = _timm_vit_small_shapes()
    assert list(sd) == list(expected)
    assert {k: a.shape for k, a in sd.items()} == expected
    # 22,050,664 published parameters minus the 384 x 1000 + 1000 classifier.
    assert sum(a.size for a in sd.values()) == 21_665_664


def test_layouts_move_axes_as_torch_expects():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 5, 2, 4))  # HWIO
    dense = rng.normal(size=(6, 12))  # [in, 3 * D] with D = 4
    params = {"patch_embed_proj": {"kernel": kernel, "bias": np.zeros(4)},
              "blocks_0": {"attn": {"qkv": {"kernel": dense, "bias": np.zeros(12)}}}}
    sd = torch_state_dict("vit_tiny", params)
    w = sd["patch_embed.proj.weight"]
    assert w.shape == (4, 2, 3, 5) and w[3, 1, 2, 4] == kernel[2, 4, 1, 3]
    assert sd["blocks.0.attn.qkv.weight"][7, 5] == dense[5, 7]


def test_unsupported_backbone_and_unknown_parameters_raise():
    with pytest.raises(ValueError, match="unsupported backbone 'convnext_tiny'"):
        torch_state_dict("convnext_tiny", {})
    with pytest.raises(ValueError, match="params have no 'conv1'"):
        torch_state_dict("resnet18", {"patch_embed_proj": {}})
    with pytest.raises(ValueError, match="unexpected ViT parameter path 'head/kernel'"):
        torch_state_dict("vit_small", {"head": {"kernel": np.zeros((2, 2))}})
    with pytest.raises(ValueError, match="lack bn1"):
        torch_state_dict("resnet18", {"conv1": {"kernel": np.zeros((3, 3, 3, 4))},
                                      "bn1": {"scale": np.ones(4), "bias": np.zeros(4)}}, {})
    cfg = ml_collections.ConfigDict({"model": {"backbone": "vit_nano", "backbone_kwargs": {}}})
    with pytest.raises(ValueError, match="which must be one of"):
        backbone_from_state({}, cfg, which="ema")
    with pytest.raises(ValueError, match="has no 'backbone' child"):
        backbone_from_state({"teacher_params": {"head": {}}}, cfg)


def test_missing_torch_gives_install_hint(monkeypatch, tmp_path):
    _save_checkpoint(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` now fails
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        export(str(tmp_path), "torch")


# ---------------------------------------------------------------- checkpoints and the CLI


def _perturbed_variables(model, size: int, seed: int) -> dict:
    """Initialised variables with every leaf perturbed, so BN scale / bias / running statistics
    and zero-initialised biases all differ (a swapped or dropped tensor changes the output)."""
    x = jnp.ones((1, size, size, 3))
    variables = jax.tree.map(np.asarray, model.init(jax.random.key(seed), x))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda a: (a + 0.05 * rng.normal(size=a.shape)).astype(np.float32),
                          variables["params"])
    out = {"params": params}
    if "batch_stats" in variables:
        def stat(path, a):  # running means around 0, running variances in [0.5, 1.5]
            if path[-1].key == "mean":
                return (0.1 * rng.normal(size=a.shape)).astype(np.float32)
            return rng.uniform(0.5, 1.5, a.shape).astype(np.float32)

        out["batch_stats"] = jax.tree_util.tree_map_with_path(stat, variables["batch_stats"])
    return out


def _tiny_resnet_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"model": {"backbone": "resnet_tiny", "backbone_kwargs": {
        "stage_sizes": (1, 1), "width": 4}}})


def _save_checkpoint(workdir) -> tuple[dict, dict]:
    """Writes a step-7 checkpoint of a tiny ResNet whose teacher and student differ."""
    from jaxssl.train.checkpoint import Checkpointer

    model = create_backbone("resnet_tiny", stage_sizes=(1, 1), width=4)
    teacher = _perturbed_variables(model, 8, seed=1)
    student = _perturbed_variables(model, 8, seed=2)
    state = {
        "step": np.int32(7),
        "params": {"backbone": student["params"], "head": {"w": np.ones((2, 3), np.float32)}},
        "batch_stats": {"backbone": student["batch_stats"]},
        "teacher_params": {"backbone": teacher["params"]},
        "teacher_batch_stats": {"backbone": teacher["batch_stats"]},
    }
    ckpt = Checkpointer(str(workdir))
    ckpt.save(7, state, None, _tiny_resnet_config())
    ckpt.close()
    return teacher, student


def test_load_backbone_and_msgpack_round_trip(tmp_path):
    teacher, student = _save_checkpoint(tmp_path)
    b = load_backbone(str(tmp_path))
    assert (b.name, b.step, b.kwargs["width"]) == ("resnet_tiny", 7, 4)
    jax.tree.map(np.testing.assert_array_equal, b.variables(), teacher)
    s = load_backbone(str(tmp_path), which="student")
    jax.tree.map(np.testing.assert_array_equal, s.variables(), student)

    out = tmp_path / "b.msgpack"
    assert export_cli.main(["--workdir", str(tmp_path), "--format", "msgpack",
                            "--out", str(out)]) == 0
    restored = flax.serialization.msgpack_restore(out.read_bytes())
    jax.tree.map(np.testing.assert_array_equal, restored, teacher)
    assert out.read_bytes() == msgpack_bytes(b)


def test_cli_reports_missing_workdir(tmp_path, capsys):
    assert export_cli.main(["--workdir", str(tmp_path / "nope"), "--format", "msgpack"]) == 2
    assert "no checkpoints directory" in capsys.readouterr().err


# ---------------------------------------------------------------- against PyTorch models


def _torch_models():
    """A torchvision-style ResNet and a timm-style ViT written from the published designs."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Basic(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = _downsample(inplanes, planes, stride)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (self.downsample(x) if self.downsample else x))

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5 stride
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.downsample = _downsample(inplanes, planes * 4, stride)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = torch.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return torch.relu(out + (self.downsample(x) if self.downsample else x))

    def _downsample(inplanes, out, stride):
        if stride == 1 and inplanes == out:
            return None
        return nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    class TorchResNet(nn.Module):
        def __init__(self, block, stage_sizes, width, small_stem):
            super().__init__()
            self.small_stem = small_stem
            self.conv1 = (nn.Conv2d(3, width, 3, 1, 1, bias=False) if small_stem
                          else nn.Conv2d(3, width, 7, 2, 3, bias=False))
            self.bn1 = nn.BatchNorm2d(width)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = width
            for i, n in enumerate(stage_sizes):
                blocks = []
                for j in range(n):
                    stride = 2 if i > 0 and j == 0 else 1
                    blocks.append(block(inplanes, width * 2**i, stride))
                    inplanes = width * 2**i * block.expansion
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.num_stages = len(stage_sizes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            if not self.small_stem:
                x = self.maxpool(x)
            for i in range(self.num_stages):
                x = getattr(self, f"layer{i + 1}")(x)
            return x.mean(dim=(2, 3))

    class Attention(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)

        def forward(self, x):  # timm's ordering: (3, heads, head_dim) along the qkv outputs
            b, n, d = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ((q * (d // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))

    class Mlp(nn.Module):
        def __init__(self, d, hidden):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, d, heads, mlp_ratio):
            super().__init__()
            self.norm1 = nn.LayerNorm(d, eps=1e-6)
            self.attn = Attention(d, heads)
            self.norm2 = nn.LayerNorm(d, eps=1e-6)
            self.mlp = Mlp(d, int(d * mlp_ratio))

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, p, d):
            super().__init__()
            self.proj = nn.Conv2d(3, d, p, p)

    class TorchViT(nn.Module):
        def __init__(self, p, d, depth, heads, img_size, mlp_ratio=4.0):
            super().__init__()
            n = (img_size // p) ** 2
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, d))
            self.patch_embed = PatchEmbed(p, d)
            self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio) for _ in range(depth))
            self.norm = nn.LayerNorm(d, eps=1e-6)

        def forward(self, x):
            x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)[:, 0]

    return torch, TorchResNet, Basic, Bottleneck, TorchViT


def _torch_features(torch, model, state_dict, x_nhwc):
    tensors = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v))
               for k, v in state_dict.items()}
    model.load_state_dict(tensors, strict=True)  # every key present, no extra, every shape equal
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


@pytest.mark.parametrize("block,stage_sizes,small_stem,size", [
    ("basic", (1, 1, 1), True, 12),
    ("bottleneck", (2, 1), False, 32),
])
def test_resnet_features_match_torch(block, stage_sizes, small_stem, size):
    torch, TorchResNet, Basic, Bottleneck, _ = _torch_models()
    model = ResNet(stage_sizes=stage_sizes, block=block, width=4, small_stem=small_stem)
    variables = _perturbed_variables(model, size, seed=3)
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    ours = np.asarray(model.apply(variables, x, train=False))
    name = "resnet18" if block == "basic" else "resnet50"
    sd = torch_state_dict(name, variables["params"], variables["batch_stats"])
    tmodel = TorchResNet(Basic if block == "basic" else Bottleneck, stage_sizes, 4, small_stem)
    theirs = _torch_features(torch, tmodel, sd, x)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_vit_features_match_timm_layout():
    torch, *_, TorchViT = _torch_models()
    model = VisionTransformer(patch_size=4, embed_dim=32, depth=2, num_heads=4, img_size=16)
    variables = _perturbed_variables(model, 16, seed=4)
    x = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)
    ours = np.asarray(model.apply(variables, x))
    sd = torch_state_dict("vit_small", variables["params"])
    theirs = _torch_features(torch, TorchViT(4, 32, 2, 4, 16), sd, x)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_cli_torch_file_gives_the_checkpoint_features(tmp_path, which):
    torch, TorchResNet, Basic, *_ = _torch_models()
    teacher, student = _save_checkpoint(tmp_path)
    out = tmp_path / f"{which}.pt"
    assert export_cli.main(["--workdir", str(tmp_path), "--format", "torch", "--which", which,
                            "--out", str(out)]) == 0
    sd = torch.load(out)
    assert int(sd["bn1.num_batches_tracked"]) == 7  # the checkpoint's step
    model = create_backbone("resnet_tiny", stage_sizes=(1, 1), width=4)
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype(np.float32)
    expected = np.asarray(model.apply(teacher if which == "teacher" else student, x))
    theirs = _torch_features(torch, TorchResNet(Basic, (1, 1), 4, True), sd, x)
    np.testing.assert_allclose(theirs, expected, atol=1e-4, rtol=1e-4)


def test_torch_tensors_widen_bfloat16():
    torch = pytest.importorskip("torch")
    from jaxssl.export import Backbone, torch_tensors

    params = {"norm": {"scale": np.asarray(jnp.array([1.5, -2.0], jnp.bfloat16)),
                       "bias": np.zeros(2, np.float32)}}
    sd = torch_tensors(Backbone("vit_small", {}, params, {}, 0))
    assert sd["norm.weight"].dtype == torch.float32
    assert sd["norm.weight"].tolist() == [1.5, -2.0]
