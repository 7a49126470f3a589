"""The run routes of the JSON API as the tests use them: one copy of each helper."""
from __future__ import annotations

from conftest import create_wf, wait_for
from engine_events import intervals, overlaps

# A long run that ends as soon as it is stopped (sleep alone as PID 1 ignores SIGTERM: its stop
# would wait out the engine's grace).
STOPS_AT_ONCE = ["sh", "-c", "trap 'exit 143' TERM; sleep 60 & wait"]


def base(m):
    return f"/api/workflows/{m.team_id}/workflows"


def post_trigger(client, m, wf_id: str, body: dict | None = None, *, key: str = "full"):
    """The raw response of a trigger, for tests of what it refuses."""
    return client.post(f"{base(m)}/{wf_id}/trigger", headers=m.h(key), **({"json": body} if body is not None else {}))


def trigger(client, m, wf_id: str, env: dict | None = None) -> dict:
    """A manual run of `wf_id` (accepted: 202), with `env` over the workflow's."""
    r = post_trigger(client, m, wf_id, {"env": env} if env else None)
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def launch(client, m, trigger_env: dict | None = None, **fields) -> tuple[dict, dict]:
    """A new workflow made of `fields`, and its first manual run (with `trigger_env`)."""
    wf = create_wf(client, m, **fields)
    return wf, trigger(client, m, wf["id"], trigger_env)


def fire(client, m, **fields) -> dict:
    """The first manual run of a new workflow made of `fields`."""
    return launch(client, m, **fields)[1]


def get(client, m, run_id: str) -> dict:
    return client.get(f"{base(m)}/runs/{run_id}", headers=m.h()).get_json()


def lines(client, m, run_id: str) -> list[str]:
    return [l["text"] for l in client.get(f"{base(m)}/runs/{run_id}/logs", headers=m.h()).get_json()["lines"]
            if l["stream"] != "system"]


def containers(api, run_id: str) -> list[dict]:
    """The run's containers on the engine of `api`."""
    return api.containers(all=True, filters={"label": f"workflows.run={run_id}"})


def retried_elsewhere(client, m, wf_id: str, run_id: str, lost_host: str, since: float, apis) -> dict:
    """The retry of `run_id`, whose host `lost_host` was lost: it runs on another host, and its
    container started only once the first attempt's had died (the engines' own events, on every
    engine of `apis`). Returns the retry."""
    runs = client.get(f"{base(m)}/{wf_id}/runs", headers=m.h()).get_json()["runs"]
    retry = next(r for r in runs if r["retryOf"] == run_id)
    wait_for(lambda: lines(client, m, retry["id"]), 30)
    assert get(client, m, retry["id"])["workerHost"] not in (None, lost_host)
    spans = [span for api in apis for span in intervals(api, since, {run_id, retry["id"]})]
    assert [s[0] for s in sorted(spans, key=lambda s: s[1])] == [run_id, retry["id"]], spans
    assert not overlaps(spans), spans
    return retry


def end_at_once(app, run_ids: list[str], status: str = "succeeded") -> None:
    """End queued runs as their workers would (lifecycle.complete), all at once from threads that
    wait at one barrier: the races between terminal transactions, without an engine."""
    import threading

    from sqlalchemy import update

    from webapp.extensions import db
    from webapp.models import Run
    from webapp.services import lifecycle
    with app.app_context():
        db.session.execute(update(Run).where(Run.public_id.in_(run_ids)).values(status="running"))
        db.session.commit()
    start = threading.Barrier(len(run_ids))

    def finish(run_id):
        with app.app_context():
            run = db.session.query(Run).filter_by(public_id=run_id).one()
            db.session.commit()
            start.wait()
            lifecycle.complete(run, status, exit_code=0 if status == "succeeded" else 1)
            db.session.remove()
    threads = [threading.Thread(target=finish, args=(i,)) for i in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
