#!/usr/bin/env bash
# Create .venv in the repository root and install torch, then medisam with the extras
# given as $1 (e.g. "" or "[dev]"). Sourced by demo.sh and test.sh.
# torch comes first, at the tested versions, so pip takes the CPU/CUDA wheel from the local
# disk index (pyproject.toml only asks for a supported range and so keeps this pair).
set -euo pipefail
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".${1:-}"
