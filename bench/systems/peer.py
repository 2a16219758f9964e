"""What the peer systems (Celery, Huey, potatoq) share: the peer venv."""

from __future__ import annotations

from bench import peers
from bench.systems.base import System


class PeerSystem(System):
    #: The distribution that must be in the peer venv.
    distribution = ""

    def python(self) -> str:
        return str(peers.python())

    def unavailable(self) -> str | None:
        if not peers.installed() or not peers.has(self.distribution):
            return peers.INSTALL_HINT
        return None

    def versions(self) -> str:
        found = peers.versions()
        return " ".join(f"{name} {found[name]}" for name in self.packages() if name in found)

    def packages(self) -> tuple[str, ...]:
        return (self.distribution,)
