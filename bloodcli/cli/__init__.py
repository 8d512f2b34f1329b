"""Command line: parses options, calls :mod:`bloodcli.api`, prints results; no logic of its own.

Results go to stdout (tables on a terminal, one JSON object with ``--json``, CSV for
``predict``); logs, warnings and progress bars go to stderr. Exit codes are listed in
:mod:`bloodcli.errors`. One module per group of commands: :mod:`~bloodcli.cli.data` (info,
features, extract, cache), :mod:`~bloodcli.cli.learn` (train, predict, evaluate, compare) and
:mod:`~bloodcli.cli.segment` and :mod:`~bloodcli.cli.analyze`.
"""

from bloodcli.cli import analyze, data, learn, segment  # noqa: F401 - importing a command module registers its commands
from bloodcli.cli.app import app, handle_termination
from bloodcli.pipeline.parallel import keep_freed_memory, one_blas_thread


def main() -> None:
    """Console-script entry point."""
    handle_termination()
    one_blas_thread()  # before NumPy loads: the command's parallelism is --jobs (README, "Speed")
    keep_freed_memory()  # this process is bloodcli's own: image buffers are reused, not unmapped and faulted in again
    app()


__all__ = ["app", "main"]
