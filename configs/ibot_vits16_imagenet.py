r"""iBOT ViT-S/16 on ImageNet, 800 epochs: DINO CLS loss + masked patch loss, K = 8192.

Run:
  python -m jaxssl.train --config configs/ibot_vits16_imagenet.py --workdir workdirs/ibot_vits16_imagenet
Expect: k-NN 75.2 / linear 77.9 top-1 (published).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("ibot", "vit_small", epochs=800)
