"""One command at a time per data root and per run folder.

    with hold(config.data.root, "preprocessing"):      # errors.DataError if another live process holds it
        ...

A lock is a file `<folder>/.sdfjax.lock` created exclusively (O_EXCL), holding the
holder's pid, host and command line. A second command on the same folder refuses in one
line that names the holder, instead of interleaving its writes with the first one's (two
preprocessing runs cleaning each other's temporary files, two trainers writing one
checkpoint series). A lock whose holder has died on this host (its pid is gone) is taken
over; one held on another host is left to that host. Remote folders (gs://, ...) are not
locked: object stores offer no exclusive create through etils.epath.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from sdfjax import errors, storage

LOCK_NAME = ".sdfjax.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _holder(path: str) -> dict | None:
    """The lock file's {pid, host, command}, or None when it is gone or unreadable (a holder mid-write)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def acquire(folder: str, what: str) -> str | None:
    """Takes the lock of `folder` for `what` (words for the message); returns its path (None for a remote
    folder). errors.DataError naming the holder when a live process holds it."""
    if storage.is_remote(folder):
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
    for attempt in range(20):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None and attempt < 10:  # its holder may be writing it right now
                time.sleep(0.05)
                continue
            if holder and (holder.get("host") != me["host"] or _alive(int(holder.get("pid", -1)))):
                raise errors.DataError(
                    f"{folder}: {what} refused: process {holder.get('pid')} on {holder.get('host')} is using it "
                    f"({holder.get('command', '?')}); wait for it, or remove {path} if that process is gone") from None
            # its holder died on this host (or never wrote it): the lock is stale
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise errors.DataError(f"{folder}: {what} refused: another process keeps taking {path}")


def release(path: str | None) -> None:
    """Removes a lock `acquire` returned, if this process still holds it."""
    if path is None:
        return
    holder = _holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def hold(folder: str, what: str, enabled: bool = True) -> Iterator[None]:
    """The lock of `folder` for the duration of the block (`enabled` False: none, e.g. on processes other than a
    multi-host run's first)."""
    path = acquire(folder, what) if enabled else None
    try:
        yield
    finally:
        release(path)
