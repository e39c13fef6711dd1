r"""DINO + KoLeo-proto on Fashion-MNIST, CPU recipe: 2 x 28 px + 2 x 14 px views, batch 64, 4-block ViT (7 px patches).

About 9 minutes of training on a 2-core CPU (a wall-clock budget), then k-NN on the test set:
~10.5 minutes in all. Run:
  python -m jaxssl.train --config configs/dino_koleo_fashion_mnist.py --workdir workdirs/dino_koleo_fmnist
For the 55-minute run of benchmarks/RESULTS.md add
  --config.train.time_budget_s=3300 --config.train.online_knn_every=1500
Expect: as measured 2026-12-06 (one seed, RESULTS.md "55-minute runs"), online probe 74.3 % at
10 minutes (5k-image bank); 55 minutes: 84.21 % full-bank k-NN, level with DINO's 84.24 % and
0.4 point short of raw pixels (84.6 %); all 512 prototypes unique at 1e-2 and 1e-3 throughout,
as DINO's are at this K.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("dino")
    c.loss.koleo_weight = 0.1
    return c
