"""The ``medisam`` command: one typer app, one module per subcommand.

``main(argv) -> int`` runs in process (tests call it). Every mistake a user can make
prints one line ``error: ...`` to stderr and returns 2 (see docs/cli-errors.md):
usage errors of the parser typer really uses (typer >= 0.2x vendors click as
``typer._click``; older ones use the ``click`` package) and :class:`MedisamError`
raised by the commands. Set ``MEDISAM_DEBUG=1`` for the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from typing import Sequence

import typer
import typer.main

from medisam import __version__
from medisam.cli.common import HELP_STYLE
from medisam.errors import MedisamError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Segment Anything for medical images, volumes "
                  "and videos.", **HELP_STYLE)

#: Subcommand modules; each defines ``register(app)``.
COMMAND_MODULES = [
    "medisam.cli.segment_cmd",
    "medisam.cli.demo_cmd",
    "medisam.cli.info_cmd",
    "medisam.cli.models_cmd",
    "medisam.cli.finetune_cmd",
    "medisam.cli.samaug_cmd",
    "medisam.cli.autosam_cmd",
    "medisam.cli.export_cmd",
    "medisam.cli.bench_cmd",
    "medisam.cli.propagate_cmd",
    "medisam.cli.serve_cmd",
    "medisam.cli.app_cmd",
]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"medisam {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details and show "
                                       "third-party warnings."),
          version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        warnings.resetwarnings()


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _parser_errors() -> tuple[type, type, type]:
    """(ClickException, Exit, Abort) as raised by the click that typer actually runs on."""
    click = getattr(typer.main, "_click", None)
    if click is None:  # typer < 0.2x: the separate click package
        import click
    return click.ClickException, typer.Exit, typer.Abort


def _usage_line(exc) -> str:
    """One line for a parser error, naming the command and where to read its help."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "medisam"
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a group called without command
        names = ", ".join(ctx.command.list_commands(ctx))
        return f"error: `{path}` needs a command: {names} (see `{path} --help`)"
    message = " ".join(exc.format_message().split())
    message = message[:1].lower() + message[1:]
    return f"error: {message.rstrip('.')} (see `{path} --help`)"


def _quiet_third_party_warnings() -> None:
    """Hide warnings raised by other packages (timm's FutureWarnings...) unless asked for."""
    if sys.warnoptions:  # the user chose with -W / PYTHONWARNINGS
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"medisam(\.|$)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    click_error, exit_class, abort_class = _parser_errors()
    debug = bool(os.environ.get("MEDISAM_DEBUG"))
    with warnings.catch_warnings():
        _quiet_third_party_warnings()
        try:
            result = typer.main.get_command(app).main(args=args, prog_name="medisam", standalone_mode=False)
            return int(result or 0)
        except MedisamError as exc:
            if debug:
                raise
            from medisam.cli.checks import cli_message

            typer.echo(f"error: {cli_message(str(exc))}", err=True)
            return 2
        except exit_class as exc:
            return int(exc.exit_code)
        except click_error as exc:
            if debug:
                raise
            typer.echo(_usage_line(exc), err=True)
            return 2
        except abort_class:
            typer.echo("aborted", err=True)
            return 1
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            return 130
        except OSError as exc:  # disk full, permission denied...: the system's words, no traceback
            if debug:
                raise
            typer.echo(f"error: {exc}", err=True)
            return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
