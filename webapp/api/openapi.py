"""GET /api/openapi.json: the OpenAPI 3.1 document, built from the same pydantic models that
validate requests; GET /api/docs renders it with a vendored Swagger UI."""
from __future__ import annotations

from flask import current_app, jsonify, render_template_string, url_for

from ..gate import OPEN, needs
from ..schemas import (ApiKeyCreate, BackfillCreate, ChannelCreate, EnvGroupChange, EnvGroupCreate, EnvironmentCreate,
                       InvitationCreate, ProjectCreate, RegistryCredentialCreate, RoleChange, TriggerBody,
                       WebhookCreate, WorkflowCreate, WorkflowUpdate)
from .blueprint import bp
from .shapes import (ApiKey, ApiKeyList, AuditEntry, AuditList, Invitation, InvitationList, Member, MemberList, Backfill, BackfillList, Channel, EnvGroup, EnvGroupList, ChannelList, Delivery, DeliveryList, Environment, EnvironmentList, Error, ErrorBody,
                     Fired, LogLine, Logs, Project, ProjectList, Queued, RegistryCredential, RegistryCredentialList,
                     Run, RunList, Webhook, Workflow, WorkflowList)

MODELS = [Workflow, Run, WorkflowList, RunList, LogLine, Logs, RegistryCredential, RegistryCredentialList,
          Channel, ChannelList, Delivery, DeliveryList, Queued, Environment, EnvironmentList, Project,
          ProjectList, ErrorBody, Error, WorkflowCreate, WorkflowUpdate, TriggerBody, RegistryCredentialCreate,
          ChannelCreate, ProjectCreate, EnvironmentCreate, Webhook, Fired, WebhookCreate, Backfill, BackfillList,
          BackfillCreate, EnvGroup, EnvGroupList, EnvGroupCreate, EnvGroupChange, Member, MemberList, RoleChange,
          Invitation, InvitationList, InvitationCreate, AuditEntry, AuditList, ApiKey, ApiKeyList, ApiKeyCreate]

TEAM = {"name": "teamId", "in": "path", "required": True, "schema": {"type": "integer"}}
PROJECT = {"name": "projectId", "in": "path", "required": True, "schema": {"type": "integer"}}
WORKFLOW = {"name": "workflowId", "in": "path", "required": True, "schema": {"type": "string"}}
BACKFILL = {"name": "backfillId", "in": "path", "required": True, "schema": {"type": "string"}}
GROUP = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
RUN = {"name": "runId", "in": "path", "required": True, "schema": {"type": "string"}}
CRED = {"name": "credentialId", "in": "path", "required": True, "schema": {"type": "integer"}}
CHANNEL = {"name": "channelId", "in": "path", "required": True, "schema": {"type": "integer"}}
USER = {"name": "userId", "in": "path", "required": True, "schema": {"type": "integer"}}
KEY = {"name": "keyId", "in": "path", "required": True, "schema": {"type": "integer"}}
INVITATION = {"name": "invitationId", "in": "path", "required": True, "schema": {"type": "integer"}}
AUDIT_FILTERS = [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
    ("actor", "exactly as the rows say it: an email, \"operator (CLI)\", \"API key ci (hs_live_ab…)\""),
    ("action", "e.g. workflow.update, run.cancel, key.create, member.role_change, login.failed"),
    ("target", "a workflow's or run's id, a key's prefix, a member's email"),
    ("since", "ISO 8601, inclusive"), ("until", "ISO 8601, exclusive"))]
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "the same key within 24 h answers the first request's run (with the header "
                              "Idempotent-Replayed: true), never a second run; sent with another request: 422",
               "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict:
    text = {400: "invalid request", 401: "missing or bad credentials",
            403: "not allowed for this key or member's role (services/roles.py)",
            404: "not found (or another team's)", 409: "conflict with the run's status",
            410: "revoked", 413: "body over 1 MiB (a webhook's: 64 KiB)", 415: "body is not JSON",
            422: "Idempotency-Key already used for another request", 429: "rate limited"}
    return {str(c): {"description": text[c], **_json("Error")} for c in codes}


