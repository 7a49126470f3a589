"""Log lines of the web, worker and scheduler processes: text by default, one JSON object a line
with LOG_FORMAT=json (python-json-logger), carrying the run id, workflow id and team id of the run
or request the line is about (kept in a context variable by whoever works on a run)."""
from __future__ import annotations

import contextlib
import contextvars
import logging

from .config import settings

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("workflows_log_context", default={})
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@contextlib.contextmanager
def about(**fields):
    """Lines logged inside are about these ids (run_id, workflow_id, team_id)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def about_run(run):
    return about(run_id=run.public_id, workflow_id=run.workflow.public_id if run.workflow else None,
                 team_id=run.team_id)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, value)
        try:
            from flask import g, has_request_context, request
            if has_request_context():
                record.method, record.path = request.method, request.path
                teams = getattr(g.get("principal"), "team_ids", None) or ()
                if len(teams) == 1 and not hasattr(record, "team_id"):
                    record.team_id = next(iter(teams))
                if request.view_args:  # a run or workflow named in the path
                    for arg, attr in (("run_id", "run_id"), ("workflow_id", "workflow_id"), ("team_id", "team_id")):
                        if arg in request.view_args and not hasattr(record, attr):
                            setattr(record, attr, request.view_args[arg])
        except Exception:
            pass
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter
    return JsonFormatter("%(asctime)s %(name)s %(levelname)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                         timestamp=False)


def configure() -> None:
    """The root logger's one handler, in the format LOG_FORMAT names (text or json)."""
    chosen = settings()
    json_lines = chosen.LOG_FORMAT == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen.LOG_LEVEL)


def gunicorn_logconfig() -> dict | None:
    """gunicorn's own error and access logs as JSON lines too, when LOG_FORMAT=json."""
    chosen = settings()
    if chosen.LOG_FORMAT != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"],
               "stream": "ext://sys.stdout"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"context": {"()": "webapp.process_log.ContextFilter"}},
        "formatters": {"json": {"()": "webapp.process_log.json_formatter"}},
        "handlers": {"json": handler},
        "root": {"handlers": ["json"], "level": chosen.LOG_LEVEL},
        "loggers": {"gunicorn.error": {"handlers": ["json"], "propagate": False, "level": "INFO"},
                    "gunicorn.access": {"handlers": ["json"], "propagate": False, "level": "INFO"}},
    }


class WarnOnce:
    """One warning when a step starts failing, not one per pass while it keeps failing; once it
    works again (`ok`), its next failure is told again."""

    def __init__(self, logger: logging.Logger):
        self.log, self.failing = logger, set()

    def failed(self, step: str, message: str, *args, **kwargs) -> None:
        if step not in self.failing:
            self.failing.add(step)
            self.log.warning(message, *args, **kwargs)

    def ok(self, step: str) -> None:
        self.failing.discard(step)
