"""The ``bloodcli`` command group: global flags, today's option spellings kept as hidden aliases, exit codes.

Errors from the library become one line on stderr and the exit code of their class
(:mod:`bloodcli.errors`); an OS error names its file (exit 6 when storage refused a write, else 3);
anything else is an internal error (exit 1), with the traceback under ``--debug``. Ctrl-C exits
130 and SIGTERM 143, each after the same clean-up.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import sys
import traceback
from types import ModuleType
from typing import Annotated

import typer
from typer.core import TyperGroup

from bloodcli import __version__
from bloodcli.cli.output import Output, begin, output, route_library_logs
from bloodcli.errors import BloodcliError, InputDataError, OutputWriteError
from bloodcli.io.files import STORAGE_ERRORS


def lazy_module(name: str) -> ModuleType:
    """Module ``name``, executed on its first attribute access.

    Command modules name :mod:`bloodcli.api` when they are imported, but only a command that runs
    loads it (and NumPy, OpenCV and the extractors with it): ``--help`` never does.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)  # ``import bloodcli.api`` elsewhere then finds it as usual
    spec.loader.exec_module(module)
    return module


#: Flags of the whole program, accepted before or after the subcommand.
GLOBAL_FLAGS = ("-q", "--quiet", "--debug")

#: Earlier spellings, still accepted but not shown: command -> alias -> option (a ``NAME=`` target
#: turns ``--alias VALUE`` into ``-P NAME=VALUE``).
ALIASES: dict[str, dict[str, str]] = {
    "train": {"--cv": "--folds"},
    "compare": {"--models": "--model", "--feature-sets": "--features", "-s": "--features"},
    "segment": {
        "-o": "--out-dir", "-m": "--method", "--nucleus-sat": "nucleus_sat_min=", "--cytoplasm-sat": "cytoplasm_sat_min=",
        "--wbc-nucleus-area": "wbc_nucleus_min_area=", "--platelet-area": "platelet_min_area=",
        "--rbc-contrast": "rbc_contrast=", "--rbc-area": "rbc_min_area=", "--peak-distance": "peak_min_distance=",
    },
}  # fmt: skip


def rewrite_arguments(args: list[str]) -> list[str]:
    """Global flags moved before the subcommand, and its hidden aliases replaced by today's options."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    command = next((a for a in rest if not a.startswith("-")), None)
    return flags + _replace_aliases(rest, ALIASES.get(command, {})) + args[end:]


def _replace_aliases(args: list[str], aliases: dict[str, str]) -> list[str]:
    out, items = [], iter(args)
    for arg in items:
        name, equals, inline = arg.partition("=")
        target = aliases.get(name)
        if target is None:
            out.append(arg)
        elif target.endswith("="):  # a segmentation parameter: --alias VALUE -> -P NAME=VALUE
            out += ["--param", target + (inline if equals else next(items, ""))]
        else:
            out.append(target + equals + inline)
    return out


class BloodcliGroup(TyperGroup):
    """Typer's group, reading the command line through :func:`rewrite_arguments` first."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, rewrite_arguments(list(args)))


app = typer.Typer(
    name="bloodcli", cls=BloodcliGroup, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Classify blood cells in microscope images: segmentation, features, classifiers and honest metrics.",
)  # fmt: skip
cache_app = typer.Typer(help="Inspect or clean the feature cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        print(f"bloodcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors; no logs.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    begin(Output(quiet=quiet, debug=debug))
    route_library_logs()


def build_lab_tables_ahead() -> None:
    """Have OpenCV's L*a*b* tables built on another core while the command loads its modules and inputs.

    For commands that convert every image to L*a*b* (:mod:`bloodcli.imaging.cielab`); called once their options
    are known to be valid.
    """
    from bloodcli.imaging.cielab import build_tables_ahead

    build_tables_ahead()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit raises nothing more."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in tests)
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs (workers stopped, temporary files removed)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def handle_termination() -> None:
    """Treat SIGTERM like Ctrl-C (message, clean-up, exit 143) in a process that runs the command line."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def handle_errors(command):
    """Turn library errors into one line on stderr and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        out = output()
        try:
            return command(*args, **kwargs)
        except BloodcliError as exc:
            if out.debug:
                traceback.print_exc()
            out.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except Terminated:
            out.stderr.print("terminated")
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            out.stderr.print("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # the reader went away (`bloodcli predict ... | head`): stop quietly, as SIGPIPE would
            _silence_stdout()
            raise typer.Exit(141) from None
        except OSError as exc:  # a file the library did not wrap: still one line naming it
            if out.debug:
                traceback.print_exc()
            out.error(f"{exc.filename or 'input/output'}: {exc.strerror or exc}")
            raise typer.Exit(OutputWriteError.exit_code if exc.errno in STORAGE_ERRORS else InputDataError.exit_code) from None
        except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            if out.debug:
                traceback.print_exc()
            out.error(f"{type(exc).__name__}: {exc} (run with --debug for details)", internal=True)
            raise typer.Exit(1) from None

    return wrapper
