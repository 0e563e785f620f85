"""A damaged object in the artifact store: found when a job reads it (not blamed on the user's file), mended by a put
of the same content, found and removed by `vitron store verify --repair`; and deleting sessions while others record
the same content never leaves a recorded artifact without its blob (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from skimage import data

from memory import ArtifactStore, SessionMemory, open_checkpointer
from schemas import ArtifactDamaged, ArtifactNotFound, ArtifactRef, JobFailed, VitronSettings
from tests.cli import one_json, png, vitron
from tests.memory.test_remote_store import bucket, endpoint, machines  # noqa: F401  (moto's S3 on loopback)
from tools import get_tool
from tools.executors import LocalExecutor
from tools.jobs import job_spec

FIX = "`vitron store verify --repair`, or upload the same file again"


def flip_a_byte(path) -> None:
    """Damage a file in place, keeping its size (a flipped bit on disk)."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def truncate(path) -> None:
    """Cut a file in half (a write cut short by a full disk or a crash)."""
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_a_damaged_photo_fails_the_job_that_reads_it_naming_the_store_not_the_user(store, settings, ctx):
    photo = store.put_image(data.chelsea())
    flip_a_byte(store.path(photo))
    request = {"image": photo, "region": {"kind": "box", "box": [0, 0, 200, 200]}, "command": "make it blue"}
    spec = job_spec("C", request, store)
    executor = LocalExecutor(store, settings, max_workers=1)
    try:
        with pytest.raises(JobFailed) as failed:
            executor.submit(spec).result(timeout=60)
    finally:
        executor.close()
    error = failed.value
    assert error.error_type == "ArtifactDamaged" and error.field == "ref"
    assert f"image {photo.short}" in error.problem and "damaged" in error.problem
    assert "not your file" in error.problem and FIX in error.fix
    with pytest.raises(ArtifactDamaged, match=photo.short):  # the tool called directly, as the Python API does
        get_tool("C").run(request, ctx)


def test_a_damaged_video_fails_when_its_frames_are_read(store):
    frames = [np.full((32, 48, 3), (10 * i, 80, 200 - 10 * i), np.uint8) for i in range(12)]
    video = store.put_video(frames, fps=8)
    assert len(list(store.iter_frames(video))) == 12
    flip_a_byte(store.path(video))
    with pytest.raises(ArtifactDamaged, match=f"video {video.short}.*not your file"):
        list(store.iter_frames(video, 4, 6))


def test_a_damaged_cached_copy_is_downloaded_again_from_the_remote(machines):  # noqa: F811
    """With a remote (S3) the local folder is a cache: a damaged copy there is dropped and fetched again, checked."""
    a, b = machines
    photo = data.chelsea()
    ref = a.put_image(photo)
    np.testing.assert_array_equal(b.get_image(ref), photo)  # now in b's cache
    truncate(b.path(ref))
    np.testing.assert_array_equal(b.get_image(ref), photo)
    assert b.verify().damaged == ()


def test_reads_can_be_left_unchecked(tmp_path):
    store = ArtifactStore(tmp_path, verify_reads=False)
    ref = store.put_json({"answer": 42})
    store.path(ref).write_bytes(b'{"answer":43}')
    assert store.get_json(ref) == {"answer": 43}  # trusted, as VITRON_STORE_VERIFY_READS=false says
    assert VitronSettings(home=tmp_path).store_verify_reads  # checked unless turned off


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_putting_the_same_photo_again_mends_its_damaged_object(store, damage):
    photo = data.astronaut()
    ref = store.put_image(photo)
    damage(store.path(ref))
    with pytest.raises(ArtifactDamaged):
        store.get_image(ref)
    assert store.put_image(photo) == ref  # the same content, the same ref: its object is written again
    np.testing.assert_array_equal(store.get_image(ref), photo)
    assert list((store.root / "tmp").iterdir()) == []


def test_putting_sound_content_again_leaves_its_object_alone(store):
    ref = store.put_image(data.astronaut())
    before = store.path(ref).stat().st_ino
    assert store.put_image(data.astronaut()) == ref
    assert store.path(ref).stat().st_ino == before  # not written again


def test_importing_the_same_file_again_mends_its_damaged_object(store, tmp_path):
    """An import finds its earlier result by the file's digest: that result is checked, not trusted."""
    path = png(tmp_path / "cat.png", data.chelsea())
    ref = store.import_image(path)
    truncate(store.path(ref))
    with pytest.raises(ArtifactDamaged):
        store.get_image(ref)
    assert store.import_image(path) == ref
    np.testing.assert_array_equal(store.get_image(ref), data.chelsea())


# -- vitron store verify ---------------------------------------------------------------------------


