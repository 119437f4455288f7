"""Helpers for tests of code that talks to the server: a real uvicorn socket in a thread, and
operational databases for each backend (a fresh PostgreSQL schema per test).

    with ServerThread(create_app(settings, admin_token="t")) as server:
        httpx.post(server.url + "/v1/batch", ...)

PostgreSQL comes from ``JOURNEYMAP_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` prints one); without
it PostgreSQL cases are skipped locally and fail in CI (``CI=true``), so a missing database can
never make CI green.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

POSTGRES_ENV = "JOURNEYMAP_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, *, port: int | None = None, log_level: str = "warning") -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level=log_level, access_log=False
            )
        )
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_base_url() -> str:
    """The test PostgreSQL URL; skips (locally) or fails (CI) without one."""
    import pytest

    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(
                f"{POSTGRES_ENV} is not set: CI must run the PostgreSQL tests. Start one with "
                f'export {POSTGRES_ENV}="$(bash .ci/postgres.sh)"'
            )
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (bash .ci/postgres.sh prints one)")
    return url


def database_for_test(backend: str, tmp_path: Path) -> tuple[str, Callable[[], None]]:
    """A URL of an empty operational database on ``backend``, and its cleanup."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'operational.db'}", lambda: None
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(postgres_base_url()).set(drivername="postgresql+psycopg")
    schema = "jm_test_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})

    def cleanup() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), cleanup
