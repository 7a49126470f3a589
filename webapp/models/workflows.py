"""Workflows, their runs and the runs' captured output."""
from __future__ import annotations

from ..extensions import db
from ..vocabulary import RunStatus, TERMINAL
from .base import JSON, EncryptedJSON, EncryptedText, utcnow

ON_HOST_LOST = ("retry", "wait")


class Workflow(db.Model):
    __tablename__ = "workflows"
    id = db.Column(db.Integer, primary_key=True)
    public_id = db.Column(db.String(32), nullable=False, unique=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    project_id = db.Column(db.Integer, db.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False)
    environment_id = db.Column(db.Integer, db.ForeignKey("environments.id"), nullable=False)
    name = db.Column(db.String(100), nullable=False)
    image = db.Column(db.String(512), nullable=False)
    command = db.Column(JSON, nullable=True)
    env = db.Column(EncryptedJSON, nullable=False, default=dict)  # values may be secrets: encrypted at rest
    schedule = db.Column(db.String(200), nullable=True)
    timezone = db.Column(db.String(64), nullable=False, default="UTC")
    concurrency_policy = db.Column(db.String(10), nullable=False, default="allow")
    timeout_sec = db.Column(db.Integer, nullable=False, default=3600)
    max_retries = db.Column(db.Integer, nullable=False, default=0)
    retry_backoff_sec = db.Column(db.Integer, nullable=False, default=5)
    memory_mb = db.Column(db.Integer, nullable=True)
    cpus = db.Column(db.Float, nullable=True)
    network = db.Column(db.String(10), nullable=False, default="bridge", server_default="bridge")
    # The worker pool that runs it (`flask worker --pool NAME`); a run keeps its workflow's.
    worker_pool = db.Column(db.String(40), nullable=False, default="default", server_default="default")
    # What becomes of a running run whose worker host is lost (no heartbeat for HOST_LOST_SEC):
    # "retry" fails it "worker host lost" (retried by its budget); "wait" keeps it running until
    # the host is back or an operator forgets the host (`flask hosts forget`).
    on_host_lost = db.Column(db.String(5), nullable=False, default="retry", server_default="retry")
    # The container's root filesystem read-only, with a bounded tmpfs /tmp (RUNS_TMPFS_MB).
    read_only_rootfs = db.Column(db.Boolean, nullable=False, default=False, server_default=db.false())
    next_run_at = db.Column(db.DateTime, nullable=True, index=True)
    # "ok" or "failing": moved with a compare-and-set in the transaction of a run's terminal
    # status, so that one failure chain emits one workflow.failed and one recovery one
    # workflow.recovered, however many runs finish at once.
    alert_state = db.Column(db.String(10), nullable=False, default="ok", server_default="ok")
    # Silent-workflow alerts: when no run has succeeded within expect_success_within_sec (of the
    # last success, or of when it was set), silent_at is set with a compare-and-set together with
    # the workflow.silent event; the next success clears it and emits workflow.recovered.
    expect_success_within_sec = db.Column(db.Integer, nullable=True)
    expect_since = db.Column(db.DateTime, nullable=True)
    silent_at = db.Column(db.DateTime, nullable=True)
    last_success_at = db.Column(db.DateTime, nullable=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Deleted workflows keep their rows so that run history and in-flight runs stay whole.
    deleted_at = db.Column(db.DateTime, nullable=True)
    # Since when its schedule's fires are skipped because the team's queue is full (one
    # workflow.missed for the stretch); cleared by its next fire.
    queue_full_at = db.Column(db.DateTime, nullable=True)
    # How several `after` edges fire it (webapp/services/chains.py): "any" upstream's qualifying
    # end, or "all": one qualifying end of every upstream since its last chain run.
    chain_join = db.Column(db.String(3), nullable=False, default="any", server_default="any")
    # After a scheduler outage, every missed instant younger than this runs, oldest first (null:
    # the contract's rule, only the latest missed instant, if younger than the timeout).
    catch_up_window_sec = db.Column(db.Integer, nullable=True)
    # The ids of the team's env groups its runs get, in order (services/envgroups.py).
    env_group_ids = db.Column(JSON, nullable=True)
    # The API's retryPolicy as given (null: the defaults); webapp/services/retrying.py reads it.
    retry_policy = db.Column(JSON, nullable=True)
    # Paused (webapp/services/pausing.py): no scheduled fires (next_run_at null) and not silent;
    # with pause_triggers, manual fires are refused too. Who paused it, in words, and why.
    paused_at = db.Column(db.DateTime, nullable=True)
    paused_by = db.Column(db.String(300), nullable=True)
    pause_note = db.Column(db.Text, nullable=True)
    pause_triggers = db.Column(db.Boolean, nullable=False, default=False, server_default=db.false())

    project = db.relationship("Project")
    environment = db.relationship("Environment")
    __table_args__ = (db.Index("ix_workflows_project_live", "project_id", "deleted_at"),)


class WorkflowEdge(db.Model):
    """A chain: `downstream` runs after each run of `upstream` that ends in the state `on`
    (webapp/services/chains.py). Read from the upstream's side when its run ends."""

    __tablename__ = "workflow_edges"
    downstream_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    upstream_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True,
                            index=True)
    on_state = db.Column(db.String(10), nullable=False)  # the API's "on": ChainOn
    position = db.Column(db.Integer, nullable=False, default=0)  # the order the API was given them in
    # Under join "all", an upstream run counts only if it ended after the edge was made (and after
    # the downstream's last chain run).
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class Run(db.Model):
    __tablename__ = "runs"
    id = db.Column(db.Integer, primary_key=True)
    public_id = db.Column(db.String(32), nullable=False, unique=True)
    team_id = db.Column(db.Integer, db.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False)
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False)
    trigger = db.Column(db.String(10), nullable=False)
    attempt = db.Column(db.Integer, nullable=False, default=1)
    retry_of_id = db.Column(db.Integer, db.ForeignKey("runs.id"), nullable=True)
    # The upstream run whose end fired this one (trigger "chain"); unique per workflow: one
    # upstream run fires each downstream workflow once, however often its end is handled.
    triggered_by_id = db.Column(db.Integer, db.ForeignKey("runs.id"), nullable=True)
    # The backfill that fired it (trigger "backfill"), or whose run it retries.
    backfill_id = db.Column(db.Integer, db.ForeignKey("backfills.id", ondelete="SET NULL"), nullable=True)
    # [[env group id, version], …] pinned when it was fired (a retry keeps its run's): its
    # container gets those versions' entries under its env.
    env_groups = db.Column(JSON, nullable=True)
    status = db.Column(db.String(10), nullable=False, default="queued")
    exit_code = db.Column(db.Integer, nullable=True)
    error = db.Column(db.Text, nullable=True)
    env = db.Column(EncryptedJSON, nullable=False, default=dict)  # encrypted at rest, like the workflow's
    # What the run executes, fixed when it is fired: later edits of the workflow do not change it.
    image = db.Column(db.String(512), nullable=False)
    command = db.Column(JSON, nullable=True)
    timeout_sec = db.Column(db.Integer, nullable=False)
    memory_mb = db.Column(db.Integer, nullable=True)
    cpus = db.Column(db.Float, nullable=True)
    network = db.Column(db.String(10), nullable=False, default="bridge", server_default="bridge")
    # The worker pool that runs it (`flask worker --pool NAME`); a run keeps its workflow's.
    worker_pool = db.Column(db.String(40), nullable=False, default="default", server_default="default")
    image_digest = db.Column(db.String(200), nullable=True)
    scheduled_for = db.Column(db.DateTime, nullable=True)
    queued_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # When the run may start: queued_at, or later for a retry waiting out its backoff.
    due_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Set when the run was handed to the queue; the scheduler hands over due runs that lack it.
    enqueued_at = db.Column(db.DateTime, nullable=True)
    started_at = db.Column(db.DateTime, nullable=True)
    finished_at = db.Column(db.DateTime, nullable=True)
    duration_ms = db.Column(db.Integer, nullable=True)
    container_id = db.Column(db.String(80), nullable=True)
    worker_name = db.Column(db.String(200), nullable=True)
    # The engine host the run was claimed on (its worker's WORKER_HOST): where its container is, and
    # so where its re-attach, completion and removal must be done.
    worker_host = db.Column(db.String(200), nullable=True)
    # The fencing token of the worker that owns the run (the value of its Redis lease). Every
    # write a worker makes to a running run is conditional on it, so a worker that lost the run
    # (paused past its lease, partitioned) cannot overwrite what the new owner writes.
    owner_token = db.Column(db.String(40), nullable=True)
    cancel_requested_at = db.Column(db.DateTime, nullable=True)
    cancel_reason = db.Column(db.Text, nullable=True)
    # Who fired it (a member's email, an API key, "webhook wh_…", a backfill's maker) and who
    # cancelled it, in words (services/actors.py); null for what the product did by itself.
    fired_by = db.Column(db.String(200), nullable=True)
    cancelled_by = db.Column(db.String(200), nullable=True)
    # A webhook fire's body (trigger "webhook"), base64, encrypted at rest: the container's
    # /run/workflow/payload, and WORKFLOW_PAYLOAD when short and text. A retry keeps it.
    payload = db.Column(EncryptedText, nullable=True)
    # Why a failed or timed-out run was or was not retried, decided with its terminal status.
    retry_decision = db.Column(db.Text, nullable=True)
    # Bytes of container output read so far, per stream: where a re-attached reader resumes.
    stdout_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    stderr_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    # When the last of those bytes was read, on the engine host's clock (the clock of its log's
    # timestamps): a re-attached reader that meets an entry logged well after it knows the engine's
    # log no longer starts at the first byte (json-file rotation), and stops skipping there.
    output_read_at = db.Column(db.DateTime, nullable=True)
    log_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    log_dropped_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    # Every seq below this is stored, or accounted for past the cap: a live viewer that finds a
    # hole in the trimmed stream waits until the database has caught up to it.
    log_next_seq = db.Column(db.Integer, nullable=False, default=0, server_default="0")
    # Where the "bytes dropped" notice goes once the head is full (kept across a re-attach).
    log_notice_seq = db.Column(db.Integer, nullable=True)
    # When its stored output was removed, past the team's logRetentionDays (services/retention.py)
    log_pruned_at = db.Column(db.DateTime, nullable=True)

    workflow = db.relationship("Workflow")
    retry_of = db.relationship("Run", remote_side=[id], foreign_keys=[retry_of_id])
    triggered_by = db.relationship("Run", remote_side=[id], foreign_keys=[triggered_by_id])
    backfill = db.relationship("Backfill")
    __table_args__ = (
        db.Index("ix_runs_workflow_newest", "workflow_id", "id"),  # scanned backwards: newest first
        db.Index("ix_runs_team_newest", "team_id", "id"),  # the Runs tab: a team's own runs, newest first
        db.UniqueConstraint("workflow_id", "scheduled_for", name="uq_runs_workflow_scheduled_for"),
        db.UniqueConstraint("workflow_id", "triggered_by_id", name="uq_runs_workflow_triggered_by"),
        db.Index("ix_runs_triggered_by", "triggered_by_id"),  # a run page's "triggered" list
        db.Index("ix_runs_retry_of", "retry_of_id"),  # a run page's retry; a run's delete checks it
        db.Index("ix_runs_backfill_status", "backfill_id", "status"),  # a backfill's progress
        db.Index("ix_runs_status_due", "status", "due_at"),
        db.Index("ix_runs_team_status", "team_id", "status"),  # a team's queue, counted for its quota
        # the health view reads the last week's finished runs of each workflow
        db.Index("ix_runs_workflow_finished", "workflow_id", "finished_at"),
        # retention (services/retention.py): a team's oldest finished runs, and those with output
        db.Index("ix_runs_team_finished", "team_id", "finished_at"),
        db.Index("ix_runs_team_finished_output_kept", "team_id", "finished_at",
                 postgresql_where=db.text("log_pruned_at IS NULL"), sqlite_where=db.text("log_pruned_at IS NULL")),
    )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def shown_status(self) -> str:
        """The status as the contract reads it: `running` means its container started. A run a
        worker has claimed (status `running` in the row: the claim's compare-and-set) whose
        container has not started yet (the image pulled, the container made, an instant awaited)
        is still `queued` to its readers."""
        return "queued" if self.status == RunStatus.RUNNING and self.started_at is None else self.status


