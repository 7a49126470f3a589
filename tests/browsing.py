"""The dashboard as a person uses it: Debian's Chromium driven by Playwright. The `server`, `browser`
and `page` fixtures are in conftest.py; screenshots of the main pages go to tests/screenshots/."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from conftest import ROOT

SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(page, server, member) -> None:
    page.goto(f"{server}/login")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(member.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_title(re.compile("Workflows — "))
    wait_for_scripts(page)


def wait_for_scripts(page) -> None:
    """Until the page's scripts ran (htmx took over its forms and buttons): a click before that, on
    a slow machine, is the browser's own form post and leaves the page."""
    page.wait_for_function("() => document.readyState === 'complete' && window.htmx !== undefined")
