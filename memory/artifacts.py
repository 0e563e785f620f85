"""The content-addressed artifact store: every input and output, by SHA-256 of its bytes.

Layout under the root: `objects/<first two hex>/<sha256><ending>` for content, `index/<first two
hex>/<key>.json` for named results (a 64-hex key, e.g. a chunk's, → the ref it produced), `tmp/` for writes in
flight. Each write goes to a temp file in `tmp/` and is renamed into place, so a reader never sees a
half-written file and concurrent writers of the same content leave one intact file. A job's reads hash what they
read against the digest (`ArtifactDamaged` when it no longer matches: the store's copy is damaged); a put of content
whose copy here is damaged replaces it; `verify` checks every object.

With a remote (`RemoteObjects`, e.g. S3 from VITRON_STORE_URL) the folder is a cache: each new object is
also uploaded under the same relative key, and an object missing here is downloaded on first read, so
workers on other machines share one store.

Encodings: images PNG (RGB), masks 8-bit greyscale PNG (0/255), videos MP4 (H.264; yuv420p, or
yuv444p when a side is odd), per-frame masks FFV1 greyscale in Matroska (lossless, streamable frame by
frame), lossless videos (a long job's chunks) FFV1 bgr0 in Matroska, tensors safetensors (one tensor
named "tensor"), boxes and text JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from schemas import (
    MEDIA_TYPES,
    ArtifactDamaged,
    ArtifactKind,
    ArtifactNotFound,
    ArtifactRef,
    CorruptArtifact,
    InvalidInput,
    UnsafePath,
    VitronSettings,
    tensor_shape_dtype,
)

from .inputs import (
    InputLimits,
    quiet_png,
    read_user_file,
    too_long,
    too_many_pixels,
    writing,
)
from .integrity import (
    VerifyReport,
    file_matches,
    file_sha256,
    known_intact,
    remember_intact,
    sync_and_hash,
)
from .remote import RemoteObjects, S3Objects

_SHA = re.compile(r"[0-9a-f]{64}")
TEMP_GRACE_S = 15 * 60
"""A file in `tmp/` untouched this long is a killed process's write, swept when a store opens."""
DELETE_GRACE_S = 120.0
"""How long after its last put an object that no session references is still kept by `delete(keep_recent=True)`
(VITRON_STORE_DELETE_GRACE_S)."""
_CHUNK = 1 << 20
KEYFRAME_EVERY = 30
"""Frames between keyframes in the videos the store encodes (H.264)."""
VIDEO_ENDINGS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mkv": "video/x-matroska", ".webm": "video/webm",
                 ".mov": "video/quicktime", ".avi": "video/x-msvideo"}


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    height: int
    width: int
    fps: float


