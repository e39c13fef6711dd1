r"""PMSN ViT-S/16 on ImageNet: MSN with a power-law prior (tau = 0.25).

Run:
  python -m jaxssl.train --config configs/pmsn_vits16_imagenet.py --workdir workdirs/pmsn_in1k
Expect: on balanced ImageNet, close to MSN (the uniform prior is as good or better there).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    c = imagenet("msn", "vit_small", epochs=600)
    c.loss.prior, c.loss.prior_exponent = "power_law", 0.25
    return c
