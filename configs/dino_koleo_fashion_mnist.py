r"""DINO + KoLeo-proto on Fashion-MNIST, CPU recipe: 2 x 28 px + 4 x 14 px views, 4-block ViT with 7 px patches.

About 55 minutes of training on a 2-core CPU (wall-clock budget), then k-NN on the test set.
Run:
  python -m jaxssl.train --config configs/dino_koleo_fashion_mnist.py --workdir workdirs/dino_koleo_fmnist
Expect: k-NN like DINO, with more unique prototypes at 1e-2.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("dino")
    c.loss.koleo_weight = 0.1
    return c
