"""Command line: ``python -m jaxssl.train --config configs/<file>.py --workdir DIR``.

Any config field can be overridden with ml_collections syntax, e.g.
``--config.train.batch_size=256 --config.loss.koleo_weight=0.1``. Running the same command again
resumes from the newest checkpoint in the workdir. Compiled programs are cached on disk
(``--compilation_cache_dir DIR``, ``--no_compilation_cache``: :mod:`jaxssl.compile_cache`), and
XLA's per-step scratch memory is mapped with huge pages (:mod:`jaxssl.host_malloc`). Exit
statuses are listed in
:mod:`jaxssl.exit_codes` (75: preempted after saving, run again to resume).

The entry point is the one place that sees both the train and the eval layers: it passes the
online k-NN probe and the final evaluation (:mod:`jaxssl.eval.final`) to the trainer as its
``on_log`` / ``on_end`` callbacks.
"""

from __future__ import annotations

from jaxssl.host_malloc import reexec_with_huge_pages

if __name__ == "__main__":
    # First, before the heavy imports below: re-executes once with glibc's huge-page tunable
    # for XLA's per-step scratch memory (jaxssl.host_malloc; JAXSSL_SYSTEM_MALLOC=1 opts out).
    reexec_with_huge_pages()

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl import exit_codes
from jaxssl.cli_errors import error_line, exit_with, parse_flags
from jaxssl.compile_cache import setup_from_argv
from jaxssl.eval.final import final_evaluation, online_knn_probe
from jaxssl.output_paths import PathError
from jaxssl.train.loop import NonFiniteLossError, train
from jaxssl.train.workdir_lock import WorkdirLockedError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Orbax and JAX log every checkpoint operation at INFO; the progress bar says enough.
    logging.set_verbosity(logging.WARNING)
    try:
        summary = train(_CONFIG.value, _WORKDIR.value, on_log=online_knn_probe,
                        on_end=final_evaluation)
    except WorkdirLockedError as e:
        exit_with(error_line(e), exit_codes.WORKDIR_LOCKED)
    except NonFiniteLossError as e:
        exit_with(error_line(e), exit_codes.NON_FINITE)
    except (ValueError, FileNotFoundError, PathError) as e:
        exit_with(error_line(e), exit_codes.USAGE_ERROR)
    if summary.get("preempted"):
        sys.exit(exit_codes.PREEMPTED)


if __name__ == "__main__":
    # The persistent compilation cache is set up before anything compiles (jaxssl.compile_cache).
    sys.argv = setup_from_argv(sys.argv)
    # parse_flags: an unknown field or a non-numeric override is one line, not a traceback.
    app.run(main, flags_parser=parse_flags)
