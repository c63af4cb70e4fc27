"""One run per job key at a time: a lease file created exclusively (O_EXCL locally, a conditional put on S3).

Two runs of the same job would share its staging directory and resume each other's units. The lease names its
holder; it is taken over only when the holder is gone: its process no longer exists on this host, or it stopped
renewing the lease for `ttl_s` (a killed driver on another machine).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vidbatch.config import ConfigError
from vidbatch.core import retry
from vidbatch.core.storage import OutputStore

LEASES = "_leases"


class LeaseHeld(ConfigError):
    """Another live run of the same job holds the lease."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(holder: dict[str, Any], now: float) -> bool:
    if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1))):
        return True
    return float(holder.get("expires_at", 0)) < now


@dataclass
class Lease:
    store: OutputStore
    rel: str
    record: dict[str, Any]
    ttl_s: float
    _stop: threading.Event = field(default_factory=threading.Event)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            self.record["expires_at"] = time.time() + self.ttl_s
            try:
                self.store.write_json(self.rel, self.record)
            except OSError:
                pass  # the next renewal tries again; a lease left to expire is only taken over after ttl_s

    def start(self) -> Lease:
        threading.Thread(target=self._renew, name="vidbatch-lease", daemon=True).start()
        return self

    def rename(self, run_id: str) -> None:
        """Name the run once its id is known (a resumed run takes its staged id)."""
        self.record["run_id"] = run_id
        self.store.write_json(self.rel, self.record)

    def release(self) -> None:
        self._stop.set()
        try:
            if self.store.read_json(self.rel).get("run_id") == self.record["run_id"]:
                self.store.remove_tree(self.rel)
        except FileNotFoundError:
            pass


def live_holders(store: OutputStore) -> list[dict[str, Any]]:
    """The lease records of runs that are still running."""
    holders = []
    for name in store.list(LEASES):
        try:
            holder = store.read_json(f"{LEASES}/{name}")
        except FileNotFoundError:
            continue
        if not _stale(holder, time.time()):
            holders.append(holder)
    return holders


def _create(store: OutputStore, rel: str, data: bytes) -> bool:
    """Create the file only if it does not exist; False when it does."""
    path = store.path(rel)
    try:
        if store.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        else:
            retry.call(store.retry, store.fs.pipe_file, path, data, mode="create")
    except FileExistsError:
        return False
    return True


def acquire(store: OutputStore, job_key: str, run_id: str, ttl_s: float = 600.0) -> Lease:
    rel = f"{LEASES}/{job_key}.json"
    record = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "acquired_at": time.time(),
              "expires_at": time.time() + ttl_s}
    for _ in range(2):
        if _create(store, rel, json.dumps(record).encode()):
            return Lease(store, rel, record, ttl_s).start()
        try:
            holder = store.read_json(rel)
        except FileNotFoundError:
            continue  # released between our create and read
        if not _stale(holder, time.time()):
            raise LeaseHeld(
                f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}) is running the same job "
                f"into {store.url}; wait for it to finish, or remove {store.path(rel)} if it is gone"
            )
        store.remove_tree(rel)
    raise LeaseHeld(f"could not take the lease {store.path(rel)}: another run keeps taking it")
