"""Images the runs used, and their pruning: an image no run used for IMAGE_KEEP_DAYS is removed
from the engine by the host keeper (every IMAGE_PRUNE_EVERY_SEC), unless a container (running or
not) still uses it. Only images a run used are ever considered: the engine's other images are the
operator's. Use is recorded on this machine per engine, in var/images/<engine id>/<image id>, its
modification time the last use; a pruned image a workflow names again is pulled again."""
from __future__ import annotations

import functools
import logging
import re
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound

from webapp.config import ROOT

log = logging.getLogger(__name__)
IMAGE_PRUNE_EVERY_SEC = 3600.0


@functools.lru_cache(maxsize=16)
def _engine_id(api: docker.APIClient) -> str:
    """The engine's own id (its base_url says nothing: every unix socket is http+docker://localhost)."""
    return api.info()["ID"]


def _folder(api: docker.APIClient) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", _engine_id(api))[:200]
    return ROOT / "var" / "images" / name


def record_use(api: docker.APIClient, image_id: str) -> None:
    """A run is about to use `image_id` (sha256:...) on `api`'s engine."""
    try:
        path = _folder(api) / image_id.removeprefix("sha256:")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except (OSError, DockerException) as e:  # pruning may come early for this image; the run goes on
        log.warning("could not record the use of image %s: %s", image_id[:19], e)


def prune(api: docker.APIClient, keep_days: float) -> list[str]:
    """Remove the images runs used whose last use is older than `keep_days` and that no container
    uses; returns their ids."""
    folder = _folder(api)
    if not folder.is_dir():
        return []
    cutoff = time.time() - keep_days * 86400
    in_use = {c.get("ImageID") for c in api.containers(all=True)}
    removed = []
    for path in folder.iterdir():
        image_id = f"sha256:{path.name}"
        try:
            if path.stat().st_mtime > cutoff or image_id in in_use:
                continue
            api.remove_image(image_id, force=True)  # every tag of it
        except NotFound:
            pass
        except (OSError, APIError) as e:
            log.warning("could not prune image %s: %s", image_id[:19], e)
            continue
        path.unlink(missing_ok=True)
        removed.append(image_id)
    if removed:
        log.info("pruned %d image(s) no run used for %g days", len(removed), keep_days)
    return removed
