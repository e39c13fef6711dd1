"""``python -m jaxssl.eval --workdir DIR [--protocols knn,linear,fewshot,cluster,prototypes]``."""

import sys

from jaxssl.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
