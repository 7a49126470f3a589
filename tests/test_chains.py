"""Chains: `after` edges validated (same project, no cycle, at most 16), and on the real engine one
run of each downstream workflow per upstream run that ends in the edge's state, with the upstream's
id, status and exit code in its env; the run page links both ways, the workflow page draws them."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import create_wf, wait_for, wait_status
from runs_api import base, end_at_once as end, lines, trigger

ECHO_UPSTREAM = ["sh", "-c", 'echo "$WORKFLOW_UPSTREAM_RUN_ID $WORKFLOW_UPSTREAM_STATUS $WORKFLOW_UPSTREAM_EXIT_CODE"']


def patch(client, m, wf_id: str, body: dict):
    return client.patch(f"{base(m)}/{wf_id}", json=body, headers=m.h())


def runs_of(client, m, wf_id: str) -> list[dict]:
    return client.get(f"{base(m)}/{wf_id}/runs?limit=100", headers=m.h()).get_json()["runs"]


def test_after_edges_are_kept_in_order_and_replaced_whole(client, alice):
    a, b = create_wf(client, alice, name="a"), create_wf(client, alice, name="b")
    c = create_wf(client, alice, name="c", after=[{"workflow": b["id"], "on": "failed"}, {"workflow": a["id"]}])
    assert c["after"] == [{"workflow": b["id"], "on": "failed"}, {"workflow": a["id"], "on": "succeeded"}]
    assert create_wf(client, alice, name="d")["after"] == []  # a client that never sends it
    got = patch(client, alice, c["id"], {"name": "c2"}).get_json()
    assert got["after"] == c["after"]
    got = patch(client, alice, c["id"], {"after": [{"workflow": a["id"], "on": "finished"}]}).get_json()
    assert got["after"] == [{"workflow": a["id"], "on": "finished"}]
    listed = client.get(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows", headers=alice.h()).get_json()
    assert {w["name"]: w["after"] for w in listed["workflows"]}["c2"] == got["after"]
    client.delete(f"{base(alice)}/{a['id']}", headers=alice.h())  # a deleted upstream fires nothing more
    assert client.get(f"{base(alice)}/{c['id']}", headers=alice.h()).get_json()["after"] == []


def test_bad_edges_are_refused_naming_after(client, alice):
    a, b = create_wf(client, alice, name="a"), create_wf(client, alice, name="b")
    c = create_wf(client, alice, name="c", after=[{"workflow": b["id"]}])
    patch(client, alice, b["id"], {"after": [{"workflow": a["id"]}]})  # a → b → c
    project = client.post(f"/api/teams/{alice.team_id}/projects", json={"name": "other"}, headers=alice.h()).get_json()
    r = client.post(f"/api/projects/{alice.team_id}/{project['id']}/workflows", headers=alice.h(),
                    json={"projectId": project["id"], "name": "elsewhere", "image": "busybox"})
    elsewhere = r.get_json()
    cases = [
        ({"after": [{"workflow": elsewhere["id"]}]}, a, f"no workflow {elsewhere['id']} in this project"),
        ({"after": [{"workflow": c["id"]}]}, a, "would make a cycle: a → b → c → a"),
        ({"after": [{"workflow": b["id"]}]}, a, "would make a cycle: a → b → a"),
        ({"after": [{"workflow": a["id"]}]}, a, "a workflow cannot run after itself"),
        ({"after": [{"workflow": "wf_nothere"}]}, a, "no workflow wf_nothere in this project"),
        ({"after": [{"workflow": b["id"]}, {"workflow": b["id"], "on": "failed"}]}, c, f"{b['id']} is listed twice"),
        ({"after": [{"workflow": b["id"], "on": "done"}]}, c, "must be one of 'succeeded', 'failed' or 'finished'"),
        ({"after": [{"workflow": f"wf_{i}"} for i in range(17)]}, c, "at most 16 items"),
        ({"after": None}, c, "must not be null"),
    ]
    for body, wf, message in cases:
        r = patch(client, alice, wf["id"], body)
        assert r.status_code == 400 and r.get_json()["error"]["fields"] == {"after": message}, (body, r.get_json())
    kept = client.get(f"{base(alice)}/{c['id']}", headers=alice.h()).get_json()["after"]
    assert kept == [{"workflow": b["id"], "on": "succeeded"}]


def test_another_teams_or_projects_workflow_is_not_an_upstream(client, alice, charlie):
    theirs = create_wf(client, charlie, name="theirs")
    r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows", headers=alice.h(),
                    json={"projectId": alice.project_id, "name": "x", "image": "busybox",
                          "after": [{"workflow": theirs["id"]}]})
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {"after": f"no workflow {theirs['id']} in this project"}


@pytest.mark.usefixtures("worker")
def test_an_upstream_end_fires_each_matching_downstream_once_with_its_ids_in_env(client, alice):
    up = create_wf(client, alice, name="extract", command=["sh", "-c", "echo extracted"])
    on_success = create_wf(client, alice, name="report", command=ECHO_UPSTREAM, after=[{"workflow": up["id"]}])
    on_end = create_wf(client, alice, name="cleanup", command=ECHO_UPSTREAM,
                       after=[{"workflow": up["id"], "on": "finished"}])
    on_failure = create_wf(client, alice, name="alarm", command=ECHO_UPSTREAM,
                           after=[{"workflow": up["id"], "on": "failed"}])
    first = trigger(client, alice, up["id"])
    for wf in (on_success, on_end):
        [run] = wait_for(lambda: runs_of(client, alice, wf["id"]) or None, 30)
        done = wait_status(client, alice, run["id"])
        assert (done["trigger"], done["triggeredBy"], done["status"]) == ("chain", first["id"], "succeeded")
        assert lines(client, alice, run["id"]) == [f"{first['id']} succeeded 0"]
    assert runs_of(client, alice, on_failure["id"]) == []

    flaky = create_wf(client, alice, name="flaky", command=["sh", "-c", "exit 4"], maxRetries=1, retryBackoffSec=0)
    alarm = create_wf(client, alice, name="flaky-alarm", command=ECHO_UPSTREAM,
                      after=[{"workflow": flaky["id"], "on": "failed"}])
    trigger(client, alice, flaky["id"])
    [run] = wait_for(lambda: runs_of(client, alice, alarm["id"]) or None, 30)  # after its retries, not per attempt
    last = runs_of(client, alice, flaky["id"])[0]
    assert (last["attempt"], run["triggeredBy"]) == (2, last["id"])
    wait_status(client, alice, run["id"])
    assert lines(client, alice, run["id"]) == [f"{last['id']} failed 4"]
    assert len(runs_of(client, alice, alarm["id"])) == 1
    assert len(runs_of(client, alice, on_success["id"])) == 1  # nothing new from other workflows' ends


@pytest.mark.usefixtures("worker")
def test_the_chain_on_the_run_pages_and_the_workflow_page(page, server, alice, client):
    up = create_wf(client, alice, name="extract", command=["true"])
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/workflows/new")
    page.locator("[name=name]").fill("report")
    page.locator("[name=image]").fill(up["image"])
    page.locator("[name=command]").fill("true")
    page.get_by_label("Runs after").fill("nothing-like-it")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("#after-error")).to_have_text("no workflow nothing-like-it in this project")
    page.get_by_label("Runs after").fill("extract succeeded")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("h1")).to_have_text("report")
    expect(page.locator("#chain")).to_contain_text("extract")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Runs after")).to_have_value("extract succeeded")
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{up['id']}")
    expect(page.locator("#chain")).to_contain_text("report")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=30000)
    triggered = page.locator("dt", has_text="Triggered").locator("xpath=following-sibling::dd[1]").locator("a")
    expect(triggered).to_be_visible(timeout=20000)
    triggered.click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=30000)
    expect(page.locator("dt", has_text="Triggered by")).to_be_visible()
    expect(page.locator("#run-summary")).to_contain_text("of extract")


def test_join_all_waits_for_every_upstream_since_its_last_chain_run(app, client, alice):
    a, b = create_wf(client, alice, name="a"), create_wf(client, alice, name="b")
    joined = create_wf(client, alice, name="joined", join="all",
                       after=[{"workflow": a["id"]}, {"workflow": b["id"], "on": "finished"}])
    assert joined["join"] == "all"
    end(app, [trigger(client, alice, a["id"])["id"]])
    assert runs_of(client, alice, joined["id"]) == []  # b has not ended yet
    b1 = trigger(client, alice, b["id"])["id"]
    end(app, [b1], "failed")  # finished: a failure counts
    [run] = runs_of(client, alice, joined["id"])
    assert (run["trigger"], run["triggeredBy"]) == ("chain", b1)
    end(app, [trigger(client, alice, b["id"])["id"]])
    assert len(runs_of(client, alice, joined["id"])) == 1  # a has not ended again since
    a2 = trigger(client, alice, a["id"])["id"]
    end(app, [a2])
    assert [r["triggeredBy"] for r in runs_of(client, alice, joined["id"])] == [a2, b1]


def test_upstreams_ending_at_once_fire_a_join_all_once(app, client, alice):
    ups = [create_wf(client, alice, name=f"up-{i}") for i in range(6)]
    joined = create_wf(client, alice, name="joined", join="all", after=[{"workflow": u["id"]} for u in ups])
    for round_ in range(1, 4):
        end(app, [trigger(client, alice, u["id"])["id"] for u in ups])
        assert len(runs_of(client, alice, joined["id"])) == round_
