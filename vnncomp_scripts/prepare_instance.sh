#!/usr/bin/env bash
# VNN-COMP: prepare one instance.    prepare_instance.sh v1 CATEGORY ONNX VNNLIB
#
# nnresilience needs no per-instance preparation; this checks that the model loads, that
# the property parses and that their sizes match, so a broken instance is reported here
# (exit 1, one line naming the problem) instead of costing the instance's time budget.
# No processes are killed: nnres leaves none behind (every child dies with its parent).
set -uo pipefail
. "$(dirname "$0")/_common.sh"
check_version "${1:-}"
CATEGORY=${2:?category}
ONNX_FILE=${3:?onnx file}
VNNLIB_FILE=${4:?vnnlib file}

echo "Preparing $TOOL_NAME for category '$CATEGORY', onnx '$ONNX_FILE', vnnlib '$VNNLIB_FILE'"
NNRES_BIN=$(find_nnres) || exit 1
if ! "$NNRES_BIN" info "$ONNX_FILE" --property "$VNNLIB_FILE" >/dev/null; then
    exit 1
fi
exit 0
