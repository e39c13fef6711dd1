"""Training and eval iterators: layout, determinism, sharding, resume, bad config."""

import itertools

import chex
import grain
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from jaxssl.data.config import DataConfig
from jaxssl.data.pipeline import make_eval_iterator, make_train_iterator
from jaxssl.data.sources.folder import ImageFolderSource
from jaxssl.train.defaults import base_config
from jaxssl.train.validate import validate_config

N = 50  # examples in the toy dataset; example i is a constant image of value 2 * i


@pytest.fixture
def toy_npz(tmp_path):
    # 9 x 7 images: smaller than the 12 px global crops, so every view is an upscale.
    images = np.repeat((2 * np.arange(N, dtype=np.uint8))[:, None, None], 9, 1)
    images = np.repeat(images, 7, 2)
    labels = np.arange(N) % 5
    path = tmp_path / "toy.npz"
    np.savez(path, images=images, labels=labels)
    return str(path)


def _config(spec, *, num_local=3, threads=0):
    cfg = base_config().data
    cfg.dataset = spec
    cfg.global_crops.update(num=2, size=12, scale=(0.4, 1.0))
    cfg.local_crops.update(num=num_local, size=6, scale=(0.1, 0.4))
    cfg.num_threads = threads
    cfg.prefetch = 2
    return cfg


def _take(iterator, n):
    return list(itertools.islice(iterator, n))


def test_batch_layout_and_content(toy_npz):
    it = make_train_iterator(_config(f"npz:{toy_npz}"), global_batch_size=8, seed=0)
    batch = next(it)
    assert set(batch) == {"global", "local", "label", "index"}
    chex.assert_shape(batch["global"], (8, 2, 12, 12, 3))
    chex.assert_shape(batch["local"], (8, 3, 6, 6, 3))
    assert batch["global"].dtype == np.uint8 and batch["local"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int64
    # Each row's views show its own source example (constant image of value 2 * index).
    for row, index in enumerate(batch["index"]):
        assert np.all(batch["global"][row] == 2 * index)
        assert np.all(batch["local"][row] == 2 * index)
        assert batch["label"][row] == index % 5
    assert len(set(batch["index"].tolist())) == 8


def test_local_key_omitted_without_local_crops(toy_npz):
    batch = next(make_train_iterator(_config(f"npz:{toy_npz}", num_local=0),
                                     global_batch_size=4, seed=0))
    assert set(batch) == {"global", "label", "index"}


def test_same_seed_same_batches_across_thread_counts(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", images=rng.integers(0, 256, (N, 20, 24, 3), dtype=np.uint8),
             labels=np.arange(N) % 3)
    spec = f"npz:{tmp_path / 'r.npz'}"
    a = _take(make_train_iterator(_config(spec), global_batch_size=8, seed=5), 8)
    b = _take(make_train_iterator(_config(spec, threads=2), global_batch_size=8, seed=5), 8)
    c = _take(make_train_iterator(_config(spec), global_batch_size=8, seed=6), 8)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a[0]["index"], c[0]["index"])
    # Two views of one example differ (independent crops), and a re-visit in the next epoch too.
    assert not np.array_equal(a[0]["global"][0, 0], a[0]["global"][0, 1])


def test_epochs_and_process_shards(toy_npz):
    cfg = _config(f"npz:{toy_npz}", num_local=0)
    steps = N // 8  # 6 steps per epoch; 2 examples dropped each epoch
    single = _take(make_train_iterator(cfg, global_batch_size=8, seed=1), 2 * steps)
    shards = [
        _take(make_train_iterator(cfg, global_batch_size=8, seed=1, process_index=p,
                                  process_count=2), 2 * steps)
        for p in range(2)
    ]
    for epoch in range(2):
        rows = slice(epoch * steps, (epoch + 1) * steps)
        per_process = [np.concatenate([b["index"] for b in shards[p][rows]]) for p in range(2)]
        assert all(len(x) == 4 * steps for x in per_process)
        assert not set(per_process[0]) & set(per_process[1])  # disjoint
        covered = set(per_process[0]) | set(per_process[1])
        assert len(covered) == 8 * steps and covered <= set(range(N))  # an epoch, no repeats
    first = np.concatenate([b["index"] for b in single[:steps]])
    second = np.concatenate([b["index"] for b in single[steps:]])
    assert not np.array_equal(first, second)  # reshuffled each epoch
    # The global batch is the process batches concatenated in process order.
    for s in range(2 * steps):
        joined = {k: np.concatenate([shards[0][s][k], shards[1][s][k]]) for k in single[s]}
        chex.assert_trees_all_equal(joined, single[s])


