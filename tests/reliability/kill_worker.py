"""One trainer process that SIGKILLs itself at a chosen point (run by test_kill9.py).

Usage: python kill_worker.py WORKDIR POINT, where POINT is
  after_row:N  right after metrics row N is written (mid-run, past the newest checkpoint)
  commit:N     when orbax is about to rename checkpoint N's finished temporary directory into
               place (a save in progress: the temporary directory exists, the step does not)
It trains ``reliability_helpers.run_config()`` and never returns normally.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    workdir, point = sys.argv[1:3]
    kind, at = point.split(":")
    from reliability_helpers import run_config

    from jaxssl.train import metrics_log
    from jaxssl.train.loop import train

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "after_row":
        write = metrics_log.MetricsLogger.write

        def write_then_die(self, step, metrics):
            write(self, step, metrics)
            if step == int(at):
                die()

        metrics_log.MetricsLogger.write = write_then_die
    elif kind == "commit":
        from orbax.checkpoint._src.path import async_path

        rename = async_path.rename

        async def die_before_rename(src, dst):
            if os.path.basename(str(dst)) == at:
                die()
            return await rename(src, dst)

        async_path.rename = die_before_rename
    else:
        raise SystemExit(f"unknown point {point}")
    train(run_config(), workdir)
    raise SystemExit(f"{point} was never reached")


if __name__ == "__main__":
    main()
