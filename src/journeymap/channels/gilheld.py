"""Two C calls made *without* releasing the GIL, to keep the exactly-once window short.

The worker's commit point is "commit record visible → the final dot written". A thread that
releases the GIL in between (Python's ``sqlite3`` does during ``COMMIT``, ``socket.send``
does during the write) must win it back before its next step; with other threads busy that
can take a switch interval or a scheduler slice, and a SIGKILL landing there leaves a
committed message whose dot never left. Calling the same C functions through ``ctypes.PyDLL``
(which, unlike ``CDLL``, keeps the GIL) runs the commit and every dot of a group back to back.

Both helpers are best-effort: they return ``False`` when they cannot act (another Python
build, a non-blocking socket whose buffer is full), and the caller falls back to the ordinary
call, which is correct, only slower to reach the point.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _libc() -> Any:
    try:
        lib = ctypes.PyDLL(None)
        send = lib.send
    except (OSError, AttributeError):
        return None
    send.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    send.restype = ctypes.c_ssize_t
    return send


@cache
def _sqlite_exec() -> Any:
    import _sqlite3

    try:
        lib = ctypes.PyDLL(_sqlite3.__file__)
        fn = lib.sqlite3_exec
    except (OSError, AttributeError):
        return None
    fn.argtypes = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    )
    fn.restype = ctypes.c_int
    return fn


def _handle(conn: sqlite3.Connection) -> int | None:
    """The ``sqlite3 *`` of a CPython ``sqlite3.Connection`` (its first field)."""
    if type(conn) is not sqlite3.Connection:
        return None
    value = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
    return int(value) if value else None


def sqlite_commit(conn: Any) -> bool:
    """``COMMIT`` on the DB-API SQLite connection ``conn`` with the GIL held; ``False`` when
    it could not be done this way (nothing was done then)."""
    fn = _sqlite_exec()
    handle = _handle(conn) if fn is not None else None
    if fn is None or handle is None:
        return False
    # not SQLITE_OK: the transaction is still open, and the ordinary path reports the error
    return bool(fn(handle, b"COMMIT", None, None, None) == 0)


def send_all(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` to ``sock``: with the GIL held when the kernel takes it at once, else
    through ``socket.sendall``."""
    send = _libc()
    sent = 0
    if send is not None:
        n = send(sock.fileno(), data, len(data), getattr(socket, "MSG_NOSIGNAL", 0))
        sent = max(int(n), 0)
    if sent < len(data):
        sock.sendall(data[sent:])


@cache
def _libpq() -> Any:
    """The libpq psycopg loaded (the binary wheel bundles its own), found by its mapping."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = [line.split()[-1] for line in maps if "libpq" in line.rsplit("/", 1)[-1]]
    except OSError:
        return None
    if not paths:
        return None
    try:
        lib = ctypes.PyDLL(paths[0])
        send_query, flush = lib.PQsendQuery, lib.PQflush
    except (OSError, AttributeError):
        return None
    send_query.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
    send_query.restype = ctypes.c_int
    flush.argtypes = (ctypes.c_void_p,)
    flush.restype = ctypes.c_int
    return send_query, flush


def pg_send_commit(pgconn: Any) -> bool:
    """Send ``COMMIT`` on a psycopg ``PGconn`` and flush it with the GIL held; ``False`` when
    it could not be done this way (nothing was sent then)."""
    ptr = getattr(pgconn, "pgconn_ptr", None)
    fns = _libpq() if ptr else None
    if fns is None:
        return False
    send_query, flush = fns
    if send_query(ptr, b"COMMIT") != 1:
        return False
    while flush(ptr) == 1:  # rarely: the socket's buffer is full; wait for it as before
        import select

        select.select([], [pgconn.socket], [], 1.0)
    return True


@contextlib.contextmanager
def not_preempted() -> Iterator[None]:
    """Run the block under ``SCHED_FIFO`` (priority 1) where the process may (root or
    CAP_SYS_NICE on Linux), else as it is.

    Writing ``COMMIT`` to a PostgreSQL server on the same machine wakes its backend, and the
    kernel may hand the CPU to it at the write's return — for as long as the commit takes —
    before this thread writes the dots: a kill then leaves a committed message whose dot
    never left (measured: 1–2 messages in about a third of the crash-test runs). A real-time
    thread is not preempted by ordinary ones; the block is a few syscalls long, and the
    thread returns to ``SCHED_OTHER`` (keeping its nice value) right after it."""
    setsched = getattr(os, "sched_setscheduler", None)
    fifo = getattr(os, "SCHED_FIFO", None)
    raised = False
    if setsched is not None and fifo is not None:
        try:
            setsched(0, fifo, os.sched_param(1))
            raised = True
        except OSError:  # not permitted: as it is
            pass
    try:
        yield
    finally:
        if raised:
            with contextlib.suppress(OSError):
                setsched(0, os.SCHED_OTHER, os.sched_param(0))  # type: ignore[misc]
