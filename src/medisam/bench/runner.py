"""The benchmark runner: datasets x models x prompt strategies -> OUTDIR/results.csv.

Output folder:

* ``results.csv``: one row per case x target x model x strategy (x click), columns
  :data:`~medisam.bench.evaluate.RESULT_COLUMNS`; rewritten atomically after every case,
  so an interrupted run leaves a valid file and ``resume=True`` skips the (dataset,
  case, model, strategy, seed) combinations already in it.
* ``errors.csv``: cases or targets that failed (unreadable file, missing mask, shape
  mismatch, ...), with the one-line reason; they are retried on resume.
* ``config.json``: the configuration and software versions of the run.

Backends: ``local`` runs in this process (``workers=1``) or in ``workers`` spawned
processes that each load the models once; ``ray`` runs the same evaluator in Ray actors.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from medisam.bench.datasets import CaseRef, DatasetOptions, discover_cases, whole_number
from medisam.bench.evaluate import ERROR_COLUMNS, RESULT_COLUMNS, CaseEvaluator, CaseResult, EvalSettings
from medisam.errors import CheckpointError, InputError, OutputExistsError
from medisam.io import atomic_write

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset path with its settings (name defaults to the folder name)."""

    path: str
    name: str | None = None
    options: DatasetOptions = field(default_factory=DatasetOptions)
    max_cases: int | None = None  # overrides BenchConfig.max_cases for this dataset


@dataclass(frozen=True)
class BenchConfig:
    datasets: tuple[DatasetSpec, ...]
    settings: EvalSettings
    outdir: str
    max_cases: int | None = None
    workers: int = 1
    backend: str = "local"
    resume: bool = False
    force: bool = False
    report: bool = True

    def __post_init__(self) -> None:
        """``workers`` a whole number >= 1, checked when the configuration is made (0 or 1.5 failed in the pool)."""
        whole_number(self.workers, "workers", 1)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["datasets"] = [{"path": ds.path, "name": ds.name, "max_cases": ds.max_cases,
                          **{k: v for k, v in asdict(ds.options).items() if v is not None}} for ds in self.datasets]
        return d


@dataclass
class BenchSummary:
    rows: int
    errors: int
    cases: int
    skipped: int
    seconds: float
    outdir: Path


