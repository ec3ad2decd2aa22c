#!/usr/bin/env bash
# Every GPU figure in one prepared run (see benchmarks/gpu_all.py); from the repository root:
#   JNET_DATA_DIR=data bash benchmarks/gpu_all.sh [--out DIR] [--quick] [--only STEP ...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" benchmarks/gpu_all.py "$@"
