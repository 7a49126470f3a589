"""Registry credential routes."""
from __future__ import annotations

from flask import g, jsonify

from ..models.base import isoformat
from ..schemas import RegistryCredentialCreate, parse
from ..services import registry as service
from .blueprint import bp
from .body import json_body


def credential_json(cred) -> dict:
    return {"id": cred.id, "projectId": cred.project_id, "registry": cred.registry_host,
            "username": cred.username, "createdAt": isoformat(cred.created_at)}


@bp.get("/projects/<int:team_id>/<int:project_id>/registry-credentials")
def list_credentials(team_id: int, project_id: int):
    creds = service.list_credentials(g.principal, team_id, project_id)
    return jsonify({"registryCredentials": [credential_json(c) for c in creds]})


@bp.post("/projects/<int:team_id>/<int:project_id>/registry-credentials")
def create_credential(team_id: int, project_id: int):
    service.get_project(g.principal, team_id, project_id)
    body = parse(RegistryCredentialCreate, json_body())
    return jsonify(credential_json(service.create_credential(g.principal, team_id, project_id, body))), 201


@bp.delete("/projects/<int:team_id>/<int:project_id>/registry-credentials/<int:cred_id>")
def delete_credential(team_id: int, project_id: int, cred_id: int):
    service.delete_credential(g.principal, team_id, project_id, cred_id)
    return "", 204
