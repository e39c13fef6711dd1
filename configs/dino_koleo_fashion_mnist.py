r"""DINO + KoLeo-proto on Fashion-MNIST, CPU recipe: 2 x 28 px + 2 x 14 px views, batch 64, 4-block ViT (7 px patches).

About 9 minutes of training on a 2-core CPU (wall-clock budget; e.g.
--config.train.time_budget_s=3300 trains 55 minutes), then k-NN on the test set: ~10.5 minutes in all.
Run:
  python -m jaxssl.train --config configs/dino_koleo_fashion_mnist.py --workdir workdirs/dino_koleo_fmnist
Expect: k-NN like DINO, with more unique prototypes at 1e-2.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("dino")
    c.loss.koleo_weight = 0.1
    return c
