"""Writes colab/quickstart.ipynb (nbformat 4) from the cell sources below.

Edit the cells here and run ``python colab/build_notebook.py``; tests/test_notebook.py checks
that the committed notebook equals this builder's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).with_name("quickstart.ipynb")

INTRO = """\
# jaxssl quick start

Prototype / clustering self-supervised pretraining in JAX: **CARP**, **KoLeo-proto**, **ExCB**
and **PMSN**, with the DINO, iBOT and MSN bases.

This notebook (1) installs jaxssl with its `[train]` extra from the repository URL you give it,
(2) runs every public loss on toy tensors, (3) pretrains a tiny ExCB model on Fashion-MNIST
(downloaded and checksummed by jaxssl; a small synthetic set only when offline), and (4) plots
the loss curve, the cluster sizes and the k-NN accuracy of the frozen teacher features.

`SMALL = True` (the default, used by CI) trains for about a minute on a CPU; set it to `False`
on a Colab GPU/TPU runtime for a longer run."""

PARAMETERS = """\
# Parameters (CI runs the notebook with these values).
SMALL = True  # a ~1 minute CPU run; False: the 2-core-CPU Fashion-MNIST recipe, ~5 minutes
METHOD = "excb"  # any of: dino, excb, carp, msn (PMSN: msn with config.loss.prior="power_law")
WORKDIR = "workdirs/colab_quickstart"
FMNIST = None  # a folder with the Fashion-MNIST IDX .gz files; None: Debian's copy or the cache
SEED = 0"""

INSTALL = """\
# @title Install jaxssl with its training extra
# On Colab: set REPO_URL to the jaxssl repository to install from. Inside a jaxssl checkout (or
# wherever jaxssl and its [train] extra are already installed, as in CI) nothing is installed.
import importlib
import os
import subprocess
import sys

REPO_URL = "https://github.com/jaxssl/jaxssl"  # @param {type:"string"}

try:
    import jaxssl.train  # noqa: F401  (raises ImportError without the [train] extra)
except ImportError:
    if os.path.isdir("jaxssl") and os.path.exists("pyproject.toml"):
        requirement = ["-e", ".[train]"]  # this notebook runs inside a checkout
    else:
        requirement = [f"jaxssl[train] @ git+{REPO_URL}"]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *requirement])
    importlib.invalidate_caches()

import jax  # noqa: E402  (imported once the install above is done)

print("jax", jax.__version__, "devices:", jax.devices())"""

LOSSES_MD = """\
## The losses on toy tensors

Per-view arrays are `[views, batch, prototypes]`; teacher inputs are treated as constants. The
equations are in the repository's `docs/methods.md`, the argument shapes in `docs/api.md`."""

LOSSES = """\
import jax.numpy as jnp

from jaxssl import losses

keys = jax.random.split(jax.random.key(SEED), 8)
S, T, B, K, D = 4, 2, 8, 16, 8  # student views, teacher views, batch, prototypes, feature dim
student = jax.random.normal(keys[0], (S, B, K))
teacher = jax.random.normal(keys[1], (T, B, K))

# DINO: cross-entropy between the centred, sharpened teacher and the student, over view pairs.
print("dino_loss:", round(float(losses.dino_loss(student, teacher, jnp.zeros(K))), 4))

# KoLeo-proto: -mean log nearest-neighbour distance of the normalised prototypes.
prototypes = jax.random.normal(keys[2], (K, D))
print("koleo_proto_loss:", round(float(losses.koleo_proto_loss(prototypes)), 4))
duplicated = prototypes.at[1].set(prototypes[0])  # a partially collapsed prototype matrix
print("koleo_proto_loss with a duplicate:", round(float(losses.koleo_proto_loss(duplicated)), 4))
print("unique prototypes:", int(losses.count_unique_prototypes(prototypes, 1e-3)), "of", K,
      "| with a duplicate:", int(losses.count_unique_prototypes(duplicated, 1e-3)))"""

