"""The ``medisam`` command: one typer app, one module per subcommand.

``main(argv) -> int`` runs in process (tests call it); user errors print one line
to stderr and return 2.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Sequence

import click
import typer

from medisam.errors import MedisamError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Segment Anything for medical images, volumes and videos.")

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


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="medisam", standalone_mode=False)
        return int(result or 0)
    except MedisamError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
