r"""iBOT + KoLeo-proto ViT-S/16 on ImageNet (K = 8192), the KoLeo-proto paper's main setting.

Run:
  python -m jaxssl.train --config configs/ibot_koleo_vits16_imagenet.py --workdir workdirs/ibot_koleo
Expect: more unique prototypes than plain iBOT at the same K; k-NN >= iBOT's 75.2.
"""

from jaxssl.train.recipes import imagenet


def get_config():
    c = imagenet("ibot", "vit_small", epochs=800)
    c.loss.koleo_weight = 0.1
    return c
