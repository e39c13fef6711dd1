r"""The quick-start job: ExCB on Fashion-MNIST, 7 minutes of training on a 2-core CPU.

Run:
  python -m jaxssl.train --config configs/quickstart.py --workdir workdirs/quickstart
Expect: about 7.5 minutes in all on an idle 2-core CPU (7 of them training, ~2,400-2,900 steps of
batch 64), then the teacher's k-NN top-1 on the Fashion-MNIST test set is printed: 80.9 % measured
on 2026-12-05 (target >= 80 %; randomly initialised weights give 68.55 %, raw pixels 84.6 %, see
benchmarks/RESULTS.md), plus loss_curve.png, cluster_sizes.png and report.json in the workdir.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    # The ExCB CPU recipe (K = 64, BN projector, batch 64, 2 x 28 px + 2 x 14 px views) with a
    # 7-minute training budget: k-means init, compilation and the final k-NN take ~75 s more.
    return fashion_mnist_cpu("excb", minutes=7.0)
