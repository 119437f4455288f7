"""The ASGI server: the collector, the admin API (``create_app``) and ``serve``."""

from journeymap.server.app import create_app
from journeymap.server.run import serve

__all__ = ["create_app", "serve"]
