"""A run's image, made ready on its engine by the contract's pull policy, and held to the registry's
word: a local copy of an image that came from a registry is used only once that registry has
accepted this project's credentials for it (the pull, or a manifest check), so one team's private
image on the engine is not another's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import redis

from webapp import keys
from webapp.imageref import registry_host
from webapp.services.registry import auth_for_image

from . import engine, images

RECHECK_SEC = 600  # a project's access to a registry image is asked again after this
REMEMBER_SEC = 30 * 86400  # ... and trusted when the registry cannot be reached


@dataclass
class Prepared:
    image_id: str  # the image checked here: the one the container is created from
    digest: str | None


def prepare_image(api, project_id: int, image: str, store: redis.Redis, say: Callable[[str], None]) -> Prepared:
    """Pull `image` by the policy (`say` writes a system line in the run's log); RunFailure when
    it cannot be had or this project may not use it."""
    local = engine.cached_image(api, image)
    auth = auth_for_image(project_id, image)
    access = Access(api, project_id, image, store, say)
    if local is None or engine.always_pull(image):
        try:
            engine.pull(api, image, auth)
        except engine.RunFailure as e:
            if local is None:
                raise engine.RunFailure(f"could not pull the image {image}: {e}") from None
            if engine.from_registry(local, image):
                access.require(auth, local, pulled=str(e))
            say(f"pulling {image} failed ({e}); running the local copy")
        else:
            local = engine.local_image(api, image)
            if local is None:
                raise engine.RunFailure(f"the image {image} is not on the engine after the pull")
            access.remember(local)
    elif engine.from_registry(local, image):
        access.require(auth, local)
    images.record_use(api, local["Id"])
    return Prepared(image_id=local["Id"], digest=engine.digest_of(local, image))


@dataclass
class Access:
    """The registry's yes for one project and image, remembered in Redis."""
    api: object
    project_id: int
    image: str
    store: redis.Redis
    say: Callable[[str], None]

    def _key(self, local: dict) -> str:
        return keys.image_access(self.project_id, local["Id"], self.image)

    def remember(self, local: dict) -> None:
        try:
            self.store.set(self._key(local), "1", ex=REMEMBER_SEC)
        except redis.RedisError:
            pass

    def require(self, auth: dict | None, local: dict, pulled: str | None = None) -> None:
        """The registry's yes for this project, asked at most every few minutes per image."""
        key = self._key(local)
        try:
            confirmed_at = self.store.get(key)
            ttl = self.store.ttl(key) if confirmed_at else -2
        except redis.RedisError:
            confirmed_at, ttl = None, -2
        if confirmed_at and REMEMBER_SEC - ttl < RECHECK_SEC:
            return
        host, image = registry_host(self.image), self.image
        if pulled is not None and engine.refused(pulled):
            problem = pulled
        else:
            try:
                engine.check_access(self.api, image, auth)
                self.remember(local)
                return
            except engine.RunFailure as e:
                problem = str(e)
        if not engine.refused(problem) and confirmed_at:
            self.say(f"the registry {host} could not be asked about {image} ({problem}); this "
                     "project was allowed to pull it before, so the local copy runs")
            return
        raise engine.RunFailure(f"the registry {host} did not let this project use {image} ({problem}); "
                                "the copy on the engine is not used without the registry's yes")
