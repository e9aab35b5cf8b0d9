#!/usr/bin/env bash
# VNN-COMP: run one instance.
#     run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
#
# Writes RESULTS_FILE: "sat" and the counterexample ((X_i v) ... (Y_j v)), "unsat",
# "timeout", "unknown" or "error" (bad input). nnres keeps TIMEOUT (seconds) from the
# start of the process: it ends by TIMEOUT + max(1 s, 5 %) whatever the solver does.
# The exit code is nnres's: 0 for any verdict, 2 bad input, 3 internal error.
set -uo pipefail
. "$(dirname "$0")/_common.sh"
check_version "${1:-}"
CATEGORY=${2:?category}
ONNX_FILE=${3:?onnx file}
VNNLIB_FILE=${4:?vnnlib file}
RESULTS_FILE=${5:?results file}
TIMEOUT=${6:?timeout}

echo "Running $TOOL_NAME on category '$CATEGORY', onnx '$ONNX_FILE', vnnlib '$VNNLIB_FILE'," \
     "results '$RESULTS_FILE', timeout $TIMEOUT"
NNRES_BIN=$(find_nnres) || { echo "error" > "$RESULTS_FILE"; exit 1; }
exec "$NNRES_BIN" vnncomp "$ONNX_FILE" "$VNNLIB_FILE" "$RESULTS_FILE" "$TIMEOUT" --quiet