LOSSES_2 = """\
# ExCB: cosine similarities to centroids, re-balanced by the running cluster sizes.
def cosines(key, shape):
    x = jax.random.normal(key, shape + (D,))
    c = prototypes / jnp.linalg.norm(prototypes, axis=-1, keepdims=True)
    return (x / jnp.linalg.norm(x, axis=-1, keepdims=True)) @ c.T

sizes = jnp.full((K,), 1.0 / K)
excb, excb_aux = losses.excb_loss(cosines(keys[3], (S, B)), cosines(keys[4], (S, B)),
                                  cosines(keys[5], (T, B)), sizes)
print("excb_loss:", round(float(excb), 4),
      "| updated cluster sizes sum to", round(float(excb_aux["cluster_sizes"].sum()), 4))

# CARP: consistency + entropy inside random blocks of prototypes.
partition = losses.random_partition(keys[6], K, 4)
carp, carp_aux = losses.carp_loss(student, teacher, partition)
print("carp_loss:", round(float(carp), 4), "| blocks:", partition.shape,
      "| consistency:", round(float(carp_aux["consistency"]), 4),
      "| entropy:", round(float(carp_aux["entropy"]), 4))

# MSN (uniform prior) and PMSN (power-law prior) on anchor / target embeddings.
anchors = jax.random.normal(keys[7], (S, B, D))
targets = jax.random.normal(keys[0], (B, D))
for name, prior in [("uniform", losses.uniform_prior(K)), ("power law", losses.power_law_prior(K))]:
    msn, msn_aux = losses.msn_loss(anchors, targets, prototypes, prior=prior)
    print(f"msn_loss ({name} prior):", round(float(msn), 4),
          "| regularisation:", round(float(msn_aux["regularization"]), 4))"""

DATA_MD = """\
## Data

Fashion-MNIST through jaxssl's `load_idx_split`, the loader the trainer uses: from `FMNIST` when
it holds the four IDX files, else Debian's `dataset-fashion-mnist` or an earlier download in
`~/.cache/jaxssl`, else the official files are downloaded there (kept only with their official
SHA-256). Only when the machine is offline does the notebook fall back to a synthetic 10-class set
(class templates plus noise), and it prints that it did; a download that is not the official file
stops the notebook. A subset is used when `SMALL`. The images are written as `.npz` files and read
through jaxssl's `npz:` dataset spec."""

DATA = """\
import numpy as np

from jaxssl.data.sources.idx import load_idx_split

DATA_DIR = f"{WORKDIR}_data"
os.makedirs(DATA_DIR, exist_ok=True)
rng = np.random.default_rng(SEED)
n_train, n_test = (4000, 1000) if SMALL else (60000, 10000)


def fashion_mnist():
    # {split: (images, labels)}, downloading what is missing; None only when offline.
    try:
        return {split: load_idx_split("fashion_mnist", split, data_dir=FMNIST)
                for split in ("train", "test")}
    except OSError as err:  # offline; a wrong download (ChecksumError) is not caught: it stops
        print(f"OFFLINE: no Fashion-MNIST ({err}); using SYNTHETIC data instead.")
        return None


def synthetic(n, templates):
    labels = rng.integers(0, len(templates), n)
    noise = rng.normal(0, 40, (n, 28, 28))
    return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels


splits = fashion_mnist()
if splits is not None:
    source = "Fashion-MNIST"
    for split, n in [("train", n_train), ("test", n_test)]:
        images, labels = splits[split]
        np.savez(f"{DATA_DIR}/{split}.npz", images=images[:n], labels=labels[:n].astype(np.int64))
else:
    source = "synthetic"
    templates = rng.uniform(0, 255, (10, 28, 28))
    for split, n in [("train", n_train), ("test", n_test)]:
        images, labels = synthetic(n, templates)
        np.savez(f"{DATA_DIR}/{split}.npz", images=images, labels=labels)
DATASET = f"npz:{DATA_DIR}/{{split}}.npz"
print(source, "->", DATASET, "| train", n_train, "test", n_test)"""