def _op(summary: str, params: list, ok: tuple[str, str | None], errors: tuple[int, ...],
        body: str | None = None, body_required: bool = True) -> dict:
    code, model = ok
    op = {"summary": summary, "parameters": params,
          "responses": {code: {"description": summary, **(_json(model) if model else {})}, **_errors(*errors)}}
    if body:
        op["requestBody"] = {"required": body_required, **_json(body)}
    return op


def _with_text(op: dict) -> dict:
    op["responses"]["200"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return op


READ = (401, 403, 404)
WRITE = (400, 401, 403, 404, 413, 415)


def _components() -> dict:
    components = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
    return components


def _workflow_paths() -> dict:
    """Workflows and their runs."""
    read, write = READ, WRITE
    runs_params = [TEAM, WORKFLOW,
                   {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                   {"name": "cursor", "in": "query", "schema": {"type": "string"}}]
    logs_params = [TEAM, RUN, {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "text"]}},
                   {"name": "afterSeq", "in": "query", "schema": {"type": "integer", "minimum": -1, "maximum": 2**31 - 1}},
                   {"name": "limit", "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10000}}]
    return {
        "/api/projects/{teamId}/{projectId}/workflows": {
            "get": _op("List the project's workflows", [TEAM, PROJECT], ("200", "WorkflowList"), read),
            "post": _op("Create a workflow", [TEAM, PROJECT], ("201", "Workflow"), write, "WorkflowCreate"),
        },
        "/api/workflows/{teamId}/workflows/{workflowId}": {
            "get": _op("Get a workflow", [TEAM, WORKFLOW], ("200", "Workflow"), read),
            "patch": _op("Update a workflow", [TEAM, WORKFLOW], ("200", "Workflow"), write, "WorkflowUpdate"),
            "delete": _op("Delete a workflow", [TEAM, WORKFLOW], ("204", None), read),
        },
        "/api/workflows/{teamId}/workflows/{workflowId}/trigger": {
            "post": _op("Fire a workflow now", [TEAM, WORKFLOW, IDEMPOTENCY], ("202", "Run"), write + (409, 422, 429),
                        "TriggerBody", body_required=False),
        },
        "/api/workflows/{teamId}/workflows/{workflowId}/runs": {
            "get": _op("List runs, newest first", runs_params, ("200", "RunList"), (400,) + read),
        },
        "/api/workflows/{teamId}/workflows/runs/{runId}": {
            "get": _op("Get a run", [TEAM, RUN], ("200", "Run"), read),
        },
        "/api/workflows/{teamId}/workflows/runs/{runId}/logs": {
            "get": _with_text(_op("A page of a run's captured output (?format=text: all of it, as text/plain)",
                                  logs_params, ("200", "Logs"), (400,) + read)),
        },
        "/api/workflows/{teamId}/workflows/runs/{runId}/cancel": {
            "post": _op("Cancel a queued or running run", [TEAM, RUN], ("202", "Run"), read + (409,)),
        },
        "/api/workflows/{teamId}/workflows/{workflowId}/webhook": {
            "post": _op("Make the workflow's webhook, or rotate its token (shown once)", [TEAM, WORKFLOW],
                        ("201", "Webhook"), write, "WebhookCreate", body_required=False),
            "get": _op("The workflow's webhook (its token's prefix)", [TEAM, WORKFLOW], ("200", "Webhook"), read),
            "delete": _op("Revoke the workflow's webhook", [TEAM, WORKFLOW], ("204", None), read),
        },
        "/hooks/{token}": {
            "post": {**_op("Fire a workflow by its webhook: the body (any type, at most 64 KiB) is the run's "
                           "payload", [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
                                       IDEMPOTENCY], ("202", "Fired"), (400, 401, 404, 409, 410, 413, 422, 429)),
                     "security": []},
        },
        "/api/workflows/{teamId}/workflows/runs/{runId}/retry": {
            "post": _op("Re-fire a finished run", [TEAM, RUN, IDEMPOTENCY], ("202", "Run"), (400,) + read + (409, 422, 429)),
        },
    }


def _backfill_paths() -> dict:
    read = READ
    return {
        "/api/workflows/{teamId}/workflows/{workflowId}/backfill": {
            "post": _op("Backfill a past range of the schedule: one run per instant (at most 1,000), at most "
                        "maxConcurrent at once; an instant that has a run already is skipped", [TEAM, WORKFLOW],
                        ("201", "Backfill"), WRITE + (409, 429), "BackfillCreate"),
        },
        "/api/workflows/{teamId}/workflows/{workflowId}/backfills": {
            "get": _op("The workflow's backfills with their progress, newest first", [TEAM, WORKFLOW],
                       ("200", "BackfillList"), read),
        },
        "/api/workflows/{teamId}/workflows/backfills/{backfillId}": {
            "get": _op("A backfill with its progress", [TEAM, BACKFILL], ("200", "Backfill"), read),
        },
        "/api/workflows/{teamId}/workflows/backfills/{backfillId}/cancel": {
            "post": _op("Cancel a backfill: no more of its instants fire, its queued and running runs are cancelled",
                        [TEAM, BACKFILL], ("202", "Backfill"), read + (409,)),
        },
    }


def _team_paths() -> dict:
    """Projects, environments, registry credentials, notification channels."""
    read, write = READ, WRITE
    return {
        "/api/projects/{teamId}/{projectId}/registry-credentials": {
            "get": _op("List registry credentials", [TEAM, PROJECT], ("200", "RegistryCredentialList"), read),
            "post": _op("Add a registry credential", [TEAM, PROJECT], ("201", "RegistryCredential"),
                        write + (409,), "RegistryCredentialCreate"),
        },
        "/api/projects/{teamId}/{projectId}/registry-credentials/{credentialId}": {
            "delete": _op("Delete a registry credential", [TEAM, PROJECT, CRED], ("204", None), read),
        },
        "/api/teams/{teamId}/projects": {
            "get": _op("List the team's projects with their environments", [TEAM], ("200", "ProjectList"), read),
            "post": _op("Create a project (with its Production environment)", [TEAM], ("201", "Project"),
                        write + (409,), "ProjectCreate"),
        },
        "/api/projects/{teamId}/{projectId}/environments": {
            "get": _op("List the project's environments", [TEAM, PROJECT], ("200", "EnvironmentList"), read),
            "post": _op("Create an environment (hs_test_ keys may act on its workflows)", [TEAM, PROJECT],
                        ("201", "Environment"), write + (409,), "EnvironmentCreate"),
        },
        "/api/teams/{teamId}/env-groups": {
            "get": _op("List the team's env groups (secret values never shown)", [TEAM], ("200", "EnvGroupList"), read),
            "post": _op("Make an env group (hs_test_ keys may not)", [TEAM], ("201", "EnvGroup"), write + (409,),
                        "EnvGroupCreate"),
        },
        "/api/teams/{teamId}/env-groups/{name}": {
            "get": _op("An env group", [TEAM, GROUP], ("200", "EnvGroup"), read),
            "patch": _op("Set and remove entries: a new version (runs fired before keep theirs)", [TEAM, GROUP],
                         ("200", "EnvGroup"), write, "EnvGroupChange"),
            "delete": _op("Delete an env group (409 while workflows list it, naming them)", [TEAM, GROUP],
                          ("204", None), read + (409,)),
        },
        "/api/teams/{teamId}/notification-channels": {
            "get": _op("List the team's notification channels", [TEAM], ("200", "ChannelList"), read),
            "post": _op("Add a notification channel", [TEAM], ("201", "Channel"), write, "ChannelCreate"),
        },
        "/api/teams/{teamId}/notification-channels/{channelId}": {
            "delete": _op("Delete a notification channel", [TEAM, CHANNEL], ("204", None), read),
        },
        "/api/teams/{teamId}/notification-channels/{channelId}/enable": {
            "post": _op("Enable a disabled channel again (its failures in a row forgotten)", [TEAM, CHANNEL],
                        ("200", "Channel"), read),
        },
        "/api/teams/{teamId}/notification-channels/{channelId}/test": {
            "post": _op("Send a test notification", [TEAM, CHANNEL], ("202", "Queued"), read + (429,)),
        },
        "/api/teams/{teamId}/notification-channels/{channelId}/deliveries": {
            "get": _op("The channel's delivery attempts, newest first", [TEAM, CHANNEL], ("200", "DeliveryList"),
                       read),
        },
    }


def _access_paths() -> dict:
    """Members, invitations and the audit log."""
    read = READ
    page = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}}]
    return {
        "/api/teams/{teamId}/members": {
            "get": _op("The team's members and their roles", [TEAM], ("200", "MemberList"), read),
        },
        "/api/teams/{teamId}/members/{userId}": {
            "patch": _op("Change a member's role (owners; the last owner keeps theirs); their keys above the new "
                         "role are lowered to it", [TEAM, USER], ("200", "Member"), WRITE + (409,), "RoleChange"),
            "delete": _op("Remove a member (owners; not the last owner); their keys are revoked", [TEAM, USER],
                          ("204", None), read + (409,)),
        },
        "/api/teams/{teamId}/leave": {
            "post": _op("Leave the team (a member's session; not the last owner)", [TEAM], ("204", None),
                        (400,) + read + (409,)),
        },
        "/api/teams/{teamId}/invitations": {
            "get": _op("Pending invitations", [TEAM], ("200", "InvitationList"), read),
            "post": _op("Invite an email address with a role (owners): the link is mailed, valid 7 days, once",
                        [TEAM], ("201", "Invitation"), WRITE + (409,), "InvitationCreate"),
        },
        "/api/teams/{teamId}/invitations/{invitationId}": {
            "delete": _op("Revoke a pending invitation", [TEAM, INVITATION], ("204", None), read),
        },
        "/api/teams/{teamId}/api-keys": {
            "get": _op("The team's API keys (prefixes, never the keys; admins and owners)", [TEAM],
                       ("200", "ApiKeyList"), read),
            "post": _op("Make an API key with a role at most yours; the key is in this answer only", [TEAM],
                        ("201", "ApiKey"), WRITE, "ApiKeyCreate"),
        },
        "/api/teams/{teamId}/api-keys/{keyId}": {
            "delete": _op("Revoke an API key: calls with it answer 401, its live streams close", [TEAM, KEY],
                          ("204", None), read),
        },
        "/api/teams/{teamId}/audit": {
            "get": _op("The audit log, newest first (admins and owners)", [TEAM] + AUDIT_FILTERS + page,
                       ("200", "AuditList"), (400,) + read),
        },
        "/api/teams/{teamId}/audit/export": {
            "get": {"summary": "The audit log as JSON lines (application/x-ndjson), newest first, one AuditEntry "
                               "per line", "parameters": [TEAM] + AUDIT_FILTERS,
                    "responses": {"200": {"description": "JSON lines",
                                          "content": {"application/x-ndjson": {"schema": _ref("AuditEntry")}}},
                                  **_errors(400, *read)}},
        },
    }


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Workflows API", "version": "1.0.0",
                 "description": "Durable container tasks. Live logs: GET .../runs/{runId}/logs/stream "
                                "upgrades to a websocket (same authentication); ?afterSeq=N sends only "
                                "the lines after seq N."},
        "servers": [{"url": current_app.config["BASE_URL"]}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {**_workflow_paths(), **_backfill_paths(), **_team_paths(), **_access_paths()},
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "hs_live_… or hs_test_… API key"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
    }


@bp.get("/openapi.json")
@needs(OPEN)
def openapi_json():
    return jsonify(document())


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API · Workflows</title>
<link rel="stylesheet" href="{{ css }}"></head>
<body><div id="ui" data-spec="{{ spec }}" data-csrf="{{ csrf_token() }}"></div><script src="{{ js }}"></script>
<script src="{{ init }}"></script></body></html>"""


@bp.get("/docs")
@needs(OPEN)
def openapi_page():
    return render_template_string(
        PAGE, css=url_for("static", filename="vendor/swagger-ui-5.35.0.css"),
        js=url_for("static", filename="vendor/swagger-ui-5.35.0-bundle.js"),
        init=url_for("static", filename="api-docs.js"), spec=url_for("api.openapi_json"))
