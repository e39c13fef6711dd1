r"""CARP on Fashion-MNIST, CPU recipe: 2 x 28 px + 4 x 14 px views, 4-block ViT with 7 px patches.

About 55 minutes of training on a 2-core CPU (wall-clock budget), then k-NN on the test set.
Run:
  python -m jaxssl.train --config configs/carp_fashion_mnist.py --workdir workdirs/carp_fmnist
Expect: k-NN top-1 above raw pixels (84.6%); entropy term near 0, assignments not constant.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("carp")
    return c
