"""``python -m jaxssl.eval --workdir DIR [--protocols knn,linear,fewshot,cluster,prototypes]``
(plus ``--compilation_cache_dir DIR`` / ``--no_compilation_cache``: :mod:`jaxssl.compile_cache`)."""

import sys

from jaxssl.compile_cache import setup_from_argv
from jaxssl.eval.cli import main

if __name__ == "__main__":
    sys.exit(main(setup_from_argv(sys.argv)[1:]))
