r"""The quick-start job: ExCB on Fashion-MNIST, 7 minutes of training on a 2-core CPU.

Run:
  python -m jaxssl.train --config configs/quickstart.py --workdir workdirs/quickstart
Expect: about 9 minutes in all on an idle 2-core CPU, then the teacher's k-NN top-1 on the
Fashion-MNIST test set is printed (target >= 75 %; measured 70.7 % on 2026-11-22 on a shared,
contended machine, see benchmarks/RESULTS.md), plus loss_curve.png, cluster_sizes.png and
report.json in the workdir.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("excb", minutes=7.0)
    # A BatchNorm projector spreads the random-init projections, so the first balanced targets
    # depend on the image and not only on the cluster sizes.
    c.head.use_bn = True
    c.train.checkpoint_every = 1000
    return c
