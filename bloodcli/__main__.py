"""``python -m bloodcli``: the same command line as ``bloodcli``."""

from bloodcli.cli import main

main()