def test_resume_through_orbax_gives_the_next_batch(toy_npz, tmp_path):
    cfg = _config(f"npz:{toy_npz}")
    reference = _take(make_train_iterator(cfg, global_batch_size=8, seed=3), 9)

    it = make_train_iterator(cfg, global_batch_size=8, seed=3)
    _take(it, 5)  # stop one step before the end of epoch 0 (6 steps per epoch)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
        state = {"step": np.array(5)}
        mngr.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
    _take(it, 2)  # keep going: the restore must rewind, not just continue

    fresh = make_train_iterator(cfg, global_batch_size=8, seed=3)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mngr:
        restored = mngr.restore(
            mngr.latest_step(),
            args=ocp.args.Composite(state=ocp.args.StandardRestore(state),
                                    data=grain.checkpoint.CheckpointRestore(fresh)),
        )
    assert int(restored.state["step"]) == 5
    chex.assert_trees_all_equal(_take(fresh, 4), reference[5:9])  # crosses into epoch 1


def test_get_set_state_round_trip(toy_npz):
    cfg = _config(f"npz:{toy_npz}")
    it = make_train_iterator(cfg, global_batch_size=4, seed=0)
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 2)
    it2 = make_train_iterator(cfg, global_batch_size=4, seed=0)
    it2.set_state(state)
    chex.assert_trees_all_equal(_take(it2, 2), expected)


def test_fashion_mnist_train_batch():
    cfg = _config("fashion_mnist")
    batch = next(make_train_iterator(cfg, global_batch_size=16, seed=0))
    chex.assert_shape(batch["global"], (16, 2, 12, 12, 3))
    assert batch["index"].max() < 60_000 and batch["label"].max() <= 9


def test_long_tail_subset_uses_subset_seed_not_training_seed(toy_npz, monkeypatch):
    import jaxssl.data.config as data_config

    seeds = []
    real = data_config.make_source

    def recording_make_source(spec, split, **kwargs):
        seeds.append(kwargs["seed"])
        return real(spec, split, **kwargs)

    monkeypatch.setattr(data_config, "make_source", recording_make_source)
    cfg = _config(f"npz:{toy_npz}:lt2")
    for seed in (0, 7):
        make_train_iterator(cfg, global_batch_size=4, seed=seed)
    cfg.subset_seed = 3
    make_train_iterator(cfg, global_batch_size=4, seed=7)
    assert seeds == [0, 0, 3]


def test_corrupt_folder_through_the_pipeline(tmp_path):
    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(4):
            Image.fromarray(np.full((10, 10, 3), 40 * c + i, np.uint8)).save(
                tmp_path / f"c{c}" / f"{i}.jpg")
    (tmp_path / "c0" / "2.jpg").write_bytes((tmp_path / "c0" / "2.jpg").read_bytes()[:40])
    source = ImageFolderSource(tmp_path)
    cfg = _config(f"folder:{tmp_path}")
    with pytest.warns(UserWarning, match="2.jpg"):
        batches = _take(make_train_iterator(cfg, global_batch_size=4, seed=0, source=source), 2)
    assert sorted(np.concatenate([b["index"] for b in batches]).tolist()) == list(range(8))
    assert source.num_corrupt == 1
    cfg.skip_corrupt = False
    with pytest.raises(Exception, match="2.jpg"):
        _take(make_train_iterator(cfg, global_batch_size=4, seed=0,
                                  source=ImageFolderSource(tmp_path, skip_corrupt=False)), 2)


