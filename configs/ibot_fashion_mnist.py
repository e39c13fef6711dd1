r"""iBOT (DINO + masked patch loss) on Fashion-MNIST, CPU recipe: 2 x 28 px + 2 x 14 px views, batch 64, 4-block ViT (7 px patches).

About 9 minutes of training on a 2-core CPU (a wall-clock budget), then k-NN on the test set:
~10.5 minutes in all. Run:
  python -m jaxssl.train --config configs/ibot_fashion_mnist.py --workdir workdirs/ibot_fmnist
For the 55-minute run of benchmarks/RESULTS.md add
  --config.train.time_budget_s=3300 --config.train.online_knn_every=1500
Expect: as measured 2026-12-06 (one seed, RESULTS.md "55-minute runs"), online probe 74.6 %
at 10 minutes (5k-image bank); 55 minutes: 84.24 % full-bank k-NN, level with DINO and 0.36
point short of raw pixels (84.6 %, the target).
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("ibot")
    return c
