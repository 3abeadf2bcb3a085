#!/usr/bin/env bash
# Set up a fresh virtual environment with the test extras and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Real clients the tests drive, from Debian: Chromium (the browser test; playwright comes with [dev])
# and dicom3tools (dciodvfy checks every DICOM-SEG we write). Installed when missing; tests skip without them.
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v dciodvfy >/dev/null || missing="$missing dicom3tools"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
    if [ "$SUDO" = none ]; then
        echo "missing$missing and no root: those tests will skip (apt-get install$missing)"
    else
        ($SUDO apt-get install -y -q $missing >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $missing >/dev/null; }) \
            || echo "could not install$missing: those tests will skip"
    fi
fi
. scripts/setup_venv.sh "[dev]"
# sam2 is a source package: build it without CUDA, against the torch installed above
SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation "sam2>=1.1" || echo "sam2 not installed: its tests will skip"
# one pytest-xdist worker per CPU, at most 4 (tests/conftest.py splits the threads between them)
workers=$(python -c "import os; print(min(4, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1))")
python -m pytest -q -n "$workers" "$@"
