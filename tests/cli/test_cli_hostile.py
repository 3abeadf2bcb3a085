"""Careless and hostile command lines found by the CLI audit (docs/cli-errors.md): each printed a
traceback, ran every case into an error row, or ran at all; now one ``error:`` line, exit 2, nothing written.

Each row runs the installed console script in a fresh process and fails before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli


@pytest.fixture()
def npz(tmp_path) -> Path:
    """A one-case npz dataset: a (5, 24, 28) volume with a labelled block."""
    img = np.random.default_rng(0).integers(0, 100, (5, 24, 28)).astype(np.int16)
    gts = np.zeros(img.shape, np.uint8)
    gts[1:4, 6:18, 8:20] = 1
    path = tmp_path / "case.npz"
    np.savez(path, imgs=img, gts=gts)
    return path


def _config(tmp_path: Path, npz: Path, extra: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"datasets: [{npz}]\n{extra}")
    return path


# (id, bench arguments after DATA -o OUT, or a config's extra text; the text the one stderr line must contain)
BENCH_FLAGS = [
    ("seed negative", ["--seed", "-1"], "--seed (seed) must be a whole number >= 0, got -1"),
    ("tolerance NaN", ["--nsd-tolerance", "nan"], "--nsd-tolerance (nsd_tolerance_mm) must be a finite number"),
    ("tolerance inf", ["--nsd-tolerance", "inf"], "must be a finite number of mm > 0"),
    ("tolerance negative", ["--nsd-tolerance", "-1"], "must be a finite number of mm > 0"),
    ("min area negative", ["--min-area", "-5"], "--min-area (min_area) of"),
    ("max targets 0", ["--max-targets", "0"], "--max-targets (max_targets) of"),
    ("channel negative", ["--channel", "-1"], "--channel (channel) of"),
    ("prompts empty", ["--prompts", ","], "--prompts ',' names no strategy"),  # ran the default box
    ("workers 0", ["--workers", "0"], "--workers (workers) must be a whole number >= 1, got 0"),  # BenchConfig's
]
BENCH_CONFIGS = [
    ("config seed text", "seed: abc\n", "--seed (seed) must be a whole number >= 0, got 'abc'"),
    ("config workers text", "workers: abc\n", "--workers (workers) must be a whole number >= 1, got 'abc'"),
    ("config tolerance text", "nsd_tolerance_mm: abc\n", "must be a number of mm > 0, got 'abc'"),
    ("config dataset max_targets 0", None, "--max-targets (max_targets) of"),
]


def _one_error(proc, expected: str, out: Path) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing written: no results.csv with error rows


@pytest.mark.parametrize("args,expected", [r[1:] for r in BENCH_FLAGS], ids=[r[0] for r in BENCH_FLAGS])
def test_bench_flag_out_of_range(tmp_path, npz, args, expected):
    out = tmp_path / "b"
    _one_error(run_cli(["bench", npz, "-o", out, *args]), expected, out)


@pytest.mark.parametrize("extra,expected", [r[1:] for r in BENCH_CONFIGS], ids=[r[0] for r in BENCH_CONFIGS])
def test_bench_config_value_of_wrong_type(tmp_path, npz, extra, expected):
    if extra is None:  # a per-dataset setting
        config = tmp_path / "c.yaml"
        config.write_text(f"datasets:\n  - path: {npz}\n    max_targets: 0\n")
    else:
        config = _config(tmp_path, npz, extra)
    out = tmp_path / "b"
    _one_error(run_cli(["bench", "-o", out, "--config", config]), expected, out)


def test_bench_config_datasets_not_a_list(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("datasets: 5\n")
    out = tmp_path / "b"
    _one_error(run_cli(["bench", "-o", out, "--config", config]), "'datasets' must be a list", out)


def test_bench_config_binary_file(tmp_path, png):
    out = tmp_path / "b"
    _one_error(run_cli(["bench", "-o", out, "--config", png]), "not a text file", out)
    assert png.read_bytes()[:2] == b"\xff\xd8"  # the JPEG given as config is untouched


# finetune / autosam train: run in process (importing torch once); each flag below printed a traceback, trained
# anyway or failed after the model loaded with exit 1 before
TRAIN_TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--quiet"]
FINETUNE_FLAGS = [
    ("seed negative", ["--seed", "-1"], "--seed must be >= 0, got -1"),
    ("patience negative", ["--patience", "-1"], "--patience must be >= 0, got -1"),
    ("max slices negative", ["--max-slices", "-1"], "--max-slices must be >= 0, got -1"),
    ("targets unknown", ["--targets", "pixel"], "--targets must be label, component or instance, got 'pixel'"),
    ("accumulate 0", ["--accumulate", "0"], "--accumulate must be >= 1, got 0"),
    ("targets per image 0", ["--targets-per-image", "0"], "--targets-per-image must be >= 1, got 0"),
]


def _refused_in_process(args: list, capsys, expected: str) -> None:
    from medisam.cli import main

    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert expected in err, err


@pytest.fixture()
def dataset(tmp_path, npz) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    npz.rename(folder / npz.name)
    return folder


@pytest.mark.parametrize("args,expected", [r[1:] for r in FINETUNE_FLAGS], ids=[r[0] for r in FINETUNE_FLAGS])
def test_finetune_flag_out_of_range(tmp_path, dataset, capsys, args, expected):
    out = tmp_path / "out" / "w.pt"
    _refused_in_process(["finetune", dataset, "-o", out, *TRAIN_TINY, *args], capsys, expected)
    assert not out.parent.exists()


@pytest.mark.parametrize("text,expected", [
    ("seed: -2\n", "seed must be >= 0, got -2"),  # the key the file names
    ("{not: [valid\n", "cannot parse config (ParserError)"),
    (b"\xff\xd8\xff\xe0 a JPEG", "cannot parse config (UnicodeDecodeError)"),
], ids=["config seed negative", "config YAML syntax", "config binary"])
def test_finetune_config_file_is_checked(tmp_path, dataset, capsys, text, expected):
    config = tmp_path / "c.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out" / "w.pt"
    _refused_in_process(["finetune", dataset, "-o", out, "--config", config, *TRAIN_TINY], capsys, expected)
    assert not out.parent.exists()


@pytest.mark.parametrize("command", [["finetune"], ["autosam", "train"]])
def test_cache_dir_that_is_a_file(tmp_path, dataset, capsys, command):
    cache = tmp_path / "cache.bin"
    cache.write_bytes(b"KEEP")
    out = tmp_path / "out" / "w.pt"
    _refused_in_process([*command, dataset, "-o", out, "--cache-dir", cache, *TRAIN_TINY], capsys,
                        f"--cache-dir {cache} is a file")
    assert cache.read_bytes() == b"KEEP" and not out.parent.exists()


@pytest.mark.parametrize("args,expected", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["-o", "{tmp}/out/auto.txt"], "an AutoSAM checkpoint is written as .pt or .pth"),
], ids=["seed negative", "output not a checkpoint name"])
def test_autosam_train_refuses(tmp_path, dataset, capsys, args, expected):
    args = [a.format(tmp=tmp_path) for a in args]
    output = [] if "-o" in args else ["-o", tmp_path / "out" / "a.pt"]
    _refused_in_process(["autosam", "train", dataset, *output, *TRAIN_TINY, *args], capsys, expected)
    assert not (tmp_path / "out").exists()


# outputs that were found to be unusable only after the model had loaded (and, for the demo, run)
@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model fails the test: these mistakes must be told before it."""
    import medisam.demo
    import medisam.models

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the mistake was told")

    monkeypatch.setattr(medisam.models, "load_model", loaded)
    monkeypatch.setattr(medisam.demo, "load_model", loaded)


