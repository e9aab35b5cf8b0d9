# Shared by the VNN-COMP scripts (sourced, not run): argument check and how to find nnres.
# shellcheck shell=bash

VERSION_STRING=v1
TOOL_NAME=nnresilience
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOL_DIR=$(dirname "$SCRIPT_DIR")

check_version() {
    if [ "$1" != "$VERSION_STRING" ]; then
        echo "Expected first argument (version string) '$VERSION_STRING', got '$1'" >&2
        exit 1
    fi
}

# The nnres to run: $NNRES if set, else the tool's own venv (install_tool.sh), else PATH.
find_nnres() {
    if [ -n "${NNRES:-}" ]; then
        echo "$NNRES"
    elif [ -x "$TOOL_DIR/.venv/bin/nnres" ]; then
        echo "$TOOL_DIR/.venv/bin/nnres"
    elif command -v nnres >/dev/null 2>&1; then
        command -v nnres
    else
        echo "nnres not found: run install_tool.sh v1 first (or set NNRES)" >&2
        return 1
    fi
}
