"""The configuration: one pydantic-settings model (webapp/config.py) for every environment
variable, and README's table naming exactly those."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT

from webapp.config import ConfigError, Settings, settings


def _readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def test_the_readme_table_names_every_setting_and_nothing_else():
    assert _readme_variables() == set(Settings.model_fields)


def test_every_setting_says_what_it_is():
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


@pytest.mark.parametrize("name, value, says", [
    ("WORKER_SLOTS", "many", "WORKER_SLOTS"), ("PORT", "70000", "PORT"), ("SMTP_STARTTLS", "maybe", "SMTP_STARTTLS"),
    ("RUNS_EGRESS_ALLOW", "10.0.0.0/8,nope", "'nope' is not an address"), ("LOG_FORMAT", "xml", "LOG_FORMAT"),
    ("HOST_FENCE_SEC", "59", "HOST_FENCE_SEC (59) must be clearly shorter than HOST_LOST_SEC (60)"),
])
def test_a_bad_value_stops_with_the_variable_named(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(says)):
        settings()


def test_defaults_that_follow_from_other_settings(monkeypatch):
    monkeypatch.setenv("HOST_LOST_SEC", "30")
    monkeypatch.setenv("WEB_CONNECTIONS", "9")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("WORKFLOWS_ENV", "production")
    monkeypatch.setenv("NOTIFY_ALLOW_PRIVATE", "")  # empty is unset
    chosen = settings()
    assert (chosen.HOST_FENCE_SEC, chosen.WS_MAX_PER_PROCESS, chosen.LOG_LEVEL) == (15, 4, "DEBUG")
    assert chosen.NOTIFY_ALLOW_PRIVATE is False and chosen.NOTIFY_ALLOW_HTTP_LOCALHOST is False
