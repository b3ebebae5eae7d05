#!/usr/bin/env bash
# Build the extension into a private folder: scripts/dev_build.sh NAME
# then run with LLAMAPY_DEV_BUILD=/tmp/llp-build-NAME PYTHONPATH=src.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: dev_build.sh NAME}
out=/tmp/llp-build-$name
py=${PYTHON:-.venv/bin/python}
"$py" setup.py -q build_ext -b "$out" -t "$out/tmp" 2>&1 | grep -E "error|warning: (unused|implicit)|Error" || true
test -n "$(ls "$out"/llamapy/_kernels/_ops*.so 2>/dev/null)" && echo "built: LLAMAPY_DEV_BUILD=$out"
