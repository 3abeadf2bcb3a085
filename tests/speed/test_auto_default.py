"""``backend="auto"`` is the default of load_model and the CLI; what it picks and how it falls back."""

from __future__ import annotations

import pytest
import torch

from medisam.errors import ModelError
from medisam.models import backends, load_model
from medisam.models.backends import calibrate, choose_auto, read_speed_profile, write_speed_profile
# imported here, not in a test: importing tests.conftest re-runs its MEDISAM_BACKEND=torch default,
# which would pin the auto_env that a test has just unpinned
from tests.conftest import disk_image

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")


def test_load_model_defaults_to_the_profiled_backend(auto_env, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path))  # a fresh cache: the export shows its progress
    write_speed_profile({"auto": {"backend": "openvino", "precision": "fp32"}})
    model = load_model("litemedsam-tiny", device="cpu")  # no backend argument
    assert (model.backend, model.precision) == ("openvino", "fp32")
    err = capsys.readouterr().err
    assert "exporting litemedsam-tiny to ONNX" in err and "first use" in err
    assert (tmp_path / "openvino").is_dir()  # compiled blobs cached for the next load
    load_model("litemedsam-tiny", device="cpu")
    assert "exporting" not in capsys.readouterr().err  # reused, not exported again


def test_env_pins_auto_and_is_checked(auto_env, monkeypatch):
    monkeypatch.setenv("MEDISAM_BACKEND", "torch")
    assert choose_auto(torch.device("cpu")) == ("torch", "fp32")
    assert getattr(load_model("litemedsam-tiny", device="cpu"), "backend", "torch") == "torch"
    monkeypatch.setenv("MEDISAM_BACKEND", "tensorrt")
    with pytest.raises(ModelError, match="MEDISAM_BACKEND"):
        load_model("litemedsam-tiny", device="cpu")


def test_auto_falls_back_to_torch_when_the_fast_backend_fails(auto_env, monkeypatch, capsys):
    write_speed_profile({"auto": {"backend": "openvino", "precision": "fp32"}})
    real = backends._make_backend

    def broken(base, backend, *args):
        if backend != "torch":
            raise RuntimeError("cannot compile")
        return real(base, backend, *args)

    monkeypatch.setattr(backends, "_make_backend", broken)
    model = load_model("litemedsam-tiny", device="cpu")
    assert getattr(model, "backend", "torch") == "torch"
    assert "using torch" in capsys.readouterr().err
    with pytest.raises(RuntimeError):  # an explicit backend still fails loudly
        load_model("litemedsam-tiny", device="cpu", backend="openvino")


def test_calibration_picks_the_fastest_guard_passing_backend(auto_env, capsys):
    base = load_model("litemedsam-tiny", device="cpu", backend="torch")
    profile, model = calibrate(base, threads=1, repeats=1)
    measured = profile["measured"]
    assert "torch-fp32" in measured and "openvino-fp32" in measured and "onnx-fp32" in measured
    choice = f"{profile['auto']['backend']}-{profile['auto']['precision']}"
    assert measured[choice]["accepted"]
    fastest = min((k for k, v in measured.items() if v["accepted"]), key=lambda k: measured[k]["encoder_ms"])
    assert choice == fastest
    assert getattr(model, "backend", "torch") == profile["auto"]["backend"]
    assert read_speed_profile()["auto"] == profile["auto"]
    assert "calibrating backend 'auto'" in capsys.readouterr().err
    # fp32 exports agree with torch exactly enough to pass; the guard is the precision one
    assert measured["openvino-fp32"]["accepted"] and measured["onnx-fp32"]["accepted"]


def test_calibration_times_a_refused_backend_but_never_chooses_it(auto_env, monkeypatch):
    from medisam.models import precision

    real = precision.precision_guard

    def refuse(name, base_scores, scores):  # every candidate fails the guard
        return real(name, base_scores, [s - 1.0 for s in scores])

    monkeypatch.setattr(precision, "precision_guard", refuse)
    base = load_model("litemedsam-tiny", device="cpu", backend="torch")
    profile, _ = calibrate(base, threads=1, repeats=1)
    assert profile["auto"] == {"backend": "torch", "precision": "fp32"}
    refused = [v for k, v in profile["measured"].items() if k != "torch-fp32"]
    assert refused and all(not v["accepted"] and v["encoder_ms"] > 0 for v in refused)


def test_sam2_family_and_gpu_stay_on_torch(auto_env, monkeypatch):
    write_speed_profile({"auto": {"backend": "openvino", "precision": "fp32"}})
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))
    assert choose_auto(torch.device("cuda")) == ("torch", "fp16")  # never the CPU profile's runtime
    from dataclasses import replace

    from medisam.models.registry import get_spec

    spec = replace(get_spec("litemedsam-tiny"), family="sam2")
    assert backends._auto_choice(spec, torch.device("cpu"), None) == ("torch", "fp32")


