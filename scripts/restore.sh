#!/usr/bin/env bash
# Restore the versioned results on a new machine (`make restore`):
#
#   1. dvc pull            the outputs recorded in dvc.lock, from the DVC remote
#   2. dvc status          refuse when this checkout's code or config.yaml differ from the
#                          ones the results were made with (dvc.lock): touching would
#                          then pass stale results off as current
#   3. snakemake --touch --forceall
#                          `dvc pull` does not keep mtimes, and a new machine has no
#                          .snakemake/ metadata: touching every job (--forceall: also
#                          those whose pulled files happen to be in order) marks the
#                          outputs up to date in DAG order and records the current params
#                          and code hashes, so later changes rerun exactly what they affect
#   4. snakemake -n        shows that nothing is left to do
#
# Usage: scripts/restore.sh [dvc pull options, e.g. -r myremote]
# Restores every stage of dvc.yaml (the default target's outputs). Another config's results
# (a dvc.yaml written by `python -m pipeline dvc-stages --config X`):
#   DVC_FILE=dvc/<run_name>/dvc.yaml CONFIGFILE=X scripts/restore.sh
# Environment: DVC (default: dvc on PATH), SNAKEMAKE (default: snakemake on PATH),
# VENV (default .venv: its bin/ goes first on PATH when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
if [ -d "$VENV/bin" ]; then
    PATH="$PWD/$VENV/bin:$PATH"
fi
DVC="${DVC:-dvc}"
SNAKEMAKE="${SNAKEMAKE:-snakemake}"
command -v "$DVC" >/dev/null || { echo "restore: '$DVC' not found (make dvc installs it)" >&2; exit 1; }
command -v "$SNAKEMAKE" >/dev/null || { echo "restore: '$SNAKEMAKE' not found (make install)" >&2; exit 1; }

DVC_FILE="${DVC_FILE:-}"
CONFIG_ARGS=()
if [ -n "${CONFIGFILE:-}" ]; then
    CONFIG_ARGS=(--configfile "$CONFIGFILE")
fi
echo "restore: dvc pull $* $DVC_FILE" >&2
"$DVC" pull "$@" $DVC_FILE

status="$("$DVC" status --json $DVC_FILE)"
if [ "$status" != "{}" ]; then
    echo "restore: this checkout and the pulled results disagree with dvc.lock (dvc status):" >&2
    "$DVC" status $DVC_FILE >&2 || true
    echo "restore: changed deps/params: check out the commit whose dvc.lock you pulled (or dvc repro);" \
        "deleted outs: they are missing from the remote (dvc push them from the machine that made them)" >&2
    exit 1
fi

echo "restore: snakemake --touch --forceall" >&2
"$SNAKEMAKE" "${CONFIG_ARGS[@]}" --touch --forceall --cores 1 --quiet
"$SNAKEMAKE" "${CONFIG_ARGS[@]}" --dry-run --quiet rules
