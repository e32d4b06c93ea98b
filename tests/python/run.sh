#!/usr/bin/env bash
# Runs the python-socketio suite once per client line, each in its own venv:
#   sio4: python-socketio 4.x (engine.io protocol 3), requirements-sio4.txt
#   sio5: python-socketio 5.x (engine.io protocol 4), requirements-sio5.txt
# The venvs live under ${AO_PY_VENV_DIR:-$HOME/.cache/always-online/py} and are
# rebuilt only when their requirements file (or the Python) changes.
# JUnit XML reports go to ${AO_PY_RESULTS_DIR:-tests/python/.results}.
# Extra arguments are passed to pytest (e.g. -k kickout, -x).
# Environment: AO_BIN (server binary), PYTHON (default python3),
# AO_PY_LINES (default "4 5").
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venvs="${AO_PY_VENV_DIR:-$HOME/.cache/always-online/py}"
results="${AO_PY_RESULTS_DIR:-$here/.results}"
py="${PYTHON:-python3}"
mkdir -p "$venvs" "$results"

# Prepares the venv of line $1; prints its python.
venv_for() {
  local line="$1" req="$here/requirements-sio$1.txt" venv="$venvs/sio$1"
  local want
  want="$({ cat "$req"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "python: installing $req into $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || return 1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req" >&2 || return 1
    echo "$want" >"$venv/.requirements.sha256"
  fi
  echo "$venv/bin/python"
}

status=0
for line in ${AO_PY_LINES:-4 5}; do
  report="$results/sio$line.xml"
  rm -f "$report"
  if ! vpy="$(venv_for "$line")"; then
    echo "python: could not install requirements-sio$line.txt" >&2
    status=1
    continue
  fi
  echo "== python-socketio $("$vpy" -c 'import importlib.metadata as m; print(m.version("python-socketio"))') (AO_PY_SIO_LINE=$line)"
  (cd "$here" && AO_PY_SIO_LINE="$line" "$vpy" -m pytest -q -rfE \
      --junitxml="$report" -o junit_suite_name="python-socketio-$line" "$@") || status=1
done
exit "$status"
