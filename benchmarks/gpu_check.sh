#!/usr/bin/env bash
# GPU check of the product's own code on a device machine (an H200): bert_pipeline.stages.train.fit on a BERT-base-sized
# model, bert_pipeline.stages.score.Scorer over 50,000 texts, and train.devices: N when the machine has several GPUs;
# samples/s, tokens/s, texts/s, padding share and MFU (benchmarks/gpu_check.py says how each is counted).
#
#   bash benchmarks/gpu_check.sh [gpu_check.py options]   e.g. --steps 300 --texts 50000 --batch 32, or --cpu-smoke
#   bash benchmarks/gpu_check.sh --fetch-wheels            where a package registry is reachable: download the
#                                                          wheels a machine without one lacks into benchmarks/.wheels
#
# On a bare machine (a fresh copy of the repository, python3 there) it makes a venv in /tmp that sees python3's own
# packages (torch, transformers, ... on the device image are reused as they are), installs what is missing at the
# versions pinned below (those of the project's .venv) from benchmarks/.wheels when that folder holds wheels, else
# from the package index, installs the project (`pip install -e . --no-deps`), and runs gpu_check.py under a time
# limit. The device image lacks pydantic and polars and reaches no index: run --fetch-wheels here first and carry
# benchmarks/.wheels (about 58 MB; it ignores itself in git). Whole run on the H200: well under 5 minutes.
#
# Environment: PYTHON (python3), GPU_CHECK_VENV (/tmp/gpu-check-venv), GPU_CHECK_WHEELS (benchmarks/.wheels),
# GPU_CHECK_SECONDS (240: limit of the python part), DEVICE_PYTHON (3.12: the device's python, for --fetch-wheels),
# GPU_CHECK_FORCE (module names, e.g. "pydantic polars": install those groups even when importable; tests this
# script), OUT (where gpu_check.log goes; /tmp by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${GPU_CHECK_VENV:-/tmp/gpu-check-venv}
WHEELS=${GPU_CHECK_WHEELS:-benchmarks/.wheels}
LIMIT=${GPU_CHECK_SECONDS:-240}
LOG=${OUT:-/tmp}/gpu_check.log

# What `import bert_pipeline.stages.train, bert_pipeline.stages.score` and the check need: module => pinned distributions, at the
# versions of the project's .venv. torch and transformers install with their dependencies (only from an index).
declare -A PINS=(
  [torch]="torch==2.13.0"
  [transformers]="transformers==5.24.0"
  [tokenizers]="tokenizers==0.23.3"
  [safetensors]="safetensors==0.8.0"
  [numpy]="numpy==2.4.6"
  [pyarrow]="pyarrow==26.0.1"
  [polars]="polars==2.1.0 polars-runtime-32==2.1.0"
  [pydantic]="pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0"
  [yaml]="PyYAML==6.0.4"
  [xxhash]="xxhash==4.1.0"
  [fsspec]="fsspec==2026.9.0"
)
WITH_DEPS="torch transformers"
DEVICE_LACKS="polars pydantic"  # not in the device image's package list (.library/device/KINDS.md)

