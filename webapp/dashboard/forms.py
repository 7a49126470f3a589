"""Form fields <-> the API's schema input, so that the dashboard validates exactly like the API."""
from __future__ import annotations

import json

from ..models import Workflow
from ..schemas import RetryPolicy
from ..services import chains, envgroups, retrying
from ..vocabulary import ChainOn
from ..vocabulary import words as words_of

INT_FIELDS = ("timeoutSec", "maxRetries", "retryBackoffSec", "memoryMb", "expectSuccessWithinSec", "catchUpWindowSec")
FLOAT_FIELDS = ("cpus",)
OPTIONAL = ("memoryMb", "cpus", "expectSuccessWithinSec", "catchUpWindowSec")


class FormError(Exception):
    def __init__(self, fields: dict[str, str]):
        super().__init__("form error")
        self.fields = fields


def parse_command(text: str):
    """One argument per line, or a JSON array; empty means the image's CMD."""
    text = text.strip("\n")
    if not text.strip():
        return None
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise FormError({"command": "not a JSON array of strings"}) from None
        return value
    return text.replace("\r\n", "\n").split("\n")


def parse_env(text: str) -> dict:
    env: dict[str, str] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "=" not in line:
            raise FormError({"env": f"line {number}: write KEY=value"})
        key, value = line.split("=", 1)
        env[key.strip()] = value
    return env


def parse_after(text: str, ids_by_name: dict[str, str]) -> list[dict]:
    """One upstream per line: its name (or id), then optionally succeeded, failed or finished."""
    edges = []
    for line in text.replace("\r\n", "\n").split("\n"):
        words = line.split()
        if not words:
            continue
        on = "succeeded"
        if len(words) > 1 and words[-1] in words_of(ChainOn):
            on, words = words[-1], words[:-1]
            if len(words) > 1 and words[-1] == "on":
                words = words[:-1]
        name = " ".join(words)
        edges.append({"workflow": ids_by_name.get(name, name), "on": on})
    return edges


def workflow_input(form, *, project_id: int | None = None, ids_by_name: dict[str, str] | None = None) -> dict:
    """The JSON body the API would get for this form; `ids_by_name`: the project's workflows, for
    the chain's upstreams written by name."""
    data: dict = {}
    if project_id is not None:
        data["projectId"] = project_id
        if form.get("environmentId"):
            data["environmentId"] = _number(form["environmentId"], int)
    data["name"] = form.get("name", "")
    data["image"] = form.get("image", "").strip()
    data["command"] = parse_command(form.get("command", ""))
    data["env"] = parse_env(form.get("env", ""))
    data["schedule"] = form.get("schedule", "").strip() or None
    data["timezone"] = form.get("timezone", "").strip() or "UTC"
    data["concurrencyPolicy"] = form.get("concurrencyPolicy", "allow")
    data["network"] = form.get("network", "bridge")
    data["workerPool"] = form.get("workerPool", "").strip() or "default"
    data["onHostLost"] = form.get("onHostLost", "retry")
    data["readOnlyRootfs"] = form.get("readOnlyRootfs") == "on"
    data["retryPolicy"] = retry_policy_input(form)
    data["after"] = parse_after(form.get("after", ""), ids_by_name or {})
    data["join"] = form.get("join", "any")
    data["envGroups"] = form.get("envGroups", "").replace(",", " ").split()
    for field in INT_FIELDS + FLOAT_FIELDS:
        raw = form.get(field, "").strip()
        if raw == "":
            if field in OPTIONAL:
                data[field] = None
            continue
        data[field] = _number(raw, float if field in FLOAT_FIELDS else int)
    return data


def _codes(form, field: str, empty):
    """Exit codes written "1, 2" (commas or spaces); `empty` when none are written."""
    words = form.get(field, "").replace(",", " ").split()
    if not words:
        return empty
    if not all(w.isdigit() for w in words):
        raise FormError({field: "exit codes are whole numbers, separated by commas"})
    return [int(w) for w in words]


def retry_policy_input(form) -> dict:
    """The form's retry policy fields (named as the schema's error fields) as the API's retryPolicy."""
    return {
        "onExitCodes": _codes(form, "retryPolicy.onExitCodes", None),
        "exceptExitCodes": _codes(form, "retryPolicy.exceptExitCodes", []),
        "onTimeout": form.get("retryPolicy.onTimeout") == "on",
        "backoff": form.get("retryPolicy.backoff", "exponential"),
        "maxBackoffSec": _number(form.get("retryPolicy.maxBackoffSec", "").strip() or "300", int),
    }


def _retry_policy_form(policy) -> dict:
    return {"retryPolicy.onExitCodes": ", ".join(map(str, policy.onExitCodes or [])),
            "retryPolicy.exceptExitCodes": ", ".join(map(str, policy.exceptExitCodes)),
            "retryPolicy.onTimeout": policy.onTimeout, "retryPolicy.backoff": policy.backoff,
            "retryPolicy.maxBackoffSec": policy.maxBackoffSec}


def _number(raw: str, kind):
    try:
        return kind(raw)
    except ValueError:
        return raw  # the schema names the field


def workflow_form(wf: Workflow | None) -> dict:
    """The form's initial values."""
    if wf is None:
        return {"timeoutSec": 3600, "maxRetries": 0, "retryBackoffSec": 5, "timezone": "UTC",
                "concurrencyPolicy": "allow", "network": "bridge", "workerPool": "default", "onHostLost": "retry",
                "command": "", "env": "", **_retry_policy_form(RetryPolicy())}
    return {
        "name": wf.name, "image": wf.image,
        "command": "" if wf.command is None else "\n".join(wf.command),
        "env": "\n".join(f"{k}={v}" for k, v in (wf.env or {}).items()),
        "schedule": wf.schedule or "", "timezone": wf.timezone, "concurrencyPolicy": wf.concurrency_policy,
        "timeoutSec": wf.timeout_sec, "maxRetries": wf.max_retries, "retryBackoffSec": wf.retry_backoff_sec,
        "memoryMb": wf.memory_mb or "", "cpus": wf.cpus or "", "network": wf.network,
        "workerPool": wf.worker_pool, "onHostLost": wf.on_host_lost, "readOnlyRootfs": wf.read_only_rootfs,
        "expectSuccessWithinSec": wf.expect_success_within_sec or "",
        "catchUpWindowSec": wf.catch_up_window_sec or "",
        **_retry_policy_form(retrying.policy_of(wf)),
        "after": "\n".join(f"{up.name} {on}" for up, on in chains.neighbours(wf)[0]), "join": wf.chain_join,
        "envGroups": ", ".join(envgroups.names_of(wf.env_group_ids)),
    }
