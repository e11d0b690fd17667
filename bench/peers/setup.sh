#!/usr/bin/env bash
# Creates the peers' virtualenv (.venv-peers, or $RLREG_PEERS_VENV) with RLlib and MLflow for the
# registry benchmark. They pin versions that clash with .venv (gymnasium==1.2.2 among others), so the
# benchmark runs them in subprocesses of this venv. Never fails `make bench`: whatever cannot be
# installed is reported here, and the benchmark skips that peer with the reason.
set -uo pipefail
cd "$(dirname "$0")/../.."
venv="${RLREG_PEERS_VENV:-.venv-peers}"
req=bench/peers/requirements.txt
stamp="$venv/.installed"
log="$venv/install.log"

if [ -f "$stamp" ] && [ "$stamp" -nt "$req" ]; then
    exit 0
fi
python=""
for c in python3.11 python3 python; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        python="$(command -v "$c")"; break
    fi
done
if [ -z "$python" ]; then
    echo "peers: not installed (python3.11 not found on PATH); the benchmark will skip RLlib and MLflow" >&2
    exit 0
fi
if [ ! -x "$venv/bin/python" ] && ! "$python" -m venv "$venv"; then
    echo "peers: not installed (cannot create $venv); the benchmark will skip RLlib and MLflow" >&2
    exit 0
fi
printf '*\n' > "$venv/.gitignore"
echo "peers: installing RLlib and MLflow into $venv (log: $log)" >&2
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
{
    "${pip[@]}" install --upgrade "pip>=24" &&
    # torch first: 2.13.0 is the CPU build; any other request would download CUDA packages.
    "${pip[@]}" install "torch==2.13.0" &&
    "${pip[@]}" install -r "$req"
} >"$log" 2>&1
if [ $? -eq 0 ]; then
    touch "$stamp"
    exit 0
fi
# Everything at once failed: install what can be, one peer at a time, so one broken peer skips alone.
grep -vE '^[[:space:]]*(#|$)' "$req" | while read -r r; do
    if ! "${pip[@]}" install "$r" >>"$log" 2>&1 </dev/null; then
        echo "peers: $r could not be installed (see $log); the benchmark will skip it" >&2
    fi
done
exit 0
