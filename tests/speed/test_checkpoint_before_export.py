"""A fast backend reads the checkpoint before it exports or calibrates: a bad file is one error, never an
"exporting ... to ONNX" line first; a file whose graphs are already exported is still not read (lazy)."""

from __future__ import annotations

import pytest
import torch

from medisam.errors import CheckpointError
from medisam.models import backends, get_spec, load_model
from medisam.models.checkpoint import check_checkpoint_file
from medisam.models.export_cache import cached_export, export_folder
from medisam.models.loading import load_torch

pytest.importorskip("onnxruntime")


@pytest.fixture()
def checkpoints(tmp_path):
    """(good, wrong): the tiny model's own weights, and a torch.save dict of another architecture."""
    good = tmp_path / "tiny.pt"
    torch.save(load_model("litemedsam-tiny", device="cpu", backend="torch").net.state_dict(), good)
    wrong = tmp_path / "wrong.pt"
    torch.save({"x": torch.zeros(3)}, wrong)
    return good, wrong


def test_a_mismatched_checkpoint_fails_before_the_export_line(checkpoints, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_model("litemedsam-tiny", checkpoint=checkpoints[1], device="cpu", backend="onnx")
    assert capsys.readouterr().err == ""  # it said "medisam: exporting litemedsam-tiny to ONNX ..." first
    assert not (tmp_path / "cache" / "onnx").exists() or not any((tmp_path / "cache" / "onnx").iterdir())


def test_cached_export_reads_the_weights_before_announcing(checkpoints, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path / "cache"))
    lazy = load_torch(get_spec("litemedsam-tiny"), checkpoints[1], "cpu", lazy=True)
    assert not lazy.net_built
    with pytest.raises(CheckpointError):
        cached_export(lazy)
    assert "exporting" not in capsys.readouterr().err


def test_the_network_is_built_only_when_the_export_is_missing(checkpoints, monkeypatch, tmp_path):
    """Graphs exported from these exact bytes (their hash names the folder): the network is never built;
    else it is built (the checkpoint read and checked) before the backend starts its export."""
    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(backends, "_make_backend", lambda base, *args: base)
    spec = get_spec("litemedsam-tiny")
    first = backends.load_backend(spec, checkpoints[0], "cpu", "onnx")
    assert first.net_built
    folder = export_folder(first)
    folder.mkdir(parents=True)
    for name in ("encoder.onnx", "decoder.onnx", "metadata.json"):
        (folder / name).write_bytes(b"")
    again = backends.load_backend(spec, checkpoints[0], "cpu", "onnx")
    assert not again.net_built


@pytest.mark.parametrize("content,said", [
    (b"hello\n", "not a PyTorch checkpoint .*: the file is a text file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "the file is a PNG image"),
    (b"", "the file is empty"),
    ("cut", "not a complete PyTorch zip archive"),
])
def test_check_checkpoint_file_reads_no_weights(checkpoints, tmp_path, content, said):
    path = tmp_path / "c.pt"
    path.write_bytes(checkpoints[0].read_bytes()[:5000] if content == "cut" else content)
    with pytest.raises(CheckpointError, match=said):
        check_checkpoint_file(path)
    with pytest.raises(CheckpointError, match="is a folder"):
        check_checkpoint_file(tmp_path)
    assert check_checkpoint_file(checkpoints[0]) == checkpoints[0]