def test_cli_uses_auto_without_a_flag(auto_env, tmp_path, capsys):
    from PIL import Image

    from medisam.cli import main

    write_speed_profile({"auto": {"backend": "openvino", "precision": "fp32"}})
    image, _ = disk_image(96, radius=20, center=(48, 48))
    png = tmp_path / "disk.png"
    Image.fromarray(image).save(png)
    assert main(["segment", str(png), "--box", "20,20,76,76", "-o", str(tmp_path / "m.png"),
                 "--model", "litemedsam-tiny", "--device", "cpu"]) == 0
    assert "backend openvino, precision fp32" in capsys.readouterr().err


def test_info_backends_hint_keeps_the_extra(monkeypatch, capsys):
    from medisam.cli import main

    monkeypatch.setattr(backends, "backend_versions", lambda: {"torch": torch.__version__, "onnx": None,
                                                               "openvino": None})
    assert main(["info", "--backends"]) == 0
    out = capsys.readouterr().out
    assert "pip install 'medisam[onnx]'" in out and "pip install 'medisam[openvino]'" in out


class _TimedModel:
    """A stand-in whose encodings take the scripted seconds in turn (a busy machine's noise)."""

    def __init__(self, seconds):
        self.seconds = list(seconds)

    def preprocess(self, display):
        return display, None

    def encode(self, x):
        import time

        time.sleep(self.seconds.pop(0))


def test_calibration_times_interleaved_and_keeps_the_fastest_run():
    from medisam.models.calibration import interleaved_minimum

    # "fast" ran its first round while the machine was busy: its median would lose, its minimum wins
    models = {"fast": _TimedModel([0.30, 0.02, 0.02]), "slow": _TimedModel([0.08, 0.08, 0.09])}
    best = interleaved_minimum(models, None, repeats=3)
    assert min(best, key=best.get) == "fast"
    assert 15 <= best["fast"] < 60 and best["slow"] >= 75
    assert all(not m.seconds for m in models.values())  # every model ran once per round


def test_processes_starting_together_calibrate_once(auto_env, tmp_path):
    """A second process waits on the calibration lock and then finds the first one's profile."""
    import subprocess
    import sys
    import textwrap
    import time

    from medisam.models.speed_profile import calibration_lock

    flag = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pathlib, time
        from medisam.models.speed_profile import calibration_lock, write_speed_profile
        with calibration_lock():
            pathlib.Path({str(flag)!r}).touch()
            time.sleep(1.5)
            write_speed_profile({{"auto": {{"backend": "onnx", "precision": "fp32"}}}})
        """)])
    try:
        deadline = time.time() + 60
        while not flag.exists() and holder.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert flag.exists() and read_speed_profile() is None
        with calibration_lock():  # waits for the holder
            assert read_speed_profile()["auto"] == {"backend": "onnx", "precision": "fp32"}
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0


def test_a_lock_that_cannot_be_taken_only_costs_a_second_calibration(auto_env, monkeypatch, caplog):
    import filelock

    from medisam.models.speed_profile import calibration_lock

    def busy(self, timeout=None, *args, **kwargs):
        raise filelock.Timeout(self.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", busy)
    ran = []
    with calibration_lock(timeout_s=0.1):
        ran.append(True)
    assert ran == [True] and "calibrating without it" in caplog.text


def test_a_precision_given_is_kept_by_auto(auto_env, monkeypatch):
    """``--precision fp32`` was read as "not given": auto ran the measured bf16 and said so on stderr
    only. A precision given is kept, on the measured backend where it runs there; one no installed
    backend runs is one line naming what is."""
    from medisam.models.registry import get_spec

    spec = get_spec("litemedsam")
    write_speed_profile({"auto": {"backend": "openvino", "precision": "bf16"}})
    monkeypatch.setattr(backends, "choose_auto", lambda device: ("openvino", "bf16"))
    monkeypatch.setattr(backends, "backend_available", lambda b: b in ("openvino", "torch"))
    monkeypatch.setattr(backends, "supported_precisions",
                        lambda b, device: {"openvino": ["fp32", "bf16"], "torch": ["fp32"]}[b])
    cpu = torch.device("cpu")
    assert backends._auto_choice(spec, cpu, None) == ("openvino", "bf16")  # not given: as measured
    assert backends._auto_choice(spec, cpu, "fp32") == ("openvino", "fp32")  # given: kept
    with pytest.raises(ModelError, match=r"precision fp16 is not available on cpu here with any installed backend "
                                         r"\(openvino, torch\); available: bf16, fp32"):
        backends._auto_choice(spec, cpu, "fp16")


def test_a_corrupt_checkpoint_is_told_once_not_retried_on_torch(auto_env, tmp_path, caplog, capsys):
    """A truncated checkpoint failed the export, was retried on torch with a warning and a progress
    line about a backend being unavailable, then failed again: four lines for one bad file."""
    from medisam.errors import CheckpointError

    good = tmp_path / "tiny.pth"
    torch.save(load_model("litemedsam-tiny", device="cpu", backend="torch").net.state_dict(), good)
    bad = tmp_path / "cut.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    write_speed_profile({"auto": {"backend": "openvino", "precision": "fp32"}})
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pth"):
        load_model("litemedsam-tiny", checkpoint=bad, device="cpu")
    assert "falls back" not in caplog.text and "unavailable" not in capsys.readouterr().err
