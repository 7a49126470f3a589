"""Retry by exit code: a workflow's retryPolicy (which failures maxRetries retries, fixed or
exponential backoff, its ceiling), validated like every field, decided on the real engine, and
said on the run's page and in the API (retryDecision)."""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from playwright.sync_api import expect

from browsing import login
from conftest import TEST_IMAGE, create_wf, wait_for
from runs_api import base, launch

DEFAULT = {"onExitCodes": None, "exceptExitCodes": [], "onTimeout": True, "backoff": "exponential",
           "maxBackoffSec": 300}


def workflow_url(m, wf_id: str = "") -> str:
    return f"{base(m)}/{wf_id}" if wf_id else f"/api/projects/{m.team_id}/{m.project_id}/workflows"


def runs_of(client, m, wf_id: str, count: int) -> list[dict]:
    """The workflow's runs, oldest first, once there are `count` and the newest has ended."""
    def ended():
        runs = client.get(f"{base(m)}/{wf_id}/runs", headers=m.h()).get_json()["runs"]
        if len(runs) == count and runs[0]["status"] not in ("queued", "running"):
            return runs[::-1]
        return None
    return wait_for(ended, 60)


def gap(before: dict, after: dict) -> float:
    """Seconds from a run's end to its retry's notBefore (both written in one transaction)."""
    def at(value: str) -> datetime:
        return datetime.fromisoformat(value.rstrip("Z"))
    return (at(after["notBefore"]) - at(before["finishedAt"])).total_seconds()


@pytest.mark.parametrize("policy, field, message", [
    ({"onExitCodes": [1, 256]}, "retryPolicy.onExitCodes", "must be at most 255"),
    ({"exceptExitCodes": [0]}, "retryPolicy.exceptExitCodes", "must be at least 1"),
    ({"onExitCodes": ["1"]}, "retryPolicy.onExitCodes", "must be a whole number"),
    ({"onExitCodes": list(range(1, 34))}, "retryPolicy.onExitCodes", "at most 32 items"),
    ({"onExitCodes": [1], "exceptExitCodes": [2]}, "retryPolicy", "give onExitCodes or exceptExitCodes, not both"),
    ({"onTimeout": "no"}, "retryPolicy.onTimeout", "must be true or false"),
    ({"backoff": "linear"}, "retryPolicy.backoff", "must be one of 'exponential' or 'fixed'"),
    ({"maxBackoffSec": 86401}, "retryPolicy.maxBackoffSec", "must be at most 86400"),
    ({"onExitcodes": [1]}, "retryPolicy.onExitcodes", "unknown field"),
    ("often", "retryPolicy", "must be a JSON object"),
])
def test_a_bad_retry_policy_is_refused_naming_its_field(client, alice, policy, field, message):
    body = {"projectId": alice.project_id, "name": "p", "image": TEST_IMAGE, "retryPolicy": policy}
    r = client.post(workflow_url(alice), json=body, headers=alice.h())
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {field: message}, r.get_json()
    wf = create_wf(client, alice)
    r = client.patch(workflow_url(alice, wf["id"]), json={"retryPolicy": policy}, headers=alice.h())
    assert r.status_code == 400 and r.get_json()["error"]["fields"] == {field: message}


def test_a_retry_policy_is_kept_replaced_and_reset(client, alice):
    wf = create_wf(client, alice)  # a client that never sends one gets today's rules
    assert wf["retryPolicy"] == DEFAULT
    wf = create_wf(client, alice, retryPolicy={"exceptExitCodes": [3, 4], "backoff": "fixed"})
    assert wf["retryPolicy"] == {**DEFAULT, "exceptExitCodes": [3, 4], "backoff": "fixed"}
    url = workflow_url(alice, wf["id"])
    r = client.patch(url, json={"name": "renamed"}, headers=alice.h())  # other fields leave it be
    assert r.get_json()["retryPolicy"]["exceptExitCodes"] == [3, 4]
    r = client.patch(url, json={"retryPolicy": {"onExitCodes": [], "onTimeout": False}}, headers=alice.h())
    assert r.get_json()["retryPolicy"] == {**DEFAULT, "onExitCodes": [], "onTimeout": False}  # a whole new one
    r = client.patch(url, json={"retryPolicy": None}, headers=alice.h())
    assert r.get_json()["retryPolicy"] == DEFAULT
    assert client.get(url, headers=alice.h()).get_json()["retryPolicy"] == DEFAULT


