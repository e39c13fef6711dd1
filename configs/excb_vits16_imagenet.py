r"""ExCB ViT-S/16 on ImageNet, 800 epochs, AdamW.

Run:
  python -m jaxssl.train --config configs/excb_vits16_imagenet.py --workdir workdirs/excb_vits16_imagenet
Expect: linear 77.2 top-1 (published).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("excb", "vit_small", epochs=800)
