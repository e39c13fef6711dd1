"""Host input pipeline throughput: jaxssl (geometry on host, photometric on device) vs a torch one.

Both sides read the same ImageNet-style folder of ~500x375 JPEGs (re-encoded crops of the natural
photos scikit-image ships) and build DINO multi-crop views, 2 x 224 + 6 x 96 px per image:

* jaxssl: ``folder:`` source -> ``jaxssl.data.pipeline.make_train_iterator`` (decode,
  random-resized-crop, flip; uint8 out). Its photometric work runs on the accelerator inside the
  train step (``jaxssl.data.augment.augment_views``); that cost is timed separately on this CPU.
* torch: the full DINO augmentation on the host, as torchvision's transforms do it through PIL:
  RandomResizedCrop (bicubic), horizontal flip, ColorJitter(0.4, 0.4, 0.2, 0.1) in a random order
  with p = 0.8, RandomGrayscale(0.2), GaussianBlur via PIL ``ImageFilter.GaussianBlur`` (DINO's own
  ``utils.GaussianBlur``; p = 1.0 / 0.1 / 0.5 for global 1 / global 2 / locals), Solarize(128) with
  p = 0.2 on global 2, ToTensor, Normalize -- collated by ``torch.utils.data.DataLoader``.
  (torchvision itself is not used: PyPI's torchvision wheel fails to import beside torch 2.13 CPU,
  so the transforms are written with the same PIL calls torchvision's PIL backend makes.)

Both run with the same worker count (``--workers``, default 1: one grain thread vs a
single-process DataLoader, i.e. images/s per core), interleaved round by round in one process so the
ratio is fair on a shared machine. Needs torch and scikit-image, which jaxssl does not depend on:

    pip install torch==2.13.0 scikit-image

Usage: python benchmarks/pipeline.py [--quick] [--workers N] [--batch B] [--images N]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

GLOBAL_SIZE, LOCAL_SIZE, NUM_GLOBAL, NUM_LOCAL = 224, 96, 2, 6
GLOBAL_SCALE, LOCAL_SCALE = (0.32, 1.0), (0.05, 0.32)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---- data set ---------------------------------------------------------------------------------


def make_image_folder(root: Path, num_images: int, num_classes: int = 10, seed: int = 0) -> Path:
    """Writes num_images ~500x375 JPEGs (quality 90) as root/train/class_k/*.jpg."""
    from skimage import data as skdata

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
             "hubble_deep_field", "retina", "colorwheel", "cat", "logo"]
    photos = []
    for name in names:
        fn = getattr(skdata, name, None)
        if fn is None:
            continue
        try:
            img = np.asarray(fn())
        except Exception:  # some images are fetched on demand; skip those that are not shipped
            continue
        if img.ndim == 3 and img.shape[-1] >= 3:
            photos.append(Image.fromarray(np.ascontiguousarray(img[..., :3]).astype(np.uint8)))
    if not photos:
        raise RuntimeError("scikit-image ships no colour photos here; pip install scikit-image")
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        photo = photos[i % len(photos)]
        w, h = photo.size
        # A random crop of 60-100 % of the side, resized to 500x375 (landscape) or 375x500.
        frac = rng.uniform(0.6, 1.0)
        cw, ch = int(w * frac), int(h * frac)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        size = (500, 375) if rng.random() < 0.7 else (375, 500)
        img = photo.resize(size, Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        out = root / "train" / f"class_{i % num_classes}"
        out.mkdir(parents=True, exist_ok=True)
        img.save(out / f"img_{i:04d}.jpg", quality=90)
    return root


# ---- torch side: torchvision's DINO transforms through PIL -------------------------------------


def _rrc_box(rng: random.Random, width: int, height: int, scale, ratio=(3 / 4, 4 / 3)):
    """torchvision RandomResizedCrop.get_params."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            return left, top, left + w, top + h
    w, h = width, height
    return 0, 0, w, h


def _adjust_hue_pil(img: Image.Image, delta: float) -> Image.Image:
    """torchvision.transforms.functional_pil.adjust_hue: shift the uint8 H channel of PIL HSV."""
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    with np.errstate(over="ignore"):
        np_h += np.uint8(int(delta * 255) % 256)
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB")


class DinoViewTransform:
    """One view: RRC + flip + jitter(p .8, random order) + gray(.2) + blur(p) + solarize(p)."""

    def __init__(self, size, scale, blur_p, solarize_p, seed):
        self.size, self.scale, self.blur_p, self.solarize_p = size, scale, blur_p, solarize_p
        self.rng = random.Random(seed)

    def __call__(self, img: Image.Image):
        import torch

        r = self.rng
        img = img.resize((self.size, self.size), Image.Resampling.BICUBIC,
                         box=_rrc_box(r, img.width, img.height, self.scale))
        if r.random() < 0.5:
            img = ImageOps.mirror(img)
        if r.random() < 0.8:  # ColorJitter(0.4, 0.4, 0.2, 0.1), ops in a random order
            order = [0, 1, 2, 3]
            r.shuffle(order)
            for op in order:
                if op == 0:
                    img = ImageEnhance.Brightness(img).enhance(r.uniform(0.6, 1.4))
                elif op == 1:
                    img = ImageEnhance.Contrast(img).enhance(r.uniform(0.6, 1.4))
                elif op == 2:
                    img = ImageEnhance.Color(img).enhance(r.uniform(0.8, 1.2))
                else:
                    img = _adjust_hue_pil(img, r.uniform(-0.1, 0.1))
        if r.random() < 0.2:
            img = img.convert("L").convert("RGB")
        if r.random() < self.blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=r.uniform(0.1, 2.0)))
        if r.random() < self.solarize_p:
            img = ImageOps.solarize(img, threshold=128)
        # ToTensor + Normalize.
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        t = t.float().div_(255.0)
        mean = torch.tensor(MEAN).view(3, 1, 1)
        std = torch.tensor(STD).view(3, 1, 1)
        return t.sub_(mean).div_(std)


def make_torch_loader(root: Path, batch: int, workers: int, seed: int):
    import torch
    from torch.utils.data import DataLoader, Dataset

    paths = sorted(str(p) for p in (root / "train").rglob("*.jpg"))

    class MultiCropFolder(Dataset):
        def __init__(self):
            self.g1 = DinoViewTransform(GLOBAL_SIZE, GLOBAL_SCALE, 1.0, 0.0, seed)
            self.g2 = DinoViewTransform(GLOBAL_SIZE, GLOBAL_SCALE, 0.1, 0.2, seed + 1)
            self.loc = DinoViewTransform(LOCAL_SIZE, LOCAL_SCALE, 0.5, 0.0, seed + 2)

        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as f:  # torchvision's pil_loader
                img = f.convert("RGB")
            return [self.g1(img), self.g2(img)] + [self.loc(img) for _ in range(NUM_LOCAL)]

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(MultiCropFolder(), batch_size=batch, shuffle=True, num_workers=workers,
                      drop_last=True, generator=gen, persistent_workers=False)


# ---- measurements -----------------------------------------------------------------------------


def time_jaxssl(root: Path, batch: int, workers: int, num_batches: int, seed: int) -> float:
    """Images/s of make_train_iterator, timed from iterator creation to the last batch."""
    from jaxssl.data.pipeline import make_train_iterator
    from jaxssl.train.defaults import base_config

    cfg = base_config().data
    cfg.dataset = f"folder:{root}"
    cfg.global_crops.num, cfg.global_crops.size = NUM_GLOBAL, GLOBAL_SIZE
    cfg.global_crops.scale = GLOBAL_SCALE
    cfg.local_crops.num, cfg.local_crops.size = NUM_LOCAL, LOCAL_SIZE
    cfg.local_crops.scale = LOCAL_SCALE
    cfg.num_threads, cfg.prefetch = workers, 1
    start = time.perf_counter()
    it = make_train_iterator(cfg, global_batch_size=batch, seed=seed)
    for _ in range(num_batches):
        b = next(it)
    elapsed = time.perf_counter() - start
    assert b["global"].shape == (batch, NUM_GLOBAL, GLOBAL_SIZE, GLOBAL_SIZE, 3)
    del it
    return num_batches * batch / elapsed


def time_torch(root: Path, batch: int, workers: int, num_batches: int, seed: int) -> float:
    start = time.perf_counter()
    it = iter(make_torch_loader(root, batch, workers, seed))
    for _ in range(num_batches):
        b = next(it)
    elapsed = time.perf_counter() - start
    assert tuple(b[0].shape) == (batch, 3, GLOBAL_SIZE, GLOBAL_SIZE)
    del it
    return num_batches * batch / elapsed


def time_device_augment(batch: int, repeats: int) -> tuple[float, float]:
    """(compile s, best s per batch) of jitted augment_views for 2 x 224 + 6 x 96 views."""
    import jax

    from jaxssl.data.augment import augment_views, dino_view_augments

    globals_, locals_ = dino_view_augments(NUM_LOCAL)
    fn = jax.jit(augment_views, static_argnums=2)
    rng = np.random.default_rng(0)
    g = jax.device_put(rng.integers(0, 256, (batch, NUM_GLOBAL, GLOBAL_SIZE, GLOBAL_SIZE, 3),
                                    dtype=np.uint8))
    loc = jax.device_put(rng.integers(0, 256, (batch, NUM_LOCAL, LOCAL_SIZE, LOCAL_SIZE, 3),
                                      dtype=np.uint8))
    kg, kl = jax.random.split(jax.random.key(0))

    def step():
        jax.block_until_ready((fn(kg, g, globals_), fn(kl, loc, locals_)))

    start = time.perf_counter()
    step()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return compile_s, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images/batches/rounds")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise SystemExit("this benchmark needs torch: pip install torch==2.13.0") from err

    num_images = args.images or (128 if args.quick else 320)
    rounds = args.rounds or (2 if args.quick else 3)
    num_batches = max(1, min(num_images // args.batch, 2 if args.quick else 6))
    with tempfile.TemporaryDirectory() as tmp:
        root = make_image_folder(Path(tmp), num_images)
        jax_rates, torch_rates = [], []
        for r in range(rounds):  # interleaved, so both see the same machine load
            jax_rates.append(time_jaxssl(root, args.batch, args.workers, num_batches, seed=r))
            torch_rates.append(time_torch(root, args.batch, args.workers, num_batches, seed=r))
    compile_s, dev_s = time_device_augment(args.batch, repeats=2 if args.quick else 4)

    jx, tc = statistics.median(jax_rates), statistics.median(torch_rates)
    dev_rate = args.batch / dev_s
    combined = 1.0 / (1.0 / jx + 1.0 / dev_rate)  # host + device work both on this CPU
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {platform.machine()} {os.cpu_count()} CPUs, {stamp}; "
          f"{num_images} JPEGs ~500x375, batch {args.batch}, {args.workers} worker(s), "
          f"{num_batches} batches x {rounds} rounds (median); views 2x224 + 6x96")
    print("| pipeline | images/s | per-round images/s |")
    print("|---|---|---|")
    print(f"| jaxssl host (decode + crops, uint8) | {jx:.1f} | "
          f"{', '.join(f'{v:.1f}' for v in jax_rates)} |")
    print(f"| torch/PIL full DINO augmentation | {tc:.1f} | "
          f"{', '.join(f'{v:.1f}' for v in torch_rates)} |")
    print(f"| ratio jaxssl host / torch | {jx / tc:.2f}x | |")
    print(f"| jaxssl device augment_views (jit, this CPU), {dev_s * 1e3:.0f} ms / batch of "
          f"{args.batch} | {dev_rate:.1f} | compile {compile_s:.1f} s |")
    print(f"| jaxssl host + device both on this CPU (serial sum) | {combined:.1f} | "
          f"{combined / tc:.2f}x torch |")


if __name__ == "__main__":
    main()
