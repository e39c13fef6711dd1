r"""CARP on Fashion-MNIST, CPU recipe: 2 x 28 px + 2 x 14 px views, batch 64, 4-block ViT (7 px patches).

About 9 minutes of training on a 2-core CPU (a wall-clock budget), then k-NN on the test set:
~10.5 minutes in all. Run:
  python -m jaxssl.train --config configs/carp_fashion_mnist.py --workdir workdirs/carp_fmnist
For the 55-minute run of benchmarks/RESULTS.md add
  --config.train.time_budget_s=3300 --config.train.online_knn_every=1500
Expect: as measured 2026-12-06 (one seed, RESULTS.md "55-minute runs"), online probe 75.8 %
at 6 minutes (5k-image bank); 55 minutes: 85.38 % full-bank k-NN, above raw pixels (84.6 %);
entropy term near 0 (0.13), assignments not constant.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("carp")
    return c
