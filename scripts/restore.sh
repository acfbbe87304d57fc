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
# Usage: scripts/restore.sh [dvc pull arguments, e.g. -r myremote]
# Environment: DVC (default: dvc on PATH), SNAKEMAKE (default: snakemake on PATH),
# VENV (default .venv: its bin/ goes first on PATH when it exists),
# RESTORE_TARGETS (Snakemake targets/options for the touch, default: the default target;
# e.g. "--until train" after `dvc pull data models`).
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

echo "restore: dvc pull $*" >&2
"$DVC" pull "$@"

status="$("$DVC" status --json)"
if [ "$status" != "{}" ]; then
    echo "restore: the pulled results do not belong to this checkout's code/config (dvc status):" >&2
    "$DVC" status >&2 || true
    echo "restore: check out the commit whose dvc.lock you pulled, or rerun what changed: dvc repro" >&2
    exit 1
fi

echo "restore: snakemake ${RESTORE_TARGETS:-} --touch --forceall" >&2
# shellcheck disable=SC2086  # RESTORE_TARGETS is a list of words on purpose
"$SNAKEMAKE" ${RESTORE_TARGETS:-} --touch --forceall --cores 1 --quiet
# shellcheck disable=SC2086
"$SNAKEMAKE" ${RESTORE_TARGETS:-} --dry-run --quiet rules
