"""Registry credentials of a project: the password is write-only."""
from __future__ import annotations

from ..extensions import db
from ..imageref import registry_host
from ..models import RegistryCredential, Workflow
from ..schemas import RegistryCredentialCreate
from . import audit, roles
from .access import Principal, require_not_test_key
from .errors import Conflict, Forbidden, NotFound
from .workflows import get_project, live_production_workflows


def list_credentials(principal: Principal, team_id: int, project_id: int) -> list[RegistryCredential]:
    project = get_project(principal, team_id, project_id)
    return (db.session.query(RegistryCredential).filter_by(project_id=project.id)
            .order_by(RegistryCredential.id).all())


def create_credential(principal: Principal, team_id: int, project_id: int,
                      body: RegistryCredentialCreate) -> RegistryCredential:
    project = get_project(principal, team_id, project_id)
    roles.require(principal, team_id, "registry.create")
    require_not_test_key(principal, "registry credentials")
    if db.session.query(RegistryCredential).filter_by(project_id=project.id, registry_host=body.registry).first():
        raise Conflict(f"this project already has a credential for {body.registry}; delete it first")
    cred = RegistryCredential(team_id=team_id, project_id=project.id, registry_host=body.registry,
                              username=body.username, password=body.password)
    db.session.add(cred)
    audit.record(principal, team_id, "registry.create", "registry_credential", body.registry,
                 {"project": [None, project.id], "username": [None, body.username]})
    db.session.commit()
    return cred


def delete_credential(principal: Principal, team_id: int, project_id: int, cred_id: int) -> None:
    project = get_project(principal, team_id, project_id)
    roles.require(principal, team_id, "registry.delete")
    cred = db.session.get(RegistryCredential, cred_id)
    if cred is None or cred.project_id != project.id:
        raise NotFound("no such registry credential")
    if principal.mode == "test" and _production_uses(project.id, cred.registry_host):
        raise Forbidden("hs_test_ keys may not remove a credential that Production workflows use")
    audit.record(principal, team_id, "registry.delete", "registry_credential", cred.registry_host,
                 {"project": [project.id, None], "username": [cred.username, None]})
    db.session.delete(cred)
    db.session.commit()


def _production_uses(project_id: int, host: str) -> bool:
    images = live_production_workflows().filter(Workflow.project_id == project_id).with_entities(Workflow.image)
    return any(registry_host(image) == host for (image,) in images)


def auth_for_image(project_id: int, image: str) -> dict | None:
    cred = (db.session.query(RegistryCredential)
            .filter_by(project_id=project_id, registry_host=registry_host(image)).first())
    if cred is None:
        return None
    return {"username": cred.username, "password": cred.password}
