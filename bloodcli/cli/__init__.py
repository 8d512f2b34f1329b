"""Command line: parses options, calls :mod:`bloodcli.api`, prints results; no logic of its own.

Results go to stdout (tables on a terminal, one JSON object with ``--json``, CSV for
``predict``); logs, warnings and progress bars go to stderr. Exit codes are listed in
:mod:`bloodcli.errors`. One module per group of commands: :mod:`~bloodcli.cli.data` (info,
features, extract, cache), :mod:`~bloodcli.cli.learn` (train, predict, evaluate, compare) and
:mod:`~bloodcli.cli.segment` and :mod:`~bloodcli.cli.analyze`.
"""

import gc

from bloodcli.cli import analyze, data, learn, segment  # noqa: F401 - importing a command module registers its commands
from bloodcli.cli.app import app, handle_termination
from bloodcli.pipeline.parallel import keep_freed_memory, one_blas_thread


def main() -> None:
    """Console-script entry point."""
    handle_termination()
    one_blas_thread()  # before NumPy loads: the command's parallelism is --jobs (README, "Speed")
    keep_freed_memory()  # this process is bloodcli's own: image buffers are reused, not unmapped and faulted in again
    try:
        app()
    finally:
        # The interpreter's last collections would walk every object the command made, 25-30 ms on 3,200 images
        # for memory the process is about to hand back: objects are still freed, only not searched for cycles.
        gc.freeze()


__all__ = ["app", "main"]
