"""The /metrics page (Prometheus text), right under several web processes and several hosts.

Counts of runs, deliveries, queued and running runs, last successes and next fires are read from
the database when /metrics is scraped (a custom collector); the histograms and counters recorded
in Redis (webapp/metrics.py) are read in one pipeline.
"""
from __future__ import annotations

import hmac
from datetime import timezone
from functools import lru_cache

from flask import Blueprint, Response, current_app, request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select

from .connections import get_redis
from .extensions import db
from .gate import OPEN, needs
from .keys import METRICS
from .metrics import COUNTERS, HISTOGRAMS, KNOWN_VALUES
from .models import Notification, NotificationChannel, NotificationDelivery, Run, RunCount, Team, Workflow
from .vocabulary import ACTIVE, CHANNEL_KINDS


def _epoch(moment) -> float:
    """A naive UTC datetime of the database as Unix time."""
    return moment.replace(tzinfo=timezone.utc).timestamp()


OTHERS = "(others)"  # the workflow label of a team's workflows past METRICS_MAX_WORKFLOW_SERIES


def _series_labels(workflows: dict, teams: dict, cap: int) -> dict[int, list[str]]:
    """Workflow id -> its labels [team, workflow, workflow_id]. The first `cap` workflows (oldest
    first) have series of their own; the rest are summed per team under workflow "(others)", so
    one team's thousands of workflows cannot blow up the scrape (their failing and silent gauges
    are then counts)."""
    labels = {}
    for k, wf_id in enumerate(sorted(workflows)):
        wf = workflows[wf_id]
        team = teams.get(wf.team_id, "")
        labels[wf_id] = [team, wf.name, wf.public_id] if k < cap else [team, OTHERS, ""]
    return labels