def test_store_verify_finds_removes_and_names_the_sessions_of_damaged_objects(home, env):
    settings = VitronSettings(home=home)
    with SessionMemory.from_settings(settings) as memory:
        session = memory.create_session("cat")
        photo, other = memory.store.put_image(data.chelsea()), memory.store.put_json({"fine": True})
        memory.append_turn(session.id, "user", "look", attachments=[photo])
        store = memory.store

    clean = one_json(vitron(env, "store", "verify", "--json"))
    assert (clean["checked"], clean["ok"], clean["damaged"], clean["removed"]) == (2, 2, [], [])

    truncate(store.path(photo))
    found = vitron(env, "store", "verify", "--json")
    assert found.returncode == 1, found.stderr  # damaged objects remain
    report = json.loads(found.stdout)
    assert (report["checked"], report["ok"], report["damaged"], report["removed"]) == (2, 1, [photo.sha256], [])
    assert report["sessions"] == {photo.sha256: [session.id]}

    text = vitron(env, "store", "verify")
    assert text.returncode == 1 and "2 checked, 1 ok, 1 damaged, 0 removed" in text.stdout
    assert f"damaged {photo.short}" in text.stdout and session.id[:8] in text.stdout
    assert "--repair" in text.stderr

    repaired = vitron(env, "store", "verify", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "2 checked, 1 ok, 1 damaged, 1 removed" in repaired.stdout and f"removed {photo.short}" in repaired.stdout
    assert not store.exists(photo) and store.exists(other)
    assert one_json(vitron(env, "store", "verify", "--json"))["checked"] == 1

    assert store.put_image(data.chelsea()) == photo  # the content comes back when it is put again
    np.testing.assert_array_equal(store.get_image(photo), data.chelsea())


# -- deleting sessions while others record the same content ----------------------------------------

ROUNDS, PAIRS = 12, 4


class Race:
    """Rounds of PAIRS deletions racing PAIRS recordings: each deletion removes the only session holding a content
    while another thread puts that content and records it in a session of its own."""

    def __init__(self, memory: SessionMemory) -> None:
        self.memory = memory
        self.recorded: list[ArtifactRef] = []
        self.retries = 0  # recordings that found their blob deleted between the put and the row, and put it again
        self.errors: list[BaseException] = []

    def run(self, rounds: int, rng: np.random.Generator) -> None:
        for _ in range(rounds):
            self.round([rng.integers(0, 256, (6, 8, 3), np.uint8) for _ in range(PAIRS)])

    def round(self, pixels: list[np.ndarray]) -> None:
        memory = self.memory
        doomed = []
        for image in pixels:
            session = memory.create_session("doomed")
            memory.append_turn(session.id, "user", "mine", attachments=[memory.store.put_image(image)])
            doomed.append(session.id)
        keepers = [memory.create_session("keeper").id for _ in pixels]
        start = threading.Barrier(2 * len(pixels))

        def delete(i: int) -> None:
            start.wait()
            memory.delete_session(doomed[i])

        def record(i: int) -> None:
            start.wait()
            while True:
                ref = memory.store.put_image(pixels[i])
                try:
                    turn = memory.append_turn(keepers[i], "user", "mine too", attachments=[ref])
                except ArtifactNotFound:
                    self.retries += 1
                    continue
                self.recorded.extend(turn.artifacts)
                return

        def guarded(fn, i: int) -> None:
            try:
                fn(i)
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(fn, i)) for i in range(len(pixels))
                   for fn in (delete, record)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _blobs_of_every_row(memory: SessionMemory) -> list[tuple[str, bool]]:
    return [(entry.ref.sha256, memory.store.exists(entry.ref))
            for info in memory.list_sessions(limit=10_000) for entry in memory.artifact_table(info.id)]


@pytest.mark.parametrize("grace_s", [0.0, 600.0])
def test_deleting_sessions_while_others_record_the_same_content_loses_no_blob(memory_settings, grace_s):
    settings = memory_settings.model_copy(update={"store_delete_grace_s": grace_s})
    with SessionMemory.from_settings(settings) as memory:
        # The checkpoint tables first: deletions made all at once on a fresh PostgreSQL database would each create
        # them (the checkpointer's own setup is not safe to run concurrently; not what this test is about).
        with open_checkpointer(memory.db):
            pass
        race = Race(memory)
        race.run(ROUNDS, np.random.default_rng(7))
        assert race.errors == []
        assert len(race.recorded) == ROUNDS * PAIRS
        rows = _blobs_of_every_row(memory)
        assert len(rows) == ROUNDS * PAIRS  # the keepers' rows: every doomed session is gone
        assert all(present for _, present in rows), "a recorded artifact lost its blob"
        for ref in race.recorded:
            assert memory.store.get_image(ref).shape == (6, 8, 3)
        if grace_s:
            assert race.retries == 0  # young blobs are kept: a recording in flight never loses the blob it just put


def test_a_deletion_keeps_young_blobs_and_says_so(memory):
    memory.store.delete_grace_s = 600
    session = memory.create_session()
    ref = memory.store.put_image(data.chelsea())
    memory.append_turn(session.id, "user", "look", attachments=[ref])
    deleted = memory.delete_session(session.id)
    assert deleted.blobs_removed == () and deleted.blobs_kept == (ref.sha256,)
    assert memory.store.exists(ref)
