r"""A PyTorch + lightly peer of jaxssl's Fashion-MNIST CPU recipe (DINO, MSN, PMSN).

Needs PyTorch (``pip install -e ".[torch]"``) and lightly without its dependencies
(``pip install --no-deps lightly``; torchvision is not needed, see ``import_lightly_losses``).

Run:
  python benchmarks/peer_lightly.py --method dino --steps 1000 --out peer_dino.json
  python benchmarks/peer_lightly.py --method pmsn --steps 30 --train-limit 1000 --test-limit 500 \
      --threads 1 --out /tmp/peer_pmsn.json

Trains the model of ``jaxssl.train.recipes.fashion_mnist_cpu(method)`` (``pmsn`` = the msn recipe
with ``loss.prior = "power_law"``, as configs/pmsn_fashion_mnist.py) in eager PyTorch on the CPU,
with the loss taken from the lightly library (DINOLoss, MSNLoss, PMSNLoss), and measures:
  * train_seconds: the whole training loop -- host data pipeline, photometric augmentation,
    forward, backward, optimiser, EMA teacher -- but not imports or model construction;
  * images_per_s: batch images per second over the steps after the first 5;
  * knn_top1 / knn_top5: weighted cosine k-NN (k = 20, T = 0.07) of the teacher backbone's CLS
    feature, with the subsets, eval views and k-NN code of
    ``python -m jaxssl.eval --protocols knn --train-limit N --test-limit M --seed S``.
The jaxssl side at the same number of steps (its schedules then coincide with these):
  python -m jaxssl.train --config configs/dino_fashion_mnist.py --workdir w \
      --config.train.time_budget_s=0 --config.train.num_steps=1000
  python -m jaxssl.eval --workdir w --protocols knn --train-limit 10000 --test-limit 5000 --seed 0

Shared with jaxssl by construction: the crops (jaxssl's host pipeline, same seed, so the same
images and random-resized crops in the same order), the ViT sizes (read from jaxssl's backbone
module; parameter counts asserted equal), the heads and K, the initialisers' distributions, every
scheduled scalar (``jaxssl.train.hyper.hyperparams``: lr 1e-3 per 256 images with a 5 % linear
warm-up from 0 and a cosine to 1e-6, weight decay 0.04 -> 0.4 on rank >= 2 parameters, EMA
momentum 0.99 -> 1, the teacher temperature), AdamW (0.9, 0.999, 1e-8, decoupled decay), global
gradient clipping at 3.0, DINO's centre momentum 0.9, MSN's 15 % patch drop of the masked anchor
(one index set per batch) and the sharpening / Sinkhorn / me-max settings, PMSN's exponent 0.25.

Differences that remain:
  1. Random numbers: the photometric draws, MSN's kept-patch sets and the weight init come from
     torch generators seeded by --seed, so they follow the same distributions as jaxssl's but are
     not the same draws. Only the crops are identical.
  2. Photometrics are implemented for grayscale images (R = G = B, as Fashion-MNIST), where
     saturation, hue and the grayscale conversion are identities (in jaxssl too); of the jitter's
     random order only brightness-before-contrast matters, drawn as a fair coin. Colour datasets
     are refused.
  3. PMSN: lightly's PMSNLoss matches KL(prior || p_bar) (``F.kl_div`` with the prior as target)
     and has no option for the other direction; the jaxssl recipe matches KL(p_bar || prior)
     (``loss.prior_direction = "mean_to_prior"``). For the same objective on the jaxssl side run
     it with ``--config.loss.prior_direction=prior_to_mean``.
  4. Same maths, other numerics: lightly's MSN sharpens as softmax(cos / tau) ** (1 / T) and takes
     log(p ** -q) (jaxssl: one fused softmax(cos / (tau T)) and log-softmax); lightly's DINO forms
     the full log-softmax and an einsum (jaxssl: an analytic custom-VJP cross-entropy);
     attention uses ``F.scaled_dot_product_attention``; ``clip_grad_norm_`` divides by
     norm + 1e-6; ``F.normalize`` floors the norm at 1e-12 (jaxssl the squared norm).
  5. Execution: eager float32 PyTorch, no torch.compile; jaxssl runs one jitted XLA step, and its
     train_seconds includes the compilation. jaxssl's logged images/s covers the last
     ``train.log_every`` steps, this one every step after the fifth.
  6. Step count: jaxssl's recipe plans its steps from a wall-clock budget, this one takes --steps;
     give it the ``steps`` of the jaxssl report to compare at equal schedules.
  7. jaxssl's ViT holds an unused iBOT ``mask_token`` (D parameters, zeros, zero gradient); it is
     kept here as a frozen zero parameter so that the parameter counts are comparable.
  8. BatchNorm (MSN projector) keeps an unbiased running variance in torch, a biased one in flax;
     the running statistics are never used (both networks run BN in train mode, and the eval
     feature is the backbone's, which has no BN).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import math
import os
import sys
import time
import types
import warnings
from typing import Any

import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jaxssl.data.augment import ViewAugment
from jaxssl.train.recipes import fashion_mnist_cpu

METHODS = ("dino", "msn", "pmsn")
TIMING_SKIP_STEPS = 5  # steps left out of images/s (warm-up of allocators and thread pools)


def import_lightly_losses() -> tuple[type, type, type]:
    """lightly's DINOLoss, MSNLoss and PMSNLoss, imported without the package ``__init__``s.

    ``import lightly.loss`` runs ``lightly/__init__`` and ``lightly/loss/__init__``, which import
    torchvision (not installed here); the three loss modules only need torch and
    ``lightly.models.modules.center``, so empty package modules pointing at lightly's folders
    stand in for the real ones.
    """
    if "lightly" not in sys.modules:  # else stubbed by an earlier call, or really imported
        root = os.path.dirname(importlib.util.find_spec("lightly").origin)
        for name, sub in [("lightly", ""), ("lightly.loss", "loss"), ("lightly.models", "models"),
                          ("lightly.models.modules", "models/modules")]:
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = module
    from lightly.loss.dino_loss import DINOLoss
    from lightly.loss.msn_loss import MSNLoss
    from lightly.loss.pmsn_loss import PMSNLoss

    return DINOLoss, MSNLoss, PMSNLoss


def recipe(method: str, batch: int, dataset: str) -> ml_collections.ConfigDict:
    """jaxssl's CPU recipe of ``method`` at ``batch``, checked for what this peer implements."""
    c = fashion_mnist_cpu("msn" if method == "pmsn" else method)
    if method == "pmsn":
        c.loss.prior = "power_law"  # as configs/pmsn_fashion_mnist.py
    c.train.batch_size, c.data.dataset = batch, dataset
    unsupported = {"model.dtype": c.model.dtype != "float32",
                   "model.drop_path_rate": c.model.drop_path_rate != 0,
                   "loss.koleo_weight": c.loss.koleo_weight != 0,
                   "optim.name": c.optim.name != "adamw",
                   "train.grad_accum_steps": c.train.grad_accum_steps != 1,
                   "head.norm_last_layer": not c.head.norm_last_layer,
                   "head.use_bn": c.head.use_bn,
                   "loss.sort_mean_probs": c.loss.sort_mean_probs}
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"the {method} recipe sets {bad}, which this peer does not implement")
    return c


