"""Test-session set-up shared by the unit tests and the doctests.

XLA reads XLA_FLAGS once, when jax first initialises its CPU backend, so the 8 fake CPU devices
used by every sharding test must be requested here, before any test module imports jax.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests (and the subprocesses they start) compile the same tiny train steps many times; XLA's
# persistent cache turns every repeat into a disk read.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"jaxssl-test-xla-cache-{os.getuid()}"),
)
# The CLIs' own cache set-up (jaxssl.compile_cache) must not write to the user's cache either.
os.environ["JAXSSL_COMPILATION_CACHE_DIR"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# The CLIs re-execute themselves once to add glibc's huge-page tunable (jaxssl.host_malloc);
# setting it here saves that second start in every test that runs a CLI in a subprocess.
from jaxssl.host_malloc import huge_page_env  # noqa: E402

os.environ.update(huge_page_env(dict(os.environ)) or {})

# grain's worker processes parse absl flags on start-up; under pytest nobody else does.
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()
