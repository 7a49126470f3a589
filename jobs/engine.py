"""Talking to the Docker engine: image policy, pulls with credentials, container settings."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import queue
import re
import struct
import tarfile
import threading
import time
from datetime import datetime, timezone

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Mount
from flask import current_app

from webapp.imageref import familiar, split_tag
from webapp.services.registry_hosts import registry_problem

from . import egress
from .machine import one_at_a_time

LABEL_RUN = "workflows.run"
LABEL_INSTANCE = "workflows.instance"
LABEL_HOST = "workflows.host"  # the engine host the run was claimed on: whose guard fences it
LABEL_WAITS = "workflows.waits-for-host"  # "1": its workflow's onHostLost is "wait": never fenced


class RunFailure(Exception):
    """A failure before or around the container that ends the run with a sentence, not a trace."""


def instance_id() -> str:
    """Labels this installation's containers, so that a reaper never touches another's."""
    return hashlib.sha1(current_app.config["SQLALCHEMY_DATABASE_URI"].encode()).hexdigest()[:12]


def always_pull(image: str) -> bool:
    _, tag, digest = split_tag(image)
    return digest is None and tag in (None, "latest")


def local_image(api: docker.APIClient, image: str) -> dict | None:
    """The engine's image that `image` names by one of its tags or registry digests, else None.
    The engine would also take a hex string as an id prefix (another team's private image), or
    match a name loosely: an answer that does not carry the reference is not the image asked for."""
    try:
        info = api.inspect_image(image)
    except (ImageNotFound, NotFound):
        return None
    return info if names_image(info, image) else None


def names_image(info: dict, image: str) -> bool:
    """Whether `image` is one of the image's tags (latest when none is given) or registry digests."""
    repo, tag, digest = split_tag(image)
    repo = familiar(repo)
    if digest:
        return any(familiar(name) == repo and found == digest
                   for name, _, found in (d.partition("@") for d in info.get("RepoDigests") or []))
    wanted = f"{repo}:{tag or 'latest'}"
    return any(familiar(split_tag(t)[0]) + ":" + (split_tag(t)[1] or "latest") == wanted
               for t in info.get("RepoTags") or [])


class ImageCache:
    """`local_image` answers, kept per reference while this process follows the engine's image
    events: any of them (pull, tag, untag, delete, import, load) empties the cache, so a run never
    sees a reference as it was before a change the engine has reported. Until the subscription
    is open, and whenever it breaks, nothing is kept and every call asks the engine. An inspect
    that raced with an event is not kept (the generation counter)."""

    RETRY_SEC = 2.0

    def __init__(self, api: docker.APIClient):
        self.api = api
        self.items: dict[str, dict] = {}
        self.generation = 0
        self.live = False
        self.lock = threading.Lock()
        threading.Thread(target=self._follow, daemon=True, name="image-events").start()

    def local_image(self, image: str) -> dict | None:
        with self.lock:
            if self.live and image in self.items:
                return self.items[image]
            generation = self.generation
        info = local_image(self.api, image)
        with self.lock:
            if info is not None and self.live and generation == self.generation:
                self.items[image] = info
        return info

    def _forget(self, live: bool) -> None:
        with self.lock:
            self.items.clear()
            self.generation += 1
            self.live = live

    def _follow(self) -> None:
        while True:
            try:
                stream = self.api.events(filters={"type": "image"}, decode=True)
                self._forget(live=True)
                for _ in stream:
                    self._forget(live=True)
            except Exception:
                pass
            self._forget(live=False)
            time.sleep(self.RETRY_SEC)


_image_caches: dict[str, ImageCache] = {}
_image_caches_lock = threading.Lock()


def cached_image(api: docker.APIClient, image: str) -> dict | None:
    """`local_image` through this process's cache for `api`'s engine (see ImageCache)."""
    with _image_caches_lock:
        cache = _image_caches.get(api.base_url)
        if cache is None:
            cache = _image_caches[api.base_url] = ImageCache(api)
    return cache.local_image(image)


def pull(api: docker.APIClient, image: str, auth: dict | None, on_progress=None) -> None:
    """Pull, raising RunFailure with the registry's own words when it refuses."""
    _registry_allowed(image)
    repo, tag, digest = split_tag(image)
    target = f"{repo}@{digest}" if digest else repo
    try:
        for item in api.pull(target, tag=None if digest else (tag or "latest"), stream=True,
                             decode=True, auth_config=auth):
            if isinstance(item, dict) and item.get("error"):
                raise RunFailure(_sentence(item.get("error")))
            if on_progress:
                on_progress()
    except APIError as e:
        raise RunFailure(_sentence(e.explanation or str(e))) from None
    except DockerException as e:
        raise RunFailure(_sentence(str(e))) from None


def from_registry(info: dict, image: str) -> bool:
    """Whether the local copy came from (or went to) a registry: it then has a digest there. An
    image imported or built on this engine has none, and is the operator's to share."""
    repo = split_tag(image)[0]
    for item in info.get("RepoDigests") or []:
        name = item.partition("@")[0]
        if name == repo or name.endswith("/" + repo) or repo.endswith("/" + name):
            return True
    return False


REFUSALS = ("unauthorized", "denied", "authentication required", "not found", "manifest unknown",
            "no basic auth credentials", "forbidden")


def refused(message: str) -> bool:
    """The registry answered no (as opposed to: could not be reached)."""
    text = message.lower()
    return any(word in text for word in REFUSALS)


def _registry_allowed(image: str) -> None:
    """The engine is sent to a registry only on a public address, or one the operator allowed."""
    problem = registry_problem(image)
    if problem:
        raise RunFailure(f"not asked: {problem}")


def check_access(api: docker.APIClient, image: str, auth: dict | None) -> None:
    """Ask the registry, with these credentials, for the image's manifest: RunFailure with the
    registry's words if it refuses or cannot be reached (`refused()` tells which)."""
    _registry_allowed(image)
    try:
        api.inspect_distribution(image, auth_config=auth)
    except APIError as e:
        raise RunFailure(_sentence(e.explanation or str(e))) from None
    except DockerException as e:
        raise RunFailure(_sentence(str(e))) from None


def digest_of(info: dict | None, image: str) -> str | None:
    if not info:
        return None
    repo = split_tag(image)[0]
    for item in info.get("RepoDigests") or []:
        name, _, digest = item.partition("@")
        if name == repo or name.endswith("/" + repo):
            return digest
    digests = info.get("RepoDigests") or []
    if digests:
        return digests[0].partition("@")[2]
    return info.get("Id")


RUNS_NETWORK = "workflows-runs"
RUNS_BRIDGE = "wf-runs0"
# What a normal process needs (file ownership, setuid helpers, signals, low ports); no NET_RAW
# (raw sockets, ARP spoofing), MKNOD, SYS_CHROOT, SETFCAP, SETPCAP or AUDIT_WRITE.
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]
_networks: set = set()
log = logging.getLogger(__name__)