# ---------------------------------------------------------------------------------------------
# The model: jaxssl's pre-norm ViT with a CLS token, and its DINO / MSN heads.


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, laid out as jaxssl's / timm's."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, N, hd]
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)) with exact GELU; LN eps 1e-6."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """jaxssl's ``VisionTransformer``: returns the final-norm CLS feature [B, D].

    Position embeddings are stored for the ``img_size`` grid; other grids get the bicubic resize
    jaxssl uses (``jax.image.resize``, which antialiases when downsampling: torch's
    ``antialias=True`` bicubic matches it to 1e-6).
    """

    def __init__(self, *, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, img_size: int):
        super().__init__()
        self.grid = img_size // patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """``x`` [B, 3, H, W]; ``keep``: indices of the patch tokens to keep (MSN), CLS kept."""
        tokens = self.patch_embed(x)
        b, d, h, w = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, h*w, D], row-major as jaxssl's
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (h, w) != (self.grid, self.grid):
            table = patch_pos.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
            table = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False,
                                  antialias=True)
            patch_pos = table.permute(0, 2, 3, 1).reshape(1, h * w, d)
        tokens = tokens + patch_pos
        if keep is not None:  # dropped after the positions are added, as jaxssl
            tokens = tokens[:, keep]
        cls = (self.cls_token + cls_pos).expand(b, -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, use_bn: bool) -> nn.Module:
    """jaxssl's head MLP: (Linear -> [BN] -> GELU) x (num_layers - 1), then a bare Linear."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers += [nn.Linear(dim, hidden_dim), *([nn.BatchNorm1d(hidden_dim)] if use_bn else []),
                   nn.GELU()]
        dim = hidden_dim
    return nn.Sequential(*layers, nn.Linear(dim, out_dim))


