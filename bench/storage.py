"""What stored output costs the database, against the bytes the runs wrote (PostgreSQL).

Each case is one run on a stack over PostgreSQL; the database's growth is the size of
run_log_blocks (its table, TOAST and indexes: `pg_total_relation_size`) after the run less before,
and the captured bytes are the run's stdout and stderr byte counts.
  ordinary flood:  200,000 lines of access-log text as fast as the shell writes them;
  ordinary slow:   the same kind of line, about 100 a second for SLOW_SEC;
  random base64:   6 MB of /dev/urandom in base64 (what little text can hold of noise).

    .venv/bin/python bench/storage.py [SLOW_SEC]
"""
from __future__ import annotations

import sys

from stack import Stack, fresh_database, psql

DATABASE = "wf_bench_storage"
LINE = ('echo "2026-12-07T08:$((i % 60)):$((i % 59)).$((i % 997))Z INFO web-$((i % 7)) '
        'GET /api/teams/$((i % 31))/items/$i?page=$((i % 5)) 200 $((i % 97)) ms ua=curl/8.5 rid=$((i * 7919))"')
CASES = {
    "ordinary flood": f"i=0; while [ $i -lt 200000 ]; do {LINE}; i=$((i+1)); done",
    "ordinary slow": f"i=0; while [ $i -lt {{lines}} ]; do {LINE}; i=$((i+1)); usleep 10000; done",
    "random base64": "head -c 6000000 /dev/urandom | base64",
}


def size() -> int:
    return int(psql("select pg_total_relation_size('run_log_blocks')", DATABASE))


def captured(public_id: str) -> int:
    return int(psql(f"select stdout_bytes + stderr_bytes from runs where public_id = '{public_id}'", DATABASE))


def main() -> None:
    slow_sec = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    url = fresh_database(DATABASE)
    print("bench/storage.py: stored output against captured bytes, PostgreSQL")
    with Stack(slots=1, redis_db=10, database_url=url) as stack:
        for name, script in CASES.items():
            wf = stack.create_workflow(name=name.replace(" ", "-"), timeoutSec=3600,
                                       command=["sh", "-c", script.format(lines=slow_sec * 100)])
            psql("vacuum run_log_blocks", DATABASE)
            before = size()
            run = stack.wait_terminal(stack.trigger(wf)["id"], every=0.5, limit=3600)
            assert run["status"] == "succeeded", run
            psql("vacuum run_log_blocks", DATABASE)
            grown, wrote = size() - before, captured(run["id"])
            rows = psql("select count(*), count(packed) from run_log_blocks b join runs r on r.id = b.run_id "
                        f"where r.public_id = '{run['id']}'", DATABASE).strip().replace("|", " rows, ")
            print(f"  {name}: captured {wrote:,} bytes, database grew {grown:,} bytes: "
                  f"{grown / wrote:.3f}x ({rows} packed)")


if __name__ == "__main__":
    main()