log() { printf '[gpu_check.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

fetch_wheels() {  # here, with an index: the DEVICE_LACKS groups as manylinux x86-64 wheels for DEVICE_PYTHON
  local pins=""
  for module in $DEVICE_LACKS; do pins+=" ${PINS[$module]}"; done
  mkdir -p "$WHEELS"
  echo '*' >"$WHEELS/.gitignore"  # the folder ignores itself: it travels only when `carry` names it
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" $pins
  log "wheels in $WHEELS ($(du -sh "$WHEELS" | cut -f1)); carry it: run(carry=[\"$WHEELS\"], ...)"
}

RUN_PY="$VENV/bin/python"  # the interpreter that runs everything below
TARGET=()                   # pip's --target when there is no venv

make_venv() {  # a venv whose python also sees every site-packages folder of $PY (after its own, .pth files too)
  if [[ ! -x "$VENV/bin/python" ]] && ! "$PY" -m venv --without-pip "$VENV"; then
    log "$PY cannot make a venv: installing into $VENV/site, put on PYTHONPATH, instead"
    RUN_PY=$PY
    TARGET=(--target "$VENV/site")
    mkdir -p "$VENV/site"
    export PYTHONPATH="$VENV/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    return
  fi
  local site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$PY" -c 'import sys
for p in sys.path:
    if p.endswith(("site-packages", "dist-packages")):
        print(f"import site; site.addsitedir({p!r})")' >"$site/_gpu_check_parent.pth"
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip -q --default-pip
}

missing_groups() {  # the modules of PINS the venv cannot import, plus GPU_CHECK_FORCE
  local module
  for module in "${!PINS[@]}"; do
    if [[ " ${GPU_CHECK_FORCE:-} " == *" $module "* ]] || ! "$RUN_PY" -c "import $module" 2>/dev/null; then
      echo "$module"
    fi
  done
}

install_missing() {
  local groups plain="" heavy="" source=() module
  groups=$(missing_groups | sort | tr '\n' ' ')
  if [[ -z "${groups// /}" ]]; then
    log "nothing to install: $PY's packages cover torch, transformers, polars, pydantic, ..."
    return
  fi
  for module in $groups; do
    if [[ " $WITH_DEPS " == *" $module "* ]]; then heavy+=" ${PINS[$module]}"; else plain+=" ${PINS[$module]}"; fi
  done
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    source=(--no-index --find-links "$WHEELS")
  else
    source=(--timeout 20 --retries 1)
  fi
  log "installing for: $groups(from ${source[*]})"
  # shellcheck disable=SC2086
  [[ -z "$plain" ]] || "$RUN_PY" -m pip install -q --no-deps --ignore-installed --no-compile "${source[@]}" \
    ${TARGET[@]+"${TARGET[@]}"} $plain
  # shellcheck disable=SC2086
  [[ -z "$heavy" ]] || "$RUN_PY" -m pip install -q --no-compile "${source[@]}" ${TARGET[@]+"${TARGET[@]}"} $heavy
}

install_project() {  # editable, into the venv; without one (or without setuptools) from the repository root
  if [[ "$RUN_PY" != "$VENV/bin/python" ]] \
    || ! "$RUN_PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1; then
    log "project not pip-installed (no venv or no setuptools): bert_pipeline is imported from the repository root"
  fi
  "$RUN_PY" -c "import bert_pipeline.stages.train, bert_pipeline.stages.score" \
    || { log "cannot import the product with $RUN_PY (see the error above)"; exit 1; }
}

describe_machine() {
  log "$(uname -srm); $(nproc) CPUs; $("$RUN_PY" --version 2>&1) from $PY"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
  fi
  "$RUN_PY" -c 'import importlib.metadata as m
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "?"
print("packages:", ", ".join(f"{d} {version(d)}" for d in ("torch", "transformers", "tokenizers", "polars", "pydantic", "numpy", "pyarrow")))'
}

main() {
  if [[ "${1:-}" == "--fetch-wheels" ]]; then
    fetch_wheels
    return
  fi
  local started=$SECONDS
  make_venv
  install_missing
  install_project
  describe_machine
  log "setup took $((SECONDS - started)) s; running gpu_check.py (limit ${LIMIT} s)"
  local rc=0
  PYTHONUNBUFFERED=1 timeout "$LIMIT" "$RUN_PY" -m benchmarks.gpu_check "$@" 2>&1 | tee "$LOG" || rc=$?
  if ((rc == 124)); then log "gpu_check.py ran past its ${LIMIT} s limit (GPU_CHECK_SECONDS)"; fi
  log "exit $rc after $((SECONDS - started)) s in all; log in $LOG"
  return "$rc"
}

main "$@"
