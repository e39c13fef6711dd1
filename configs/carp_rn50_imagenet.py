r"""CARP ResNet-50 on ImageNet, 400 epochs multi-crop, LARS.

Run:
  python -m jaxssl.train --config configs/carp_rn50_imagenet.py --workdir workdirs/carp_rn50_imagenet
Expect: k-NN 67.7 / linear 75.3 top-1 (published; 100 epochs: 63.5 / 72.5).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("carp", "resnet50", epochs=400)
