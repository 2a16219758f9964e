"""The liteq web console (``liteq console``): the queue, seen from the store.

Needs the ``console`` extra (``pip install "liteq[console]"``: Starlette, uvicorn,
Jinja2, prometheus_client). Its assets are in the package; nothing is loaded from
the network.
"""

from __future__ import annotations

from liteq.console.web import create_app

__all__ = ["create_app"]
