"""The dashboard for daily use, in real Chromium against real workers and the real engine: the Runs
tab's filters (kept in the URL) and live rows, the Workflows tab's search, a run page's retry chain
and notification deliveries, the schedule message shown once, the narrow layout."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from browsing import login, shot
from conftest import create_wf, wait_for, wait_status
from receivers import Receiver, add_channel

from webapp import create_app


def api(alice):
    return create_app().test_client()


def trigger(c, alice, wf_id) -> str:
    r = c.post(f"/api/workflows/{alice.team_id}/workflows/{wf_id}/trigger", headers=alice.h(), json={})
    assert r.status_code == 202, r.get_json()
    return r.get_json()["id"]


def test_runs_tab_filters_in_the_url_and_live_rows(page, server, alice, worker):  # noqa: F811
    c = api(alice)
    good = create_wf(c, alice, name="good-job", command=["true"])
    bad = create_wf(c, alice, name="bad-job", command=["sh", "-c", "exit 2"])
    slow = create_wf(c, alice, name="slow-job", command=["sh", "-c", "sleep 3"])
    done = [trigger(c, alice, good["id"]), trigger(c, alice, bad["id"])]
    for run_id in done:
        wait_status(c, alice, run_id)
    login(page, server, alice)
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.locator("#runs tbody tr")).to_have_count(2)

    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    expect(page.locator("#runs tbody tr")).to_contain_text("bad-job")
    shared = page.url  # a filtered view can be shared: the URL alone reproduces it
    page.goto(shared.replace("status=failed", "status=succeeded"))
    expect(page.locator("#runs tbody tr")).to_contain_text("good-job")
    page.goto(shared)
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    bad_filter = page.goto(shared.replace("status=failed", "status=nonsense"))
    assert bad_filter.status == 400
    expect(page.get_by_text("one of queued")).to_be_visible()

    # a running row updates itself, without a reload
    page.goto(shared.split("?")[0])
    live = trigger(c, alice, slow["id"])
    page.reload()
    row = page.locator(f"#row-{live}")
    expect(row).to_have_attribute("data-status", re.compile("queued|running"))
    expect(row).to_have_attribute("data-status", "succeeded", timeout=30000)
    expect(row.locator("time")).to_have_text(re.compile(r"(s|min) ago"))
    shot(page, "runs-tab")


def test_workflows_tab_search_and_show(page, server, alice):  # noqa: F811
    c = api(alice)
    create_wf(c, alice, name="nightly-backup", image="workflows.local/busybox:1", schedule="0 3 * * *")
    create_wf(c, alice, name="report", command=["true"])
    create_wf(c, alice, name="100%_odd", command=["true"])
    login(page, server, alice)
    page.get_by_label("Search name or image").fill("backup")
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(r"q=backup"))
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("nightly-backup")
    page.get_by_label("Search name or image").fill("%_")  # LIKE wildcards are literal
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("100%_odd")
    page.get_by_label("Search name or image").fill("")
    page.get_by_label("Show").select_option("manual")
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(2)
    page.get_by_label("Show").select_option("scheduled")
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(1)
    page.get_by_label("Show").select_option("failing")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_text("No workflow matches.")).to_be_visible()


def test_run_page_tells_the_retry_chain_and_the_deliveries(page, server, alice, procs):  # noqa: F811
    procs.worker(2)
    procs.scheduler()
    receiver = Receiver()
    try:
        c = api(alice)
        add_channel(c, alice, "webhook", receiver.url + "/hook")
        wf = create_wf(c, alice, name="flaky", command=["sh", "-c", "echo oops >&2; exit 5"], maxRetries=1,
                       retryBackoffSec=0)
        first = trigger(c, alice, wf["id"])
        runs = wait_for(lambda: [r for r in c.get(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/runs",
                                                  headers=alice.h()).get_json()["runs"]
                                 if r["trigger"] == "retry" and r["status"] == "failed"], 60)
        final = runs[0]["id"]
        wait_for(lambda: receiver.on("/hook"), 30)
        login(page, server, alice)
        page.goto(f"{server}/runs/{final}")
        expect(page.get_by_text("Retry of")).to_be_visible()
        page.get_by_role("link", name=first).click()
        expect(page).to_have_url(re.compile(first))
        expect(page.get_by_text("Retried as")).to_be_visible()
        page.get_by_role("link", name=final).click()
        expect(page.locator("#log-state")).to_have_text("ended: failed")
        expect(page.locator("#log")).to_contain_text("oops")
        deliveries = page.locator("#deliveries")
        expect(deliveries).to_contain_text("workflow.failed")
        expect(deliveries).to_contain_text("webhook")
        expect(deliveries).to_contain_text("sent")
        shot(page, "failed-run")
    finally:
        receiver.server.shutdown()


def test_rough_edges_command_words_messages_and_local_times(browser, server, alice):  # noqa: F811
    c = api(alice)
    wf = create_wf(c, alice, name="shell", command=["sh", "-c", "echo hi >&2"], schedule="0 3 * * *")
    context = browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="Asia/Tokyo",
                                  locale="en-US")
    page = context.new_page()
    try:
        _rough_edges(page, server, alice, wf)
    finally:
        context.close()


def _rough_edges(page, server, alice, wf):  # noqa: F811
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}")
    expect(page.locator("#command-words")).to_have_text("sh -c 'echo hi >&2'")
    assert page.locator("#command-json").text_content() == '["sh", "-c", "echo hi >&2"]'
    # times: the viewer's zone shown (03:00 UTC is noon in Tokyo), the UTC text kept on hover
    next_run = page.locator("time").first
    expect(next_run).to_have_attribute("title", re.compile(r"03:00:00 UTC$"))
    expect(next_run).to_have_text(re.compile(r"12:00:00 PM GMT\+9"))
    # a bad schedule says so once; an empty name says "1 character"
    page.goto(f"{server}/teams/{alice.team_id}/workflows/{wf['id']}/edit")
    page.locator("[name=schedule]").fill("61 * * * *")
    page.locator("[name=name]").fill("")
    page.locator("[name=name]").evaluate("el => el.removeAttribute('required')")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#schedule-preview .error")).to_be_visible()
    expect(page.locator("#schedule-error")).to_have_count(0)
    expect(page.get_by_text("at least 1 character", exact=True)).to_be_visible()


def test_the_runs_tab_reads_at_390_px(browser, server, alice):  # noqa: F811
    c = api(alice)
    wf = create_wf(c, alice, name="narrow", command=["true"])
    for _ in range(3):  # queued rows (no worker here): the table has content at 390 px
        trigger(c, alice, wf["id"])
    context = browser.new_context(viewport={"width": 390, "height": 844})
    pg = context.new_page()
    try:
        login(pg, server, alice)
        pg.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/workflows")
        expect(pg.get_by_role("link", name="narrow")).to_be_visible()
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the Workflows tab is {width} px wide at 390"
        pg.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/runs")
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the Runs tab is {width} px wide at 390"
        # keyboard: the first link after the skip link is reachable and visibly focused
        pg.keyboard.press("Tab")
        focused = pg.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert focused != "none"
        shot(pg, "runs-tab-390")
        assert wf
    finally:
        context.close()