def test_samaug_outputs_that_collide(tmp_path, png, capsys, no_model):
    other = tmp_path / "b" / "us.png"
    other.parent.mkdir()
    other.write_bytes(png.read_bytes())
    _refused_in_process(["samaug", png, other, "-o", tmp_path / "aug", *TRAIN_TINY[:4]], capsys,
                        "have the same file stem: both would be written to")
    assert not (tmp_path / "aug").exists()


def test_samaug_existing_output(tmp_path, png, capsys, no_model):
    out = tmp_path / "aug"
    out.mkdir()
    (out / "us.png").write_bytes(b"KEEP")
    _refused_in_process(["samaug", png, "-o", out, *TRAIN_TINY[:4]], capsys, "exists; pass --force to overwrite")
    assert (out / "us.png").read_bytes() == b"KEEP"


def test_samaug_negative_threshold(tmp_path, png, capsys, no_model):
    _refused_in_process(["samaug", png, "-o", tmp_path / "aug", *TRAIN_TINY[:4], "--stability-thresh", "-1"],
                        capsys, "are scores from 0 to 1")
    assert not (tmp_path / "aug").exists()


def test_demo_output_that_is_a_file(tmp_path, capsys, no_model):
    out = tmp_path / "demo.txt"
    out.write_bytes(b"KEEP")
    _refused_in_process(["demo", "-o", out, *TRAIN_TINY[:4]], capsys, "is a file; the demo writes a folder")
    assert out.read_bytes() == b"KEEP"