class RunCount(db.Model):
    """Finished runs per (workflow, final status, trigger), moved in the transaction that makes a
    run terminal: what /metrics reports as workflows_runs_total without scanning every run."""

    __tablename__ = "run_counts"
    workflow_id = db.Column(db.Integer, db.ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    status = db.Column(db.String(10), primary_key=True)
    trigger = db.Column(db.String(10), primary_key=True)
    n = db.Column(db.BigInteger, nullable=False, default=0)


class RunLogBlock(db.Model):
    """Consecutive lines of a run's output from one stream, joined by newlines: seqs
    `first_seq`..`last_seq`, one per line. A flood is stored as a few thousand rows of up to 64 KiB
    instead of a row per line, and a slow writer's lines of one flush as one row; each line keeps
    the instant it was read, and zstd compresses what it can (runoutput/codec.py)."""

    __tablename__ = "run_log_blocks"
    id = db.Column(db.BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    run_id = db.Column(db.Integer, db.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
    first_seq = db.Column(db.Integer, nullable=False)
    last_seq = db.Column(db.Integer, nullable=False)
    stream = db.Column(db.String(6), nullable=False)  # stdout | stderr | system
    text = db.Column(db.Text, nullable=True)  # the lines, or null when `packed` holds them (runoutput/codec.py)
    packed = db.Column(db.LargeBinary, nullable=True)
    ts = db.Column(db.DateTime, nullable=False)  # when its first line was read
    # Blocks never overlap, so ordering by last_seq is ordering by seq, and "the blocks holding a
    # seq after N" is a range scan of this index.
    __table_args__ = (db.UniqueConstraint("run_id", "last_seq", name="uq_run_log_blocks_run_last_seq"),)
