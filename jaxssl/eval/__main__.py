"""``python -m jaxssl.eval --workdir DIR [--protocols knn,linear,fewshot,cluster,prototypes]``
(plus ``--compilation_cache_dir DIR`` / ``--no_compilation_cache``: :mod:`jaxssl.compile_cache`)."""

from jaxssl.host_malloc import reexec_with_huge_pages

if __name__ == "__main__":
    # First, before the heavy imports below: re-executes once with glibc's huge-page tunable
    # for XLA's per-step scratch memory (jaxssl.host_malloc; JAXSSL_SYSTEM_MALLOC=1 opts out).
    reexec_with_huge_pages()

import sys

from jaxssl.compile_cache import setup_from_argv
from jaxssl.eval.cli import main

if __name__ == "__main__":
    sys.exit(main(setup_from_argv(sys.argv)[1:]))
