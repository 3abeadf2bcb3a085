#!/usr/bin/env bash
# Set up a fresh virtual environment and run the demo on the bundled LiteMedSAM and CT samples.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh ""
medisam demo -o medisam-demo --force
