r"""MSN on Fashion-MNIST, CPU recipe: 2 x 28 px + 2 x 14 px views, batch 64, 4-block ViT (7 px patches).

About 9 minutes of training on a 2-core CPU (wall-clock budget; e.g.
--config.train.time_budget_s=3300 trains 55 minutes), then k-NN on the test set: ~10.5 minutes in all.
Run:
  python -m jaxssl.train --config configs/msn_fashion_mnist.py --workdir workdirs/msn_fmnist
Expect: k-NN top-1 above raw pixels (84.6%).
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("msn")
    return c
