"""Captured output past the per-run cap: the head, a notice, the last 1 MiB; exact accounting."""
from __future__ import annotations

from conftest import all_logs, create_wf, wait_status


def base(m):
    return f"/api/workflows/{m.team_id}/workflows"


def logs(client, m, run_id):
    return all_logs(client, m, run_id)


def fire(client, m, **wf_fields):
    wf = create_wf(client, m, **wf_fields)
    r = client.post(f"{base(m)}/{wf['id']}/trigger", headers=m.h())
    return wf, r.get_json()


def test_log_cap_keeps_head_and_tail(client, alice, procs):
    # a worker with a 2 MiB cap: 1 MiB head, 1 MiB tail
    procs.worker(1, env={"LOG_CAP_BYTES": str(2 * 1024 * 1024)})
    procs.scheduler()
    script = "i=0; while [ $i -lt 120000 ]; do echo \"line-$i-abcdefghijklmnopqrstuvwxyz\"; i=$((i+1)); done"
    _, run = fire(client, alice, command=["sh", "-c", script], timeoutSec=300)
    done = wait_status(client, alice, run["id"], timeout=240)
    assert done["status"] == "succeeded"
    body = logs(client, alice, run["id"])
    assert body["truncated"] is True and body["droppedBytes"] > 0
    texts = [l["text"] for l in body["lines"]]
    assert texts[0] == "line-0-abcdefghijklmnopqrstuvwxyz"
    assert texts[-1] == "line-119999-abcdefghijklmnopqrstuvwxyz"
    notice = [l for l in body["lines"] if l["stream"] == "system"]
    assert len(notice) == 1 and "dropped" in notice[0]["text"]
    stored = sum(len(t) + 1 for t in texts if not t.startswith("["))
    assert stored <= 2 * 1024 * 1024
    total = sum(len(f"line-{i}-abcdefghijklmnopqrstuvwxyz") + 1 for i in range(120000))
    assert stored + body["droppedBytes"] == total
    # the kept tail is contiguous up to the end
    tail_start = texts.index(notice[0]["text"]) + 1
    first_tail = int(texts[tail_start].split("-")[1])
    assert texts[tail_start:] == [f"line-{i}-abcdefghijklmnopqrstuvwxyz" for i in range(first_tail, 120000)]




def test_nul_bytes_in_output_are_stored_as_replacement_characters(client, alice, procs):
    procs.worker(1)
    procs.scheduler()
    _, run = fire(client, alice, command=["sh", "-c", "printf 'a\\000b\\n'; echo after"])
    done = wait_status(client, alice, run["id"], timeout=30)
    assert done["status"] == "succeeded"
    assert [l["text"] for l in logs(client, alice, run["id"])["lines"]] == ["a\ufffdb", "after"]
