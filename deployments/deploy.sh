#!/usr/bin/env bash
# Sets up a Prefect server (PREFECT_API_URL) for bert-pipeline: work pools, limits, every deployment, the alerts.
# Safe to rerun: pools are overwritten with the same settings and deployments are updated in place.
set -euo pipefail
PREFECT=${PREFECT:-.venv/bin/prefect}
: "${PREFECT_API_URL:?set PREFECT_API_URL to the server, e.g. http://127.0.0.1:4200/api}"
export BERT_PIPELINE_TIMEZONE=${BERT_PIPELINE_TIMEZONE:-UTC}
PYTHON=${PYTHON:-$(dirname "$PREFECT")/python}
NOTIFY=${BERT_PIPELINE_NOTIFY_BLOCK:-}

# Alerts (deployments/automations.yaml) go to the notification block named by BERT_PIPELINE_NOTIFY_BLOCK: an unknown
# name is refused here, before anything is deployed.
if [ -n "$NOTIFY" ]; then
  "$PYTHON" deployments/automations.py check --block "$NOTIFY"
fi

"$PREFECT" work-pool create cpu --type process --overwrite
"$PREFECT" work-pool create gpu --type process --overwrite
# One GPU job at a time across the GPU deployments (train, score), on top of their own per-deployment limits.
"$PREFECT" work-pool set-concurrency-limit gpu 1
"$PREFECT" --no-prompt deploy --all --prefect-file deployments/prefect.yaml
if [ -n "$NOTIFY" ]; then
  "$PYTHON" deployments/automations.py apply --block "$NOTIFY"
else
  echo "alerts not applied: set BERT_PIPELINE_NOTIFY_BLOCK=<block-type>/<name> of a notification block (README)"
fi
echo "deployed; the nightly schedule runs at 02:00 ${BERT_PIPELINE_TIMEZONE}, the watchdog checks at 07:00"