# ------------------------------------------------------------------ csv helpers
def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    """Write all rows atomically (a reader never sees half a file)."""
    with atomic_write(path, force=True) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def _done_key(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (str(row["dataset"]), str(row["case"]), str(row["model"]), str(row["strategy"]), str(row["seed"]))


# ------------------------------------------------------------------ workers
_WORKER: CaseEvaluator | None = None


def exit_with_parent(poll_s: float = 1.0) -> threading.Thread:
    """Exit this worker process when the process that started it is gone (a killed ``medisam
    bench`` must not leave its workers running for minutes: they would hold the cores and
    memory). A daemon thread polls the parent id (POSIX: an orphan is re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def _init_worker(settings: EvalSettings, threads: int) -> None:
    import torch

    global _WORKER
    exit_with_parent()
    torch.set_num_threads(threads)
    _WORKER = CaseEvaluator(settings)


def _work(task: tuple[CaseRef, set]) -> tuple[CaseRef, CaseResult]:
    assert _WORKER is not None
    ref, skip = task
    return ref, _WORKER.evaluate(ref, skip)


def _run_local(tasks: list[tuple[CaseRef, set]], settings: EvalSettings, workers: int,
               evaluator: CaseEvaluator | None) -> Iterator[tuple[CaseRef, CaseResult]]:
    if workers <= 1:
        ev = evaluator or CaseEvaluator(settings)
        for ref, skip in tasks:
            yield ref, ev.evaluate(ref, skip)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    with ctx.Pool(workers, initializer=_init_worker, initargs=(settings, threads)) as pool:
        yield from pool.imap_unordered(_work, tasks)


# ------------------------------------------------------------------ main entry
def collect_cases(config: BenchConfig) -> list[CaseRef]:
    """Discover every dataset's cases (first ``max_cases`` per dataset, by case id)."""
    refs: list[CaseRef] = []
    names: set[str] = set()
    for ds in config.datasets:
        found = discover_cases(ds.path, ds.options, name=ds.name)
        if found and found[0].dataset in names:
            raise InputError(f"two datasets are named {found[0].dataset!r}; give one a name")
        names.add(found[0].dataset)
        limit = ds.max_cases if ds.max_cases is not None else config.max_cases
        refs.extend(found[:limit])
    return refs


def run_benchmark(config: BenchConfig, evaluator: CaseEvaluator | None = None,
                  progress: bool = True) -> BenchSummary:
    """Run (or resume) a benchmark; returns counts. ``evaluator`` reuses loaded models (tests)."""
    if config.backend not in BACKENDS:
        raise InputError(f"unknown backend {config.backend!r}; use one of {', '.join(BACKENDS)}")
    for limit in (config.max_cases, *(ds.max_cases for ds in config.datasets)):
        if limit is not None:  # -1 took all cases but the last (a slice), and 0 wrote an empty report
            whole_number(limit, "--max-cases (max_cases)", 1, " (leave it out for every case)")
    out = Path(config.outdir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out} is a file; the benchmark writes a folder")
    results_path = out / "results.csv"
    if results_path.exists() and not (config.resume or config.force):
        raise OutputExistsError(f"{results_path} exists; pass resume=True to continue it or force=True to start over")
    for ds in config.datasets:
        ds.options.check_bounds(ds.path)
    refs = collect_cases(config)  # validates the dataset paths before anything is written
    from medisam.prompting.strategies import parse_strategies

    parsed = parse_strategies(list(config.settings.strategies))
    strategies = [s.name for s in parsed]
    settings = EvalSettings(**{**asdict(config.settings), "strategies": tuple(strategies)})
    check_models(settings.models, parsed)
    check_extras(config, settings)
    created = not out.exists()
    try:
        return _run(config, settings, parsed, refs, out, evaluator, progress)
    except BaseException:
        if created and not results_path.exists():  # failed before its first case: leave nothing behind
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise


def check_extras(config: BenchConfig, settings: EvalSettings) -> None:
    """The extras' modules this run imports, checked before any work: without ``[bench]`` every case
    became an error row (MONAI's surface metrics) and the run exited 0 after segmenting them all."""
    from medisam.errors import require

    needed = (["monai.metrics"] if settings.surface_metrics else []) + (["pandas", "matplotlib"] if config.report
                                                                       else [])
    for module in needed:
        require(module, "bench")
    if config.backend == "ray":
        require("ray", "ray")


def check_models(models: Iterable[str], strategies: Iterable = ()) -> None:
    """Every ``name[@checkpoint]`` names a registered model and an existing checkpoint file (before the
    output folder is made; a checkpoint that does not load fails in the run). A SAM 2 model runs the
    box, point and click strategies (sam2's image predictor), the volume ones (its memory tracking) and
    the CVPR25 protocol (its session, slice clicks); the strategies it cannot run (``strategies``, parsed;
    :func:`~medisam.bench.evaluate.sam2_refusal`) are refused here, each with its reason, not after the
    other models ran."""
    from medisam.bench.evaluate import ModelRef, sam2_refusal
    from medisam.models.loading import weights_path
    from medisam.models.registry import get_spec

    refused = {s.name: why for s in strategies if (why := sam2_refusal(s)) is not None}
    for text in models:
        ref = ModelRef.parse(text)
        if get_spec(ref.name).supports_memory_propagation and refused:
            why = "; ".join(f"{name} ({reason})" for name, reason in refused.items())
            raise InputError(f"-m {text}: {ref.name} is a SAM 2 model, which runs the box, point, click and volume "
                             f"strategies and the CVPR25 protocol (slice clicks), not {why}; bench it without "
                             "them, beside the other models in another run")
        try:  # a named file, or the default one in $MEDISAM_WEIGHTS: found now, not after the plan and other models
            weights_path(get_spec(ref.name), None if ref.checkpoint is None else Path(ref.checkpoint).expanduser())
        except CheckpointError as exc:
            raise InputError(f"-m {text}: {exc}") from None


def _run(config: BenchConfig, settings: EvalSettings, parsed: list, refs: list[CaseRef], out: Path,
         evaluator: CaseEvaluator | None, progress: bool) -> BenchSummary:
    """The run of :func:`run_benchmark` once its settings are checked."""
    results_path, errors_path = out / "results.csv", out / "errors.csv"
    strategies = list(settings.strategies)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = read_csv(results_path) if config.resume else []
    errors: list[dict[str, Any]] = []
    done = {_done_key(r) for r in rows}
    seed = str(settings.seed)
    from medisam.bench.evaluate import ModelRef

    models = [ModelRef.parse(m).label for m in settings.models]
    tasks, skipped = [], 0
    for ref in refs:
        skip = {(m, s.name) for m in models for s in parsed
                if all((ref.dataset, ref.case_id, m, r, seed) in done for r in s.row_names)}
        if len(skip) == len(models) * len(strategies):
            skipped += 1
        else:
            tasks.append((ref, skip))
    _write_config(out / "config.json", config, settings, len(refs))
    log.info("benchmark: %d cases to run, %d already done", len(tasks), skipped)
    if progress and tasks:  # the cost, before the work
        from medisam.bench.cost import plan_line

        print(plan_line([ref for ref, _ in tasks], settings.models, settings.strategies, config.workers,
                        settings.window),
              file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if config.backend == "ray":
        from medisam.bench.ray_backend import run_ray

        results = run_ray(tasks, settings, config.workers)
    else:
        results = _run_local(tasks, settings, config.workers, evaluator)
    from tqdm.auto import tqdm

    with tqdm(total=len(tasks), unit="case", desc="bench", disable=not progress) as bar:
        for ref, res in results:
            rows.extend(res.rows)
            errors.extend(res.errors)
            write_csv(results_path, rows, RESULT_COLUMNS)
            if res.errors:
                write_csv(errors_path, errors, ERROR_COLUMNS)
            bar.set_postfix_str(f"{ref.dataset}/{ref.case_id}", refresh=False)
            bar.update(1)
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["case"]), str(r["target_id"]), str(r["model"]),
                             str(r["strategy"]), int(r["click"]) if str(r["click"]) not in ("", "nan") else -1))
    write_csv(results_path, rows, RESULT_COLUMNS)
    write_csv(errors_path, errors, ERROR_COLUMNS)  # always present; empty means no failures
    seconds = time.perf_counter() - t0
    if config.report and rows:
        from medisam.bench.report import write_report

        write_report(out, config=config.to_json())
    return BenchSummary(len(rows), len(errors), len(tasks), skipped, seconds, out)


def _write_config(path: Path, config: BenchConfig, settings: EvalSettings, n_cases: int) -> None:
    import numpy
    import torch

    import medisam

    data = config.to_json()
    data["settings"] = asdict(settings)
    data["cases_found"] = n_cases
    data["versions"] = {"medisam": medisam.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                        "python": platform.python_version()}
    data["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if config.resume and path.is_file():  # the rows of earlier runs stay in results.csv: so do their settings
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = None
        if isinstance(before, dict):
            data["earlier_runs"] = [*before.pop("earlier_runs", []), before]
    with atomic_write(path, force=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