TRAIN_MD = """\
## Pretrain

`tiny(METHOD)` is the seconds-long smoke recipe (1-block ViT, 16 px views, K = 64); the large
setting uses the 2-core-CPU Fashion-MNIST recipe. Both end with a weighted k-NN evaluation of
the teacher features and write `metrics.jsonl`, `report.json` and PNG plots to `WORKDIR`."""

TRAIN = """\
import shutil

from jaxssl.eval.final import CALLBACKS  # the online k-NN probe and the final evaluation
from jaxssl.train.loop import train
from jaxssl.train.recipes import fashion_mnist_cpu, tiny

shutil.rmtree(WORKDIR, ignore_errors=True)  # a fresh run, not a resume of an older one
config = tiny(METHOD) if SMALL else fashion_mnist_cpu(METHOD, minutes=4.0)
config.seed = SEED
config.data.dataset = DATASET
if SMALL:
    config.train.num_steps = 60
    config.train.log_every = 5
config.eval.final_knn = True
config.eval.knn_train_size = 0  # the whole (small) train split is the k-NN memory bank
summary = train(config, WORKDIR, **CALLBACKS)
print("steps:", summary["step"], "| images/s:", round(summary["images_per_s"], 1))"""

PLOTS = """\
%matplotlib inline
import matplotlib.pyplot as plt

from jaxssl.eval import read_metrics_jsonl

rows = [r for r in read_metrics_jsonl(f"{WORKDIR}/metrics.jsonl") if "loss" in r]
sizes_png = f"{WORKDIR}/cluster_sizes.png"
fig, axes = plt.subplots(1, 2 if os.path.exists(sizes_png) else 1, figsize=(11, 3.5),
                         squeeze=False)
axes[0, 0].plot([r["step"] for r in rows], [r["loss"] for r in rows])
axes[0, 0].set(xlabel="step", ylabel="loss", title=f"{METHOD} training loss")
if os.path.exists(sizes_png):  # written by the final evaluation for prototype methods
    axes[0, 1].imshow(plt.imread(sizes_png))
    axes[0, 1].axis("off")
plt.show()

report = summary["report"]
print({k: report[k] for k in report if "cluster" in k})
print(f"KNN_TOP1 = {summary['knn_top1']:.4f}")
print(f"(chance is 0.1000; {source} data, {summary['step']} steps)")"""

EXPORT_MD = """\
## Use the backbone elsewhere

`python -m jaxssl.export --workdir WORKDIR --format msgpack` writes the teacher backbone as Flax
msgpack; `--format torch` writes a PyTorch state dict with torchvision / timm key names
(needs `pip install torch`)."""

EXPORT = """\
from jaxssl.export import export

print(export(WORKDIR, "msgpack"))"""


def build() -> nbformat.NotebookNode:
    """The notebook object (cell ids fixed so rebuilding gives identical JSON)."""
    cells = [
        new_markdown_cell(INTRO),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(INSTALL),
        new_markdown_cell(LOSSES_MD),
        new_code_cell(LOSSES),
        new_code_cell(LOSSES_2),
        new_markdown_cell(DATA_MD),
        new_code_cell(DATA),
        new_markdown_cell(TRAIN_MD),
        new_code_cell(TRAIN),
        new_code_cell(PLOTS),
        new_markdown_cell(EXPORT_MD),
        new_code_cell(EXPORT),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    })
    nbformat.validate(nb)
    return nb


def render() -> str:
    """The notebook's JSON text as written to disk."""
    return nbformat.writes(build()) + "\n"


if __name__ == "__main__":
    NOTEBOOK.write_text(render(), encoding="utf-8")
    print(NOTEBOOK, file=sys.stderr)
