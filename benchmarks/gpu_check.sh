#!/usr/bin/env bash
# GPU check for the device machine (an H200): trains a randomly initialised BERT-base-sized classifier for a few
# hundred steps in bf16 and scores with it, reporting samples/s, texts/s and MFU. Self-contained: it needs only
# python3 with torch and transformers (the device image has both), so it runs on a bare machine in under 5 minutes.
#   bash benchmarks/gpu_check.sh [steps] [batch] [seq]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 benchmarks/gpu_check.py --steps "${1:-300}" --batch "${2:-64}" --seq "${3:-128}" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
