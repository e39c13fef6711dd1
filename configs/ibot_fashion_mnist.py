r"""iBOT (DINO + masked patch loss) on Fashion-MNIST, CPU recipe: 2 x 28 px + 4 x 14 px views, 4-block ViT with 7 px patches.

About 55 minutes of training on a 2-core CPU (wall-clock budget), then k-NN on the test set.
Run:
  python -m jaxssl.train --config configs/ibot_fashion_mnist.py --workdir workdirs/ibot_fmnist
Expect: k-NN top-1 above raw pixels (84.6%).
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("ibot")
    return c