@pytest.mark.usefixtures("worker")
def test_exit_codes_and_timeouts_decide_which_failures_are_retried(client, alice):
    spared, _ = launch(client, alice, command=["sh", "-c", "exit 3"], maxRetries=2, retryBackoffSec=0,
                       retryPolicy={"exceptExitCodes": [3]})
    listed, _ = launch(client, alice, command=["sh", "-c", "exit 2"], maxRetries=1, retryBackoffSec=0,
                       retryPolicy={"onExitCodes": [2, 9]})
    unlisted, _ = launch(client, alice, command=["sh", "-c", "exit 5"], maxRetries=2, retryBackoffSec=0,
                         retryPolicy={"onExitCodes": [2, 9]})
    slow, _ = launch(client, alice, command=["sh", "-c", "sleep 30"], timeoutSec=1, maxRetries=2,
                     retryBackoffSec=0, retryPolicy={"onTimeout": False})
    plain, _ = launch(client, alice, command=["sh", "-c", "exit 3"], maxRetries=0)

    [run] = runs_of(client, alice, spared["id"], 1)
    assert (run["status"], run["exitCode"]) == ("failed", 3)
    assert run["retryDecision"] == "not retried: exit code 3 is one the retry policy never retries (exceptExitCodes)"
    first, retry = runs_of(client, alice, listed["id"], 2)
    assert (retry["retryOf"], retry["trigger"], retry["exitCode"]) == (first["id"], "retry", 2)
    assert first["retryDecision"] == f"retried at once as {retry['id']} (retry 1 of 1)"
    assert retry["retryDecision"] == "not retried: its retries are spent (1 of 1)"
    [run] = runs_of(client, alice, unlisted["id"], 1)
    assert run["retryDecision"] == "not retried: exit code 5 is not one the retry policy retries (onExitCodes: 2, 9)"
    [run] = runs_of(client, alice, slow["id"], 1)
    assert run["status"] == "timed_out"
    assert run["retryDecision"] == "not retried: it timed out, and the retry policy does not retry timeouts (onTimeout false)"
    [run] = runs_of(client, alice, plain["id"], 1)
    assert run["retryDecision"] == "not retried: the workflow retries nothing (maxRetries 0)"


@pytest.mark.usefixtures("worker")
def test_a_fixed_backoff_waits_the_same_each_time_and_none_waits_past_its_ceiling(client, alice):
    fixed, _ = launch(client, alice, command=["sh", "-c", "exit 1"], maxRetries=2, retryBackoffSec=2,
                      retryPolicy={"backoff": "fixed"})
    capped, _ = launch(client, alice, command=["sh", "-c", "exit 1"], maxRetries=2, retryBackoffSec=3,
                       retryPolicy={"maxBackoffSec": 1})
    runs = runs_of(client, alice, fixed["id"], 3)
    assert [round(gap(a, b), 1) for a, b in zip(runs, runs[1:])] == [2.0, 2.0]  # exponential: 2, then 4
    assert runs[0]["retryDecision"].startswith("retried after 2 s as ")
    runs = runs_of(client, alice, capped["id"], 3)
    gaps = [gap(a, b) for a, b in zip(runs, runs[1:])]
    assert all(0.79 <= g <= 1.001 for g in gaps), gaps  # uncapped: 3, then 6 (each spread by ±20 %)


@pytest.mark.usefixtures("worker")
def test_the_retry_rules_in_the_form_on_the_workflow_page_and_on_the_run_page(page, server, alice):
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/workflows/new")
    page.locator("[name=name]").fill("picky")
    page.locator("[name=image]").fill(TEST_IMAGE)
    page.locator("[name=command]").fill("sh\n-c\necho nope; exit 3")
    page.locator("[name=maxRetries]").fill("2")
    page.get_by_label("Only exit codes").fill("1, 2")
    page.get_by_label("Never exit codes").fill("3")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.get_by_text("give onExitCodes or exceptExitCodes, not both")).to_be_visible()
    expect(page.get_by_label("Never exit codes")).to_have_value("3")  # nothing typed is lost
    page.get_by_label("Only exit codes").fill("1, two")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.get_by_text("exit codes are whole numbers, separated by commas")).to_be_visible()
    page.get_by_label("Only exit codes").fill("")
    page.locator("[name=\"retryPolicy.backoff\"]").select_option("fixed")
    page.get_by_label("Retry runs that time out").uncheck()
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("h1")).to_have_text("picky")
    expect(page.locator("#retry-rules")).to_have_text("up to 2 (5 s before each); any exit code but 3; not timeouts")

    page.get_by_role("link", name="Edit").click()  # the form shows the policy as saved
    expect(page.get_by_label("Never exit codes")).to_have_value("3")
    expect(page.locator("[name=\"retryPolicy.backoff\"]")).to_have_value("fixed")
    expect(page.get_by_label("Retry runs that time out")).not_to_be_checked()
    page.get_by_role("link", name="Cancel").click()

    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/run_"))
    expect(page.locator("#status")).to_have_text("failed", timeout=30000)
    expect(page.locator("#retry-decision")).to_have_text(
        "not retried: exit code 3 is one the retry policy never retries (exceptExitCodes)")
