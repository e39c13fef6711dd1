r"""ExCB ResNet-50 on ImageNet, 400 epochs, batch 1024, SGD.

Run:
  python -m jaxssl.train --config configs/excb_rn50_imagenet.py --workdir workdirs/excb_rn50_imagenet
Expect: k-NN 71.6 / linear 76.6 top-1 (published); relative cluster sizes within 0.7-1.3.
"""

from jaxssl.train.recipes import imagenet


def get_config():
    return imagenet("excb", "resnet50", epochs=400)