class Collector:
    """What one scrape reports; each family is one or two grouped queries or one Redis read."""

    def collect(self):
        teams = dict(db.session.execute(select(Team.id, Team.name)).all())
        workflows = {row.id: row for row in db.session.execute(
            select(Workflow.id, Workflow.team_id, Workflow.name, Workflow.public_id, Workflow.last_success_at,
                   Workflow.next_run_at, Workflow.alert_state, Workflow.silent_at,
                   Workflow.expect_success_within_sec).where(Workflow.deleted_at.is_(None))).all()}

        named = _series_labels(workflows, teams, current_app.config["METRICS_MAX_WORKFLOW_SERIES"])

        runs = CounterMetricFamily("workflows_runs", "Finished runs, by final status and trigger.",
                                   labels=["team", "workflow", "workflow_id", "status", "trigger"])
        finished: dict[tuple, int] = {}
        for wf_id, status, trigger, n in db.session.execute(
                select(RunCount.workflow_id, RunCount.status, RunCount.trigger, RunCount.n)):
            if wf_id in named:
                key = (*named[wf_id], status, trigger)
                finished[key] = finished.get(key, 0) + n
        for key, n in finished.items():
            runs.add_metric(list(key), n)
        yield runs

        active = GaugeMetricFamily("workflows_runs", "Runs queued or running now.", labels=["team", "state"])
        counts = {(t, s): 0 for t in teams for s in ("queued", "running")}
        for team_id, status, n in db.session.execute(
                select(Run.team_id, Run.status, func.count()).where(Run.status.in_(ACTIVE))
                .group_by(Run.team_id, Run.status)):
            counts[(team_id, status)] = n
        for (team_id, status), n in sorted(counts.items()):
            active.add_metric([teams.get(team_id, ""), status], n)
        yield active

        yield from self._per_workflow(workflows, named)

        deliveries = CounterMetricFamily("workflows_notification_deliveries",
                                         "Notification delivery attempts, by channel kind and outcome.",
                                         labels=["kind", "outcome"])
        tally = {(kind, outcome): 0 for kind in CHANNEL_KINDS
                 for outcome in ("sent", "failed")}
        for kind, outcome, n in db.session.execute(
                select(NotificationChannel.kind, NotificationDelivery.status, func.count())
                .join(NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id)
                .group_by(NotificationChannel.kind, NotificationDelivery.status)):
            tally[(kind, outcome)] = n
        for (kind, outcome), n in sorted(tally.items()):
            deliveries.add_metric([kind, outcome], n)
        yield deliveries
        pending = GaugeMetricFamily("workflows_notifications_pending", "Notifications waiting to be sent.")
        pending.add_metric([], db.session.scalar(
            select(func.count()).select_from(Notification).where(Notification.state.in_(("pending", "sending")))))
        yield pending
        db.session.rollback()

        yield from self._from_redis(teams)

    @staticmethod
    def _per_workflow(workflows: dict, named: dict) -> list:
        """The gauges of each workflow with series of its own, and the counts of the rest."""
        def per_workflow(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"workflows_workflow_{name}", doc, labels=["team", "workflow", "workflow_id"])
        last = per_workflow("last_success_timestamp_seconds",
                            "When the workflow's newest successful run ended (Unix time).")
        following = per_workflow("next_fire_timestamp_seconds", "The workflow's next scheduled instant (Unix time).")
        failing = per_workflow("failing", "1 while the workflow's last final run failed (workflow.failed sent).")
        silent = per_workflow("silent",
                              "1 while no run succeeded within expectSuccessWithinSec (workflow.silent sent).")
        expect = per_workflow("expect_success_within_seconds",
                              "The workflow's expectSuccessWithinSec, where it has one.")
        others: dict[tuple, list[int]] = {}  # a team's workflows past the cap: how many fail, are silent
        for wf_id, wf in workflows.items():
            labels = named[wf_id]
            if labels[1] == OTHERS:
                counts = others.setdefault(tuple(labels), [0, 0])
                counts[0] += wf.alert_state == "failing"
                counts[1] += bool(wf.silent_at)
                continue
            if wf.last_success_at:
                last.add_metric(labels, _epoch(wf.last_success_at))
            if wf.next_run_at:
                following.add_metric(labels, _epoch(wf.next_run_at))
            failing.add_metric(labels, 1 if wf.alert_state == "failing" else 0)
            silent.add_metric(labels, 1 if wf.silent_at else 0)
            if wf.expect_success_within_sec:
                expect.add_metric(labels, wf.expect_success_within_sec)
        for labels, (n_failing, n_silent) in others.items():
            failing.add_metric(list(labels), n_failing)
            silent.add_metric(list(labels), n_silent)
        return [last, following, failing, silent, expect]

    def _from_redis(self, teams: dict):
        r = get_redis()
        pipe = r.pipeline(transaction=False)
        for name in HISTOGRAMS:
            pipe.hgetall(f"{METRICS}:h:{name}")
        for name in COUNTERS:
            pipe.hgetall(f"{METRICS}:c:{name}")
        from rq import Worker
        replies = pipe.execute()
        for (name, (buckets, doc)), raw in zip(HISTOGRAMS.items(), replies):
            family = HistogramMetricFamily(f"workflows_{name}", doc, labels=["team"])
            per_team: dict[str, dict] = {str(t): {} for t in teams}
            for field, value in raw.items():
                team_id, slot = field.decode().split(":", 1)
                per_team.setdefault(team_id, {})[slot] = float(value)
            for team_id, values in sorted(per_team.items()):
                cumulative, points = 0.0, []
                for i, bound in enumerate(list(buckets) + [float("inf")]):
                    cumulative += values.get(str(i), 0.0)
                    points.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
                name_of_team = teams.get(int(team_id)) if team_id.isdigit() else None
                if name_of_team is not None:
                    family.add_metric([name_of_team], points, values.get("sum", 0.0))
            yield family
        for (name, (label, doc)), raw in zip(COUNTERS.items(), replies[len(HISTOGRAMS):]):
            family = CounterMetricFamily(f"workflows_{name}", doc, labels=[label] if label else [])
            if label:
                values = {v: 0 for v in KNOWN_VALUES.get(name, ())}
                values.update({v.decode(): int(n) for v, n in raw.items()})
                for value, n in sorted(values.items()):
                    family.add_metric([value], n)
            else:
                family.add_metric([], int(raw.get(b"", 0)))
            yield family
        slots = GaugeMetricFamily("workflows_worker_slots", "Worker slots (RQ workers), by host and state.",
                                  labels=["host", "state"])
        tally: dict[tuple[str, str], int] = {}
        for worker in Worker.all(connection=r):
            state = "busy" if worker.get_state() == "busy" else "idle"
            host = worker.hostname.decode() if isinstance(worker.hostname, bytes) else (worker.hostname or "")
            tally[(host, state)] = tally.get((host, state), 0) + 1
            tally.setdefault((host, "idle" if state == "busy" else "busy"), 0)
        for (host, state), n in sorted(tally.items()):
            slots.add_metric([host, state], n)
        yield slots


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@needs(OPEN)  # its own bearer token (METRICS_TOKEN)
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("a bearer token is required (METRICS_TOKEN)\n", 401,
                            {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"})
    return Response(render(Collector().collect()), 200, {"Content-Type": CONTENT_TYPE_LATEST})


@lru_cache(maxsize=65536)
def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def render(families) -> bytes:
    """The text exposition format (0.0.4) of prometheus-client's metric families, as its
    generate_latest writes it for counters, gauges and histograms, with each label value escaped
    once: generate_latest escapes and validates every label of every sample again, which took
    70 ms of a scrape at 1,000 workflows; this takes a few."""
    out: list[str] = []
    for family in families:
        name = family.name + "_total" if family.type == "counter" else family.name
        doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(sample.labels.items()))
                out.append(f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}\n")
            else:
                out.append(f"{sample.name} {floatToGoString(sample.value)}\n")
    return "".join(out).encode()
