"""The online k-NN probe (and the final k-NN's ``eval.knn_train_size``) read a seeded,
class-balanced subset, not the first examples in source order."""

import numpy as np

from jaxssl.eval.final import eval_batches
from jaxssl.train.recipes import tiny


def _class_sorted(tmp_path, per_class=(20, 20, 20, 20, 20, 20, 20, 20, 20, 3)):
    labels = np.repeat(np.arange(len(per_class)), per_class)
    # Each image carries its source index in its first pixels, to identify it after cropping.
    images = np.zeros((len(labels), 16, 16), np.uint8)
    images[:, :8, :8] = (np.arange(len(labels)) % 256)[:, None, None]
    path = tmp_path / "sorted.npz"
    np.savez(path, images=images, labels=labels)
    return f"npz:{path}", labels


def _read(config, limit):
    labels, firsts = [], []
    for batch in eval_batches(config, "train", limit):
        valid = np.asarray(batch["valid"], bool)
        labels.append(np.asarray(batch["label"])[valid])
        firsts.append(np.asarray(batch["image"])[valid][:, 0, 0, 0])
    return np.concatenate(labels), np.concatenate(firsts)


def test_probe_subset_is_class_balanced_seeded_and_complete(tmp_path):
    c = tiny("excb")
    c.data.dataset, labels = _class_sorted(tmp_path)
    c.eval.batch_size = 16
    got, ids = _read(c, 50)
    # 50 of 183 class-sorted images: 5 per class (the first 50 in source order would be
    # classes 0-2 only); the rare class 9 has only 3, its share goes to the others.
    counts = np.bincount(got, minlength=10)
    assert counts.sum() == 50 and counts[9] == 3 and set(counts[:9]) <= {5, 6}
    assert len(set(ids.tolist())) == 50  # distinct images
    np.testing.assert_array_equal(labels[ids], got)  # labels travel with their images
    again, ids_again = _read(c, 50)
    np.testing.assert_array_equal(ids_again, ids)  # same seed, same subset, every call
    c.seed = 1
    assert set(_read(c, 50)[1].tolist()) != set(ids.tolist())
    # limit 0, or at least the dataset size: every image once.
    assert sorted(_read(c, 0)[1].tolist()) == list(range(183))
    assert sorted(_read(c, 500)[1].tolist()) == list(range(183))
