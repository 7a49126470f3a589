"""The live log websocket against a real server, a real worker and the real engine."""
from __future__ import annotations

import threading

import pytest
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused

from conftest import create_wf, wait_for, wait_status
from live_client import collect, stream_url

pytestmark = pytest.mark.usefixtures("worker")

TICKER = "for i in $(seq 0 19); do echo tick-$i; [ $((i % 5)) = 4 ] && echo warn-$i >&2; sleep 0.25; done"


def start_ticker(client, m):
    wf = create_wf(client, m, command=["sh", "-c", TICKER])
    return client.post(f"/api/workflows/{m.team_id}/workflows/{wf['id']}/trigger", headers=m.h()).get_json()


def test_lines_arrive_while_the_container_runs(client, alice, ws_server):
    run = start_ticker(client, alice)
    wait_status(client, alice, run["id"], statuses=("running",), timeout=20)
    got = collect(stream_url(ws_server, alice, run["id"]), alice.h())
    frames = [f for _, f in got]
    assert frames[-1] == {"event": "end", "status": "succeeded"}, frames
    out = [f["text"] for f in frames if f.get("stream") == "stdout"]
    assert out == [f"tick-{i}" for i in range(20)], frames
    assert out == [f"tick-{i}" for i in range(20)]
    assert [f["text"] for f in frames if f.get("stream") == "stderr"] == ["warn-4", "warn-9", "warn-14", "warn-19"]
    times = [t for t, f in got if f.get("stream") == "stdout"]
    # spread over the run (~5 s), not lumped at the end
    assert times[-1] - times[0] >= 3.0
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 1.0
    assert all(set(f) >= {"stream", "text", "ts"} for f in frames[:-1])


def test_a_viewer_joining_midway_gets_every_line_once(client, alice, ws_server):
    run = start_ticker(client, alice)
    first = []
    t = threading.Thread(target=lambda: first.extend(collect(stream_url(ws_server, alice, run["id"]), alice.h())))
    t.start()
    wait_for(lambda: len([l for l in client.get(f"/api/workflows/{alice.team_id}/workflows/runs/{run['id']}/logs",
                                              headers=alice.h()).get_json()["lines"]]) >= 8, 20)
    late = collect(stream_url(ws_server, alice, run["id"]), alice.h())
    t.join(30)
    for got in (first, late):
        frames = [f for _, f in got]
        seqs = [f["seq"] for f in frames if "seq" in f]
        assert seqs == sorted(set(seqs)) == list(range(len(seqs)))
        assert [f["text"] for f in frames if f.get("stream") == "stdout"] == [f"tick-{i}" for i in range(20)]
        assert frames[-1]["event"] == "end"


def test_a_viewer_that_has_the_page_tail_gets_only_what_follows_it(client, alice, ws_server):
    """The run page keeps the lines it came with and asks for those past them (?afterSeq=): each
    line once, none before, whether the rest is stored, live, or both."""
    run = start_ticker(client, alice)
    logs = f"/api/workflows/{alice.team_id}/workflows/runs/{run['id']}/logs"
    wait_for(lambda: len(client.get(logs, headers=alice.h()).get_json()["lines"]) >= 8, 20)
    page_tail = client.get(logs, headers=alice.h()).get_json()["lines"][-1]["seq"]
    rest = [f for _, f in collect(stream_url(ws_server, alice, run["id"]) + f"?afterSeq={page_tail}", alice.h())]
    assert rest[-1] == {"event": "end", "status": "succeeded"}
    stored = client.get(logs, headers=alice.h()).get_json()["lines"]
    assert [f["seq"] for f in rest[:-1]] == [line["seq"] for line in stored if line["seq"] > page_tail]
    finished = [f for _, f in collect(stream_url(ws_server, alice, run["id"]) + "?afterSeq=20", alice.h())]
    assert [f["seq"] for f in finished[:-1]] == [line["seq"] for line in stored if line["seq"] > 20]
    assert finished[-1]["event"] == "end" and len(finished) > 2
    for bad in ("x", "-2", "99999999999"):
        with pytest.raises(HandshakeRefused) as e:
            Client.connect(stream_url(ws_server, alice, run["id"]) + f"?afterSeq={bad}", headers=alice.h())
        assert "400" in str(e.value)


def test_a_finished_run_streams_its_backlog_then_ends(client, alice, ws_server):
    run = start_ticker(client, alice)
    wait_status(client, alice, run["id"])
    frames = [f for _, f in collect(stream_url(ws_server, alice, run["id"]), alice.h())]
    assert len([f for f in frames if f.get("stream") == "stdout"]) == 20
    assert frames[-1] == {"event": "end", "status": "succeeded"}


def test_the_stream_needs_credentials_and_the_right_team(client, alice, charlie, ws_server):
    run = start_ticker(client, alice)
    for headers, status in (({}, 401), (charlie.h(), 404), ({"Authorization": "Bearer hs_live_x"}, 401),
                            ({**alice.h(), "Origin": "http://evil.example"}, 403)):
        with pytest.raises(HandshakeRefused) as e:
            Client.connect(stream_url(ws_server, alice, run["id"]), headers=headers)
        assert str(status) in str(e.value)
    wait_status(client, alice, run["id"])
