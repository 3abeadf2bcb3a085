"""``medisam models``: every registered model and whether its weights are present."""

from __future__ import annotations

import typer

from medisam.cli.progress import step


def register(app: typer.Typer) -> None:
    app.command("models")(models)


def models(backends: bool = typer.Option(False, "--backends",
                                         help="Also list inference backends, precisions and the auto choice.")) -> None:
    """List models, their family, input size and where their weights are (or are expected)."""
    from rich.console import Console
    from rich.table import Table

    with step("loading the model registry"):
        from medisam.models import MODELS, find_checkpoint
        from medisam.models.registry import weights_dir
    if backends:
        from medisam.models.backends import backend_table

        with step("measuring the backends"):
            table = backend_table()
        Console(width=200).print(table)

    table = Table(title="medisam models")
    for column in ("name", "family", "input", "weights", "description"):
        table.add_column(column)
    for spec in MODELS.values():
        path = find_checkpoint(spec)
        if spec.is_test_model:
            status = "random (test model)"
        elif path is not None:
            status = f"present: {path}"
        else:
            status = f"missing: put {spec.checkpoint_file} in {weights_dir()} or use --checkpoint"
        table.add_row(spec.name, spec.family, str(spec.input_size), status, spec.description)
    Console(width=200).print(table)
