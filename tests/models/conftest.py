"""Fixtures for the model tests.

jax 0.10's default partitionable threefry makes XLA:CPU compile every random-initialiser call
~4x slower (about 1.5 s of CPU each, measured here), which dominated these tests. The tests only
need *some* deterministic random initialisation, so each module runs with the classic threefry
lowering; the setting is restored when the module ends so other test directories are unaffected.
"""

import jax
import pytest


@pytest.fixture(scope="module", autouse=True)
def _fast_threefry_compile():
    with jax.threefry_partitionable(False):
        yield
