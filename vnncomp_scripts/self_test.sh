#!/usr/bin/env bash
# VNN-COMP: run the shipped smoke instances through prepare_instance.sh and
# run_instance.sh and check the answers (smoke_sat: sat with a witness, smoke_unsat:
# unsat).    self_test.sh v1
set -euo pipefail
. "$(dirname "$0")/_common.sh"
check_version "${1:-}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for expect in sat unsat; do
    onnx="$SCRIPT_DIR/smoke/smoke.onnx"
    vnnlib="$SCRIPT_DIR/smoke/smoke_$expect.vnnlib"
    "$SCRIPT_DIR/prepare_instance.sh" v1 smoke "$onnx" "$vnnlib"
    "$SCRIPT_DIR/run_instance.sh" v1 smoke "$onnx" "$vnnlib" "$work/out.txt" 30
    got=$(head -n 1 "$work/out.txt" | tr -d '[:space:]')
    if [ "$got" != "$expect" ]; then
        echo "self test failed: smoke_$expect gave '$got'" >&2
        exit 1
    fi
done
echo "self test passed: smoke_sat -> sat, smoke_unsat -> unsat"
