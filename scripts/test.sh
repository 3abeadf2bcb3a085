#!/usr/bin/env bash
# Set up a fresh virtual environment with the test extras and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser test drives Debian's Chromium (playwright comes with [dev]); install it when missing.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        (apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
            || echo "chromium not installed: the browser tests will skip"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n apt-get install -y -q chromium >/dev/null || echo "chromium not installed: the browser tests will skip"
    else
        echo "chromium missing and no root: the browser tests will skip (apt-get install chromium)"
    fi
fi
. scripts/setup_venv.sh "[dev]"
# sam2 is a source package: build it without CUDA, against the torch installed above
SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation "sam2>=1.1" || echo "sam2 not installed: its tests will skip"
python -m pytest -q "$@"
