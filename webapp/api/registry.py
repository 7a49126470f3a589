"""Registry credential routes."""
from __future__ import annotations

from flask import g

from ..gate import needs
from ..schemas import RegistryCredentialCreate, parse
from ..services import registry as service
from .blueprint import bp
from .body import json_body
from .serialize import answer, credential_shape
from .shapes import RegistryCredentialList


@bp.get("/projects/<int:team_id>/<int:project_id>/registry-credentials")
@needs("team.read")
def list_credentials(team_id: int, project_id: int):
    creds = service.list_credentials(g.principal, team_id, project_id)
    return answer(RegistryCredentialList(registryCredentials=[credential_shape(c) for c in creds]))


@bp.post("/projects/<int:team_id>/<int:project_id>/registry-credentials")
@needs("registry.create")
def create_credential(team_id: int, project_id: int):
    service.get_project(g.principal, team_id, project_id)
    body = parse(RegistryCredentialCreate, json_body())
    return answer(credential_shape(service.create_credential(g.principal, team_id, project_id, body)), 201)


@bp.delete("/projects/<int:team_id>/<int:project_id>/registry-credentials/<int:cred_id>")
@needs("registry.delete")
def delete_credential(team_id: int, project_id: int, cred_id: int):
    service.delete_credential(g.principal, team_id, project_id, cred_id)
    return "", 204