class ArtifactStore:
    """Put and get artifacts by ref. Nothing is read or written outside `root`. What enters from outside (files by
    path, uploads) is held to `limits`, read from headers before anything is decoded."""

    def __init__(self, root: str | Path, remote: RemoteObjects | None = None, *, group_readable: bool = True,
                 verify_reads: bool = True, delete_grace_s: float = DELETE_GRACE_S,
                 limits: InputLimits | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        self.remote = remote
        self.file_mode = 0o640 if group_readable else 0o600
        self.verify_reads = verify_reads
        self.delete_grace_s = delete_grace_s
        self.limits = limits or InputLimits()
        with writing(self.root):
            (self.root / "objects").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(exist_ok=True)
        self._objects = str(self.root / "objects")
        self._sweep_temp()

    def _sweep_temp(self) -> None:
        """Remove writes a killed process left in `tmp/`: files nobody has written to for `TEMP_GRACE_S` (a write
        in flight keeps touching its file)."""
        stale = time.time() - TEMP_GRACE_S
        with os.scandir(self.root / "tmp") as entries:
            for entry in entries:
                with contextlib.suppress(OSError):  # another process's sweep may have taken it first
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < stale:
                        os.unlink(entry.path)

    @classmethod
    def from_settings(cls, settings: VitronSettings | None = None) -> ArtifactStore:
        """The local folder, with the S3 remote when `store_url` is set (no connection until first use)."""
        settings = settings or VitronSettings()
        remote = S3Objects(settings.store_url, settings.s3_endpoint_url) if settings.store_url else None
        return cls(settings.artifact_root, remote=remote, group_readable=settings.store_group_readable,
                   verify_reads=settings.store_verify_reads, delete_grace_s=settings.store_delete_grace_s,
                   limits=InputLimits.from_settings(settings))

    # -- paths ---------------------------------------------------------------------------------

    def resolve(self, relative: str | Path) -> Path:
        """The absolute path of `relative` inside the root; `UnsafePath` if it would leave it."""
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts:
            raise UnsafePath(f"path {str(relative)!r} would leave the artifact store",
                             field="path", fix="give a path relative to the store root, without '..'")
        full = (self.root / rel).resolve()
        if not full.is_relative_to(self.root):
            raise UnsafePath(f"path {str(relative)!r} points outside the artifact store (through a link)",
                             field="path", fix="remove the link or store the file with put_*")
        return full

    def _object_path(self, sha256: str, media_type: str) -> Path:
        if not isinstance(sha256, str) or not _SHA.fullmatch(sha256):
            raise UnsafePath(f"{sha256!r} is not a SHA-256 hex digest", field="sha256",
                             fix="use a ref returned by the store")
        if media_type not in MEDIA_TYPES:
            raise InvalidInput(f"unknown media type {media_type!r}", field="media_type",
                               fix=f"use one of {sorted(MEDIA_TYPES)}")
        relative = self._key(sha256, media_type)
        full = f"{self.root}/{relative}"
        # The digest and ending are checked, so only a link on the way could lead out of the root: an lstat or
        # three instead of resolving every component (the store's hottest path: each job reads and writes here).
        if os.path.islink(full) or os.path.islink(os.path.dirname(full)) or os.path.islink(self._objects):
            return self.resolve(relative)
        return Path(full)

    @staticmethod
    def _key(sha256: str, media_type: str) -> str:
        """The remote key: the object's relative path, from a digest and media type `_object_path` checked."""
        return f"objects/{sha256[:2]}/{sha256}{MEDIA_TYPES[media_type]}"

    def path(self, ref: ArtifactRef) -> Path:
        """The ref's local file, fetched from the remote if need be; `ArtifactNotFound` if neither holds it. Its
        bytes are not checked here: the reads a job makes (`get_*`, `iter_frames`, `concat_videos`) check them."""
        full = self._object_path(ref.sha256, ref.media_type)
        if full.is_file():
            return full
        if self.remote is not None and self._fetch(self.remote, ref, full):
            return full
        raise self._not_found(ref)

    def size(self, ref: ArtifactRef) -> int:
        """The stored content's size in bytes; `ArtifactNotFound` if the store does not hold it (now)."""
        try:
            return self.path(ref).stat().st_size
        except FileNotFoundError:  # a session's deletion took it between the look and the stat
            raise self._not_found(ref) from None

    def _not_found(self, ref: ArtifactRef) -> ArtifactNotFound:
        where = f"{self.root} or {self.remote!r}" if self.remote is not None else str(self.root)
        return ArtifactNotFound(f"no {ref.kind} artifact {ref.sha256[:12]}… in the store at {where}",
                                field="ref", fix="use a ref this store returned, or put the content first")

    def _checked(self, ref: ArtifactRef) -> Path:
        """The ref's local file for a job to decode, its bytes first hashed against the digest (`verify_reads`):
        streamed, and once per version of the file in this process (the chunks of one video on one worker)."""
        full = self.path(ref)
        if self.verify_reads:
            try:
                intact = file_matches(full, ref.sha256)
            except FileNotFoundError:  # deleted since `path` found it
                raise self._not_found(ref) from None
            if not intact:
                return self._recovered(ref, full)
        return full

    def _recovered(self, ref: ArtifactRef, full: Path) -> Path:
        """After a local copy failed its check: with a remote, the folder is its cache, so the copy is dropped and
        downloaded again (`_fetch` checks the download); without one, `ArtifactDamaged`."""
        if self.remote is not None:
            full.unlink(missing_ok=True)
            if self._fetch(self.remote, ref, full):
                return full
        raise _damaged(ref)

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether the local folder or the remote holds the ref's content (nothing is downloaded)."""
        try:
            full = self._object_path(ref.sha256, ref.media_type)
        except UnsafePath:
            return False
        return full.is_file() or (self.remote is not None and self.remote.exists(self._key(ref.sha256, ref.media_type)))

    def delete(self, ref: ArtifactRef, *, keep_recent: bool = False) -> bool:
        """Remove the content here and on the remote; True if either copy was there.

        `keep_recent` (for content no record references any more): not if the local copy's mtime is within
        `delete_grace_s` (a put makes or touches it: `_holds`), since a recording of the same content may be on its
        way (its put comes before its row); then False, and nothing is removed."""
        full = self._object_path(ref.sha256, ref.media_type)
        if keep_recent and self.delete_grace_s > 0:
            kept = self._keep_if_recent(full, time.time() - self.delete_grace_s)
            if kept is None:
                return False
            held = kept
        else:
            try:
                full.unlink()
                held = True
            except FileNotFoundError:
                held = False
        if self.remote is not None:
            key = self._key(ref.sha256, ref.media_type)
            if self.remote.exists(key):
                self.remote.delete(key)
                held = True
        return held

    def _keep_if_recent(self, full: Path, cutoff: float) -> bool | None:
        """Remove `full` unless its mtime is at or after `cutoff`: None if kept, else whether it was there.

        The file is moved out of the way first and its mtime read again from the moved file: a put that touched it
        between the first look and the move shows there, and the file goes back; a put after the move finds nothing
        and writes the content anew. So a put that returned always leaves a copy that is either in place or young."""
        try:
            if os.stat(full).st_mtime >= cutoff:
                return None
        except FileNotFoundError:
            return False
        tomb = self._take_out(full)
        if tomb is None:
            return False
        try:
            if tomb.stat().st_mtime >= cutoff:
                os.replace(tomb, full)
                return None
        except FileNotFoundError:  # swept from tmp/ by a store opening elsewhere: gone, as it was to be
            return True
        tomb.unlink(missing_ok=True)
        return True

    def _take_out(self, full: Path) -> Path | None:
        """Move an object into `tmp/` (one atomic rename; a killed process's leftover is swept there); None if it
        was not there."""
        tomb = self.root / "tmp" / f"out-{uuid.uuid4().hex}{full.suffix}"
        try:
            os.rename(full, tomb)
        except FileNotFoundError:
            return None
        return tomb

    def verify(self, *, repair: bool = False, progress: Callable[[float, str], None] | None = None) -> VerifyReport:
        """Hash every object in the local folder against the digest it is stored under.

        `repair` removes the damaged ones: content comes back when it is put again (an upload of the same file, a
        job that makes it again) or, with a remote, downloaded on its next read (the remote's copies are not
        checked here). `progress(fraction, message)` is told as the bytes go by."""
        objects = sorted(self._object_files())
        total = sum(size for _, _, size in objects) or 1
        done, damaged, removed = 0, [], []
        for index, (path, sha, size) in enumerate(objects):
            if progress is not None:
                progress(done / total, f"checking object {index + 1} of {len(objects)}")
            try:
                got, stat = file_sha256(path)
            except FileNotFoundError:  # deleted meanwhile (a session's deletion)
                continue
            done += size
            if got == sha:
                remember_intact(str(path), stat)
                continue
            damaged.append(sha)
            if repair and (tomb := self._take_out(path)) is not None:
                if tomb.stat().st_ino != stat.st_ino:  # a put replaced it with a sound copy meanwhile: keep that
                    os.replace(tomb, path)
                else:
                    tomb.unlink(missing_ok=True)
                removed.append(sha)
        if progress is not None:
            progress(1.0, f"checked {len(objects)} objects")
        return VerifyReport(checked=len(objects), damaged=tuple(damaged), removed=tuple(removed))

    def _object_files(self) -> Iterator[tuple[Path, str, int]]:
        """Each object file in the local folder: its path, the digest its name says, its size. Anything else
        there (a stray file) is left alone."""
        endings = set(MEDIA_TYPES.values())
        with os.scandir(self._objects) as folders:
            for folder in folders:
                if not folder.is_dir(follow_symlinks=False) or len(folder.name) != 2:
                    continue
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        sha, dot, ending = entry.name.partition(".")
                        if (_SHA.fullmatch(sha) and sha[:2] == folder.name and f"{dot}{ending}" in endings
                                and entry.is_file(follow_symlinks=False)):
                            yield Path(entry.path), sha, entry.stat(follow_symlinks=False).st_size

    def _fetch(self, remote: RemoteObjects, ref: ArtifactRef, full: Path) -> bool:
        """Download the object into the cache atomically; False if the remote does not have it either."""
        with self._temp_file(full.suffix) as tmp:
            try:
                remote.download(self._key(ref.sha256, ref.media_type), tmp)
            except FileNotFoundError:
                return False
            got = sync_and_hash(tmp)
            if got != ref.sha256:  # never let a damaged download into the cache under the wrong name
                raise ArtifactDamaged(f"the remote copy of the stored {ref.kind} {ref.short}… is damaged: its bytes "
                                      f"hash to {got[:12]}… (the artifact store's copy, not your file)", field="ref",
                                      fix="delete the damaged object from the remote, then upload the same file "
                                          "again")
            full.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, full)  # atomic; concurrent readers each rename an identical, complete file
        return True

    # -- raw writes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _temp_file(self, suffix: str) -> Iterator[Path]:
        with writing(self.root):
            fd, name = tempfile.mkstemp(suffix=suffix, dir=self.root / "tmp")
        os.fchmod(fd, self.file_mode)  # mkstemp's 0600, unless the group may read (the file keeps it once renamed)
        os.close(fd)
        tmp = Path(name)
        try:
            with writing(self.root, denied=False):  # a full disk, whatever the body was writing
                yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, tmp: Path, kind: ArtifactKind, media_type: str, shape: tuple[int, ...]) -> ArtifactRef:
        sha = sync_and_hash(tmp)
        final = self._object_path(sha, media_type)
        if not self._holds(final, sha, tmp.stat().st_size):
            final.parent.mkdir(parents=True, exist_ok=True)
            # Atomic; a concurrent writer of the same bytes just replaces it, and a damaged copy is replaced too.
            os.replace(tmp, final)
        self._share(final, sha, media_type)
        return ArtifactRef(sha256=sha, kind=kind, media_type=media_type, shape=shape)

    def _holds(self, final: Path, sha: str, size: int) -> bool:
        """Whether `final` is a sound copy of the content (`sha`, `size` bytes). False when it is missing or damaged:
        the caller writes the content, which replaces a damaged copy (a truncated object no longer stays broken).

        The size is compared always (a stat). The bytes are hashed too, unless this process found this very version
        of the file sound already: a flipped bit keeps the size, and a damaged read tells the user to put the same
        content again, which must then mend it. The put has just hashed as many bytes, and made them by encoding (an
        image, a video) at many times the cost, so one more hash is cheap next to that; and a hot object, put again
        and again, is hashed once (its version remembered) and then costs the stat alone.

        A sound copy's mtime is brought up to now when it is older than half the delete grace, so a session's
        deletion (`delete(keep_recent=True)`) keeps it for at least that long after this put; touching it only then
        leaves a hot object's version (and what this process remembers of it) alone."""
        try:
            stat = os.stat(final)
            if stat.st_size != size or not (known_intact(str(final), stat) or file_matches(final, sha)):
                return False
        except FileNotFoundError:
            return False
        if time.time() - stat.st_mtime >= self.delete_grace_s / 2:
            try:
                os.utime(final)
            except FileNotFoundError:  # a session's deletion took it since the stat: write it anew
                return False
            except PermissionError:  # another user's file (a group-readable store): it keeps its age
                pass
        return True

    def _share(self, final: Path, sha: str, media_type: str) -> None:
        if self.remote is not None:
            # Asked even when the cache had it: another machine may have deleted the remote copy since.
            # Content-addressed, so an object already there is the same bytes; a plain PUT is atomic.
            key = self._key(sha, media_type)
            if not self.remote.exists(key):
                self.remote.upload(final, key)

    def put_bytes(self, data: bytes, kind: ArtifactKind, media_type: str, shape: tuple[int, ...] = ()) -> ArtifactRef:
        """Store bytes under their digest. Content the store already holds is not written again (no temporary
        file, no flush to disk): a job that remakes an artifact costs a hash and a stat (and a hash of the stored
        copy, until this process has found that version of it sound: `_holds`); a damaged copy is replaced."""
        sha = hashlib.sha256(data).hexdigest()
        final = self._object_path(sha, media_type)
        if not self._holds(final, sha, len(data)):
            with self._temp_file(final.suffix) as tmp:
                tmp.write_bytes(data)
                return self._commit(tmp, kind, media_type, shape)
        self._share(final, sha, media_type)
        return ArtifactRef(sha256=sha, kind=kind, media_type=media_type, shape=shape)

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        """The stored bytes, hashed against the ref's digest as they are read (`verify_reads`): `ArtifactDamaged`
        when they do not match."""
        full = self.path(ref)
        try:
            with full.open("rb") as fh:
                stat = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:  # deleted since `path` found it
            raise self._not_found(ref) from None
        if not self.verify_reads or known_intact(str(full), stat):
            return data
        if hashlib.sha256(data).hexdigest() == ref.sha256:
            remember_intact(str(full), stat)
            return data
        return self._recovered(ref, full).read_bytes()  # downloaded again and checked, or ArtifactDamaged

    # -- images and masks ----------------------------------------------------------------------

    def put_image(self, image: np.ndarray) -> ArtifactRef:
        """Store an RGB uint8 `[h, w, 3]` array as PNG."""
        image = _check_array(image, "image", ndim=3, channels=3, dtype=np.uint8)
        _, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return self.put_bytes(buf.tobytes(), "image", "image/png", image.shape)

    def get_image(self, ref: ArtifactRef) -> np.ndarray:
        _expect_kind(ref, "image")
        return _decode_image(self.get_bytes(ref), ref.sha256[:12])

    def put_mask(self, mask: np.ndarray) -> ArtifactRef:
        """Store a boolean `[h, w]` mask (non-zero means inside) as greyscale PNG."""
        mask = _check_array(mask, "mask", ndim=2)
        _, buf = cv2.imencode(".png", np.where(mask != 0, 255, 0).astype(np.uint8))
        return self.put_bytes(buf.tobytes(), "mask", "image/png", mask.shape)

    def get_mask(self, ref: ArtifactRef) -> np.ndarray:
        _expect_kind(ref, "mask")
        data = cv2.imdecode(np.frombuffer(self.get_bytes(ref), np.uint8), cv2.IMREAD_GRAYSCALE)
        if data is None:
            raise CorruptArtifact(f"mask {ref.short} is not a readable PNG", field="ref")
        return data > 127

    def import_image(self, path: str | Path) -> ArtifactRef:
        """Decode an image file (PNG, JPEG, …) from anywhere and store it as RGB PNG. A file imported before (the
        same bytes) is found in the store's index by its digest, not decoded and encoded again."""
        data = read_user_file(path, "image", self.limits.max_upload_bytes)
        self.check_image(data, name=str(path), field="image")
        return self._imported("image", data, lambda: self.put_image(_decode_image(quiet_png(data), str(path))))

    def import_mask(self, path: str | Path, *, field: str = "mask") -> ArtifactRef:
        """Store a mask file: any image whose non-black pixels mark the inside. `field` names it in errors (a
        scribble is a mask too)."""
        data = read_user_file(path, field, self.limits.max_upload_bytes)
        self.check_image(data, name=str(path), field=field)

        def convert() -> ArtifactRef:
            mask = cv2.imdecode(np.frombuffer(quiet_png(data), np.uint8), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise CorruptArtifact(f"{path} is not a readable image", field=field, fix="give a PNG or JPEG mask")
            return self.put_mask(mask > 127)

        return self._imported("mask", data, convert)

    def check_image(self, data: bytes, *, name: str, field: str) -> tuple[int, int]:
        """An image file's width and height, read from its header (nothing is decoded): `TooLarge` past
        `limits.max_pixels`, `CorruptArtifact` for what Pillow does not know as an image."""
        from PIL import Image, UnidentifiedImageError

        if not data:
            raise InvalidInput(f"{name} is empty (0 bytes)", field=field, fix="give a PNG or JPEG file")
        limit = self.limits.max_pixels
        # Pillow's own guard at ours, so that a Pillow decode anywhere in this process refuses what the store does;
        # Pillow warns past it and refuses past twice it: here the header's size is checked instead, so no warning.
        Image.MAX_IMAGE_PIXELS = limit
        try:
            with warnings.catch_warnings(action="ignore", category=Image.DecompressionBombWarning), \
                    Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError as exc:  # over twice the limit: Pillow says the count, not the sides
            count = re.search(r"\((\d+) pixels\)", str(exc))
            found = f"its header says {int(count[1]):,} pixels" if count else "its header says more than twice that"
            raise too_many_pixels(name, found, limit, field) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise CorruptArtifact(f"{name} is not a readable image", field=field,
                                  fix="give a PNG, JPEG, WebP, BMP, GIF or TIFF file") from None
        if width * height > limit:
            raise too_many_pixels(name, f"it is {width}x{height}, {width * height:,} pixels", limit, field)
        return width, height

    def _imported(self, kind: str, data: bytes, convert: Callable[[], ArtifactRef]) -> ArtifactRef:
        key = hashlib.sha256(f"import:{kind}:".encode() + hashlib.sha256(data).digest()).hexdigest()
        found = self.get_named(key)
        if found is None or not self._still_sound(found):
            found = convert()  # a damaged stored copy is replaced by the put
            self.put_named(key, found)
        return found

    def _still_sound(self, ref: ArtifactRef) -> bool:
        """Whether the store holds the ref's content intact, touched as a put touches it (`_holds`). Hashing the
        stored copy costs about what hashing the user's file did, far less than the decode and encode it saves."""
        full = self._object_path(ref.sha256, ref.media_type)
        try:
            size = os.stat(full).st_size
        except FileNotFoundError:  # only on the remote (`get_named` found it there): checked when downloaded
            return True
        return self._holds(full, ref.sha256, size)

    # -- tensors and JSON ----------------------------------------------------------------------

    def put_tensor(self, tensor: Any) -> ArtifactRef:
        """Store a numpy array or torch tensor as safetensors."""
        found = tensor_shape_dtype(tensor)
        if found is None:
            raise InvalidInput(f"expected a numpy array or torch tensor, got {type(tensor).__name__}", field="tensor")
        if not isinstance(tensor, np.ndarray):
            tensor = tensor.detach().cpu()
            tensor = (tensor.float() if found[1] == "bfloat16" else tensor).numpy()
        data = save_safetensors({"tensor": np.ascontiguousarray(tensor)})
        return self.put_bytes(data, "embedding", "application/vnd.safetensors", found[0])

    def get_tensor(self, ref: ArtifactRef) -> np.ndarray:
        _expect_kind(ref, "embedding")
        try:
            return load_safetensors(self.get_bytes(ref))["tensor"]
        except Exception as exc:
            raise CorruptArtifact(f"embedding {ref.short} is not a readable safetensors file: {exc}",
                                  field="ref") from None

    def put_json(self, value: Any, kind: ArtifactKind = "text") -> ArtifactRef:
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        shape = (len(value),) if isinstance(value, list) else ()
        return self.put_bytes(data, kind, "application/json", shape)

    def get_json(self, ref: ArtifactRef) -> Any:
        return json.loads(self.get_bytes(ref))

    # -- named results -------------------------------------------------------------------------

    def _named_path(self, key: str) -> Path:
        if not isinstance(key, str) or not _SHA.fullmatch(key):
            raise UnsafePath(f"{key!r} is not a result key (64 lowercase hex digits)", field="key",
                             fix="derive the key with a SHA-256 hex digest, e.g. tools.chunks.chunk_key")
        return self.resolve(Path("index") / key[:2] / f"{key}.json")

    def put_named(self, key: str, ref: ArtifactRef) -> None:
        """Record `ref` as the result named `key` (atomically; a later put under the same key replaces it)."""
        final = self._named_path(key)
        with self._temp_file(".json") as tmp:
            tmp.write_text(ref.model_dump_json())
            sync_and_hash(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            if self.remote is not None:  # workers on other machines look the result up too
                self.remote.upload(final, final.relative_to(self.root).as_posix())

    def get_named(self, key: str) -> ArtifactRef | None:
        """The ref recorded under `key`; None when there is none or its content is no longer in the store."""
        final = self._named_path(key)
        if not final.is_file() and self.remote is not None:
            with self._temp_file(".json") as tmp:
                try:
                    self.remote.download(final.relative_to(self.root).as_posix(), tmp)
                except FileNotFoundError:
                    return None
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        try:
            ref = ArtifactRef.model_validate_json(final.read_text())
        except (FileNotFoundError, ValueError):
            return None  # absent, or damaged: the result is recomputed and the entry rewritten
        return ref if self.exists(ref) else None

    def delete_named(self, key: str) -> bool:
        """Forget the result named `key` (its content stays); True if there was an entry."""
        final = self._named_path(key)
        held = final.is_file()
        final.unlink(missing_ok=True)
        if self.remote is not None:
            rel = final.relative_to(self.root).as_posix()
            if self.remote.exists(rel):
                self.remote.delete(rel)
                held = True
        return held

    # -- videos and per-frame masks ------------------------------------------------------------

    def video_writer(self, fps: float, kind: ArtifactKind = "video", *, lossless: bool = False) -> VideoWriter:
        """A writer that takes frames one at a time; use as a context manager, then read `.ref`.

        `lossless` stores a video as FFV1 in Matroska (exact frames, larger files) instead of H.264."""
        return VideoWriter(self, fps, kind, lossless=lossless)

    def put_video(self, frames: Iterable[np.ndarray], fps: float, kind: ArtifactKind = "video") -> ArtifactRef:
        with self.video_writer(fps, kind) as writer:
            for frame in frames:
                writer.write(frame)
        return writer.ref

    def video_info(self, ref: ArtifactRef) -> VideoInfo:
        """The video's size and rate from its headers (its bytes are checked when its frames are read)."""
        _expect_kind(ref, "video", "masks")
        with _open_video(self.path(ref), ref.short) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            frames = ref.shape[0] if ref.shape else stream.frames
            return VideoInfo(frames=frames, height=stream.height, width=stream.width, fps=fps)

    def iter_frames(self, ref: ArtifactRef, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Decode frames [start, stop) one by one: RGB uint8 for videos, bool for per-frame masks.

        A later `start` seeks to the keyframe before it (the store's own videos have one every `KEYFRAME_EVERY`
        frames) instead of decoding from the beginning."""
        _expect_kind(ref, "video", "masks")
        fmt = "gray" if ref.kind == "masks" else "rgb24"
        # One converter for the whole video, on this thread: a frame's own `to_ndarray` makes a new one, which
        # starts a thread per core for every frame (twice the decode's cost; the pixels are the same).
        convert = VideoReformatter()
        with _open_video(self._checked(ref), ref.short) as container:
            stream = container.streams.video[0]
            index = _seek(container, stream, start) if start > 0 else 0
            try:
                for frame in container.decode(stream):
                    if index is None:  # after a seek: the frame's number from its time
                        index = _frame_index(frame, stream)
                    if stop is not None and index >= stop:
                        return
                    if index >= start:
                        array = convert.reformat(frame, format=fmt, threads=1).to_ndarray()
                        yield array > 127 if ref.kind == "masks" else array
                    index += 1
            except av.error.FFmpegError as exc:
                raise CorruptArtifact(f"video {ref.short} breaks off while decoding: {exc}", field="ref") from None

    def sample_frames(self, ref: ArtifactRef, count: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
        """The video's frame count, and `count` of its frames spread evenly, the first and the last included, with
        their numbers (each frame once where the video has fewer). Decoding stops after the last one wanted, and
        only the wanted frames are kept."""
        total = self.video_info(ref).frames
        if total <= 0:  # the container does not say: count in one streaming pass
            total = sum(1 for _ in self.iter_frames(ref))
        if total <= 0 or count <= 0:
            return max(total, 0), []
        picked = min(count, total)
        wanted = {round(i * (total - 1) / max(picked - 1, 1)) for i in range(picked)}
        with contextlib.closing(self.iter_frames(ref, 0, max(wanted) + 1)) as stream:
            return total, [(index, frame) for index, frame in enumerate(stream) if index in wanted]

    def concat_videos(self, refs: list[ArtifactRef]) -> ArtifactRef:
        """One video from several of the same format (chunks of one job), by copying their packets: no re-encoding.

        Each part starts on a keyframe and was encoded with the same settings (the store's own writer), so the
        joined stream decodes to exactly the parts' frames, in order."""
        if not refs:
            raise InvalidInput("nothing to join", field="refs", fix="give one or more videos")
        kinds = {ref.kind for ref in refs}
        media = {ref.media_type for ref in refs}
        if len(kinds) != 1 or len(media) != 1:
            raise InvalidInput(f"cannot join {sorted(kinds)} in {sorted(media)}", field="refs",
                               fix="join videos of one kind and one format")
        (kind,), (media_type,) = kinds, media
        _expect_kind(refs[0], "video", "masks")
        options = {"fflags": "+bitexact"}  # the same parts give the same bytes, hence the same ref
        with self._temp_file(MEDIA_TYPES[media_type]) as tmp, \
                av.open(str(tmp), mode="w", options=options) as out:
            target: Any = None
            frames, shift, template = 0, 0, None
            for ref in refs:
                with _open_video(self._checked(ref), ref.short) as container:
                    stream = container.streams.video[0]
                    if target is None:
                        target, template = out.add_stream_from_template(stream), stream
                    elif (stream.codec_context.name, stream.width, stream.height, stream.codec_context.extradata) != (
                            template.codec_context.name, template.width, template.height,
                            template.codec_context.extradata):
                        raise InvalidInput(f"video {ref.short} was encoded differently from the first part",
                                           field="refs", fix="join chunks written by the same store writer")
                    scale = stream.time_base / target.time_base
                    last = 0
                    for packet in container.demux(stream):
                        if packet.dts is None:  # the demuxer's end-of-stream marker
                            continue
                        step = round(int(packet.duration or 0) * scale)
                        packet.pts = shift + round(packet.pts * scale) if packet.pts is not None else None
                        packet.dts = shift + round(packet.dts * scale)
                        last = max(last, (packet.pts if packet.pts is not None else packet.dts) + step)
                        packet.stream = target
                        out.mux(packet)
                    shift = max(shift, last)
                    frames += ref.shape[0] if ref.shape else stream.frames
            out.close()
            shape = (frames, *refs[0].shape[1:]) if refs[0].shape else ()
            return self._commit(tmp, kind, media_type, shape)

    def import_video(self, path: str | Path) -> ArtifactRef:
        """Store a video file as it is (no re-encoding), after checking that it decodes."""
        src = Path(path)
        media_type = VIDEO_ENDINGS.get(src.suffix.lower())
        if media_type is None:
            raise InvalidInput(f"{src.name}: unsupported video file ending", field="video",
                               fix=f"give one of {sorted(VIDEO_ENDINGS)}")
        read_user_file(src, "video", None, probe=True)
        with _open_video(src, str(src)) as container:
            if not container.streams.video:
                raise CorruptArtifact(f"{src} has no video stream", field="video")
            stream = container.streams.video[0]
            try:
                frames = self._count_frames(container, stream, str(src))
            except av.error.FFmpegError as exc:
                raise CorruptArtifact(f"{src} is not a readable video: {exc}", field="video") from None
            if frames == 0:
                raise CorruptArtifact(f"{src} holds no frames", field="video")
            shape = (frames, stream.height, stream.width, 3)
        with self._temp_file(MEDIA_TYPES[media_type]) as tmp:
            shutil.copyfile(src, tmp)
            return self._commit(tmp, "video", media_type, shape)


    def _count_frames(self, container: Any, stream: Any, name: str) -> int:
        """A video's frames, counted from its packets (read, never decoded); `TooLarge` past the limits as soon as
        the frame size, the header's frame count or the count so far says so."""
        width, height = stream.width, stream.height
        if width * height > self.limits.max_pixels:
            raise too_many_pixels(name, f"its frames are {width}x{height}, {width * height:,} pixels",
                                   self.limits.max_pixels, "video")
        most = self.limits.max_video_pixels // max(width * height, 1)  # the most frames of this size allowed
        if (declared := _declared_frames(container, stream)) > most:
            raise too_long(name, f"its header says {declared:,} frames", width, height, self.limits.max_video_pixels)
        frames = 0
        for packet in container.demux(stream):
            if packet.size:
                frames += 1
                if frames > most:
                    raise too_long(name, f"it has more than {most:,} frames", width, height,
                                    self.limits.max_video_pixels)
        return frames


class VideoWriter:
    """Encodes frames as they come; the finished file enters the store on a clean exit."""

    def __init__(self, store: ArtifactStore, fps: float, kind: ArtifactKind, *, lossless: bool = False) -> None:
        if kind not in ("video", "masks"):
            raise InvalidInput(f"a video writer makes 'video' or 'masks', not {kind!r}", field="kind")
        if not (0 < fps <= 240):
            raise InvalidInput(f"fps {fps} is out of range", field="fps", fix="use a rate between 0 and 240")
        self.store, self.fps, self.kind = store, fps, kind
        self.lossless = lossless or kind == "masks"
        self.media_type = "video/x-matroska" if self.lossless else "video/mp4"
        self.frames = 0
        self.ref: ArtifactRef | None = None
        self._stream: Any = None
        self._shape: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        self._tmp_cm = self.store._temp_file(MEDIA_TYPES[self.media_type])
        self._tmp = self._tmp_cm.__enter__()
        # Matroska writes a random segment id and the date unless bit-exact: without them the same frames give
        # the same bytes, hence the same ref (a recomputed chunk or mask track is found, not duplicated).
        options = {"fflags": "+bitexact"} if self.media_type == "video/x-matroska" else {}
        self._container = av.open(str(self._tmp), mode="w", options=options)
        return self

    def write(self, frame: np.ndarray) -> None:
        if self.kind == "masks":
            frame = _check_array(frame, "mask frame", ndim=2)
            frame = np.where(frame != 0, 255, 0).astype(np.uint8)
        else:
            frame = _check_array(frame, "video frame", ndim=3, channels=3, dtype=np.uint8)
        h, w = frame.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        elif (h, w) != self._shape:
            raise InvalidInput(f"frame {self.frames} is {w}x{h}, earlier frames {self._shape[1]}x{self._shape[0]}",
                               field="frames", fix="give every frame the same size")
        fmt = "gray" if self.kind == "masks" else "rgb24"
        with writing(self.store.root, denied=False):  # a full disk: the store's one clear error
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)):
                self._container.mux(packet)
        self.frames += 1

    def _open_stream(self, width: int, height: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        if self.lossless:
            stream = self._container.add_stream("ffv1", rate=rate)
            stream.pix_fmt = "gray" if self.kind == "masks" else "bgr0"  # bgr0: RGB exactly, any size
        else:
            stream = self._container.add_stream("libx264", rate=rate)
            # 4:2:0 needs even sides; 4:4:4 keeps odd-sized frames exact in size.
            stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            # A keyframe every KEYFRAME_EVERY frames: a chunk of a long video seeks to its start instead of decoding
            # everything before it. No macroblock-tree rate control: it reads memory x264 never wrote, so the same
            # frames came out as other bytes (and pixels up to 30 levels apart) from one run to the next.
            # One thread: x264's output depends on its thread count (by default one per core), so the same frames
            # would be other bytes, another ref, on a machine with more cores. Videos run in parallel as chunks
            # on several pool processes instead, and for small frames one thread is faster anyway.
            stream.options = {"crf": "16", "preset": "veryfast", "g": str(KEYFRAME_EVERY), "threads": "1",
                              "x264-params": "mbtree=0"}
        stream.width, stream.height = width, height
        self._stream, self._shape = stream, (height, width)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            with writing(self.store.root, denied=False):
                if exc_type is None:
                    if self._stream is None:
                        raise InvalidInput("a video needs at least one frame", field="frames")
                    for packet in self._stream.encode():
                        self._container.mux(packet)
                self._container.close()
                if exc_type is None:
                    h, w = self._shape
                    shape = (self.frames, h, w) if self.kind == "masks" else (self.frames, h, w, 3)
                    self.ref = self.store._commit(self._tmp, self.kind, self.media_type, shape)
        finally:
            self._tmp_cm.__exit__(None, None, None)


def _damaged(ref: ArtifactRef) -> ArtifactDamaged:
    return ArtifactDamaged(f"the stored {ref.kind} {ref.short}… is damaged: its bytes no longer match their SHA-256 "
                           "(the artifact store's copy, not your file)", field="ref",
                           fix="run `vitron store verify --repair`, or upload the same file again")


def _expect_kind(ref: ArtifactRef, *kinds: str) -> None:
    if ref.kind not in kinds:
        raise InvalidInput(f"artifact {ref.short} is a {ref.kind}, expected {' or '.join(kinds)}", field="ref")


def _check_array(array: Any, what: str, *, ndim: int, channels: int | None = None, dtype: Any = None) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{what} must be a numpy array, got {type(array).__name__}", field=what)
    shape_ok = array.ndim == ndim and (channels is None or array.shape[-1] == channels)
    if not shape_ok or 0 in array.shape:
        want = "[h, w, 3]" if channels == 3 else "[h, w]"
        raise InvalidInput(f"{what} must have shape {want}, got {list(array.shape)}", field=what)
    if dtype is not None and array.dtype != dtype:
        raise InvalidInput(f"{what} must be {np.dtype(dtype).name}, got {array.dtype.name}", field=what)
    return array


def _decode_image(data: bytes, name: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CorruptArtifact(f"{name} is not a readable image", field="image", fix="give a PNG or JPEG file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _declared_frames(container: Any, stream: Any) -> int:
    """The frame count a video's header says: the stream's own, else its duration times its rate; 0 if neither."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    else:
        return 0
    return int(seconds * float(rate)) if rate else 0


def _seek(container: Any, stream: Any, start: int) -> int | None:
    """Seek to the keyframe at or before frame `start`; None (number frames by time) if it worked, else 0 (from the
    beginning, for a file that cannot seek)."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate or not stream.time_base:
        return 0
    offset = stream.start_time or 0
    try:
        container.seek(offset + int(Fraction(start) / Fraction(rate) / stream.time_base), stream=stream,
                       backward=True, any_frame=False)
    except av.error.FFmpegError:
        container.seek(0, stream=stream)
        return 0
    return None


def _frame_index(frame: Any, stream: Any) -> int:
    rate = stream.average_rate or stream.guessed_rate
    if frame.pts is None:
        raise CorruptArtifact("a video frame has no time stamp, so it cannot be found by number", field="ref")
    return round((frame.pts - (stream.start_time or 0)) * stream.time_base * rate)


@contextlib.contextmanager
def _open_video(path: Path, name: str) -> Iterator[Any]:
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise CorruptArtifact(f"{name} is not a readable video: {exc}", field="video") from None
    try:
        yield container
    finally:
        container.close()
