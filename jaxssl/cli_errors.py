"""One-line error messages for the command lines (``jaxssl.train``, ``jaxssl.eval``,
``jaxssl.export``).

A user error (a bad flag, an unknown config field, a value that is not a number, an unusable
path, a malformed input file) is reported as ``error: <what and where>`` on one line of stderr
with exit status 2, like argparse, instead of a traceback. Errors that are bugs keep their
traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from absl import flags

from jaxssl.exit_codes import USAGE_ERROR  # noqa: F401 (2, as argparse; every code is there)


def error_line(err: BaseException) -> str:
    """The exception as one line: an ``OSError`` as ``<path>: <reason>``, any other message with
    its line breaks and runs of spaces collapsed.

    >>> error_line(IsADirectoryError(21, "Is a directory", "/tmp/out"))
    '/tmp/out: Is a directory'
    >>> error_line(ValueError("two\\n   lines"))
    'two lines'
    """
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


def exit_with(message: str, status: int = USAGE_ERROR) -> NoReturn:
    """Prints ``error: message`` (one line) to stderr and exits with ``status``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(status)


def _unknown_field(err: Exception, argv: Sequence[str]) -> str | None:
    """The message for an override of a config field that does not exist, or None when ``err``
    did not come from one (then it is a bug elsewhere and keeps its traceback).

    ml_collections raises ``AttributeError("'lrr'\\nDid you mean \\"lr\\" instead of ...")``
    from inside flag parsing, without saying which flag.
    """
    inner: object = err
    while isinstance(inner, BaseException) and inner.args:  # AttributeError(KeyError(str))
        inner = inner.args[0]
    text = str(inner)
    lookup = re.search(r"Attempting to lookup: ([\w.]+)", text)  # a field below a number
    if lookup is not None:
        for arg in argv:
            if arg.split("=", 1)[0] == f"--config.{lookup.group(1)}":
                return f"{arg}: {' '.join(text.split())}"
    match = re.match(r"\s*'(\w+)'", text)
    if match is None:
        return None
    key = match.group(1)
    hint = re.search(r'Did you mean "(\w+)"', text)
    for arg in argv:
        parts = arg.split("=", 1)[0][2:].split(".")  # ["config", "optim", "lrr"]
        if parts[0] == "config" and key in parts[1:]:
            parent = ".".join(parts[:parts.index(key, 1)])
            suggestion = f" (did you mean {hint.group(1)!r}?)" if hint else ""
            return f"{arg}: {parent} has no field {key!r}{suggestion}."
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """``absl.app.run``'s ``flags_parser`` with one-line errors (exit status 2).

    Covers absl's own flag errors (an unknown flag, ``--config.optim.lr=abc``), overrides of
    config fields that do not exist (``--config.optim.lrr=1``) and a ``--config`` file that
    cannot be loaded; returns the arguments left after the flags.
    """
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as err:
        exit_with(error_line(err))
    except (AttributeError, KeyError) as err:
        message = _unknown_field(err, argv)
        if message is None:
            raise
        exit_with(message)
    if "config" in flags.FLAGS and flags.FLAGS["config"].present:
        try:
            # ml_collections loads lazily and defers a load error to the first access.
            flags.FLAGS["config"].value.keys()
        except OSError as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            source = getattr(flags.FLAGS["config"], "config_filename", None)
            exit_with(f"--config {source}: cannot load the config file ({lines[-1]}).")
    return rest
