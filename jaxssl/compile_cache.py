"""JAX's persistent compilation cache for the command-line tools: start-up in seconds.

Compiling the train step (and the k-means, evaluation and export programs) takes most of a
run's start-up on a CPU. ``python -m jaxssl.train``, ``jaxssl.eval`` and ``jaxssl.export`` call
:func:`enable_compilation_cache` before compiling anything, so XLA writes every executable to a
per-user directory and the next run of the same config reads it back instead of compiling.

Where the cache lives, first match wins:

1. ``--no_compilation_cache`` (or ``JAXSSL_NO_COMPILATION_CACHE=1``): no persistent cache;
2. ``--compilation_cache_dir DIR`` (the flag);
3. ``$JAXSSL_COMPILATION_CACHE_DIR``;
4. ``$JAX_COMPILATION_CACHE_DIR``, when the user has already configured JAX's own cache: it is
   left alone (the test-suite points it at a temporary directory this way);
5. ``$XDG_CACHE_HOME/jaxssl/xla``, by default ``~/.cache/jaxssl/xla``.

Entries are keyed by the program, the compile options, the jax/jaxlib version and the device, so
a stale entry is never used; deleting the directory is always safe. A directory that cannot be
created (a read-only home) only disables the cache, with a warning.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import jax

from jaxssl.exit_codes import USAGE_ERROR

ENV_DIR = "JAXSSL_COMPILATION_CACHE_DIR"
ENV_OFF = "JAXSSL_NO_COMPILATION_CACHE"
DIR_FLAG, OFF_FLAG = "--compilation_cache_dir", "--no_compilation_cache"

# Cache every program that took at least this long to compile: the train step, init, k-means,
# k-NN and export programs all take longer, while the many tiny eager ops (a few ms each) would
# cost more as disk entries than they save. JAX's default (1 s) would skip programs of 0.2-1 s,
# of which a start-up compiles dozens.
MIN_COMPILE_TIME_S = 0.1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxssl/xla``, or ``~/.cache/jaxssl/xla`` when XDG_CACHE_HOME is unset.

    >>> import os
    >>> os.environ["XDG_CACHE_HOME"] = "/tmp/c"
    >>> str(default_cache_dir())
    '/tmp/c/jaxssl/xla'
    >>> del os.environ["XDG_CACHE_HOME"]
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "jaxssl" / "xla"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_cache_dir(flag_dir: str | None = None, disabled: bool = False) -> str | None:
    """The cache directory by the rules of the module docstring; ``None``: no cache, or JAX's
    own ``JAX_COMPILATION_CACHE_DIR`` setting, which stays in charge.

    >>> import os
    >>> os.environ[ENV_DIR] = "/tmp/mine"
    >>> resolve_cache_dir(), resolve_cache_dir("/tmp/flag"), resolve_cache_dir(disabled=True)
    ('/tmp/mine', '/tmp/flag', None)
    >>> del os.environ[ENV_DIR]
    """
    if disabled or _env_true(ENV_OFF):
        return None
    if flag_dir:
        return flag_dir
    if os.environ.get(ENV_DIR):
        return os.environ[ENV_DIR]
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return str(default_cache_dir())


def enable_compilation_cache(flag_dir: str | None = None, disabled: bool = False) -> str | None:
    """Points JAX's persistent compilation cache at :func:`resolve_cache_dir`'s directory.

    Call it before the first compilation (JAX reads the setting once). Returns the directory in
    use, or ``None`` when this call configured nothing.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> enable_compilation_cache(d) == d and jax.config.jax_compilation_cache_dir == d
    True
    >>> jax.config.update("jax_compilation_cache_dir", None)  # leave the doctest's JAX as it was
    """
    if disabled or _env_true(ENV_OFF):
        # Also overrides a JAX_COMPILATION_CACHE_DIR from the environment: "off" means off.
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = resolve_cache_dir(flag_dir)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        warnings.warn(f"compilation cache disabled: cannot create {path} ({e.strerror})",
                      stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return path


def pop_cache_flags(argv: list[str]) -> tuple[list[str], str | None, bool]:
    """Removes ``--compilation_cache_dir[=]DIR`` and ``--no_compilation_cache`` from ``argv``.

    Returns ``(the other arguments, the directory or None, whether the cache is switched off)``,
    so every CLI takes the two flags the same way, whatever parser it uses for the rest.

    >>> pop_cache_flags(["prog", "--workdir", "w", "--compilation_cache_dir=/c"])
    (['prog', '--workdir', 'w'], '/c', False)
    >>> pop_cache_flags(["prog", "--no_compilation_cache", "--compilation_cache_dir", "/c"])
    (['prog'], '/c', True)
    """
    rest: list[str] = []
    flag_dir, disabled = None, False
    args = iter(argv)
    for arg in args:
        if arg == OFF_FLAG:
            disabled = True
        elif arg == DIR_FLAG:
            flag_dir = next(args, None)
            if not flag_dir:
                print(f"error: {DIR_FLAG} needs a directory", file=sys.stderr)
                sys.exit(USAGE_ERROR)
        elif arg.startswith(DIR_FLAG + "="):
            flag_dir = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, flag_dir, disabled


def setup_from_argv(argv: list[str]) -> list[str]:
    """:func:`pop_cache_flags` then :func:`enable_compilation_cache`; returns the other arguments.

    >>> setup_from_argv(["prog", "--no_compilation_cache", "--x"])
    ['prog', '--x']
    >>> jax.config.update("jax_enable_compilation_cache", True)  # undo for the other doctests
    """
    rest, flag_dir, disabled = pop_cache_flags(argv)
    enable_compilation_cache(flag_dir, disabled)
    return rest
