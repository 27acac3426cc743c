# Helpers for the command-line tests: each test script sources this file.
# Usage in a test: bash test.sh ENGINE_BINARY SHARED_DIR
set -uo pipefail
ENGINE=${1:?usage: $0 ENGINE SHARED_DIR}
SHARED=${2:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; }
# check NAME CONDITION...: runs the condition, records the result.
check() {
  local name=$1
  shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
# expect_fail NAME PATTERN CMD...: the command must exit 1 and print PATTERN on stderr.
expect_fail() {
  local name=$1 pattern=$2
  shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -eq 1 ] && grep -qF -- "$pattern" <<<"$err"; then ok "$name"; else bad "$name (rc=$rc, stderr: $err)"; fi
}
need_shared() {
  if [ -z "$SHARED" ] || [ ! -f "$SHARED/models/stories260K.gguf" ]; then
    echo "SKIP: shared test data not found at '$SHARED'"
    exit 77
  fi
}
finish() {
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}
