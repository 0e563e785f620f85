"""The artifact store: exact round trips, deduplication, atomic concurrent writes, path safety."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from skimage import data

from memory import ArtifactStore
from schemas import ArtifactNotFound, ArtifactRef, CorruptArtifact, InvalidInput, UnsafePath


def test_image_mask_tensor_json_round_trip(store):
    photo = data.astronaut()
    ref = store.put_image(photo)
    assert ref.kind == "image" and ref.media_type == "image/png" and ref.shape == photo.shape
    np.testing.assert_array_equal(store.get_image(ref), photo)

    mask = photo[..., 0] > 128
    np.testing.assert_array_equal(store.get_mask(store.put_mask(mask)), mask)

    tensor = torch.randn(3, 256)
    np.testing.assert_array_equal(store.get_tensor(store.put_tensor(tensor)), tensor.numpy())

    boxes = [[1, 2, 3, 4], None]
    assert store.get_json(store.put_json(boxes, kind="boxes")) == boxes


def test_identical_content_is_stored_once(store):
    photo = data.coffee()
    a, b = store.put_image(photo), store.put_image(photo.copy())
    assert a == b
    assert len(list((store.root / "objects").rglob("*.png"))) == 1


def test_video_is_written_and_read_frame_by_frame(store):
    frames = [np.full((64, 96, 3), (i * 8, 255 - i * 8, 128), np.uint8) for i in range(20)]
    ref = store.put_video(frames, fps=12)
    assert ref.kind == "video" and ref.media_type == "video/mp4" and ref.shape == (20, 64, 96, 3)
    info = store.video_info(ref)
    assert (info.frames, info.height, info.width, info.fps) == (20, 64, 96, 12)
    decoded = store.iter_frames(ref)
    assert not isinstance(decoded, list)  # a generator: long videos are never held whole
    for want, got in zip(frames, decoded, strict=True):
        assert np.abs(want.astype(int) - got.astype(int)).mean() < 3  # H.264 4:2:0 at crf 16


def test_the_same_frames_always_give_the_same_video(tmp_path):
    """Content addressing holds for encoded videos, on any machine: a chunk recomputed elsewhere is found, not
    stored again. x264's macroblock-tree rate control read memory it never wrote, so the bytes (and pixels, up to
    30 levels) depended on what the process's heap held before; glibc's MALLOC_PERTURB_ fills fresh memory with a
    given byte. And x264's output depends on its thread count, by default set from the cores it may use. So
    processes with different fillings, on one core or on all of them, must still write one file."""
    code = ("import sys; from memory import ArtifactStore; from tests.scenes import render_video;"
            "print(ArtifactStore(sys.argv[1]).put_video(render_video(2, frames=30).frames, fps=8).sha256)")
    cores = sorted(os.sched_getaffinity(0))
    runs = [(1, cores[:1]), (100, cores), (200, cores[-1:])]

    def on(allowed: list[int]):
        return lambda: os.sched_setaffinity(0, allowed)  # in the child, before Python (and x264) start

    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / str(fill))], stdout=subprocess.PIPE,
                              text=True, preexec_fn=on(allowed),
                              env={**os.environ, "PYTHONPATH": os.getcwd(), "MALLOC_PERTURB_": str(fill)})
             for fill, allowed in runs]
    shas = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(shas) == 1


def test_per_frame_masks_are_lossless_even_at_odd_sizes(store):
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 51)) > 0.5 for _ in range(7)]
    ref = store.put_video(masks, fps=5, kind="masks")
    assert ref.media_type == "video/x-matroska" and ref.shape == (7, 37, 51)
    for want, got in zip(masks, store.iter_frames(ref), strict=True):
        np.testing.assert_array_equal(want, got)


def test_odd_sized_video_keeps_its_size(store):
    ref = store.put_video([np.full((31, 45, 3), 90, np.uint8)] * 3, fps=5)
    assert next(iter(store.iter_frames(ref))).shape == (31, 45, 3)


def test_import_checks_the_files(store, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(CorruptArtifact, match="not a readable image"):
        store.import_image(tmp_path / "bad.png")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(CorruptArtifact):
        store.import_video(tmp_path / "bad.mp4")
    with pytest.raises(InvalidInput, match="no file"):
        store.import_image(tmp_path / "missing.png")
    video = store.put_video([np.zeros((16, 16, 3), np.uint8)] * 4, fps=4)
    (tmp_path / "clip.mp4").write_bytes(store.get_bytes(video))
    assert store.import_video(tmp_path / "clip.mp4") == video


def test_bad_arrays_are_refused_and_nothing_is_left_behind(store):
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8), "x"):
        with pytest.raises(InvalidInput):
            store.put_image(bad)
    with pytest.raises(InvalidInput, match="same size"), store.video_writer(fps=5) as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))
        writer.write(np.zeros((8, 10, 3), np.uint8))
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "objects").rglob("*.mp4")) == []


def test_missing_ref_is_a_clear_error(store):
    ref = ArtifactRef(sha256="0" * 64, kind="image", media_type="image/png")
    with pytest.raises(ArtifactNotFound, match="no image artifact 000000000000"):
        store.get_image(ref)
    assert not store.exists(ref)


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "objects/../../x", "a/../../b"])
def test_traversal_is_refused(store, path):
    with pytest.raises(UnsafePath):
        store.resolve(path)


def test_links_out_of_the_root_are_refused(store, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (store.root / "objects" / "ab").symlink_to(outside)
    with pytest.raises(UnsafePath, match="through a link"):
        store.resolve("objects/ab/file.png")
    forged = ArtifactRef.model_construct(sha256="../../../etc/passwd", kind="image", media_type="image/png")
    with pytest.raises(UnsafePath):
        store.path(forged)
    # An object file that is itself a link out of the root, and one under a linked shard folder.
    ref = store.put_image(np.zeros((4, 4, 3), np.uint8))
    target = outside / "planted.png"
    target.write_bytes(store.get_bytes(ref))
    stored = store.path(ref)
    stored.unlink()
    stored.symlink_to(target)
    with pytest.raises(UnsafePath, match="through a link"):
        store.path(ref)
    with pytest.raises(UnsafePath, match="through a link"):
        store.path(ArtifactRef(sha256="ab" + "0" * 62, kind="image", media_type="image/png"))


def test_concurrent_writers_of_the_same_content_leave_one_intact_file(store):
    photo = data.rocket()
    refs, errors = [], []

    def write() -> None:
        try:
            refs.append(store.put_image(photo))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(refs)) == 1
    np.testing.assert_array_equal(store.get_image(refs[0]), photo)
    assert list((store.root / "tmp").iterdir()) == []


def test_concurrent_processes_write_the_same_content(store):
    code = (
        "import sys; from skimage import data; from memory import ArtifactStore;"
        "print(ArtifactStore(sys.argv[1]).put_image(data.chelsea()).sha256)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.root)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()}) for _ in range(4)]
    shas = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(shas) == 1 and all(p.returncode == 0 for p in procs)
    ref = ArtifactRef(sha256=shas.pop(), kind="image", media_type="image/png")
    np.testing.assert_array_equal(ArtifactStore(store.root).get_image(ref), data.chelsea())


def _moving_frames(count: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames that differ from each other (a bright bar moving right), so a wrong frame number shows."""
    frames = []
    for i in range(count):
        frame = np.full((h, w, 3), 40, np.uint8)
        frame[:, (i * 3) % w:(i * 3) % w + 6] = 220
        frame[0, 0] = i  # the frame's number, kept exactly by the lossless codec
        frames.append(frame)
    return frames


