"""Command line: ``python -m jaxssl.train --config configs/<file>.py --workdir DIR``.

Any config field can be overridden with ml_collections syntax, e.g.
``--config.train.batch_size=256 --config.loss.koleo_weight=0.1``. Running the same command again
resumes from the newest checkpoint in the workdir.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl.cli_errors import USAGE_ERROR, error_line, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Orbax and JAX log every checkpoint operation at INFO; the progress bar says enough.
    logging.set_verbosity(logging.WARNING)
    from jaxssl.output_paths import PathError
    from jaxssl.train.loop import NonFiniteLossError, train

    try:
        train(_CONFIG.value, _WORKDIR.value)
    except (ValueError, FileNotFoundError, PathError, NonFiniteLossError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        sys.exit(USAGE_ERROR)


if __name__ == "__main__":
    # parse_flags: an unknown field or a non-numeric override is one line, not a traceback.
    app.run(main, flags_parser=parse_flags)
