r"""DINO ViT-S/16 on ImageNet, 800 epochs (Caron et al. 2021).

Run:
  python -m jaxssl.train --config configs/dino_vits16_imagenet.py --workdir workdirs/dino_vits16_imagenet
Expect: k-NN 74.5 / linear 77.0 top-1 (published).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("dino", "vit_small", epochs=800)
