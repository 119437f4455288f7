"""Files that readers may open at any moment: written aside, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    A reader sees the old file or the whole new one, never a partial write; on an error the
    temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_secret_file(path: str | os.PathLike[str], make: Callable[[], str]) -> tuple[str, bool]:
    """The secret stored in ``path``, created with ``make()`` (mode 0600) when missing.

    Returns the secret and whether it was created. Two processes racing to create the file
    both end up with the one that won (``O_EXCL``). Secrets are never printed.
    """
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(make().rstrip("\n") + "\n")
            return target.read_text(encoding="utf-8").strip(), True
    return target.read_text(encoding="utf-8").strip(), False
