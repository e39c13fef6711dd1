"""``python -m jaxssl.export --workdir DIR --format {msgpack,torch} [--which teacher|student]
[--step N] [--out PATH]``: writes the pretrained backbone and prints the file path.
``--compilation_cache_dir DIR`` / ``--no_compilation_cache``: :mod:`jaxssl.compile_cache`."""

from __future__ import annotations

from jaxssl.host_malloc import reexec_with_huge_pages

if __name__ == "__main__":
    # First, before the heavy imports below: re-executes once with glibc's huge-page tunable
    # for XLA's per-step scratch memory (jaxssl.host_malloc; JAXSSL_SYSTEM_MALLOC=1 opts out).
    reexec_with_huge_pages()

import argparse
import sys

from jaxssl.cli_errors import USAGE_ERROR, error_line
from jaxssl.compile_cache import setup_from_argv
from jaxssl.export import FORMATS, WHICH, export
from jaxssl.output_paths import PathError


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (kept separate so tests can inspect it)."""
    p = argparse.ArgumentParser(
        prog="python -m jaxssl.export",
        description="Export the backbone of a jaxssl checkpoint as Flax msgpack or as a "
        "PyTorch state dict with torchvision (ResNet) / timm (ViT) key names.",
    )
    p.add_argument("--workdir", required=True, help="training workdir (holds checkpoints/)")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--which", default="teacher", choices=WHICH,
                   help="teacher (EMA, the usual choice) or student weights")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--out", default=None,
                   help="output file (default: WORKDIR/export/<which>_backbone.{msgpack,pt})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the export; returns the process exit status: 2 on a user error (a bad argument,
    workdir or ``--out``, a missing optional dependency), 1 on another I/O error; the message is
    one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        path = export(args.workdir, args.fmt, args.which, args.out, args.step)
    except (ValueError, ImportError, PathError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as e:  # e.g. a full disk: the previous export, if any, is left intact
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(setup_from_argv(sys.argv)[1:]))