@pytest.mark.parametrize("start", [0, 1, 29, 30, 31, 59, 75, 99])
def test_frames_from_the_middle_are_the_frames_a_full_decode_gives(store, start):
    video = store.put_video(_moving_frames(100), 25)
    masks = store.put_video([f[..., 0] > 100 for f in _moving_frames(100)], 25, kind="masks")
    for ref in (video, masks):
        everything = list(store.iter_frames(ref))
        part = list(store.iter_frames(ref, start, start + 7))
        assert len(part) == min(7, 100 - start)
        assert all(np.array_equal(a, b) for a, b in zip(part, everything[start:start + 7], strict=True))


def test_joined_parts_decode_to_the_parts_frames(store):
    frames = _moving_frames(70)
    for kind, make in (("video", lambda f: f), ("masks", lambda f: f[..., 0] > 100)):
        ranges = ((0, 30), (30, 60), (60, 70))
        parts = [store.put_video([make(f) for f in frames[a:b]], 25, kind=kind) for a, b in ranges]
        joined = store.concat_videos(parts)
        assert joined.kind == kind and joined.shape[0] == 70
        expected = [frame for part in parts for frame in store.iter_frames(part)]
        got = list(store.iter_frames(joined))
        assert len(got) == 70 and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
        assert store.video_info(joined).fps == 25
        assert store.concat_videos(parts) == joined  # the same parts, the same bytes
        assert all(np.array_equal(a, b) for a, b in zip(store.iter_frames(joined, 45, 47), expected[45:47],
                                                        strict=True))  # the joined file seeks too


def test_joining_refuses_parts_that_do_not_fit(store):
    small = store.put_video(_moving_frames(3), 25)
    large = store.put_video(_moving_frames(3, 64, 96), 25)
    masks = store.put_video([np.zeros((48, 64), bool)] * 3, 25, kind="masks")
    with pytest.raises(InvalidInput, match="encoded differently"):
        store.concat_videos([small, large])
    with pytest.raises(InvalidInput, match="cannot join"):
        store.concat_videos([small, masks])
    with pytest.raises(InvalidInput, match="nothing to join"):
        store.concat_videos([])


def test_a_killed_writes_leftovers_are_swept_when_a_store_opens(tmp_path):
    import time

    from memory.artifacts import TEMP_GRACE_S

    store = ArtifactStore(tmp_path)
    stale, fresh = tmp_path / "tmp" / "tmpdead.mp4", tmp_path / "tmp" / "tmpwriting.mp4"
    stale.write_bytes(b"half a video")
    fresh.write_bytes(b"a write in flight")
    old = time.time() - TEMP_GRACE_S - 60
    os.utime(stale, (old, old))
    ref = store.put_image(np.zeros((4, 4, 3), np.uint8))
    ArtifactStore(tmp_path)  # what a start does
    assert not stale.exists() and fresh.exists() and store.exists(ref)


def test_objects_are_group_readable_unless_the_setting_says_owner_only(tmp_path):
    import stat

    image = np.zeros((4, 4, 3), np.uint8)
    shared = ArtifactStore(tmp_path / "shared")
    assert stat.S_IMODE(shared.path(shared.put_image(image)).stat().st_mode) == 0o640
    private = ArtifactStore(tmp_path / "private", group_readable=False)
    assert stat.S_IMODE(private.path(private.put_image(image)).stat().st_mode) == 0o600
