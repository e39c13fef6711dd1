r"""DINO + KoLeo-proto on Fashion-MNIST, CPU recipe: 2 x 28 px + 2 x 14 px views, batch 64, 4-block ViT (7 px patches).

About 9 minutes of training on a 2-core CPU (a wall-clock budget), then k-NN on the test set:
~10.5 minutes in all. Run:
  python -m jaxssl.train --config configs/dino_koleo_fashion_mnist.py --workdir workdirs/dino_koleo_fmnist
For the 55-minute run of benchmarks/RESULTS.md add
  --config.train.time_budget_s=3300 --config.train.online_knn_every=1500
Expect: k-NN like DINO (84.24 % after 55 minutes), with at least as many unique prototypes at
1e-2 / 1e-3 (its 55-minute run is not measured yet).
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("dino")
    c.loss.koleo_weight = 0.1
    return c
