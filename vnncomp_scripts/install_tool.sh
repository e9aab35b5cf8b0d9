#!/usr/bin/env bash
# VNN-COMP: install nnresilience.    install_tool.sh v1
#
# Creates $TOOL_DIR/.venv (the repository root, one folder up), installs the package and
# its solvers (HiGHS, SCIP wheels; no GPU, no licence needed) and checks the install on
# the two shipped smoke instances (one sat, one unsat). Exit 0 on success.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
check_version "${1:-}"

PYTHON=${PYTHON:-python3}
echo "Installing $TOOL_NAME into $TOOL_DIR/.venv with $($PYTHON --version 2>&1)"
"$PYTHON" -m venv "$TOOL_DIR/.venv"
"$TOOL_DIR/.venv/bin/pip" install --quiet --upgrade pip
"$TOOL_DIR/.venv/bin/pip" install --quiet -e "$TOOL_DIR"
"$SCRIPT_DIR/self_test.sh" v1
