"""The pipeline's batches and the config -> augmentation mapping, pinned to values recorded on
``main`` before the data section moved into the one config schema (``jaxssl.train.defaults``):
the refactor must keep every batch bit-identical for a seed, and every view's augmentation."""

import hashlib
import itertools

import numpy as np
import pytest

from jaxssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, ViewAugment, dino_view_augments
from jaxssl.data.pipeline import make_train_iterator
from jaxssl.data.view_augments import view_augments
from jaxssl.train.defaults import base_config
from jaxssl.train.recipes import fashion_mnist_cpu


def _digest(batches) -> str:
    h = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch):
            h.update(key.encode())
            h.update(np.ascontiguousarray(batch[key]).tobytes())
    return h.hexdigest()[:16]


def test_default_batches_match_main():
    """Fashion-MNIST, the schema's default data section, seed 0: 2 batches of 8."""
    it = make_train_iterator(base_config().data, global_batch_size=8, seed=0)
    assert _digest(itertools.islice(it, 2)) == "cff9ed46e7e7651b"


def test_every_data_field_set_through_the_schema_matches_main():
    """ratio, interpolation and subset_seed (not in the schema before, so only settable through
    the old data-only config), a long-tailed spec and ExCB's crop-scale schedule: 3 batches."""
    data = base_config().data
    data.update(ratio=(0.5, 2.0), interpolation="bilinear", subset_seed=3,
                dataset="fashion_mnist:lt10")
    data.crop_scale_schedule.update(start_min=0.6, steps=4)
    it = make_train_iterator(data, global_batch_size=8, seed=5)
    assert _digest(itertools.islice(it, 3)) == "f07bbcff1373b556"


def _dino(blur_prob, solarize_prob=0.0, strength=1.0, sigma=(0.1, 2.0), mean=IMAGENET_MEAN,
          std=IMAGENET_STD):
    # The DINO/BYOL recipe written out by hand (not read from the code under test).
    return ViewAugment(jitter_prob=0.8, brightness=0.4 * strength, contrast=0.4 * strength,
                       saturation=0.2 * strength, hue=0.1 * strength, grayscale_prob=0.2,
                       blur_prob=blur_prob, blur_sigma=sigma, solarize_prob=solarize_prob,
                       mean=mean, std=std)


def test_schema_augmentation_is_the_dino_recipe():
    glob, loc = view_augments(base_config())
    assert glob == (_dino(1.0), _dino(0.1, 0.2))
    assert loc == (_dino(0.5),) * 4
    assert (glob, loc) == dino_view_augments(num_local=4)


def test_released_excb_blur_inverts_the_blur_probabilities():
    c = base_config()
    c.augment.released_excb_blur = True
    c.data.global_crops.num = 3
    glob, loc = view_augments(c)
    assert [v.blur_prob for v in glob] == [0.0, 0.9, 0.9]
    assert [v.blur_prob for v in loc] == [0.0] * 4
    assert glob[1].solarize_prob == 0.2


@pytest.mark.parametrize("method, strength, solarize", [("dino", 1.0, 0.2), ("msn", 0.5, 0.0)])
def test_cpu_recipe_augmentation(method, strength, solarize):
    """The CPU recipes blur with sigma in (0.1, 1.0) and their own mean/std; MSN's also halves
    the jitter strengths and drops solarization (jaxssl.train.recipes)."""
    c = fashion_mnist_cpu(method)
    glob, loc = view_augments(c)
    kw = dict(strength=strength, sigma=(0.1, 1.0), mean=(0.286,) * 3, std=(0.353,) * 3)
    assert glob == (_dino(1.0, **kw), _dino(0.1, solarize, **kw))
    assert loc == (_dino(0.5, **kw),) * 2
