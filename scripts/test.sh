#!/usr/bin/env bash
# The whole suite, on SQLite and on PostgreSQL (a throwaway database on the local cluster). The two
# passes run side by side, each with its own database and Redis db (tests/conftest.py), so the
# suite takes the time of one pass and a little more. Each pass's output is printed whole at the
# end. pytest's exit 5 (no tests collected) counts as failure.
set -uo pipefail
cd "$(dirname "$0")/.."
which_dbs="${1:-sqlite postgres}"
mkdir -p var
for dbkind in $which_dbs; do
  (
    if [ "$dbkind" = postgres ]; then
      su postgres -c "psql -qc 'drop database if exists workflows_test'" >/dev/null 2>&1
      su postgres -c "psql -qc 'create database workflows_test owner workflows'" >/dev/null
      export TEST_DATABASE_URL="postgresql://workflows:workflows@127.0.0.1:5432/workflows_test"
    else
      export TEST_DATABASE_URL="sqlite"
    fi
    # shellcheck disable=SC2086
    .venv/bin/python -m pytest -q -p no:cacheprovider tests ${PYTEST_ARGS:-} >"var/test-$dbkind.log" 2>&1
    echo $? >"var/test-$dbkind.rc"
  ) &
done
echo "== running the suite on: $which_dbs (side by side; output below when both end)"
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
