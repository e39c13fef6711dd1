"""Tests of jaxssl.losses.carp against hand-derived values and an explicit loop formulation."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxssl.losses.carp import carp_loss, random_partition

EPS = float(np.finfo(np.float32).eps)

# ---------------------------------------------------------------------------------------------
# Independent reference: explicit loops over views, samples and blocks (docs/methods.md §4).


def _np_block_probs(logits: np.ndarray, block: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)[list(block)]
    e = np.exp(x - x.max())
    return e / e.sum()


def _np_carp(student, teacher, partition, entropy_weight=1.0):
    s_views, batch, _ = student.shape
    t_views = teacher.shape[0]
    consistency, agree, cross_agree, max_prob = [], [], [], []
    for i in range(s_views):
        for j in range(t_views):
            for b in range(batch):
                for block in partition:
                    p = _np_block_probs(student[i, b], block)
                    q = _np_block_probs(teacher[j, b], block)
                    same = p.argmax() == q.argmax()
                    if i == j:
                        agree.append(same)
                    else:
                        consistency.append(-np.log(np.clip(np.dot(p, q), EPS, 1 - EPS)))
                        cross_agree.append(same)
    entropy, p_bars = [], []
    for block in partition:
        dists = [_np_block_probs(x[v, b], block) for x in (student, teacher)
                 for v in range(x.shape[0]) for b in range(batch)]
        p_bar = np.mean(dists, axis=0)
        p_bars.append(p_bar)
        entropy.append(np.log(len(block)) + sum(v * np.log(v) for v in p_bar if v > 0))
    for j in range(t_views):
        for b in range(batch):
            for block in partition:
                max_prob.append(_np_block_probs(teacher[j, b], block).max())
    lc, le = float(np.mean(consistency)), float(np.mean(entropy))
    return {
        "loss": lc + entropy_weight * le,
        "num_pairs": len(consistency) // (batch * len(partition)),
        "consistency": lc,
        "entropy": le,
        "agreement": float(np.mean(agree)),
        "cross_view_agreement": float(np.mean(cross_agree)),
        "mean_max_prob": float(np.mean(max_prob)),
        "mean_block_probs": np.array(p_bars),
    }


def _inputs(seed=0, s=4, t=2, b=3, k=6, block_size=3, scale=2.0):
    rng = np.random.default_rng(seed)
    student = (scale * rng.normal(size=(s, b, k))).astype(np.float32)
    teacher = (scale * rng.normal(size=(t, b, k))).astype(np.float32)
    partition = rng.permutation(k).reshape(k // block_size, block_size).astype(np.int32)
    return student, teacher, partition


# ---------------------------------------------------------------------------------------------
# random_partition.


def test_random_partition_is_a_permutation_cut_into_blocks():
    partition = random_partition(jax.random.key(3), 12, 4)
    assert partition.shape == (3, 4) and partition.dtype == jnp.int32
    np.testing.assert_array_equal(np.sort(np.asarray(partition).reshape(-1)), np.arange(12))


def test_random_partition_fixed_for_a_key_same_under_jit_and_changes_with_key():
    key = jax.random.key(7)
    first = random_partition(key, 64, 8)
    np.testing.assert_array_equal(first, random_partition(key, 64, 8))
    jitted = jax.jit(random_partition, static_argnums=(1, 2))(key, 64, 8)
    np.testing.assert_array_equal(first, jitted)
    assert not np.array_equal(first, random_partition(jax.random.key(8), 64, 8))


def test_random_partition_is_uniform():
    # Every prototype is equally likely in every slot: the first slot over 4,000 draws of K = 4.
    keys = jax.random.split(jax.random.key(0), 4000)
    firsts = jax.vmap(lambda k: random_partition(k, 4, 2)[0, 0])(keys)
    freq = np.bincount(np.asarray(firsts), minlength=4) / 4000
    np.testing.assert_allclose(freq, 0.25, atol=0.03)  # ~4.4 standard deviations


def test_random_partition_value_errors():
    with pytest.raises(ValueError, match="block_size=3.*num_prototypes=8"):
        random_partition(jax.random.key(0), 8, 3)
    with pytest.raises(ValueError, match="block_size"):
        random_partition(jax.random.key(0), 8, 0)
    with pytest.raises(ValueError, match="num_prototypes"):
        random_partition(jax.random.key(0), 8.0, 4)


# ---------------------------------------------------------------------------------------------
# The loss.


def test_carp_loss_matches_explicit_loops():
    student, teacher, partition = _inputs()
    ref = _np_carp(student, teacher, partition)
    assert ref["num_pairs"] == 2 * 4 - 2
    loss, aux = jax.jit(carp_loss)(student, teacher, partition)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    np.testing.assert_allclose(float(loss), ref["loss"], rtol=1e-5)
    assert set(aux) == set(ref) - {"loss", "num_pairs"}
    for name, value in aux.items():
        assert value.dtype == jnp.float32, name
        np.testing.assert_allclose(np.asarray(value), ref[name], rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def test_carp_loss_eight_student_views_and_entropy_weight():
    student, teacher, partition = _inputs(seed=1, s=8, t=2, b=2, k=8, block_size=4)
    ref = _np_carp(student, teacher, partition, entropy_weight=0.3)
    assert ref["num_pairs"] == 14
    loss, aux = jax.jit(lambda *a: carp_loss(*a, entropy_weight=0.3))(student, teacher, partition)
    np.testing.assert_allclose(float(loss), ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(float(aux["consistency"]), ref["consistency"], rtol=1e-5)


def test_uniform_block_distributions_give_zero_entropy_and_log_block_consistency():
    student, teacher, partition = _inputs(k=8, block_size=4)
    _, aux = jax.jit(carp_loss)(np.zeros_like(student), np.zeros_like(teacher), partition)
    np.testing.assert_allclose(float(aux["entropy"]), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(aux["consistency"]), np.log(4), rtol=1e-6)
    np.testing.assert_allclose(float(aux["mean_max_prob"]), 0.25, rtol=1e-6)


def test_identical_one_hot_views_give_zero_consistency_and_uniform_mean():
    # Sample b puts all its mass on prototype partition[n, b] of every block n, in every view, so
    # every pair agrees exactly and the mean over the batch is uniform within each block.
    k, block_size = 8, 4
    partition = np.asarray(random_partition(jax.random.key(1), k, block_size))
    logits = np.full((block_size, k), -1e4, np.float32)
    for b in range(block_size):
        logits[b, partition[:, b]] = 1e4
    student = np.stack([logits] * 4)
    teacher = np.stack([logits] * 2)
    loss, aux = jax.jit(carp_loss)(student, teacher, partition)
    np.testing.assert_allclose(float(aux["consistency"]), -np.log1p(-EPS), atol=1e-7)
    np.testing.assert_allclose(float(aux["entropy"]), 0.0, atol=1e-6)
    assert float(aux["agreement"]) == 1.0 and float(aux["cross_view_agreement"]) == 1.0
    np.testing.assert_allclose(float(loss), 0.0, atol=1e-6)


def test_disjoint_one_hot_views_hit_the_eps_clip_without_nan():
    # Teacher mass on one prototype, student on another: <p, q> = 0 is clipped to eps.
    student = np.full((3, 2, 4), -1e4, np.float32)
    teacher = np.full((2, 2, 4), -1e4, np.float32)
    student[..., 0] = 1e4
    teacher[..., 1] = 1e4
    partition = np.arange(4, dtype=np.int32).reshape(1, 4)
    (loss, aux), grad = jax.jit(jax.value_and_grad(
        lambda s: carp_loss(s, teacher, partition), has_aux=True
    ))(student)
    np.testing.assert_allclose(float(aux["consistency"]), -np.log(EPS), rtol=1e-6)
    chex.assert_tree_all_finite((loss, aux, grad))


def test_carp_check_grads_student():
    student, teacher, partition = _inputs(seed=2, s=3, t=2, b=2, k=4, block_size=2, scale=1.0)
    f = jax.jit(lambda s: carp_loss(s, teacher, partition, entropy_weight=0.7)[0])
    check_grads(f, (student,), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)


def test_carp_no_gradient_to_teacher():
    student, teacher, partition = _inputs(seed=3)
    grad = jax.jit(jax.grad(lambda t: carp_loss(student, t, partition)[0]))(teacher)
    chex.assert_trees_all_close(grad, np.zeros_like(teacher))


def test_carp_entropy_gradient_flows_through_the_student_only():
    # The uniformity term's gradient w.r.t. the student equals the numpy finite difference of the
    # reference entropy with the teacher held fixed.
    student, teacher, partition = _inputs(seed=4, s=2, t=1, b=2, k=4, block_size=2, scale=1.0)
    grad = jax.jit(jax.grad(lambda s: carp_loss(s, teacher, partition)[1]["entropy"]))(student)
    h = 1e-4
    idx = (1, 0, 2)
    up, down = student.astype(np.float64), student.astype(np.float64)
    up[idx] += h
    down[idx] -= h
    numeric = (_np_carp(up, teacher, partition)["entropy"]
               - _np_carp(down, teacher, partition)["entropy"]) / (2 * h)
    np.testing.assert_allclose(float(grad[idx]), numeric, rtol=1e-2, atol=1e-5)


def test_carp_numerics_extreme_zero_and_bfloat16_inputs():
    student, teacher, partition = _inputs(seed=5, k=8, block_size=4)
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda s, t: carp_loss(s, t, partition)[0]
    ))
    rng = np.random.default_rng(0)
    extreme_s = np.where(rng.random(student.shape) < 0.5, -1e4, 1e4).astype(np.float32)
    extreme_t = np.where(rng.random(teacher.shape) < 0.5, -1e4, 1e4).astype(np.float32)
    for s, t in [(extreme_s, extreme_t), (np.zeros_like(student), np.zeros_like(teacher))]:
        chex.assert_tree_all_finite(value_and_grad(s, t))
    s_bf, t_bf = jnp.asarray(student, jnp.bfloat16), jnp.asarray(teacher, jnp.bfloat16)
    loss_bf, aux_bf = jax.jit(carp_loss)(s_bf, t_bf, partition)
    loss_32, _ = jax.jit(carp_loss)(s_bf.astype(jnp.float32), t_bf.astype(jnp.float32), partition)
    assert loss_bf.dtype == jnp.float32 and aux_bf["entropy"].dtype == jnp.float32
    np.testing.assert_allclose(float(loss_bf), float(loss_32), rtol=1e-6)


def test_carp_accepts_traced_entropy_weight_and_partition_under_jit():
    student, teacher, partition = _inputs(seed=6)
    f = jax.jit(lambda w, key: carp_loss(student, teacher, random_partition(key, 6, 3),
                                          entropy_weight=w))
    loss, aux = f(jnp.float32(0.5), jax.random.key(2))
    np.testing.assert_allclose(
        float(loss), float(aux["consistency"] + 0.5 * aux["entropy"]), rtol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Global statistics under jax.shard_map.


def test_carp_loss_shard_map_equals_global_loss_aux_and_gradients():
    student, teacher, partition = _inputs(seed=7, s=4, t=2, b=16, k=8, block_size=4)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def loss_and_grad(s, t, part, axis_name=None):
        (loss, aux), grad = jax.value_and_grad(
            lambda s_: carp_loss(s_, t, part, entropy_weight=0.5, axis_name=axis_name),
            has_aux=True,
        )(s)
        return loss, aux, grad

    batch = P(None, "data")
    sharded = jax.shard_map(
        lambda s, t, part: loss_and_grad(s, t, part, axis_name="data"),
        mesh=mesh, in_specs=(batch, batch, P()), out_specs=(P(), P(), batch),
    )
    got = jax.jit(sharded)(student, teacher, partition)
    want = jax.jit(loss_and_grad)(student, teacher, partition)
    chex.assert_trees_all_close(got, want, atol=1e-6, rtol=1e-5)
    assert float(jnp.abs(want[2]).sum()) > 0  # the gradient comparison is not vacuous


# ---------------------------------------------------------------------------------------------
# Argument checks.


def _bad_cases():
    s, t, part = _inputs()
    return [
        (dict(student_logits=s[0]), "student_logits"),
        (dict(teacher_logits=t[None]), "teacher_logits"),
        (dict(partition=part.reshape(-1)), "partition"),
        (dict(teacher_logits=t[:, :2]), "teacher_logits"),
        (dict(student_logits=s[..., :4]), "student_logits"),
        (dict(student_logits=s[:1]), "student_logits"),  # S < T
        (dict(student_logits=s[:1], teacher_logits=t[:1]), "student_logits"),  # no pair
        (dict(teacher_logits=t[:0]), "teacher_logits"),
        (dict(partition=part[:1]), "partition"),
        (dict(partition=part.reshape(3, 2)[:, :1]), "partition"),
        (dict(partition=part.astype(np.float32)), "partition"),
        (dict(entropy_weight=-1.0), "entropy_weight"),
        (dict(mean_block_probs=np.full((3, 2), 0.5, np.float32)), "mean_block_probs"),
    ], dict(student_logits=s, teacher_logits=t, partition=part)


@pytest.mark.parametrize("case", range(len(_bad_cases()[0])))
def test_carp_loss_value_errors(case):
    cases, good = _bad_cases()
    override, name = cases[case]
    args = {**good, **override}
    arrays = [args.pop(k) for k in ("student_logits", "teacher_logits", "partition")]
    with pytest.raises(ValueError, match=name):
        carp_loss(*arrays, **args)


def test_carp_micro_batches_with_the_full_batch_mean_equal_the_full_batch():
    """4 micro-batches of one batch, one partition, the whole batch's p_bar as mean_block_probs:
    the mean of the losses and of their gradients equal the full-batch loss and gradient (exact
    linearisation of the uniformity term); without it the entropy term differs."""
    student, teacher, partition = _inputs(seed=4, s=4, t=2, b=8, k=12, block_size=4, scale=3.0)

    def full(x):
        return carp_loss(x, teacher, partition, entropy_weight=0.7)

    (want, want_aux), want_g = jax.value_and_grad(full, has_aux=True)(student)
    rows = np.arange(8).reshape(4, 2)
    p_bar = np.mean([carp_loss(student[:, r], teacher[:, r], partition)[1]["mean_block_probs"]
                     for r in rows], axis=0)
    np.testing.assert_allclose(p_bar, want_aux["mean_block_probs"], rtol=1e-6)

    def micro(x, r, mean):
        return carp_loss(x[:, r], teacher[:, r], partition, entropy_weight=0.7,
                         mean_block_probs=mean)[0]

    got = np.mean([micro(student, r, p_bar) for r in rows])
    got_g = sum(jax.grad(micro)(student, r, p_bar) for r in rows) / 4
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-9)
    naive = np.mean([micro(student, r, None) for r in rows])
    assert abs(naive - float(want)) > 1e-3
