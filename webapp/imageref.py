"""Image references, parsed in one place: whether a string is one (and why not), its registry
host, its repository, tag and digest, and the repository as the engine lists it. The registry
host is docker-py's own rule (`docker.auth.split_repo_name`), the one the engine's client uses to
pick credentials, so what we check and what the engine is sent to cannot differ."""
from __future__ import annotations

import re

from docker.auth import INDEX_NAME, split_repo_name

DOCKER_HUB = INDEX_NAME  # "docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOMAIN = (r"(?:localhost|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)"
          r"(?::[0-9]{1,5})?")
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REF = re.compile(rf"^(?:(?P<domain>{DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
                       rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")

# What the engine resolves as an image id (or a prefix of one) rather than a name: a bare hex string
# of 6 to 64 characters, or a sha256: id.
_ENGINE_ID = re.compile(r"^(?:[a-f0-9]{6,64}|sha256:.*)$", re.IGNORECASE)


def image_problem(ref: str) -> str | None:
    """Why `ref` is not an image reference a workflow may name, or None."""
    if not ref or len(ref) > 512:
        return "an image reference is 1 to 512 characters"
    if _ENGINE_ID.match(ref):
        return ("a hex string or sha256: reference is read by the Docker engine as an image id, which "
                "could name another team's image: name the image as repository[:tag] or repository@sha256:digest")
    m = IMAGE_REF.match(ref)
    if not m:
        return "not a Docker image reference (repo[:tag][@digest], optional registry host)"
    first = ref.split("/", 1)[0]
    if "/" in ref and m.group("domain") is None and first != first.lower():
        return "repository names are lowercase"
    if len(m.group("path")) + len(m.group("domain") or "") > 255:
        return "the repository name is longer than 255 characters"
    return None


def registry_host(image: str) -> str:
    """The registry an image reference names; Docker Hub when it names none."""
    return split_repo_name(image)[0]


def split_tag(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of a reference."""
    ref, _, digest = image.partition("@")
    last = ref.rsplit("/", 1)[-1]
    tag = None
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest or None


def familiar(repo: str) -> str:
    """A repository as the engine lists it: Docker Hub's host and `library/` left out."""
    for hub in ("docker.io/", "index.docker.io/"):
        if repo.startswith(hub):
            repo = repo[len(hub):]
            break
    if repo.startswith("library/") and repo.count("/") == 1:
        repo = repo[len("library/"):]
    return repo
