#!/usr/bin/env bash
# Set up a fresh virtual environment and run the demo on the bundled LiteMedSAM and CT samples.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e .
medisam demo -o medisam-demo --force
