"""The foundation: CLI output, key hashing, encrypted credentials, migrations, health."""
from __future__ import annotations

import json
import re

from sqlalchemy import text

from webapp import create_app
from webapp.extensions import db
from webapp.models import ApiKey, RegistryCredential


def test_users_create_prints_one_json_line(app):
    result = app.test_cli_runner().invoke(
        args=["users", "create", "dana@example.test", "--password", "long-enough-pw", "--team", "ops"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert list(info) == ["userId", "teamId", "projectId", "environmentId"]
    assert all(isinstance(v, int) for v in info.values())
    with app.app_context():
        from webapp.models import Environment, Project
        project = db.session.get(Project, info["projectId"])
        assert project.name == "default" and project.team_id == info["teamId"]
        assert db.session.get(Environment, info["environmentId"]).name == "Production"


def test_users_create_joins_an_existing_team(app):
    runner = app.test_cli_runner()
    first = json.loads(runner.invoke(args=["users", "create", "a1@example.test", "--password", "pw-123456",
                                           "--team", "shared"]).stdout)
    second = json.loads(runner.invoke(args=["users", "create", "a2@example.test", "--password", "pw-123456",
                                            "--team", "shared"]).stdout)
    assert first["teamId"] == second["teamId"] and first["projectId"] == second["projectId"]
    assert first["userId"] != second["userId"]


def test_users_create_rejects_a_duplicate_email(app, alice):
    result = app.test_cli_runner().invoke(
        args=["users", "create", alice.email, "--password", "pw-123456", "--team", "x"])
    assert result.exit_code == 1
    assert "already registered" in result.stderr or "exists" in result.stderr


def test_users_create_takes_any_password_and_warns_when_it_is_short(app):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["users", "create", "e@example.test", "--password", "pw-ee", "--team", "e"])
    assert short.exit_code == 0 and "warning" in short.stderr
    assert list(json.loads(short.stdout)) == ["userId", "teamId", "projectId", "environmentId"]
    empty = runner.invoke(args=["users", "create", "f@example.test", "--password", "", "--team", "f"])
    assert empty.exit_code == 1 and "password" in empty.stderr


def test_keys_create_prints_the_key_alone_on_the_last_line(app, alice):
    runner = app.test_cli_runner()
    for scope, mode in (("full", "live"), ("read", "live"), ("full", "test")):
        result = runner.invoke(args=["keys", "create", "--team", str(alice.team_id), "--scope", scope,
                                     "--mode", mode])
        assert result.exit_code == 0, result.output
        last = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(rf"hs_{mode}_[A-Za-z0-9_-]{{32,}}", last), last


def test_keys_create_for_an_unknown_team_fails(app):
    result = app.test_cli_runner().invoke(args=["keys", "create", "--team", "999", "--scope", "full"])
    assert result.exit_code == 1


def test_a_key_is_never_stored_in_clear(app, alice, client):
    with app.app_context():
        rows = db.session.execute(text("select * from api_keys")).mappings().all()
        dump = json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
    for key in (alice.full, alice.read, alice.test):
        assert key not in dump
        assert key[16:] not in dump  # not even the secret part after the prefix
    assert client.get(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows",
                      headers=alice.h()).status_code == 200


def test_a_revoked_key_is_refused(app, alice, client):
    with app.app_context():
        from webapp.services.access import Principal
        from webapp.services.keys import revoke
        key = db.session.query(ApiKey).filter_by(team_id=alice.team_id, role="admin", mode="live").first()
        revoke(Principal.operator({alice.team_id}), alice.team_id, key.id)
    r = client.get(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows", headers=alice.h())
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_key_use_is_recorded(app, alice, client):
    client.get(f"/api/projects/{alice.team_id}/{alice.project_id}/workflows", headers=alice.h())
    with app.app_context():
        used = db.session.query(ApiKey).filter(ApiKey.last_used_at.is_not(None)).count()
    assert used == 1


def test_registry_password_is_encrypted_at_rest(app, alice, client):
    r = client.post(f"/api/projects/{alice.team_id}/{alice.project_id}/registry-credentials",
                    json={"registry": "registry.example.test", "username": "u", "password": "hunter2-secret"},
                    headers=alice.h())
    assert r.status_code == 201
    assert "password" not in r.get_json()
    with app.app_context():
        raw = db.session.execute(text("select password from registry_credentials")).scalar_one()
        assert b"hunter2-secret" not in bytes(raw)
        assert db.session.query(RegistryCredential).one().password == "hunter2-secret"


def test_migrations_create_the_same_schema_as_the_models(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    with app.app_context():
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == [], diff


def test_sqlite_runs_in_wal_mode(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            return
        assert db.session.execute(text("pragma journal_mode")).scalar() == "wal"
        assert db.session.execute(text("pragma busy_timeout")).scalar() >= 5000


def test_healthz_reports_each_part(client, worker):
    r = client.get("/healthz")
    body = r.get_json()
    assert r.status_code == 200, body
    assert body["database"]["ok"] and body["redis"]["ok"] and body["docker"]["ok"]
    assert body["scheduler"]["ok"] and body["worker"]["ok"]
    assert 0 <= body["scheduler"]["lastBeatAgeSec"] <= 3


def test_healthz_is_503_without_a_scheduler_or_a_worker(client):
    r = client.get("/healthz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["database"]["ok"] and body["redis"]["ok"] and body["docker"]["ok"]
    assert body["scheduler"] == {"ok": False, "lastBeatAgeSec": None, "processes": {},
                                 "error": "no scheduler has reported in the last 10 s"}
    assert body["worker"]["ok"] is False


def test_healthz_is_503_when_the_engine_is_down(tmp_path):
    app = create_app({"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["docker"]["ok"] is False and body["database"]["ok"] and body["redis"]["ok"]


def test_healthz_is_503_when_redis_is_down():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0"})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503 and r.get_json()["redis"]["ok"] is False


def test_production_refuses_the_default_secret(monkeypatch):
    import pytest

    from webapp.config import ConfigError
    monkeypatch.setenv("WORKFLOWS_ENV", "production")
    monkeypatch.delenv("SECRET_KEY")
    with pytest.raises(ConfigError):
        create_app()


def test_bad_numbers_in_config_are_refused(monkeypatch):
    import pytest

    from webapp.config import ConfigError
    monkeypatch.setenv("WORKER_SLOTS", "many")
    with pytest.raises(ConfigError):
        create_app()


def test_healthz_of_a_host_without_an_engine_does_not_ask_one():
    """A web and scheduler host of a several-host installation has no engine: DOCKER_HOST=none."""
    app = create_app({"DOCKER_HOST": "none"})
    body = app.test_client().get("/healthz").get_json()
    assert body["docker"] == {"ok": True, "detail": "no engine on this host (DOCKER_HOST=none): the worker hosts have theirs"}


def test_a_worker_refuses_to_start_on_a_host_without_an_engine(tmp_path):
    import os
    import subprocess
    from conftest import ROOT
    p = subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "wsgi", "worker"], cwd=ROOT, capture_output=True,
                       text=True, env=dict(os.environ, DOCKER_HOST="none"), timeout=60)
    assert p.returncode == 2 and "DOCKER_HOST=none" in p.stderr
