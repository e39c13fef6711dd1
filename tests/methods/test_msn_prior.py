"""loss.prior: a name or a .npy file of K weights, validated up front with errors naming the field
and the file."""

import re

import numpy as np
import pytest

from jaxssl.losses.msn import power_law_prior, uniform_prior
from jaxssl.methods.prior import load_prior_file, make_prior
from jaxssl.train.recipes import tiny
from jaxssl.train.validate import validate_config

K = 64  # tiny("msn").head.num_prototypes


def msn_config(prior):
    c = tiny("msn")
    c.loss.prior = str(prior)
    return c


def test_named_priors():
    np.testing.assert_array_equal(make_prior(msn_config("uniform")), uniform_prior(K))
    c = msn_config("power_law")
    c.loss.prior_exponent = 0.5
    np.testing.assert_array_equal(make_prior(c), power_law_prior(K, exponent=0.5))


def test_file_prior_is_normalised_and_used_by_the_method(tmp_path):
    """A second formulation: the unnormalised power law k^-0.25 (times 7, as int-free float32)
    saved to a file gives PMSN's power-law prior; a class-count histogram (integers) is divided by
    its total."""
    path = tmp_path / "power.npy"
    np.save(path, (7.0 * np.arange(1, K + 1) ** -0.25).astype(np.float32))
    c = msn_config(path)
    validate_config(c, num_devices=8, num_processes=1)
    np.testing.assert_allclose(make_prior(c), power_law_prior(K, exponent=0.25), rtol=1e-6)

    counts = np.random.default_rng(0).integers(0, 50, K)
    counts[0] = 0  # a class with no images: a zero weight is allowed
    np.save(tmp_path / "counts.npy", counts)
    c = msn_config(tmp_path / "counts.npy")
    validate_config(c, num_devices=8, num_processes=1)
    from jaxssl.methods.registry import build_method

    prior = np.asarray(build_method(c).prior)
    assert prior.dtype == np.float32
    np.testing.assert_allclose(prior, counts / counts.sum(), rtol=1e-6)
    np.testing.assert_allclose(prior.sum(), 1.0, rtol=1e-6)


BAD_FILES = {
    "missing": (None, r"does not exist"),
    "garbage": (b"not a numpy file", r"cannot be read as a \.npy array"),
    "pickled": (np.array([{"a": 1}] * K, dtype=object), r"cannot be read as a \.npy array"),
    "matrix": (np.ones((K, 2)), r"must hold a 1-D array of K weights, got shape \(64, 2\)"),
    "short": (np.ones(K - 1), r"has 63 weights; config\.head\.num_prototypes is 64"),
    "text": (np.array(["a"] * K), r"must hold real numbers, got dtype <U1"),
    "complex": (np.ones(K, np.complex64), r"must hold real numbers, got dtype complex64"),
    "nan": (np.r_[np.ones(K - 1), np.nan], r"has 1 non-finite weight\(s\) \(NaN/Inf\), first at "
                                           r"index 63"),
    "inf": (np.r_[np.inf, np.ones(K - 1)], r"has 1 non-finite weight\(s\) \(NaN/Inf\), first at "
                                           r"index 0"),
    "negative": (np.r_[np.ones(K - 2), -0.5, 1.0], r"has negative weights \(minimum -0\.5 at index "
                                                    r"62\); weights must be >= 0"),
    "zeros": (np.zeros(K), r"sums to 0; at least one weight must be positive"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_prior_files_fail_validation_naming_field_and_file(tmp_path, name):
    content, problem = BAD_FILES[name]
    path = tmp_path / f"{name}.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content, allow_pickle=True)
    match = rf"^config\.loss\.prior: prior file '{re.escape(str(path))}' {problem}"
    with pytest.raises(ValueError, match=match):
        validate_config(msn_config(path), num_devices=8, num_processes=1)
    with pytest.raises(ValueError, match=match):  # the method's own load says the same
        load_prior_file(str(path), K)


def test_unknown_prior_name_is_named():
    with pytest.raises(ValueError, match=r"config\.loss\.prior: must be 'uniform', "
                       r"'power_law' or a path to a \.npy file of K = 64 weights, got 'zipf'"):
        validate_config(msn_config("zipf"), num_devices=8, num_processes=1)
