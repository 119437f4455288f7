"""Running the server: ``serve`` (what ``journeymap serve`` calls) and the admin token file.

    python -m journeymap.server --project DIR [--host H] [--port P]

is the same as ``journeymap serve`` without the CLI (the tests start it as a subprocess).
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from journeymap.config import Settings
from journeymap.storage.files import ensure_secret_file


def ensure_admin_token(settings: Settings) -> tuple[Path, bool]:
    """Create ``admin_token_file`` with a random token (mode 0600) if missing; returns the
    path and whether it was created. The token itself is never printed."""
    _, created = ensure_secret_file(settings.admin_token_file, lambda: secrets.token_urlsafe(32))
    return settings.admin_token_file, created


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Run the app with uvicorn until interrupted (SIGINT/SIGTERM shut it down cleanly)."""
    import uvicorn

    from journeymap.server.app import create_app

    ensure_admin_token(settings)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.server_host,
        port=port or settings.server_port,
        log_level=log_level,
        access_log=access_log,
        # keep-alive longer than the SDKs' flush intervals (PostHog 5 s, Node 10 s)
        timeout_keep_alive=30,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m journeymap.server")
    parser.add_argument("--project", default=".")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    serve(Settings.load(args.project), host=args.host, port=args.port, log_level=args.log_level)