def test_export_output_that_is_a_file_is_told_before_torch(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "x.onnx"
    out.write_bytes(b"KEEP")
    child = ("import sys; from medisam.cli import main; "
             f"print(main(['export', 'onnx', '-o', {str(out)!r}, '-m', 'litemedsam-tiny']), 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr[-2000:]
    assert proc.stderr.strip() == f"error: {out} exists and is not a folder"
    assert out.read_bytes() == b"KEEP"


# serve / app: refused before the model loads and before any socket is opened (the server never starts)
@pytest.mark.parametrize("args,expected", [
    (["serve", "--port", "-1", "--no-token"], "--port must be 1..65535, got -1"),
    (["serve", "--port", "70000", "--no-token"], "--port must be 1..65535, got 70000"),
    (["serve", "--host", "no such host", "--port", "8765"], "--host 'no such host' is not an address"),
    (["app", "--port", "70000"], "--port must be 1..65535, got 70000"),
    (["app", "--max-voxels", "-1", "--port", "7869"], "--max-voxels must be >= 0 (0 = no limit), got -1"),
], ids=["serve port -1", "serve port 70000", "serve host unknown", "app port 70000", "app max voxels -1"])
def test_server_arguments(args, expected):
    proc = run_cli([*args, "--model", "litemedsam-tiny", "--device", "cpu"])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and expected in lines[0]


@pytest.mark.parametrize("command", [["segment", "{img}", "-o", "{tmp}/m.png", "--everything"],
                                     ["samaug", "{img}", "-o", "{tmp}/aug"]], ids=["segment", "samaug"])
def test_points_per_side_too_dense(tmp_path, png, command):
    args = [a.format(img=png, tmp=tmp_path) for a in command]
    proc = run_cli([*args, "--points-per-side", "100000", "--model", "litemedsam-tiny", "--device", "cpu"])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]  # was numpy's MemoryError traceback
    assert "needs 1..256 points per side" in lines[0] and "got 100000" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["us.jpg"]


@pytest.mark.parametrize("command,expected", [
    (["segment", "{img}", "-o", "{tmp}/m.png", "--mask", "{tmp}/folder"],
     "--mask {tmp}/folder: a folder; give the mask"),
    (["samaug", "{tmp}/folder", "-o", "{tmp}/aug"], "{tmp}/folder: a folder; samaug takes 2D image files"),
], ids=["segment --mask", "samaug input"])
def test_a_folder_is_not_called_missing(tmp_path, png, command, expected):
    (tmp_path / "folder").mkdir()
    proc = run_cli([a.format(img=png, tmp=tmp_path) for a in command] + ["--model", "litemedsam-tiny"])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert expected.format(tmp=tmp_path) in lines[0]  # it said "no such file"


@pytest.mark.parametrize("args,expected", [
    (["samaug", "{png}", "-o", "{tmp}/aug", "--pred-iou-thresh", "nan"], "--pred-iou-thresh must be a finite number"),
    (["serve", "--max-upload-mb", "0"], "--max-upload-mb must be positive"),
], ids=["samaug threshold", "serve upload limit"])
def test_a_settings_refusal_names_the_flag_not_the_field(tmp_path, png, args, expected):
    """AutoMaskConfig and ServerSettings name their fields (pred_iou_thresh, max_upload_bytes): the user typed flags."""
    proc = run_cli([a.format(png=png, tmp=tmp_path) for a in args])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
