r"""The quick-start job: ExCB on Fashion-MNIST, 8 minutes of training on a 2-core CPU.

Run:
  python -m jaxssl.train --config configs/quickstart.py --workdir workdirs/quickstart
Expect: within 10 minutes in all, a teacher k-NN top-1 of at least 75% on the Fashion-MNIST test
set (printed at the end), plus loss_curve.png and cluster_sizes.png in the workdir.
"""

from jaxssl.train.recipes import fashion_mnist_cpu


def get_config():
    c = fashion_mnist_cpu("excb", minutes=7.0)
    c.train.checkpoint_every = 1000
    return c
