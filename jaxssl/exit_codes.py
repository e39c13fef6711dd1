"""The exit statuses of jaxssl's command lines, in one place.

``python -m jaxssl.train``, ``python -m jaxssl.eval`` and ``python -m jaxssl.export`` exit with
these codes, and the ``launch/`` scripts re-run the trainer on :data:`PREEMPTED` (``launch/_lib.sh``
repeats the value as ``EXIT_PREEMPTED``; a test checks that both agree). A wrapper or scheduler
can tell "resume needed" from "done" and from "fix something first":

======  ====================  ===============================================================
code    name                  meaning
======  ====================  ===============================================================
0       ``OK``                finished (training ran to its last step; eval/export wrote)
1       (Python's own)        an unexpected crash (a traceback follows); export also
                              uses it for an I/O error such as a full disk
2       ``USAGE_ERROR``       a bad flag, config value, path, input file or checkpoint:
                              the one-line message names it (argparse's status)
65      ``NON_FINITE``        training stopped on a NaN/Inf (``EX_DATAERR``); the message names
                              the newest checkpoint that is finite; change ``optim.*`` and rerun
73      ``WORKDIR_LOCKED``    another trainer holds the workdir (``EX_CANTCREAT``); the message
                              names its pid, host and start time
75      ``PREEMPTED``         stopped by SIGTERM/SIGINT after saving a checkpoint
                              (``EX_TEMPFAIL``, what schedulers retry on): run the same command
                              again to resume
======  ====================  ===============================================================

>>> PREEMPTED
75
"""

from __future__ import annotations

OK = 0
USAGE_ERROR = 2  # argparse's status for bad arguments
NON_FINITE = 65  # sysexits EX_DATAERR
WORKDIR_LOCKED = 73  # sysexits EX_CANTCREAT
PREEMPTED = 75  # sysexits EX_TEMPFAIL: SLURM, launch/ scripts and wrappers re-run on it
