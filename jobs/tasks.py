"""The RQ entry points. Each runs inside its worker slot's Flask app context (jobs/cli.py run_slot)."""
from __future__ import annotations

from rq.job import Job

from webapp import keys


def execute_run(public_id: str) -> None:
    from .runner import execute_run as run
    run(public_id)


def resume_run(public_id: str) -> None:
    from .runner import resume_run as resume
    resume(public_id)


def deliver_notification(notification_id: int) -> None:
    from .notify import deliver_notification as deliver
    deliver(notification_id)


TASKS = keys.TASKS


class UnknownTask(Exception):
    pass


class TaskJob(Job):
    """A job as our slots accept it: one of TASKS with its arguments, and nothing else a job may
    carry (callbacks, webhooks); read with RQ's JSON serializer (no pickle). Whoever manages to
    write into Redis cannot make a worker run any other code."""

    def perform(self):
        if self.func_name not in TASKS:
            raise UnknownTask(f"refused: {str(self.func_name)[:200]!r} is not a task of this service")
        return super().perform()

    success_callback = failure_callback = stopped_callback = property(lambda self: None)

    def send_webhooks(self, *args, **kwargs) -> None:
        return None
