"""The dashboard in a real browser (Debian's Chromium driven by Playwright), against a real server,
real worker processes and the real engine. Screenshots of the main pages go to tests/screenshots/."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browsing import CHROMIUM, login, shot
from conftest import TEST_IMAGE, grant_pool, make_member

pytestmark = pytest.mark.usefixtures("worker")


def create_through_form(page, server, member, name: str, command: str, **extra) -> str:
    page.goto(f"{server}/teams/{member.team_id}/projects/{member.project_id}/workflows/new")
    page.locator("[name=name]").fill(name)
    page.locator("[name=image]").fill(TEST_IMAGE)
    page.locator("[name=command]").fill(command)
    for field, value in extra.items():
        page.locator(f"[name={field}]").fill(value)
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("h1")).to_have_text(name)
    return page.url.rsplit("/", 1)[1]


def test_login_and_the_empty_workflows_tab(app, page, server, alice):
    page.goto(f"{server}/")
    expect(page).to_have_url(re.compile("/login"))
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    login(page, server, alice)
    expect(page.get_by_text("No workflows yet")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile("/login"))


def test_create_with_a_rejected_field_then_run_and_watch_live_logs(page, server, alice):
    login(page, server, alice)
    page.get_by_role("link", name="New workflow").first.click()
    page.locator("[name=name]").fill("ticker")
    page.locator("[name=image]").fill("Not An Image")
    page.locator("[name=command]").fill("sh\n-c\nfor i in $(seq 1 12); do echo tick-$i; printf \"\\033[32mgreen-$i\\033[0m\\n\" >&2; sleep 0.4; done")
    page.locator("[name=env]").fill("GREETING=hello\nAPI_TOKEN=s3cr3t")
    page.locator("[name=schedule]").fill("*/10 * * * *")
    expect(page.locator("#schedule-preview")).to_contain_text("Every 10 minutes")
    expect(page.locator("#schedule-preview li")).to_have_count(5)
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("#image-error")).to_contain_text("not a Docker image reference")
    expect(page.locator("[name=name]")).to_have_value("ticker")  # nothing the user typed is lost
    page.locator("[name=image]").fill(TEST_IMAGE)
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("h1")).to_have_text("ticker")
    shot(page, "workflow")

    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/run_"))
    # lines arrive while the container is still running
    expect(page.locator("#log .stdout").first).to_contain_text("tick-1", timeout=20000)
    expect(page.locator("#status")).to_have_text("running")
    assert page.locator("#log .stdout").count() < 12
    expect(page.locator("#log .stderr").first).to_contain_text("green-1")
    colour = page.locator("#log .stderr span[style]").first.evaluate("el => getComputedStyle(el).color")
    assert colour == "rgb(50, 213, 131)"  # ANSI green rendered
    expect(page.get_by_text("••••••••")).to_be_visible()  # API_TOKEN masked
    expect(page.get_by_text("s3cr3t")).to_have_count(0)
    shot(page, "run-live")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=30000)
    expect(page.locator("#log .stdout")).to_have_count(12)
    shot(page, "run-finished")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download log").click()
    assert "tick-12" in Path(download.value.path()).read_text()

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Workflows").click()
    expect(page.get_by_role("link", name="ticker")).to_be_visible()
    expect(page.get_by_text("Every 10 minutes")).to_be_visible()
    shot(page, "workflows-tab")


def test_cancel_a_running_run(page, server, alice):
    login(page, server, alice)
    create_through_form(page, server, alice, "sleeper",
                        "sh\n-c\ntrap 'exit 143' TERM; echo sleeping; sleep 60 & wait")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#log")).to_contain_text("sleeping", timeout=20000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_have_text("cancelled", timeout=20000)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()


def test_a_cancel_pressed_while_the_page_refreshes_its_summary_still_cancels(page, server, alice):
    """The run page polls its summary every 2 s and swaps it whole: a press that a swap split (down
    on the old button, up on the new one) made no click, and the run went on."""
    login(page, server, alice)
    create_through_form(page, server, alice, "held", "sh\n-c\ntrap 'exit 143' TERM; echo sleeping; sleep 60 & wait")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#log")).to_contain_text("sleeping", timeout=20000)
    page.get_by_role("button", name="Cancel").hover()
    page.mouse.down()
    # held until the next poll of the summary has answered and would have been swapped in
    page.evaluate("() => new Promise(done => document.addEventListener('htmx:beforeSwap', "
                  "() => setTimeout(done, 200), {once: true}))")
    page.mouse.up()
    expect(page.locator("#status")).to_have_text("cancelled", timeout=20000)


def test_retry_a_failed_run(page, server, alice):
    login(page, server, alice)
    create_through_form(page, server, alice, "failing", "sh\n-c\necho broken; exit 3")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#status")).to_have_text("failed", timeout=20000)
    first = page.url
    expect(page.get_by_text("3", exact=True)).to_be_visible()
    page.get_by_role("button", name="Retry").click()
    expect(page).not_to_have_url(first)
    expect(page.get_by_text("Retry of")).to_be_visible()
    expect(page.locator("#status")).to_have_text("failed", timeout=20000)
    expect(page.get_by_text("retry, attempt 1")).to_be_visible()


def test_add_a_registry_credential(page, server, alice):
    login(page, server, alice)
    page.get_by_role("link", name="Registries").click()
    page.get_by_label("Registry host").fill("not a host")
    page.get_by_label("Username").fill("robot")
    page.get_by_label("Password or token").fill("hunter2")
    page.get_by_role("button", name="Save credential").click()
    expect(page.locator("form .error")).to_be_visible()
    page.get_by_label("Registry host").fill("127.0.0.1:5001")
    page.get_by_label("Password or token").fill("hunter2")
    page.get_by_role("button", name="Save credential").click()
    expect(page.get_by_role("cell", name="127.0.0.1:5001")).to_be_visible()
    assert "hunter2" not in page.content()
    shot(page, "registries")


def test_create_and_revoke_an_api_key(page, server, alice, client):
    login(page, server, alice)
    page.get_by_role("link", name="API keys").click()
    page.locator("[name=name]").fill("from-the-browser")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").text_content()
    assert key.startswith("hs_live_")
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/api/projects/{alice.team_id}/{alice.project_id}/workflows"
    assert client.get(url, headers=headers).status_code == 200
    shot(page, "api-keys")
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)  # shown once
    page.once("dialog", lambda d: d.accept())
    row = page.get_by_role("row", name=re.compile("from-the-browser"))
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("row", name=re.compile("from-the-browser"))).to_contain_text("revoked")
    assert client.get(url, headers=headers).status_code == 401


def test_notification_channel_form(page, server, alice):
    login(page, server, alice)
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("checkbox", name=re.compile("workflow.failed"))).to_be_checked()  # pre-selected
    expect(page.get_by_role("checkbox", name=re.compile("workflow.recovered"))).not_to_be_checked()
    page.locator("[name=name]").fill("#ops")
    page.get_by_label(re.compile("Webhook URL")).fill("http://hooks.example.com/x")
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator("form .error")).to_contain_text("https://")
    page.get_by_label(re.compile("Webhook URL")).fill("https://hooks.example.com/services/T/B/X")
    page.get_by_role("button", name="Add channel").click()
    expect(page.get_by_role("heading", name=re.compile("#ops"))).to_be_visible()
    shot(page, "notifications")


def test_add_an_environment_and_create_a_workflow_in_it(page, server, alice):
    login(page, server, alice)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Project").click()
    expect(page.get_by_role("cell", name=re.compile("Production"))).to_be_visible()
    page.get_by_label("New environment").fill("Production")
    page.get_by_role("button", name="Add environment").click()
    expect(page.locator("form .error")).to_contain_text("already taken")
    page.get_by_label("New environment").fill("Staging")
    page.get_by_role("button", name="Add environment").click()
    expect(page.get_by_role("cell", name="Staging")).to_be_visible()
    shot(page, "project")
    page.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/workflows/new")
    page.locator("[name=environmentId]").select_option(label="Staging")
    page.locator("[name=name]").fill("staged")
    page.locator("[name=image]").fill(TEST_IMAGE)
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("dl")).to_contain_text("Staging")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Workflows").click()
    expect(page.get_by_role("row", name=re.compile("staged"))).to_contain_text("Staging")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Project").click()
    page.get_by_label("Project name").fill("nightly")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("h1")).to_contain_text("team-a / nightly")
    expect(page.get_by_role("heading", name="No workflows yet")).to_be_visible()
    expect(page.get_by_label("Team and project")).to_contain_text("team-a / nightly")


def test_another_team_gets_404_on_every_page(app, page, server, alice, charlie, client):
    from conftest import create_wf
    wf = create_wf(client, alice)
    run = client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h()).get_json()
    login(page, server, charlie)
    t, p = alice.team_id, alice.project_id
    for path in (f"/teams/{t}/projects/{p}/workflows", f"/teams/{t}/projects/{p}/workflows/new",
                 f"/teams/{t}/workflows/{wf['id']}", f"/teams/{t}/workflows/{wf['id']}/edit",
                 f"/runs/{run['id']}", f"/runs/{run['id']}/log.txt", f"/teams/{t}/projects/{p}/registry-credentials",
                 f"/teams/{t}/notifications", f"/teams/{t}/api-keys", f"/teams/{t}/projects/{p}/settings"):
        response = page.goto(server + path)
        assert response.status == 404, path
    assert "alice" not in page.content()


def test_phone_width_and_keyboard(page, server, alice):
    page.set_viewport_size({"width": 390, "height": 800})
    login(page, server, alice)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Skip to content"
    shot(page, "phone")


if not os.path.exists(CHROMIUM):  # the suite's set-up installs it; its absence is a broken set-up
    raise RuntimeError(f"{CHROMIUM} is missing: run `make setup-test`")
_ = make_member


def test_a_workflow_in_a_pool_without_workers_says_so_and_the_workers_page_lists_the_hosts(app, page, server, alice):
    grant_pool(app, alice, "gpu")  # pools other than default are set aside by an operator
    login(page, server, alice)
    page.goto(f"{server}/teams/{alice.team_id}/projects/{alice.project_id}/workflows/new")
    page.locator("[name=name]").fill("on-gpu")
    page.locator("[name=image]").fill(TEST_IMAGE)
    page.get_by_label("Worker pool").fill("GPU box")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("#workerPool-error")).to_be_visible()
    expect(page.locator("[name=name]")).to_have_value("on-gpu")
    page.get_by_label("Worker pool").fill("gpu")
    page.get_by_role("button", name="Create workflow").click()
    expect(page.locator("h1")).to_have_text("on-gpu")
    expect(page.locator("dl")).to_contain_text("gpu")
    expect(page.get_by_text("no live worker in this pool")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/run_"))
    expect(page.get_by_text("no live worker in pool gpu")).to_be_visible()
    expect(page.locator("#status")).to_have_text("queued")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Workers").click()
    expect(page.locator("h1")).to_have_text("Workers")
    row = page.locator("#workers tbody tr").first
    expect(row).to_contain_text("alive")
    expect(row).to_contain_text("default")
    tabs = page.get_by_role("navigation", name="Sections")
    expect(tabs.get_by_role("link", name="Workflows")).to_be_visible()  # a way back to the project
    shot(page, "workers")