class DINOHead(nn.Module):
    """MLP -> L2-normalise -> weight-normalised prototypes with the gain fixed at 1."""

    def __init__(self, in_dim: int, h: ml_collections.ConfigDict):
        super().__init__()
        self.mlp = _mlp(in_dim, h.hidden_dim, h.bottleneck_dim, h.num_layers, use_bn=False)
        self.prototypes = nn.Parameter(torch.zeros(h.num_prototypes, h.bottleneck_dim))

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return z @ F.normalize(self.prototypes, dim=-1).T


class MSNHead(nn.Module):
    """BN + GELU projector (3 layers); the free prototype matrix is read by the loss."""

    def __init__(self, in_dim: int, h: ml_collections.ConfigDict):
        super().__init__()
        self.mlp = _mlp(in_dim, h.hidden_dim, h.bottleneck_dim, 3, use_bn=True)
        self.prototypes = nn.Parameter(torch.zeros(h.num_prototypes, h.bottleneck_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class Net(nn.Module):
    """Backbone followed by head, as ``jaxssl.methods.common.BackboneHead``."""

    def __init__(self, backbone: VisionTransformer, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.head(self.backbone(x, keep))


def init_like_jaxssl(net: Net) -> None:
    """The initialisers of jaxssl's flax modules (distributions, not draws)."""
    def trunc(t: Tensor, std: float) -> None:  # flax truncated_normal: cut at +-2 std
        nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)

    for m in net.modules():
        if isinstance(m, nn.Linear):
            trunc(m.weight, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):  # flax Conv default: lecun_normal (truncated, rescaled)
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            trunc(m.weight, math.sqrt(1.0 / fan_in) / 0.87962566103423978)
            nn.init.zeros_(m.bias)
    bb = net.backbone
    trunc(bb.cls_token.data, 0.02)
    trunc(bb.pos_embed.data, 0.02)
    bound = 1.0 / math.sqrt(net.head.prototypes.shape[1])  # torch Linear default, as jaxssl
    nn.init.uniform_(net.head.prototypes, -bound, bound)


def build_net(config: ml_collections.ConfigDict) -> tuple[Net, dict[str, int]]:
    """The torch student and the parameter counts of it and of jaxssl's flax model.

    The ViT sizes are read from the backbone jaxssl's method builds, so they cannot drift.
    """
    import jax

    from jaxssl.methods.registry import build_method
    from jaxssl.models.vit import VisionTransformer as FlaxViT
    from jaxssl.train.init_state import example_views

    method = build_method(config)
    fb = method.model.backbone
    if not isinstance(fb, FlaxViT):
        raise ValueError(f"the recipe's backbone is {type(fb).__name__}, not a ViT")
    backbone = VisionTransformer(patch_size=fb.patch_size, embed_dim=fb.embed_dim, depth=fb.depth,
                                 num_heads=fb.num_heads, mlp_ratio=fb.mlp_ratio,
                                 img_size=fb.img_size)
    head_cls = DINOHead if config.method == "dino" else MSNHead
    net = Net(backbone, head_cls(fb.embed_dim, config.head))
    init_like_jaxssl(net)

    shapes = jax.eval_shape(lambda k: method.init(k, example_views(config))[0],
                            jax.random.key(0))
    size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
    numel = lambda module: sum(p.numel() for p in module.parameters())
    counts = {"torch_backbone": numel(net.backbone), "jaxssl_backbone": size(shapes["backbone"]),
              "torch_head": numel(net.head), "jaxssl_head": size(shapes["head"])}
    for part in ("backbone", "head"):
        if counts[f"torch_{part}"] != counts[f"jaxssl_{part}"]:
            raise AssertionError(f"{part} parameter counts differ: {counts}")
    return net, counts


# ---------------------------------------------------------------------------------------------
# Photometric augmentation (jaxssl.data.augment) for grayscale crops, batched.


def _blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur of [N, H, W] with per-image sigma, reflect padding (as jaxssl)."""
    half = (kernel_size - 1) // 2
    taps = torch.arange(kernel_size, dtype=x.dtype) - half
    w = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    w = (w / w.sum(dim=1, keepdim=True))[:, :, None, None]  # [N, k, 1, 1]
    h, wd = x.shape[1:]
    padded = F.pad(x[:, None], (half, half, 0, 0), mode="reflect")[:, 0]
    x = sum(w[:, i] * padded[:, :, i:i + wd] for i in range(kernel_size))
    padded = F.pad(x[:, None], (0, 0, half, half), mode="reflect")[:, 0]
    return sum(w[:, i] * padded[:, i:i + h, :] for i in range(kernel_size))


def photometric(x: Tensor, view: ViewAugment, gen: torch.Generator) -> Tensor:
    """jaxssl's jitter -> grayscale -> blur -> solarize -> normalise on grayscale [N, H, W] in
    [0, 1]; returns normalised [N, 3, H, W]. Each op is drawn per image with its probability."""
    n, h, w = x.shape
    if view.jitter_prob > 0:
        u = torch.rand(n, 4, generator=gen)

        def factor(v: Tensor, s: float) -> Tensor:
            low = max(0.0, 1.0 - s)
            return (low + v * (1.0 + s - low))[:, None, None]

        b, c = factor(u[:, 0], view.brightness), factor(u[:, 1], view.contrast)
        bright = lambda y: (b * y).clamp(0.0, 1.0)
        contrast = lambda y: (c * y + (1.0 - c) * y.mean(dim=(1, 2), keepdim=True)).clamp(0, 1)
        jittered = torch.where((u[:, 2] < 0.5)[:, None, None], contrast(bright(x)),
                               bright(contrast(x)))
        x = torch.where((u[:, 3] < view.jitter_prob)[:, None, None], jittered, x)
    # Grayscale conversion (luma weights sum to 1), saturation and hue: identities on R = G = B.
    if view.blur_prob > 0:
        u = torch.rand(n, 2, generator=gen)
        lo, hi = view.blur_sigma
        blurred = _blur(x, lo + u[:, 0] * (hi - lo), view.kernel_size(h, w))
        x = torch.where((u[:, 1] < view.blur_prob)[:, None, None], blurred, x)
    if view.solarize_prob > 0:
        apply = (torch.rand(n, generator=gen) < view.solarize_prob)[:, None, None]
        x = torch.where(apply & (x >= view.solarize_threshold), 1.0 - x, x)
    mean = torch.tensor(view.mean, dtype=x.dtype)[None, :, None, None]
    std = torch.tensor(view.std, dtype=x.dtype)[None, :, None, None]
    return (x[:, None].expand(n, 3, h, w) - mean) / std


def augment(batch: dict[str, np.ndarray], augments: tuple[tuple, tuple],
            gen: torch.Generator) -> dict[str, list[Tensor]]:
    """uint8 crops {"global": [B, G, H, W, 3], "local": ...} -> {"global": G tensors
    [B, 3, H, W], "local": L tensors}; view v uses ``augments``' setting v, as jaxssl's step."""
    out: dict[str, list[Tensor]] = {}
    for kind, settings in zip(("global", "local"), augments):
        if not settings:
            continue
        crops = torch.from_numpy(np.ascontiguousarray(batch[kind][..., 0])).float() / 255.0
        out[kind] = [photometric(crops[:, v], view, gen) for v, view in enumerate(settings)]
    return out


# ---------------------------------------------------------------------------------------------
# Training and evaluation.


def train(args: argparse.Namespace, config: ml_collections.ConfigDict, student: Net,
          gen: torch.Generator) -> tuple[Net, dict[str, Any]]:
    """Trains ``student`` for ``args.steps`` steps; returns the EMA teacher and timings."""
    from jaxssl.data.masks import msn_num_keep
    from jaxssl.data.pipeline import make_train_iterator
    from jaxssl.data.view_augments import view_augments
    from jaxssl.train.hyper import hyperparams

    DINOLoss, MSNLoss, PMSNLoss = import_lightly_losses()
    lc, method = config.loss, args.method
    if method == "dino":
        loss_fn = DINOLoss(output_dim=config.head.num_prototypes,
                           warmup_teacher_temp=lc.warmup_teacher_temp,
                           teacher_temp=lc.teacher_temp, student_temp=lc.student_temp,
                           center_momentum=lc.center_momentum)
    else:
        kwargs = dict(temperature=lc.student_temp, sinkhorn_iterations=lc.sinkhorn_iters,
                      regularization_weight=lc.regularization_weight)
        loss_fn = (PMSNLoss(power_law_exponent=lc.prior_exponent, **kwargs) if method == "pmsn"
                   else MSNLoss(**kwargs))
        # lightly's _power_law_distribution calls torch.tensor() on a tensor every step.
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        side = config.data.global_crops.size // student.backbone.patch_embed.stride[0]
        num_patches, num_keep = side * side, msn_num_keep(side * side, lc.patch_drop)

    teacher = copy.deepcopy(student)  # the EMA teacher starts as an exact copy (as jaxssl)
    for p in teacher.parameters():
        p.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # jaxssl.train.optim.decay_mask
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                            betas=(0.9, 0.999), eps=1e-8, foreach=True)
    augments = view_augments(config)
    data = make_train_iterator(config.data, global_batch_size=args.batch, seed=args.seed,
                               process_index=0, process_count=1)
    s_params, t_params = list(student.parameters()), list(teacher.parameters())
    clip = float(config.optim.grad_clip)
    curve: list[tuple[int, float]] = []
    student.train()
    teacher.train()  # jaxssl runs the teacher in train mode too (BN batch statistics)

    t_start = time.perf_counter()
    t_timed = t_start
    for step in range(args.steps):
        batch = next(data)
        if step == 0 and not np.array_equal(batch["global"][..., 0], batch["global"][..., 1]):
            raise ValueError(f"--dataset {args.dataset!r} is not grayscale; this peer's "
                             "photometric ops are written for grayscale images")
        h = hyperparams(config, step, args.steps)
        opt.param_groups[0]["lr"] = opt.param_groups[1]["lr"] = float(h["learning_rate"])
        opt.param_groups[0]["weight_decay"] = float(h["weight_decay"])
        views = augment(batch, augments, gen)
        g, loc = views["global"], views.get("local", [])
        if method == "dino":
            s_out = list(student(torch.cat(g)).chunk(len(g)))
            if loc:
                s_out += list(student(torch.cat(loc)).chunk(len(loc)))
            with torch.no_grad():
                t_out = list(teacher(torch.cat(g)).chunk(len(g)))
            loss = loss_fn(t_out, s_out, teacher_temp=float(h["teacher_temp"]))
        else:
            keep = torch.randperm(num_patches, generator=gen)[:num_keep].sort().values
            anchors = [student(g[1], keep=keep if lc.patch_drop > 0 else None)]
            if loc:
                anchors.append(student(torch.cat(loc)))
            with torch.no_grad():
                target = teacher(g[0])
            loss = loss_fn(torch.cat(anchors), target, prototypes=student.head.prototypes,
                           target_sharpen_temperature=lc.sharpen_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if bool(h["freeze_prototypes"]):
            student.head.prototypes.grad.zero_()
        if clip > 0:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        with torch.no_grad():  # theta_t <- m theta_t + (1 - m) theta_s
            torch._foreach_lerp_(t_params, s_params, 1.0 - float(h["ema_momentum"]))
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step + 1}")
        if step == 0 or (step + 1) % config.train.log_every == 0 or step + 1 == args.steps:
            curve.append((step + 1, value))
            print(f"step {step + 1:5d}/{args.steps}  loss {value:.4f}  "
                  f"lr {float(h['learning_rate']):.2e}  {time.perf_counter() - t_start:.1f} s",
                  flush=True)
        if step + 1 == TIMING_SKIP_STEPS:
            t_timed = time.perf_counter()
    t_end = time.perf_counter()
    timed_steps = args.steps - TIMING_SKIP_STEPS
    return teacher, {"train_seconds": t_end - t_start,
                     "images_per_s": timed_steps * args.batch / max(t_end - t_timed, 1e-9),
                     "loss_first": curve[0][1], "loss_last": curve[-1][1], "loss_curve": curve}


def knn_eval(args: argparse.Namespace, config: ml_collections.ConfigDict,
             teacher: Net) -> dict[str, Any]:
    """k-NN of the teacher backbone's CLS features exactly as ``python -m jaxssl.eval
    --protocols knn --train-limit N --test-limit M --seed S`` (its subsets, views and k-NN)."""
    from jaxssl.data.eval_split import balanced_spec, eval_batches
    from jaxssl.eval.features import SplitFeatures
    from jaxssl.eval.protocols import knn_section

    spec = balanced_spec(config.data.dataset)
    mean = torch.tensor(config.augment.mean)[None, :, None, None]
    std = torch.tensor(config.augment.std)[None, :, None, None]
    teacher.eval()
    splits = {}
    for split, limit in (("train", args.train_limit), ("test", args.test_limit)):
        feats, labels = [], []
        for batch in eval_batches(spec, split, image_size=int(config.data.global_crops.size),
                              batch_size=int(config.eval.batch_size),
                              data_dir=config.data.data_dir, limit=limit, seed=args.seed):
            valid = np.asarray(batch["valid"], bool)
            x = torch.from_numpy(np.asarray(batch["image"])[valid]).permute(0, 3, 1, 2)
            with torch.inference_mode():  # normalize_images: (x / 255 - mean) / std
                feats.append(teacher.backbone((x.float() / 255.0 - mean) / std).numpy())
            labels.append(np.asarray(batch["label"])[valid])
        splits[split] = SplitFeatures(np.concatenate(feats), np.concatenate(labels))
    return knn_section(splits["train"], splits["test"], k=int(config.eval.knn_k),
                       temperature=float(config.eval.knn_temperature))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments, checked (argparse exits with a message on a bad one)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--steps", required=True, type=int,
                   help=f"optimiser steps (> {TIMING_SKIP_STEPS}; the schedules' length)")
    p.add_argument("--batch", type=int, default=64, help="images per step (recipe: 64)")
    p.add_argument("--seed", type=int, default=0, help="data order, crops, init, augmentation, "
                                                       "and the k-NN subsets")
    p.add_argument("--dataset", default="fashion_mnist", help="a grayscale jaxssl dataset spec")
    p.add_argument("--train-limit", type=int, default=10000,
                   help="seeded random subset of the train split for the k-NN bank (0: all)")
    p.add_argument("--test-limit", type=int, default=5000,
                   help="seeded random subset of the test split (0: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    if args.steps <= TIMING_SKIP_STEPS:
        p.error(f"--steps must be > {TIMING_SKIP_STEPS} (images/s leaves out the first "
                f"{TIMING_SKIP_STEPS}), got {args.steps}")
    if args.batch < 2:
        p.error(f"--batch must be >= 2 (BatchNorm and Sinkhorn need a batch), got {args.batch}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.train_limit != 0 and args.train_limit < 20:
        p.error(f"--train-limit must be 0 (all) or >= k = 20, got {args.train_limit}")
    if args.test_limit < 0:
        p.error(f"--test-limit must be >= 0, got {args.test_limit}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        p.error(f"--out: directory {out_dir} does not exist")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Builds, trains, evaluates, writes ``--out`` and prints a one-line summary."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = recipe(args.method, args.batch, args.dataset)
    student, counts = build_net(config)
    print(f"parameters: torch backbone {counts['torch_backbone']:,} = jaxssl "
          f"{counts['jaxssl_backbone']:,}; torch head {counts['torch_head']:,} = jaxssl "
          f"{counts['jaxssl_head']:,}", flush=True)
    gen = torch.Generator().manual_seed(args.seed)
    teacher, timing = train(args, config, student, gen)
    t0 = time.perf_counter()
    knn = knn_eval(args, config, teacher)
    result = {"method": args.method, "dataset": args.dataset, "steps": args.steps,
              "batch": args.batch, "seed": args.seed, "threads": args.threads, **timing,
              "knn_top1": knn["top1"], "knn_top5": knn["top5"], "knn_k": knn["k"],
              "knn_temperature": knn["temperature"], "train_limit": args.train_limit,
              "test_limit": args.test_limit, "eval_seconds": time.perf_counter() - t0,
              "params": counts, "torch_version": torch.__version__,
              "lightly_version": importlib.metadata.version("lightly")}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"peer_lightly {args.method}: {args.steps} steps x {args.batch} in "
          f"{timing['train_seconds']:.1f} s ({timing['images_per_s']:.1f} img/s after step "
          f"{TIMING_SKIP_STEPS}), loss {timing['loss_first']:.4f} -> {timing['loss_last']:.4f}, "
          f"k-NN top-1 {100 * knn['top1']:.2f}% -> {args.out}")
    return result


if __name__ == "__main__":
    main()
