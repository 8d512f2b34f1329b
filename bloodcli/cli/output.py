"""What the command line prints: results on stdout, logs, warnings and progress bars on stderr.

The ``-q``/``--debug`` flags live in the :class:`Output` of the running invocation, set by the
group's callback in a context variable, so the library's log records and every command reach it.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape


#: Width results are laid out in when stdout is a file or a pipe: wide enough that no table is cut.
UNBOUNDED_WIDTH = 100_000


def _stdout_console() -> Console:
    """Results console: a terminal's own width; in a file or a pipe, tables at their natural width."""
    console = Console(soft_wrap=True, emoji=False)  # emoji=False on both consoles: see Output
    if not console.is_terminal:
        console.width = UNBOUNDED_WIDTH
    return console


@dataclass
class Output:
    """Consoles and verbosity of one invocation."""

    quiet: bool = False
    debug: bool = False
    stdout: Console = field(default_factory=lambda: _stdout_console())
    # emoji=False: rich would turn ":smile:" in a file or class name into an emoji (escape() leaves those as they are)
    stderr: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True, emoji=False))

    def log(self, message: str) -> None:
        """A status line on stderr (silenced by --quiet)."""
        if not self.quiet:
            self.stderr.print(message, highlight=False, markup=False)

    def warn(self, message: str, loud: bool = False) -> None:
        """A warning on stderr (never silenced)."""
        style = "bold yellow" if loud else "yellow"
        self.stderr.print(f"[{style}]warning:[/] {escape(message)}", highlight=False)

    def error(self, message: str, internal: bool = False) -> None:
        self.stderr.print(f"[bold red]{'internal error' if internal else 'error'}:[/] {escape(message)}", highlight=False)

    def print(self, renderable) -> None:
        """A result on stdout (tables, sentences)."""
        self.stdout.print(renderable, highlight=False, markup=False)

    def skipped(self, failures) -> None:
        """The files a run skipped, one line each."""
        if failures:
            self.stderr.print(f"[yellow]skipped {len(failures)} file(s):[/]")
            for path, reason in failures:
                self.stderr.print(f"  {path}: {reason}", highlight=False, markup=False)

    @contextmanager
    def progress(self, description: str):
        """A progress callback drawing a bar on stderr, only when stderr is a terminal."""
        if self.quiet or not sys.stderr.isatty():
            yield None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.stderr, transient=True) as bar:
            task = bar.add_task(description, total=None)
            yield lambda step, total: bar.update(task, advance=step, total=total)


_current: ContextVar[Output | None] = ContextVar("bloodcli_output", default=None)


def begin(out: Output) -> None:
    """Make ``out`` the output of the invocation that starts now."""
    _current.set(out)


def output() -> Output:
    """The :class:`Output` of the running invocation (a default one outside a command)."""
    return _current.get() or Output()


class LibraryLogHandler(logging.Handler):
    """Library log records (e.g. the device a CNN runs on) as status lines or warnings of the running invocation."""

    def emit(self, record: logging.LogRecord) -> None:
        out = output()
        (out.warn if record.levelno >= logging.WARNING else out.log)(record.getMessage())


def route_library_logs() -> None:
    """Library log records to the running invocation's stderr; debug records (e.g. TensorFlow's native logs) with --debug."""
    logger = logging.getLogger("bloodcli")
    logger.setLevel(logging.DEBUG if output().debug else logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, LibraryLogHandler) for h in logger.handlers):
        logger.addHandler(LibraryLogHandler())


def to_json(data) -> str:
    from bloodcli.report.tables import to_json as dumps

    return dumps(data)


def report_table(table) -> None:
    """Rows, columns, cache use, augmented rows and skipped files of a feature table, on stderr."""
    out = output()
    out.log(f"{len(table)} samples, {table.values.shape[1]} features ({table.n_computed} computed, {table.n_cached} from cache)")
    if table.augmented is not None:
        out.log(f"added {len(table.augmented)} augmented training rows: {table.augmented.augmentation.describe()}")
    out.skipped(table.failures)