def runs_network(api: docker.APIClient) -> str:
    """Our bridge for run containers: no traffic between containers (enable_icc=false), none to
    this machine or to private networks (jobs/egress.py; in production a host that cannot install
    those rules starts no container)."""
    key = (api.base_url, os.getpid())
    if key in _networks:
        return RUNS_NETWORK
    with one_at_a_time("runs-network"):  # this machine's slots: the second finds the first's network
        _make_runs_network(api)
    try:
        egress.guard(RUNS_BRIDGE)
    except egress.EgressUnguarded as e:
        raise RunFailure(f"not started: this worker host cannot keep run containers from private networks ({e})") from None
    _networks.add(key)
    return RUNS_NETWORK


def _make_runs_network(api: docker.APIClient) -> None:
    try:
        api.inspect_network(RUNS_NETWORK)
    except NotFound:
        try:
            api.create_network(RUNS_NETWORK, driver="bridge", check_duplicate=True,
                               options={"com.docker.network.bridge.enable_icc": "false",
                                        "com.docker.network.bridge.name": RUNS_BRIDGE},
                               labels={LABEL_INSTANCE: "shared"})
        except APIError:
            # Made meanwhile by a worker of another machine sharing the engine: Docker 20.10
            # answers a racing create of the same name with 409, or with 500 "networks have same
            # bridge name" (seen on a new engine, between this machine's slots, before the lock).
            api.inspect_network(RUNS_NETWORK)  # NotFound: it was not a race


PAYLOAD_DIR = "/run/workflow"  # a webhook run's body is its file `payload`


def host_config(api: docker.APIClient, memory_mb: int | None, cpus: float | None, network: str = "bridge",
                read_only: bool = False, payload: bool = False):
    """`payload`: an anonymous volume of the container's own at PAYLOAD_DIR (removed with it),
    where the engine accepts a file before the start even when the root filesystem is read-only."""
    cfg = current_app.config
    return api.create_host_config(
        read_only=read_only,
        mounts=[Mount(target=PAYLOAD_DIR, source=None, type="volume")] if payload else None,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={cfg['RUNS_TMPFS_MB']}m,mode=1777"} if read_only else None,
        privileged=False,
        security_opt=["no-new-privileges"],
        cap_drop=["ALL"],
        cap_add=CAPABILITIES,
        pids_limit=cfg["CONTAINER_PIDS_LIMIT"],
        mem_limit=f"{memory_mb or cfg['DEFAULT_MEMORY_MB']}m",
        nano_cpus=int((cpus or cfg["DEFAULT_CPUS"]) * 1e9),
        network_mode="none" if network == "none" else runs_network(api),
        log_config=LogConfig(type="json-file", config={"max-size": f"{cfg['CONTAINER_LOG_MAX_MB']}m",
                                                      "max-file": "2"}),
        init=False,
    )


