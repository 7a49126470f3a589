"""The RQ entry points. Each runs inside the worker's Flask app context."""
from __future__ import annotations

from contextlib import contextmanager

from flask import current_app, has_app_context

_app = None


@contextmanager
def app_context():
    """The worker process's app; made once per process, reused by every job."""
    global _app
    if has_app_context():
        yield current_app
        return
    if _app is None:
        from webapp import create_app
        _app = create_app()
    with _app.app_context():
        from webapp.extensions import db
        try:
            yield _app
        finally:
            db.session.remove()


def execute_run(public_id: str) -> None:
    with app_context():
        from .runner import execute_run as run
        run(public_id)


def resume_run(public_id: str) -> None:
    with app_context():
        from .runner import resume_run as resume
        resume(public_id)


def deliver_notification(notification_id: int) -> None:
    with app_context():
        from .notify import deliver_notification as deliver
        deliver(notification_id)
