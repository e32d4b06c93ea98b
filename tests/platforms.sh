#!/usr/bin/env bash
# Client-platform tests: the official Java client (Android) 1.x and 2.x, then
# python-socketio 4.x and 5.x, each over websocket only and polling only,
# against the server binary ($AO_BIN, else target/debug/always-online).
#
# Ends with one line `platforms: N passed, M failed`, N and M counted from the
# Maven Surefire and pytest JUnit reports; exits non-zero on any failure. A
# suite that fails without reporting a failed test (a build or install error)
# counts as one failed test.
#
# Needs: Java 17 + Maven (Maven Central), Python 3 with venv (PyPI). The
# Maven repository (~/.m2) and the Python venvs (~/.cache/always-online/py, or
# $AO_PY_VENV_DIR) are reused between runs.
set -uo pipefail

tests="$(cd "$(dirname "$0")" && pwd)"
export AO_BIN="${AO_BIN:-$tests/../target/debug/always-online}"
if [ ! -x "$AO_BIN" ]; then
  echo "platforms: server binary not found at $AO_BIN: run \`cargo build\` or set AO_BIN" >&2
  echo "platforms: 0 passed, 1 failed"
  exit 1
fi

py_results="$tests/python/.results"
export AO_PY_RESULTS_DIR="$py_results"

# Counts "passed failed" in the JUnit XML files given.
count() {
  python3 - "$@" <<'EOF'
import sys
import xml.etree.ElementTree as ET

passed = failed = 0
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f'platforms: unreadable report {path}: {e}', file=sys.stderr)
        failed += 1
        continue
    suites = [root] if root.tag == 'testsuite' else root.iter('testsuite')
    for s in suites:
        tests = int(s.get('tests', 0))
        bad = int(s.get('failures', 0)) + int(s.get('errors', 0))
        skipped = int(s.get('skipped', 0))
        passed += tests - bad - skipped
        failed += bad
print(passed, failed)
EOF
}

total_passed=0
total_failed=0
status=0

# run NAME REPORT_GLOB COMMAND...: runs one suite and adds its counts.
run() {
  local name="$1" glob="$2"
  shift 2
  echo "== $name"
  local rc=0
  "$@" || rc=$?
  local reports=()
  # shellcheck disable=SC2206
  reports=($glob)
  local p=0 f=0
  if [ -e "${reports[0]:-}" ]; then
    read -r p f < <(count "${reports[@]}")
  fi
  if [ "$rc" -ne 0 ]; then
    status=1
    if [ "$f" -eq 0 ]; then
      echo "platforms: $name exited with $rc without a failed test in its reports" >&2
      f=1
    fi
  elif [ "$f" -ne 0 ]; then
    status=1
  fi
  echo "$name: $p passed, $f failed"
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
}

# Stale reports would be counted again.
rm -rf "$tests"/java/v1/target/surefire-reports "$tests"/java/v2/target/surefire-reports "$py_results"

# (Debian's Maven prints stray colour resets even with -B: dropped.)
run java "$tests/java/v*/target/surefire-reports/TEST-*.xml" \
  bash -c 'set -o pipefail; cd "$1" && mvn -q -B -fae test 2>&1 | sed -e "s/\x1b\[0m//g"' _ "$tests/java"
run python "$py_results/sio*.xml" \
  "$tests/python/run.sh"

echo "platforms: $total_passed passed, $total_failed failed"
if [ "$total_failed" -ne 0 ]; then status=1; fi
exit "$status"