def put_payload(api: docker.APIClient, container_id: str, body: bytes) -> None:
    """The webhook body as PAYLOAD_DIR/payload (read-only to the run), before the container starts."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("payload")
        info.size, info.mode, info.mtime = len(body), 0o444, int(time.time())
        tar.addfile(info, io.BytesIO(body))
    api.put_archive(container_id, PAYLOAD_DIR, archive.getvalue())


class Output:
    """A container's output as (stream name, bytes, engine time) triples, closable from another
    thread. The engine time (naive UTC) is when the engine logged the bytes; None from an attach."""

    def __init__(self, pairs, closer):
        self.pairs, self.closer = pairs, closer

    def __iter__(self):
        return iter(self.pairs)

    def close(self) -> None:
        self.closer()


class ExitWatch:
    """The `die` event of a run's container, read on a thread of its own from the engine's event
    stream, by the run's label: it can be subscribed before the container exists.

    The engine reports the exit (with its code) as soon as the process has ended, then releases
    the container's network and mounts, and only then answers `wait`: on Docker 20.10 that
    teardown is about 0.1 s on every run, which the event does not wait out. The subscription is
    made on the thread, meanwhile the caller pulls and creates; `subscribed()` before the start
    makes sure the event cannot be missed. If the stream cannot be opened or ends without the
    event (the engine restarted), `broken` is set and the caller falls back to `wait`.

    It also sees the `attach` event, which the engine sends once an attach has registered its
    live streams and replayed the log so far (moby's ContainerAttach: streams, replay, event):
    a container started before it could write the same bytes to both (see `attached`)."""

    def __init__(self, api: docker.APIClient, run_id: str):
        self.code: int | None = None
        self.broken = False
        self.ended = threading.Event()
        self.attached = threading.Event()
        self._open = threading.Event()
        self._closed = False
        self.stream = None
        filters = {"type": "container", "label": f"{LABEL_RUN}={run_id}", "event": ["attach", "die"]}
        threading.Thread(target=self._read, args=(api, filters), daemon=True, name=f"exit-{run_id}").start()

    def subscribed(self, timeout: float = 30) -> None:
        """Return once the engine streams this run's events to us (or the stream failed: broken)."""
        self._open.wait(timeout)

    def _read(self, api: docker.APIClient, filters: dict) -> None:
        try:
            self.stream = api.events(filters=filters, decode=True)
            self._open.set()
            if self._closed:
                return self.stream.close()
            for event in self.stream:
                if event.get("Action", event.get("status")) == "attach":
                    self.attached.set()
                elif event.get("Action", event.get("status")) == "die":
                    code = event.get("Actor", {}).get("Attributes", {}).get("exitCode")
                    if code is not None and code.lstrip("-").isdigit():
                        self.code = int(code)
                    break
        except Exception:  # the stream broke, could not be opened, or close() from the supervisor
            pass
        finally:
            self.broken = self.code is None
            self.ended.set()
            self._open.set()
            self.attached.set()  # no one waits for an attach that cannot be seen

    def __enter__(self) -> "ExitWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        try:
            if self.stream is not None:
                self.stream.close()
        except Exception:
            pass


_removals: queue.Queue | None = None
_removals_lock = threading.Lock()


def remove_later(api: docker.APIClient, container_id: str) -> None:
    """Remove a finished run's container on this process's remover thread: the slot takes its next
    run meanwhile (a removal took 0.15 s of slot time per run in a burst of 40 on 4 slots). What a
    process dying first leaves is removed by its host's keeper (jobs/hosts.py)."""
    global _removals
    with _removals_lock:
        if _removals is None:
            _removals = queue.Queue()
            threading.Thread(target=_remove_forever, args=(_removals,), daemon=True, name="remover").start()
    _removals.put((api, container_id))


def _remove_forever(removals: queue.Queue) -> None:
    while True:
        api, container_id = removals.get()
        try:
            api.remove_container(container_id, force=True, v=True)  # its anonymous volumes too
        except NotFound:
            pass
        except Exception:
            log.warning("could not remove container %s; the reaper will", container_id)


def attach_output(api: docker.APIClient, container_id: str) -> Output:
    """Attach before the start: every byte the container writes, live (what `docker run` does)."""
    stream = api.attach(container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True)

    def pairs():
        for out, err in stream:
            if out:
                yield "stdout", out, None
            if err:
                yield "stderr", err, None
    return Output(pairs(), stream.close)


def log_output(api: docker.APIClient, container_id: str, *, follow: bool) -> Output:
    """The engine's log of a container from its first byte, in the order written; with `follow`,
    then what it writes next until it exits (`docker logs -f`). Not attach for a container already
    running: attach's replay of past output loses lines when the container exits around the time of
    the attach (seen on Docker 20.10: nothing, or only the last line). Nor is a follow alone the
    whole output: Docker 20.10 ends it when the container exits, without what was written after the
    log as it stood when the follow began, if the reader had not got that far yet; a followed
    container's output is therefore completed by a read without follow once it has exited.
    docker-py's logs() drops which stream a frame is from, so the multiplexed frames are read here
    (8-byte header: stream, length), streamed rather than held whole in memory. Each frame is one
    entry of the engine's log, asked with its timestamp: how a re-attach tells that the json-file
    driver rotated away the head of the log (output.Reader.read)."""
    response = api._get(api._url("/containers/{0}/logs", container_id),
                        params={"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 1},
                        stream=True)
    api._raise_for_status(response)
    api._disable_socket_timeout(api._get_raw_response_socket(response))

    def pairs():
        while True:
            header = response.raw.read(8)
            if len(header) < 8:
                return
            kind, length = struct.unpack(">BxxxL", header)
            data = response.raw.read(length) if length else b""
            if length and not data:
                return
            stamp, _, data = data.partition(b" ")
            if data:
                yield ("stderr" if kind == 2 else "stdout"), data, parse_time(stamp.decode("ascii", "replace"))
    return Output(pairs(), response.close)


_OFFSETS: dict[str, tuple[float, float]] = {}  # engine base URL: (offset, monotonic time measured)
CLOCK_REMEASURE_SEC = 60


def engine_clock(api: docker.APIClient):
    """A function giving the engine host's time (naive UTC) as its log timestamps read it: this
    process's clock plus its offset from the engine's SystemTime (a worker whose clock is faked or
    off still compares like with like). The offset is measured when first needed, on the reader's
    thread rather than before a start, and again at most once a minute."""
    def now() -> datetime:
        return datetime.fromtimestamp(time.time() + _clock_offset(api), timezone.utc).replace(tzinfo=None)
    return now


def _clock_offset(api: docker.APIClient) -> float:
    offset, measured = _OFFSETS.get(api.base_url, (0.0, -1e18))
    if time.monotonic() - measured <= CLOCK_REMEASURE_SEC:
        return offset
    before = time.time()
    try:
        system = parse_time(api.info().get("SystemTime"))
    except (DockerException, requests.exceptions.RequestException) as e:
        log.warning("could not read the engine's clock (%s); keeping the last offset, %.3f s", e, offset)
        system = None
    after = time.time()
    if system is not None:
        offset = system.replace(tzinfo=timezone.utc).timestamp() - (before + after) / 2
    _OFFSETS[api.base_url] = (offset, time.monotonic())  # a failed reading is not retried per chunk
    return offset


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def parse_time(value: str | None) -> datetime | None:
    """The engine's RFC 3339 times (nanoseconds; "Z" or an offset, as /info's SystemTime is in the
    daemon's zone) as naive UTC; None for its zero time or what is not such a time."""
    match = _RFC3339.match(value or "")
    if not match or value.startswith("0001-"):
        return None
    head, frac, zone = match.groups()
    parsed = datetime.fromisoformat(head + (zone if zone and zone != "Z" else "+00:00"))
    parsed = parsed.replace(microsecond=int((frac or "0")[:6].ljust(6, "0")))
    return parsed.astimezone(timezone.utc).replace(tzinfo=None)


def unreachable(e: BaseException) -> bool:
    """True when the engine could not be reached at all (docker-py wraps that in DockerException)."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, requests.exceptions.ConnectionError):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def start_problem(e: APIError) -> str:
    """What the runtime said when a container would not start, without the HTTP wrapping:
    'exec: "nosuch": executable file not found in $PATH'."""
    text = str(e.explanation or e)
    for marker in ("unable to start container process: ", "OCI runtime create failed: "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return _sentence(text.removesuffix(": unknown"))


def _sentence(text) -> str:
    text = str(text or "unknown error").strip().replace("\n", " ")
    return text[:500]
