"""DDP under torchrun: two CPU processes (gloo) train one tiny step and write one checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_dataset, tmp_path):
    script = Path(sys.executable).parent / "medisam"
    if not script.is_file():
        pytest.skip("medisam console script not installed")
    ckpt = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           "finetune", str(tiny_dataset), "-o", str(ckpt), "--model", "litemedsam-tiny", "--mode", "decoder",
           "--epochs", "1", "--batch-size", "1", "--targets-per-image", "1", "--val-fraction", "0.25",
           "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 2  # both ranks finish and report
    saved = torch.load(ckpt, weights_only=True)
    assert saved["medisam"]["mode"] == "decoder"
    state = torch.load(tmp_path / "ddp.state.pt", weights_only=True)
    assert state["epoch"] == 0
    # 3 train images over 2 ranks with batch 1: DistributedSampler pads to 2 steps per rank
    assert state["scheduler"]["last_epoch"] == 2