@pytest.mark.parametrize("processes", [1, 3])
def test_eval_sees_every_example_once(toy_npz, processes):
    seen, valid_total, batches_per_process = [], 0, set()
    for p in range(processes):
        batches = list(make_eval_iterator(f"npz:{toy_npz}", "test", image_size=9, batch_size=8,
                                          process_index=p, process_count=processes))
        batches_per_process.add(len(batches))
        for b in batches:
            chex.assert_shape(b["image"], (8, 9, 9, 3))
            assert b["label"].dtype == np.int32 and b["valid"].dtype == np.bool_
            valid_total += int(b["valid"].sum())
            seen += (b["image"][b["valid"], 0, 0, 0] // 2).tolist()
            assert np.all(b["image"][~b["valid"]] == 0)
    assert len(batches_per_process) == 1  # every process runs the same number of steps
    assert batches_per_process.pop() == -(-N // (8 * processes))
    assert valid_total == N and sorted(seen) == list(range(N))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("global_crops.scale", (0.0, 1.0), r"config.data.global_crops.scale: got \(0.0, 1.0\)"),
        ("local_crops.scale", (0.5, 0.1), r"config.data.local_crops.scale: .* low <= high"),
        ("local_crops.scale", 0.3, "config.data.local_crops.scale: got 0.3"),
        ("local_crops.num", -1, r"config.data.local_crops.num: got -1, allowed an integer in "
                                r"\[0, inf\)"),
        ("global_crops.num", 0, r"config.data.global_crops.num: got 0, allowed an integer"),
        ("global_crops.size", 0, "config.data.global_crops.size: got 0"),
        ("num_threads", -2, "config.data.num_threads: got -2"),
        ("ratio", (2.0, 0.5), "config.data.ratio: got"),
        ("ratio", (0.0, 2.0), "config.data.ratio: got"),
        ("interpolation", "nearest", "config.data.interpolation must be one of"),
        ("skip_corrupt", "yes", "config.data.skip_corrupt must be a bool"),
        ("subset_seed", -1, "config.data.subset_seed: got -1"),
        ("crop_scale_schedule.start_min", 0.2, r"config.data.crop_scale_schedule.start_min must "
                                              r"lie in \[0.4, 1.0\]"),
        ("dataset", "cifar", "config.data.dataset: unknown dataset spec 'cifar'"),
    ],
)
def test_bad_config_fields_are_named(field, value, match):
    """Every data field is checked once, by validate_config on the one schema (its numeric
    ranges, then the typed data view), and the error names the field."""
    cfg = base_config()
    *parents, leaf = field.split(".")
    node = cfg.data
    for name in parents:
        node = node[name]
    with node.ignore_type():
        node[leaf] = value
    with pytest.raises(ValueError, match=match):
        validate_config(cfg, num_devices=1, num_processes=1)


def test_missing_config_field():
    cfg = ml_collections.ConfigDict(base_config().data.to_dict())
    del cfg["prefetch"]
    with pytest.raises(ValueError, match="data.prefetch: missing field"):
        DataConfig.from_config(cfg)
    del cfg.crop_scale_schedule["steps"]
    cfg.prefetch = 2
    with pytest.raises(ValueError, match="data.crop_scale_schedule.steps: missing field"):
        make_train_iterator(cfg, global_batch_size=4, seed=0)


def test_bad_batch_sizes(toy_npz):
    cfg = _config(f"npz:{toy_npz}")
    with pytest.raises(ValueError, match="global_batch_size=9 must be a positive multiple of"):
        make_train_iterator(cfg, global_batch_size=9, seed=0, process_count=2)
    with pytest.raises(ValueError, match="global_batch_size=64 exceeds the 50"):
        make_train_iterator(cfg, global_batch_size=64, seed=0)
    with pytest.raises(ValueError, match="process_index"):
        make_train_iterator(cfg, global_batch_size=8, seed=0, process_index=2, process_count=2)


def test_crop_scale_schedule_follows_the_step(toy_npz, monkeypatch):
    """ExCB's schedule: global crops use (s_min, 1) and locals (0.1, s_min) with s_min going
    0.6 -> 0.4 by cosine over 4 steps; recorded from the crops the pipeline actually cuts."""
    import jaxssl.data.pipeline as pipeline

    used = []

    def recording_view(rng, image, size, scale, ratio, interpolation):
        used.append((size, tuple(round(float(x), 6) for x in scale)))
        return real_view(rng, image, size, scale, ratio, interpolation)

    real_view = pipeline.random_view
    monkeypatch.setattr(pipeline, "random_view", recording_view)
    cfg = _config(f"npz:{toy_npz}", num_local=1)
    cfg.crop_scale_schedule.update(start_min=0.6, steps=4)
    it = make_train_iterator(cfg, global_batch_size=2, seed=0)
    expected_min = [0.4 + 0.1 * (1 + np.cos(np.pi * min(s / 4, 1))) for s in range(6)]
    for step in range(6):
        used.clear()
        next(it)
        s_min = round(float(expected_min[step]), 6)
        # 2 examples x (2 globals + 1 local), in the element's order.
        assert used == 2 * [(12, (s_min, 1.0)), (12, (s_min, 1.0)), (6, (0.1, s_min))], step
