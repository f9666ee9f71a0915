#!/usr/bin/env bash
# TruckPilot's one entry point: does all set-up on a fresh machine, then runs.
#   ./run.sh demo            record, train and drive on the built-in simulator
#   ./run.sh test [ARGS]     the test suite (pytest ARGS)
#   ./run.sh COMMAND [ARGS]  any `truckpilot` command
# Set-up: a virtual environment in .venv (TRUCKPILOT_VENV overrides) with the
# project installed editable; Xvfb and xdotool from apt when missing and we are
# root (the X11 tests and `bench` need them). Re-installs when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"
venv="${TRUCKPILOT_VENV:-.venv}"

if [ ! -x "$venv/bin/python" ]; then
    echo "run.sh: creating virtual environment $venv" >&2
    python3 -m venv "$venv"
fi
stamp="$venv/.truckpilot-installed-$(sha1sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "run.sh: installing TruckPilot and its dependencies into $venv (first run: a few minutes)" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[dev]'
    rm -f "$venv"/.truckpilot-installed-*
    touch "$stamp"
fi

missing=()
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
command -v xdotool >/dev/null 2>&1 || missing+=(xdotool)
command -v xclock >/dev/null 2>&1 || missing+=(x11-apps)  # a third-party window for the live-window tests
command -v xdpyinfo >/dev/null 2>&1 || missing+=(x11-utils)  # xwininfo, xdpyinfo: the X11 tests read the server with them
command -v openbox >/dev/null 2>&1 || missing+=(openbox)   # a window manager for their minimise / activate test
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing ${missing[*]} with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "run.sh: warning: ${missing[*]} not installed; X11 tests and capture benchmarks will be skipped. Install with: sudo apt-get install ${missing[*]}" >&2
    fi
fi

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
    test) exec "$venv/bin/python" -m pytest "$@" ;;
    *) exec "$venv/bin/truckpilot" "$cmd" "$@" ;;
esac
