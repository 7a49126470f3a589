#!/usr/bin/env bash
# The whole suite, on SQLite and then on PostgreSQL (a throwaway database on the local cluster).
# pytest's exit 5 (no tests collected) counts as failure.
set -uo pipefail
cd "$(dirname "$0")/.."
which_dbs="${1:-sqlite postgres}"
status=0
for dbkind in $which_dbs; do
  if [ "$dbkind" = postgres ]; then
    su postgres -c "psql -qc 'drop database if exists workflows_test'" >/dev/null
    su postgres -c "psql -qc 'create database workflows_test owner workflows'" >/dev/null
    export TEST_DATABASE_URL="postgresql://workflows:workflows@127.0.0.1:5432/workflows_test"
  else
    export TEST_DATABASE_URL="sqlite"
  fi
  echo "== tests on $dbkind"
  .venv/bin/python -m pytest -q -p no:cacheprovider tests ${PYTEST_ARGS:-}
  rc=$?
  if [ $rc -ne 0 ]; then
    [ $rc -eq 5 ] && echo "pytest collected no tests on $dbkind: that is a failure"
    status=1
  fi
done
exit $status
