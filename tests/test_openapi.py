"""schemathesis against /api/openapi.json: no 5xx, and every response matches its documented schema."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from conftest import create_wf, make_member, wait_status

from webapp import create_app

# The document is read once, at collection, from an app that never touches the database; the
# cases are then sent to the suite's own app (one engine, one database session for everything).
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", create_app({"TESTING": True}))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]


@pytest.fixture
def world(app):
    schema.app = app
    member = make_member(app, "fuzz@example.test", "fuzz")
    client = app.test_client()
    wf = create_wf(client, member)
    run = client.post(f"/api/workflows/{member.team_id}/workflows/{wf['id']}/trigger", headers=member.h()).get_json()
    channel = client.post(f"/api/teams/{member.team_id}/notification-channels", headers=member.h(),
                          json={"kind": "slack", "name": "ops", "target": "https://hooks.example.com/x"}).get_json()
    return member, wf["id"], run["id"], channel["id"]


def test_the_document_is_openapi_3_1(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/teams/{teamId}/notification-channels/{channelId}/deliveries" in doc["paths"]
    assert client.get("/api/docs").status_code == 200


# Routes of the API that are not JSON operations: the document itself, its page, the websocket.
NOT_OPERATIONS = {("GET", "/api/openapi.json"), ("GET", "/api/docs"),
                  ("GET", "/api/workflows/{}/workflows/runs/{}/logs/stream")}


def test_every_route_of_the_api_is_documented_and_every_documented_one_exists(app, client):
    """A route added without its entry in the document (or an entry left behind) fails here."""
    import re
    routes = {(method, re.sub(r"<[^>]+>", "{}", rule.rule)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith(("/api/", "/hooks/")) for method in rule.methods - {"HEAD", "OPTIONS"}}
    doc = client.get("/api/openapi.json").get_json()
    documented = {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
                  for path, ops in doc["paths"].items() for method in ops}
    assert routes - NOT_OPERATIONS == documented


def test_every_answer_field_is_documented_and_nothing_else_is_answered(client, alice, worker):
    """The shapes refuse a field they do not declare (so an answer cannot carry an undocumented
    one), and their schemas say so to clients (additionalProperties: false)."""
    from pydantic import ValidationError

    from webapp.api import shapes
    doc = client.get("/api/openapi.json").get_json()
    for name, model in vars(shapes).items():
        if isinstance(model, type) and issubclass(model, shapes.Shape) and model is not shapes.Shape:
            assert doc["components"]["schemas"][name].get("additionalProperties") is False, name
    with pytest.raises(ValidationError):
        shapes.Queued(queued=True, extra="field")
    wf = create_wf(client, alice, command=["sh", "-c", "echo one; echo two >&2"])
    run = client.post(f"/api/workflows/{alice.team_id}/workflows/{wf['id']}/trigger", headers=alice.h()).get_json()
    shapes.Run.model_validate(wait_status(client, alice, run["id"]))
    logs = client.get(f"/api/workflows/{alice.team_id}/workflows/runs/{run['id']}/logs", headers=alice.h())
    page = shapes.Logs.model_validate(logs.get_json())  # built as plain dicts (the hot path): held to the shape here
    assert sorted(line.text for line in page.lines if line.stream != "system") == ["one", "two"]


def _coin(*parts) -> bool:
    """A stable half of the cases (unlike hash(), which Python salts per process)."""
    import zlib
    return zlib.crc32(repr(parts).encode()) % 2 == 0


@pytest.mark.serial  # one node id for every operation: pytest-xdist would run only one of them
@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_fuzz(case, world):
    member, wf_id, run_id, channel_id = world
    params = case.path_parameters or {}
    if "teamId" in params:
        params["teamId"] = member.team_id
    if "projectId" in params:
        params["projectId"] = member.project_id
    if "workflowId" in params and _coin(case.body, case.query):
        params["workflowId"] = wf_id
    if "runId" in params and _coin(case.query, case.body):
        params["runId"] = run_id
    if "channelId" in params and _coin(case.body):
        params["channelId"] = channel_id
    case.call_and_validate(headers=member.h(), checks=CHECKS)
