#!/usr/bin/env bash
# Set up a fresh virtual environment with the test extras and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh "[dev]"
# sam2 is a source package: build it without CUDA, against the torch installed above
SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation "sam2>=1.1" || echo "sam2 not installed: its tests will skip"
python -m pytest -q "$@"
