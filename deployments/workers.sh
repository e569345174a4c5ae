#!/usr/bin/env bash
# One process worker per work pool, from this checkout; Ctrl-C (or either worker exiting) stops both.
# The cpu worker runs several flow runs at once: a nightly run waits on the stage runs it starts.
set -euo pipefail
PREFECT=${PREFECT:-.venv/bin/prefect}
: "${PREFECT_API_URL:?set PREFECT_API_URL to the server, e.g. http://127.0.0.1:4200/api}"
export BERT_PIPELINE_HOME=${BERT_PIPELINE_HOME:-$(pwd)}

"$PREFECT" worker start --pool cpu --type process --limit "${BERT_PIPELINE_CPU_RUNS:-4}" &
cpu=$!
"$PREFECT" worker start --pool gpu --type process --limit 1 &
gpu=$!
trap 'kill "$cpu" "$gpu" 2>/dev/null || true' EXIT INT TERM
wait -n "$cpu" "$gpu"
