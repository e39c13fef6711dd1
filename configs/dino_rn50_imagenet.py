r"""DINO ResNet-50 on ImageNet, 800 epochs.

Run:
  python -m jaxssl.train --config configs/dino_rn50_imagenet.py --workdir workdirs/dino_rn50_imagenet
Expect: k-NN 67.5 / linear 75.3 top-1 (published).
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("dino", "resnet50", epochs=800)
