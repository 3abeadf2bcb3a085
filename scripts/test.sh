#!/usr/bin/env bash
# Set up a fresh virtual environment with the test extras and run the test suite.
# torch comes first, pinned, so pip takes the CPU/CUDA wheel from the local disk index.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[dev]"
# sam2 is a source package: build it without CUDA, against the torch installed above
SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation "sam2>=1.1" || echo "sam2 not installed: its tests will skip"
python -m pytest -q "$@"
