"""The store's own check of what it holds: an object's bytes hashed against the digest it is stored under, streamed,
and each file version found sound remembered by this process, so a hot object is hashed once."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


@dataclass(frozen=True)
class VerifyReport:
    """What `ArtifactStore.verify` found: each object's bytes hashed against the digest it is stored under."""

    checked: int
    damaged: tuple[str, ...] = ()  # digests of the objects whose bytes hash to something else
    removed: tuple[str, ...] = ()  # of those, the ones `verify(repair=True)` took out of the store

    @property
    def ok(self) -> int:
        return self.checked - len(self.damaged)

    @property
    def remaining(self) -> tuple[str, ...]:
        """The damaged objects still in the store."""
        return tuple(sha for sha in self.damaged if sha not in set(self.removed))

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "ok": self.ok, "damaged": list(self.damaged), "removed": list(self.removed)}


_RACY_S = 2.0
_KNOWN_INTACT: dict[str, tuple[int, ...]] = {}  # path → the stat of the version of it found intact, in this process
_KNOWN_INTACT_MAX = 4096


def _stamp(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def known_intact(path: str, stat: os.stat_result) -> bool:
    """Whether this process hashed this version of the file (same inode, size, mtime and ctime) and found it sound."""
    return _KNOWN_INTACT.get(path) == _stamp(stat)


def remember_intact(path: str, stat: os.stat_result) -> None:
    """Note a version of a file found sound, unless it changed in the last `_RACY_S` seconds: file times tick
    coarsely (milliseconds), so a change within the same tick would keep the stamp (git's "racily clean" files).
    ctime is in the stamp because nothing can set it back."""
    if time.time() - stat.st_ctime < _RACY_S:
        return
    if len(_KNOWN_INTACT) >= _KNOWN_INTACT_MAX:
        _KNOWN_INTACT.clear()
    _KNOWN_INTACT[path] = _stamp(stat)


def file_sha256(path: Path) -> tuple[str, os.stat_result]:
    """The file's SHA-256, streamed, and the stat of the version read."""
    with path.open("rb") as fh:
        return hash_stream(fh), os.fstat(fh.fileno())


def file_matches(path: Path, sha: str) -> bool:
    """Whether the file's bytes hash to `sha` (not read again when this process already found this version sound)."""
    with path.open("rb") as fh:
        stat = os.fstat(fh.fileno())
        if known_intact(str(path), stat):
            return True
        if hash_stream(fh) != sha:
            return False
    remember_intact(str(path), stat)
    return True


def hash_stream(fh: Any) -> str:
    digest = hashlib.sha256()
    while block := fh.read(_CHUNK):
        digest.update(block)
    return digest.hexdigest()


def sync_and_hash(path: Path) -> str:
    """The file's SHA-256, after flushing it to disk (so a rename never exposes a half-written file)."""
    with path.open("rb") as fh:
        digest = hash_stream(fh)
        os.fsync(fh.fileno())
    return digest
