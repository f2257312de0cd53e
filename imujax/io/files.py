"""Checks before opening a file named by a user: only regular files are read (a FIFO blocks the reader forever, a
device file never ends)."""

from __future__ import annotations

import os
import stat


def check_regular(path: str | os.PathLike, error: type[Exception], where: str | None = None) -> None:
    """Raises `error` naming the file unless `path` (after symlinks) is a regular file."""
    prefix = f"{where}: " if where else ""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise error(f"{prefix}{os.fspath(path)} cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise error(f"{prefix}{os.fspath(path)} is {kind}, not a regular file")
