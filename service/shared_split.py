"""One traffic split for every replica and worker: a file they all follow.

Behind a load balancer a `PUT /traffic` reaches one replica; a rollout must steer all of
them. So the split lives in a file (`split_file`, on a volume every replica mounts):
`PUT /traffic` on any replica writes it, every process polls it every `split_poll_s` and
swaps in what it finds, and a replica started later begins with the file's split, not
its own default. Each write carries a version one higher than the file's, so a
controller can wait until every replica reports the version it wrote.

Writes are atomic (a uniquely named temporary file, then rename) and serialised across
processes by a lock file, so two concurrent writers cannot give one version two
meanings. A change is detected by inode, size and modification time together: a rename
always brings a new inode, which a second write within one clock tick would not change
the time of.

A split file whose folder this process cannot write (a Kubernetes ConfigMap, mounted
read-only) is followed read-only: the process takes its split, follows its changes (the
kubelet swaps the mounted file whole, which shows as a new inode), takes no lock, and
refuses to change it (`ReadOnlySplit`); the split then changes where the file comes from.

A file that no longer parses (a truncated or hand-edited write) is never a reason to
refuse a change: the next write replaces it, with a version above the last good one
this process followed, and says so in the log.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from pydantic import Field, ValidationError

from service.routing import Router, TrafficSplit

log = logging.getLogger("perfserve")

Signature = tuple[int, int, int]
"""(inode, size, mtime_ns) of one version of the file."""


class ReadOnlySplit(Exception):
    """The split file's folder is read-only here: this process follows it, never writes it."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"the traffic split is read-only here: it follows {path}, whose folder cannot be "
            "written; change the split where that file comes from (in Kubernetes, the "
            "ConfigMap perfserve-split), or give every replica a writable shared volume "
            "(deploy/README.md, Traffic split)"
        )


class StoredSplit(TrafficSplit):
    """The file's content: a split and its version."""

    version: int = Field(0, ge=0)


class SplitFile:
    """Reads and writes the split file; knows nothing of routers or versions' meaning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    def writable(self) -> bool:
        """Whether this process may create files beside the split (the lock, a new
        version): false on a read-only mount even for root, which access(2) reports."""
        return os.access(self.path.parent, os.W_OK)

    def signature(self) -> Signature | None:
        """Identity of the file's current version (one stat call), None if it is missing."""
        try:
            return _signature(self.path.stat())
        except FileNotFoundError:
            return None

    def read(self) -> tuple[bytes, Signature] | None:
        """The file's bytes with the signature of exactly those bytes."""
        try:
            with self.path.open("rb") as file:
                return file.read(), _signature(os.fstat(file.fileno()))
        except FileNotFoundError:
            return None

    def write(self, split: TrafficSplit, version: int) -> Signature:
        """Replace the file atomically: readers see the old version or the new, whole."""
        data = orjson.dumps({"version": version, **split.model_dump()})
        fd, temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "wb") as file:
                os.fchmod(file.fileno(), 0o644)  # replicas may run as other users
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
                signature = _signature(os.fstat(file.fileno()))
            os.replace(temporary, self.path)  # a rename keeps the inode and mtime
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return signature

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes (and threads: each call opens its own descriptor)."""
        with self._lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


class SharedSplit:
    """The split this process routes by and its version, kept in step with the file.

    Without a file the split and its version live in this process only."""

    def __init__(
        self,
        router: Router,
        path: Path | None,
        on_change: Callable[[TrafficSplit, int], None],
    ) -> None:
        self.router = router
        self.file = SplitFile(path) if path is not None else None
        self.current: tuple[TrafficSplit, int] = (router.split, 0)
        """The split and its version, assigned together so readers never see a mix."""
        self._on_change = on_change
        self._seen: Signature | None = None
        self._lock = threading.Lock()
        self.read_only = False
        """True when the file's folder cannot be written here: follow it, refuse changes."""

    def start(self, default: TrafficSplit) -> bool:
        """Take the file's split, or make `default` its first version; True when the file
        already held a split. Raises ValueError for a file this process cannot follow."""
        if self.file is None:
            self._apply(default, 1)
            return False
        if not self.file.writable():
            return self._start_read_only()
        with self._lock, self.file.locked():
            found = self.file.read()
            if found is None:
                self._seen = self.file.write(default, 1)
                self._apply(default, 1)
                return False
            data, self._seen = found
            self._apply_stored(data)
            return True

    def _start_read_only(self) -> bool:
        assert self.file is not None
        found = self.file.read()
        if found is None:
            raise ValueError(
                "the file is missing and its folder is read-only, so there is no split to "
                "follow; mount one (deploy/README.md) or a writable folder"
            )
        data, self._seen = found
        self._apply_stored(data)
        self.read_only = True
        log.warning(
            "following the read-only traffic split %s; it changes at its source", self.file.path
        )
        return True

    def set(self, split: TrafficSplit) -> int:
        """Make `split` the split of every process following the file; its new version.
        Raises ReadOnlySplit when this process only follows the file."""
        if self.read_only:
            assert self.file is not None
            raise ReadOnlySplit(self.file.path)
        self.router.check(split)  # refuse before anyone else can see it
        with self._lock:
            version = self.current[1] + 1
            if self.file is None:
                self._apply(split, version)
                return version
            with self.file.locked():
                found = self.file.read()
                if found is not None:
                    version = max(version, self._stored_version(found[0]) + 1)
                self._seen = self.file.write(split, version)
                self._apply(split, version)
        return version

    def _stored_version(self, data: bytes) -> int:
        """The version in the file; for a file that does not parse, the last good version
        this process followed, so the write that repairs it still counts upwards."""
        try:
            return StoredSplit.model_validate_json(data).version
        except ValidationError as error:
            assert self.file is not None
            log.warning(
                "traffic split file %s is corrupt (%s); replacing it, after version %d, the "
                "last good one followed here",
                self.file.path,
                error.errors(include_url=False)[0]["msg"],
                self.current[1],
            )
            return self.current[1]

    def sync(self) -> bool:
        """Follow the file if it changed since last seen; True if the split changed."""
        assert self.file is not None
        with self._lock:
            found = self.file.read()
            if found is None or found[1] == self._seen:
                return False
            data, self._seen = found  # a bad version is reported once, not on every poll
            self._apply_stored(data)
            return True

    async def poll(self) -> None:
        """One look at the file; the service runs it every `split_poll_s`, supervised (an
        unreadable file is a failure of the loop). The stat runs on the event loop
        (microseconds); reading and applying a change, which may wait for a writer's
        lock, runs on a thread. A file that reads but does not hold a usable split is
        reported once and the last good split kept: serving goes on."""
        assert self.file is not None
        if self.file.signature() in (None, self._seen):
            return
        try:
            await asyncio.to_thread(self.sync)
        except ValueError as error:
            log.warning("ignoring traffic split file %s: %s", self.file.path, error)

    def _apply_stored(self, data: bytes) -> None:
        stored = StoredSplit.model_validate_json(data)
        split = TrafficSplit(weights=stored.weights, shadow=stored.shadow)
        self.router.check(split)
        self._apply(split, stored.version)

    def _apply(self, split: TrafficSplit, version: int) -> None:
        self.router.update(split)
        self.current = (split, version)
        self._on_change(split, version)


def _signature(stat: os.stat_result) -> Signature:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
