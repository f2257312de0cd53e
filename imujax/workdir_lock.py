"""One run per workdir: ``<workdir>/imujax.lock`` names the holder (host, pid, process start time, command).

Two runs on one workdir would interleave metrics.jsonl and race inside Orbax, so the second is refused at once. A
lock whose holder is gone is stale and taken over with a warning: on the same host, a pid that no longer exists or
now belongs to a process started at another time (pid reuse). A lock held from another host cannot be checked from
here; the error says which host and pid hold it and how to remove it once that run is known to be dead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

LOCK_FILE = "imujax.lock"


class WorkdirLockedError(RuntimeError):
    """Another run holds the workdir."""


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot; None where /proc is not available)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    now = _process_start(pid)
    return started is None or now is None or now == started


class WorkdirLock:
    def __init__(self, workdir: str):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
        self.held = False

    def acquire(self) -> "WorkdirLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": sys.argv}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise WorkdirLockedError(f"{self.path} appeared again while taking over a stale lock; retry")

    def _take_over_if_stale(self) -> None:
        try:
            with open(self.path) as f:
                holder = json.load(f)
            host, pid = str(holder["host"]), int(holder["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, host, pid = None, None, None
        if holder is None:  # unreadable (a run killed while writing it): not a live holder we can name
            logging.warning("%s is unreadable; taking it over", self.path)
        elif host != socket.gethostname():
            raise WorkdirLockedError(
                f"the workdir is in use by another run: {self.path} is held by pid {pid} on host {host} (started "
                f"{holder.get('started')}). Two runs on one workdir would corrupt it. Use another --workdir, or "
                f"remove {self.path} if that run is dead.")
        elif _alive(pid, holder.get("process_start")):
            raise WorkdirLockedError(
                f"the workdir is in use by another run: pid {pid} on this host (started {holder.get('started')}) "
                f"holds {self.path}. Two runs on one workdir would corrupt it; wait for it, stop it, or use another "
                f"--workdir.")
        else:
            logging.warning("taking over the stale lock %s (pid %d on this host is gone)", self.path, pid)
            print(f"warning: taking over the stale workdir lock of pid {pid} (no longer running)", file=sys.stderr,
                  flush=True)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
