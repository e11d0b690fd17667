#!/usr/bin/env bash
# Creates .venv on first use and installs everything: torch (CPU build) first, then rlreg with its extras.
# Usage: scripts/bootstrap.sh [extras]   (default extras: s3,postgres,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-s3,postgres,test}"
venv=.venv
stamp="$venv/.installed-${extras//,/-}"

find_python() {
    for c in python3.11 python3 python; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            command -v "$c"; return 0
        fi
    done
    echo "rlreg needs Python 3.11 (python3.11 not found on PATH)" >&2
    return 1
}

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    "$(find_python)" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=24" >/dev/null
# torch first: 2.13.0 is the CPU build; any other request would download CUDA packages.
"${pip[@]}" install "torch==2.13.0" 2>&1 | { grep -v "is ignored: it is neither" || true; }
"${pip[@]}" install -e ".[${extras}]" 2>&1 | { grep -vE "is ignored: it is neither|BuildBackendWarning|^ *(!!|\*+|$)" || true; }
touch "$stamp"
