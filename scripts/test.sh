#!/usr/bin/env bash
# The whole suite, on SQLite and on PostgreSQL (a throwaway database on the local cluster). The two
# passes run side by side, and each is split over TEST_WORKERS pytest-xdist workers (default 2,
# at most 4; one test file stays on one worker, so module fixtures are made once): on 2 cores that
# takes about a third off the time. Every worker has its own database and Redis db
# (tests/conftest.py). Tests marked `serial` (pytest.ini says why: among them every test that
# measures a promised time, which the other workers' load would blur) run after the others, in one
# process. Each pass's output (with its 20 slowest tests) is printed whole at the end. pytest's exit
# 5 (no tests collected) counts as failure.
set -uo pipefail
cd "$(dirname "$0")/.."
which_dbs="${1:-sqlite postgres}"
workers="${TEST_WORKERS:-2}"
mkdir -p var

one_pass() {  # one_pass DBKIND: both phases, output to var/test-DBKIND.log, exit code to …rc
  local dbkind=$1 rc
  if [ "$dbkind" = postgres ]; then
    su postgres -c "psql -qc 'drop database if exists workflows_test with (force)'" >/dev/null 2>&1
    su postgres -c "psql -qc 'create database workflows_test owner workflows'" >/dev/null
    export TEST_DATABASE_URL="postgresql://workflows:workflows@127.0.0.1:5432/workflows_test"
  else
    export TEST_DATABASE_URL="sqlite"
  fi
  # shellcheck disable=SC2086
  .venv/bin/python -m pytest -q -p no:cacheprovider --durations=20 -n "$workers" --dist loadfile -m "not serial" \
    tests ${PYTEST_ARGS:-} >"var/test-$dbkind.log" 2>&1
  rc=$?
  echo "-- serial tests, in one process" >>"var/test-$dbkind.log"
  # shellcheck disable=SC2086
  .venv/bin/python -m pytest -q -p no:cacheprovider -m serial tests ${PYTEST_ARGS:-} >>"var/test-$dbkind.log" 2>&1
  local rc2=$?
  [ "$rc2" -eq 5 ] && rc2=0  # PYTEST_ARGS may leave no serial test: the first phase judges
  [ "$rc" -eq 0 ] && rc=$rc2
  echo "$rc" >"var/test-$dbkind.rc"
}

for dbkind in $which_dbs; do
  one_pass "$dbkind" &
done
echo "== running the suite on: $which_dbs (side by side, $workers workers each; output below when both end)"
wait
status=0
for dbkind in $which_dbs; do
  echo "== tests on $dbkind"
  cat "var/test-$dbkind.log"
  rc=$(cat "var/test-$dbkind.rc" 2>/dev/null || echo 1)
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 5 ] && echo "pytest collected no tests on $dbkind: that is a failure"
    status=1
  fi
done
exit $status
