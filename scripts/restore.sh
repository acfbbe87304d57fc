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
# Restores every stage of dvc.yaml (the default target's outputs).
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

echo "restore: dvc pull $*" >&2
"$DVC" pull "$@"

status="$("$DVC" status --json)"
if [ "$status" != "{}" ]; then
    echo "restore: this checkout and the pulled results disagree with dvc.lock (dvc status):" >&2
    "$DVC" status >&2 || true
    echo "restore: changed deps/params: check out the commit whose dvc.lock you pulled (or dvc repro);" \
        "deleted outs: they are missing from the remote (dvc push them from the machine that made them)" >&2
    exit 1
fi

echo "restore: snakemake --touch --forceall" >&2
"$SNAKEMAKE" --touch --forceall --cores 1 --quiet
"$SNAKEMAKE" --dry-run --quiet rules
