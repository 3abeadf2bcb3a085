"""``medisam bench``: benchmark models x prompt strategies on datasets -> CSV, tables, plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from medisam.cli import checks, common
from medisam.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def load_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON benchmark configuration (see docs/benchmark.md)."""
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:  # an image or archive given as --config printed a traceback
        raise InputError(f"{path}: cannot parse config (not a text file; give a YAML or JSON file)") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            import json

            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - yaml/json errors have many types
        raise InputError(f"{path}: cannot parse config ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: config must be a mapping")
    return data


def _split(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


#: the library's names of the settings (EvalSettings, BenchConfig) -> the flag, with the config file's key
SETTING_FLAGS = {"seed": "--seed (seed)", "workers": "--workers (workers)",
                 "tolerance_mm": "--nsd-tolerance (nsd_tolerance_mm)"}


def bench(
    data: Optional[List[Path]] = typer.Argument(None, help="Dataset folders (images/+masks/, imagesTr/+labelsTr/, "
                                                           "*.npz); the folder name is the dataset name."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (results.csv, errors.csv, report)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma-separated models (name or "
                                                                   "name@checkpoint); default litemedsam."),
    prompts: Optional[str] = typer.Option(None, "--prompts", "-p", help="Comma-separated strategies (default box): "
                                          "2D box, box-jitterP (P % of the box, e.g. box-jitter10), point, point-box, "
                                          "pointsN, pointsNnegM, clicksN, box-clicksN, box-walkerN, "
                                          "everything[S][-points|-boxes][-single][-stabF][-iouF] (e.g. "
                                          "everything8-stab0.6); 3D box3d, keyslice, recist, cvpr25, "
                                          "cvpr25-box3d[-ref|-slice]. "
                                          "docs/benchmark.md lists them all."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML/JSON config (datasets with per-dataset "
                                                                       "settings, models, prompts, ...)."),
    max_cases: Optional[int] = typer.Option(None, "--max-cases", help="First N cases (by id) of each dataset."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the prompt simulation (default 0)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Parallel workers (processes / Ray actors)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="Where workers run: local (processes, "
                                           "default) or ray."),
    channel: Optional[int] = common.ChannelOpt,
    no_guides: bool = typer.Option(False, "--no-guides", help="3D clicks (cvpr25*) see only the channel the model "
                                   "reads, not a multi-channel case's other channels."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Modality code for datasets that do not say "
                                                                    "(CT, MR, US, ES, OP, SM, XR...)."),
    targets: Optional[str] = typer.Option(None, "--targets", help="label (default), component or instance."),
    min_area: Optional[int] = typer.Option(None, "--min-area", help="Skip targets smaller than this (pixels)."),
    max_targets: Optional[int] = typer.Option(None, "--max-targets", help="Keep the N largest targets per case."),
    tolerance: Optional[float] = typer.Option(None, "--nsd-tolerance", help="NSD tolerance in mm (default 2); "
                                              "the cvpr25 strategies keep the protocol's 2 mm."),
    window: Optional[str] = common.WindowOpt,
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N, mps or auto."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUTDIR/results.csv, skipping finished rows."),
    force: bool = common.ForceOpt,
    report_only: bool = typer.Option(False, "--report-only", help="Only rebuild the report from results.csv."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write tables and plots."),
) -> None:
    """Benchmark models x prompt strategies; one CSV row per case x target x model x strategy (x click)."""
    from medisam.bench.datasets import TARGET_MODES, DatasetOptions
    from medisam.bench.evaluate import EvalSettings
    from medisam.bench.runner import BenchConfig, DatasetSpec, run_benchmark

    if executor is not None and executor not in ("local", "ray"):
        raise InputError(f"--executor must be local or ray, got {executor!r}")
    checks.paths_apart(data or [], [("-o", output)])
    if report_only:
        from medisam.bench.report import write_report

        files = write_report(output)
        typer.echo(f"wrote {', '.join(str(f) for f in files)}")
        return

    cfg = load_config_file(config) if config is not None else {}
    if "backend" in cfg:  # the old spelling of the executor; --backend means the model backend elsewhere
        raise InputError(f"{config}: the key 'backend' is now 'executor' (local or ray)")
    root = Path(os.environ.get("MEDISAM_DATA") or (config.parent / cfg["data_root"] if "data_root" in cfg
                                                  else Path.cwd()))
    cli_opts = DatasetOptions(modality=modality, targets=targets, min_area=min_area, max_targets=max_targets,
                              channel=channel, guides=False if no_guides else None)
    if targets is not None and targets not in TARGET_MODES:
        raise InputError(f"--targets must be label, component or instance, got {targets!r}")
    specs: list[DatasetSpec] = []
    if not isinstance(cfg.get("datasets", []), list):
        raise InputError(f"{config}: 'datasets' must be a list of dataset paths or mappings")
    for entry in cfg.get("datasets", []):
        entry = {"path": entry} if isinstance(entry, str) else dict(entry)
        if "path" not in entry:
            raise InputError(f"{config}: every dataset needs a path")
        opts = DatasetOptions.from_dict(entry).merged(cli_opts)
        specs.append(DatasetSpec(str(root / os.path.expandvars(entry["path"])), entry.get("name"), opts,
                                 entry.get("max_cases") if max_cases is None else None))  # the flag wins
    specs += [DatasetSpec(str(p), None, cli_opts) for p in (data or [])]
    if not specs:
        raise InputError("give at least one dataset folder (or a --config with datasets)")

    models = _split(model) or cfg.get("models") or ["litemedsam"]
    if prompts is not None and not _split(prompts):  # "," ran the default box
        raise InputError(f"--prompts {prompts!r} names no strategy; give e.g. box,point (default box)")
    strategies = _split(prompts) or cfg.get("prompts") or ["box"]
    windowing = common.parse_window(window if window is not None else cfg.get("window"))
    with common.said_as_flags(SETTING_FLAGS):  # the settings check themselves; the user reads the flag
        settings = EvalSettings(
            models=tuple(_split(models) if isinstance(models, str) else models),
            strategies=tuple(_split(strategies) if isinstance(strategies, str) else strategies),
            seed=seed if seed is not None else cfg.get("seed", 0), device=device,
            tolerance_mm=tolerance if tolerance is not None else cfg.get("nsd_tolerance_mm", 2.0), window=windowing)
        bench_cfg = BenchConfig(
            datasets=tuple(specs), settings=settings, outdir=str(output),
            max_cases=max_cases if max_cases is not None else cfg.get("max_cases"),
            workers=workers if workers is not None else cfg.get("workers", 1),
            backend=executor or cfg.get("executor", "local"), resume=resume, force=force, report=not no_report)
    summary = run_benchmark(bench_cfg)
    typer.echo(f"{summary.rows} rows from {summary.cases} cases ({summary.skipped} already done), "
               f"{summary.errors} errors, {summary.seconds:.0f} s -> {summary.outdir}")
