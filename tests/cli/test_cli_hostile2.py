"""More careless command lines (the CLI audit's faults left): a checkpoint that is no checkpoint, an output
folder only root is told it may write (``/proc``), an output that is a broken symbolic link, and progress lines
before an error that could have been refused before the step. Each is one ``error:`` line now, exit 2.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import TINY, run_cli

from medisam.cli.progress import step

LINUX = sys.platform.startswith("linux")


def _one_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert expected in lines[0], lines[0]


@pytest.fixture()
def auto(monkeypatch, tmp_path):
    """``--backend auto`` as a user gets it (the root conftest pins torch) with a fresh export cache:
    a fast backend exports the model's graphs on first use, saying so on stderr."""
    monkeypatch.delenv("MEDISAM_BACKEND", raising=False)
    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def cut_checkpoint(tmp_path) -> Path:
    """A torch.save zip archive cut short (a partial download)."""
    import torch

    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.zeros(4096)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


@pytest.mark.parametrize("kind", ["text", "jpeg", "cut"])
def test_a_checkpoint_that_is_no_checkpoint_is_one_line(tmp_path, png, auto, cut_checkpoint, kind):
    """It printed 'medisam: exporting litemedsam-tiny to ONNX ...' (and the model's progress lines) first."""
    checkpoint = {"text": tmp_path / "notes.pt", "jpeg": png, "cut": cut_checkpoint}[kind]
    if kind == "text":
        checkpoint.write_text("not weights\n")
    out = tmp_path / "m.png"
    proc = run_cli(["segment", png, "--box", "10,10,100,100", "-o", out, *TINY, "--checkpoint", checkpoint])
    said = {"text": "the file is a text file", "jpeg": "the file is a JPEG image", "cut": "not a complete PyTorch zip"}
    _one_error(proc, said[kind])
    assert not out.exists() and not (auto / "onnx").exists()


def test_propagate_checkpoint_that_is_no_checkpoint(tmp_path, nifti, auto):
    checkpoint = tmp_path / "notes.pt"
    checkpoint.write_text("not weights\n")
    proc = run_cli(["propagate", nifti, "--box3d", "8,6,1,20,18,3", "-o", tmp_path / "m.nii.gz", *TINY,
                    "--checkpoint", checkpoint])
    _one_error(proc, "not a PyTorch checkpoint")


@pytest.mark.skipif(not LINUX, reason="/proc is Linux's")
@pytest.mark.parametrize("command", ["segment", "propagate"])
def test_an_output_in_proc_is_refused_before_the_model(tmp_path, png, nifti, command):
    """As root, os.access said yes: the model ran and the write failed (exit 1, four stderr lines)."""
    if command == "segment":
        args = ["segment", png, "--box", "10,10,100,100", "-o", "/proc/m.png", *TINY]
    else:
        args = ["propagate", nifti, "--box3d", "8,6,1,20,18,3", "-o", "/proc/sub/m.nii.gz", *TINY]
    _one_error(run_cli(args), "cannot write in /proc (")


@pytest.mark.parametrize("command", ["segment", "propagate"])
def test_a_broken_link_as_output_needs_force(tmp_path, png, nifti, command):
    """A dangling -o link counted as missing and was replaced without --force."""
    name = "m.png" if command == "segment" else "m.nii.gz"
    link, target = tmp_path / name, tmp_path / "gone" / name
    link.symlink_to(target)
    if command == "segment":
        args = ["segment", png, "--box", "10,10,100,100", "-o", link, *TINY]
    else:
        args = ["propagate", nifti, "--box3d", "8,6,1,20,18,3", "-o", link, *TINY]
    _one_error(run_cli(args), "exists (a broken symbolic link to")
    assert link.is_symlink() and not target.parent.exists()


def test_force_replaces_the_link_never_its_target(tmp_path, png):
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"KEEP")
    link = tmp_path / "m.png"
    link.symlink_to(keep)
    proc = run_cli(["segment", png, "--box", "10,10,100,100", "-o", link, *TINY, "--force"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not link.is_symlink() and link.read_bytes()[:4] == b"\x89PNG"
    assert keep.read_bytes() == b"KEEP"


def _export_in_child(args: list[str]) -> subprocess.CompletedProcess:
    """``medisam export onnx ARGS`` in a child that prints its exit code and whether torch was imported."""
    child = ("import sys; from medisam.cli import main; "
             f"print(main(['export', 'onnx', *{[str(a) for a in args]!r}]), 'torch' in sys.modules)")
    return subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case,expected", [
    ("opset 5", "--opset 5 is not supported: the graphs export at opsets 12.. up to torch's exporter's highest"),
    ("proc", "cannot write in /proc ("),
    ("broken link", "is a broken symbolic link to"),
])
def test_export_refusals_before_torch(tmp_path, case, expected):
    """Said after importing the exporter (a progress line on a busy machine), or, for /proc and a broken
    link, after the model loaded (exit 1, '[Errno 17] File exists')."""
    if case == "proc" and not LINUX:
        pytest.skip("/proc is Linux's")
    out = {"opset 5": tmp_path / "x", "proc": Path("/proc/x"), "broken link": tmp_path / "x"}[case]
    if case == "broken link":
        out.symlink_to(tmp_path / "gone")
    proc = _export_in_child(["-o", out, "-m", "litemedsam-tiny", *(["--opset", "5"] if case == "opset 5" else [])])
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr[-2000:]
    _one_error(subprocess.CompletedProcess([], 2, proc.stdout, proc.stderr), expected)


def test_first_opset_is_the_exporters():
    from medisam.cli.export_cmd import FIRST_OPSET
    from medisam.export.onnx_export import MIN_OPSET

    assert FIRST_OPSET == MIN_OPSET


def test_a_failed_step_says_no_done(capsys, monkeypatch):
    """A slow step that failed printed 'medisam: <step> done (N s)' right before its error line."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with pytest.raises(ValueError):
        with step("slow thing", after=0.05):
            time.sleep(0.3)
            raise ValueError("bad")
    assert capsys.readouterr().err.splitlines() == ["medisam: slow thing..."]
