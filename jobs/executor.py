"""Between a run and the place its process runs: the executor interface, and the Docker engine's.

The runner (jobs/runner.py) and the host keeper (jobs/hosts.py) reach an engine only through
these methods, by the run's id and the unit's id (a container id here; a Job's name under the
Kubernetes executor that docs/scale-out.md describes), so a second executor is an addition. Image
preparation (the pull policy, a registry's yes for a project) stays in the runner: it is the
Docker engine's own business (a cluster pulls with its own secrets)."""
from __future__ import annotations

import base64
from typing import Callable, Protocol

import docker
import requests
from docker.errors import APIError, NotFound

from webapp.services import envgroups, hooks

from . import engine


class Executor(Protocol):
    def submit(self, run, image_id: str | None = None) -> str:
        """Create the run's unit, not started, from `image_id` (the image checked for the run)
        when given; idempotent on the run's id (a second submit finds the first unit instead of
        making another)."""

    def find(self, run_id: str, known_id: str | None = None) -> dict | None:
        """The run's unit as {"Id", "State": {"Status", "ExitCode", "FinishedAt", ...}}, by its
        known id or by the run's label; None if there is none."""

    def attach(self, unit_id: str) -> engine.Output:
        """Before the start: every byte the unit will write, live."""

    def follow(self, unit_id: str) -> engine.Output:
        """A unit already running: its output from the first byte, then live to its exit."""

    def read(self, unit_id: str) -> engine.Output:
        """An ended unit's whole output."""

    def start(self, unit_id: str) -> None:
        """Start it (RunFailure with the runtime's sentence if it cannot)."""

    def exit_watch(self, run_id: str) -> engine.ExitWatch:
        """The exit, with its code, as soon as the executor reports it (subscribed before the start)."""

    def wait(self, unit_id: str, seconds: float) -> int | None:
        """The exit code if the unit ends within `seconds`, else None."""

    def kill(self, unit_id: str) -> bool:
        """SIGKILL (the deadline); False if it had ended already."""

    def stop(self, unit_id: str, grace: int) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds (a cancel)."""

    def state(self, unit_id: str) -> dict:
        """The unit's state now (Status, ExitCode, OOMKilled, FinishedAt)."""

    def remove_later(self, unit_id: str) -> None:
        """Remove a finished unit, off the caller's path."""

    def reap(self, keeping: Callable[[set[str]], set[str]]) -> int:
        """Remove this installation's units except those of the runs `keeping` returns (it is given
        the run ids of all of them; a unit without one is removed)."""


class DockerExecutor:
    """Containers on one Docker engine, named and labelled by the run's id."""

    def __init__(self, api: docker.APIClient):
        self.api = api

    def submit(self, run, image_id: str | None = None) -> str:
        """The run's container, created (or found, if it was created before), its webhook payload
        in place."""
        unit_id = self._create(run, image_id)
        if run.payload is not None:
            try:
                engine.put_payload(self.api, unit_id, base64.b64decode(run.payload))
            except APIError as e:
                raise engine.RunFailure(f"could not give the container its payload: {e.explanation or e}") from None
        return unit_id

    def _create(self, run, image_id: str | None) -> str:
        name = f"wf-{run.public_id}"
        try:
            return self.api.create_container(
                image_id or run.image, command=run.command, name=name,
                environment={**envgroups.env_of(run), **dict(run.env or {}), **hooks.payload_env(run.payload)},
                labels={engine.LABEL_RUN: run.public_id, engine.LABEL_INSTANCE: engine.instance_id(),
                        engine.LABEL_HOST: run.worker_host or "",
                        engine.LABEL_WAITS: "1" if run.workflow.on_host_lost == "wait" else ""},
                host_config=engine.host_config(self.api, run.memory_mb, run.cpus, run.network,
                                               read_only=run.workflow.read_only_rootfs,
                                               payload=run.payload is not None),
                stdin_open=False, tty=False, detach=True,
            )["Id"]
        except APIError as e:
            if e.status_code == 409:  # submitted before: the name is the run's
                found = self.find(run.public_id)
                if found is not None:
                    return found["Id"]
            raise engine.RunFailure(f"could not create the container: {e.explanation or e}") from None

    def find(self, run_id: str, known_id: str | None = None) -> dict | None:
        if known_id:
            try:
                return self.api.inspect_container(known_id)
            except NotFound:
                return None
        found = self.api.containers(all=True, filters={"label": f"{engine.LABEL_RUN}={run_id}"})
        if not found:
            return None
        try:
            return self.api.inspect_container(found[0]["Id"])
        except NotFound:
            return None

    def attach(self, unit_id: str) -> engine.Output:
        return engine.attach_output(self.api, unit_id)

    def follow(self, unit_id: str) -> engine.Output:
        return engine.log_output(self.api, unit_id, follow=True)

    def read(self, unit_id: str) -> engine.Output:
        return engine.log_output(self.api, unit_id, follow=False)

    def start(self, unit_id: str) -> None:
        try:
            self.api.start(unit_id)
        except APIError as e:
            raise engine.RunFailure(f"could not start the container: {engine.start_problem(e)}") from None

    def exit_watch(self, run_id: str) -> engine.ExitWatch:
        return engine.ExitWatch(self.api, run_id)

    def wait(self, unit_id: str, seconds: float) -> int | None:
        try:
            return self.api.wait(unit_id, timeout=seconds)["StatusCode"]
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            return None

    def kill(self, unit_id: str) -> bool:
        try:
            self.api.kill(unit_id)
            return True
        except APIError as e:
            if e.status_code == 409:  # "is not running"
                return False
            raise

    def stop(self, unit_id: str, grace: int) -> None:
        self.api.stop(unit_id, timeout=grace)

    def state(self, unit_id: str) -> dict:
        return self.api.inspect_container(unit_id)["State"]

    def remove_later(self, unit_id: str) -> None:
        engine.remove_later(self.api, unit_id)

    def reap(self, keeping: Callable[[set[str]], set[str]]) -> int:
        removed = 0
        found = self.api.containers(all=True, filters={"label": f"{engine.LABEL_INSTANCE}={engine.instance_id()}"})
        kept = keeping({run_id for c in found if (run_id := (c.get("Labels") or {}).get(engine.LABEL_RUN))})
        for c in found:
            if (c.get("Labels") or {}).get(engine.LABEL_RUN) in kept:
                continue
            try:
                self.api.remove_container(c["Id"], force=True, v=True)
                removed += 1
            except NotFound:
                pass
        return removed
