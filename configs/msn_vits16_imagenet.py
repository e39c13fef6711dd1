r"""MSN ViT-S/16 on ImageNet, 600 epochs, uniform prior.

Run:
  python -m jaxssl.train --config configs/msn_vits16_imagenet.py --workdir workdirs/msn_vits16_imagenet
Expect: the MSN paper's ViT-S/16 figures (uniform prior is as good or better on balanced data).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("msn", "vit_small", epochs=600)
