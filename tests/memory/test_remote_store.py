"""The artifact store over S3: two machines (two local folders) sharing one bucket on a real local S3 server."""

from __future__ import annotations

import hashlib
import socket
import threading
import uuid

import boto3
import moto.server as moto_server
import numpy as np
import pytest
import torch
from skimage import data

from memory import ArtifactStore
from memory.remote import RemoteObjects, S3Objects
from schemas import ArtifactNotFound, ArtifactRef, BackendUnavailable, VitronSettings

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def endpoint():
    """moto's S3 server on a free loopback port, with fake credentials in the environment."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def bucket(endpoint):
    """A fresh bucket per test, so object counts start at zero."""
    name = f"vitron-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def machines(tmp_path, endpoint, bucket):
    """Two stores with their own local folders and the same remote, as on two machines."""
    settings = [VitronSettings(home=tmp_path / f"machine{i}", store_url=f"s3://{bucket}/team/artifacts",
                               s3_endpoint_url=endpoint) for i in (1, 2)]
    return ArtifactStore.from_settings(settings[0]), ArtifactStore.from_settings(settings[1])


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def local_objects(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in (store.root / "objects").rglob("*") if p.is_file())


def test_s3_objects_is_remote_objects():
    assert isinstance(S3Objects("s3://bucket/prefix"), RemoteObjects)


def test_what_one_machine_puts_the_other_reads(machines):
    a, b = machines
    photo = data.astronaut()
    mask = photo[..., 0] > 128
    tensor = torch.randn(2, 77, 64)
    frames = [np.full((48, 64, 3), (i * 10, 200 - i * 10, 90), np.uint8) for i in range(12)]
    refs = [a.put_image(photo), a.put_mask(mask), a.put_tensor(tensor), a.put_video(frames, fps=8)]
    assert local_objects(b) == []

    np.testing.assert_array_equal(b.get_image(refs[0]), photo)
    np.testing.assert_array_equal(b.get_mask(refs[1]), mask)
    np.testing.assert_array_equal(b.get_tensor(refs[2]), tensor.numpy())
    # The video decodes frame by frame on b exactly as on a (same bytes, downloaded once into b's cache).
    for want, got_a, got_b in zip(frames, a.iter_frames(refs[3]), b.iter_frames(refs[3]), strict=True):
        np.testing.assert_array_equal(got_a, got_b)
        assert np.abs(want.astype(int) - got_b.astype(int)).mean() < 3
    assert local_objects(b) == local_objects(a)
    for ref in refs:
        assert b.path(ref).read_bytes() == a.path(ref).read_bytes()
    assert list((b.root / "tmp").iterdir()) == []


def test_objects_sit_under_the_prefix_by_content(machines, endpoint, bucket):
    a, _ = machines
    ref = a.put_image(data.camera()[..., None].repeat(3, axis=2))
    assert bucket_keys(endpoint, bucket) == [f"team/artifacts/objects/{ref.sha256[:2]}/{ref.sha256}.png"]


def test_identical_content_is_uploaded_once(machines, endpoint, bucket):
    a, b = machines
    photo = data.coffee()
    refs = {a.put_image(photo), a.put_image(photo.copy()), b.put_image(photo)}
    assert len(refs) == 1
    assert len(bucket_keys(endpoint, bucket)) == 1


def test_missing_object_is_not_found_on_either(machines):
    _, b = machines
    ref = ArtifactRef(sha256="0" * 64, kind="image", media_type="image/png")
    assert not b.exists(ref)
    with pytest.raises(ArtifactNotFound, match="no image artifact 000000000000"):
        b.get_image(ref)
    assert local_objects(b) == [] and list((b.root / "tmp").iterdir()) == []


def test_exists_sees_the_remote_without_downloading(machines):
    a, b = machines
    ref = a.put_json({"boxes": [[1, 2, 3, 4]]}, kind="boxes")
    assert b.exists(ref)
    assert local_objects(b) == []


def test_wrong_bucket_is_a_clear_error(tmp_path, endpoint):
    store = ArtifactStore(tmp_path / "store", remote=S3Objects("s3://no-such-bucket/x", endpoint))
    with pytest.raises(BackendUnavailable, match=r"no-such-bucket.*does not exist") as info:
        store.put_image(data.astronaut())
    assert "VITRON_STORE_URL" in str(info.value)


def test_dead_endpoint_is_a_clear_error(tmp_path, endpoint):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    store = ArtifactStore(tmp_path / "store", remote=S3Objects("s3://bucket", dead))
    ref = ArtifactRef(sha256="0" * 64, kind="image", media_type="image/png")
    with pytest.raises(BackendUnavailable, match="VITRON_S3_ENDPOINT_URL") as info:
        store.get_image(ref)
    assert dead in str(info.value)


def test_concurrent_readers_leave_one_intact_file(machines, tmp_path, endpoint, bucket):
    a, b = machines
    payload = np.random.default_rng(0).integers(0, 255, 10 << 20, dtype=np.uint8)  # past boto3's 8 MB multipart
    ref = a.put_tensor(payload)
    # Several readers on b's machine (separate store objects, as separate worker processes would have).
    readers = [ArtifactStore(b.root, remote=S3Objects(f"s3://{bucket}/team/artifacts", endpoint)) for _ in range(8)]
    results, errors = [], []

    def read(store: ArtifactStore) -> None:
        try:
            results.append(hashlib.sha256(store.path(ref).read_bytes()).hexdigest())
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(store,)) for store in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [ref.sha256] * len(readers)
    assert local_objects(b) == [f"{ref.sha256}.safetensors"]
    assert list((b.root / "tmp").iterdir()) == []
    np.testing.assert_array_equal(b.get_tensor(ref), payload)


def test_delete_removes_both_copies(machines, endpoint, bucket):
    a, b = machines
    ref = a.put_mask(data.horse())
    b.get_mask(ref)  # now cached on b as well
    assert b.delete(ref)
    assert bucket_keys(endpoint, bucket) == [] and local_objects(b) == []
    assert not b.exists(ref)
    # a still has its cached copy; putting the content again uploads it again.
    assert a.exists(ref) and a.put_mask(data.horse()) == ref
    assert len(bucket_keys(endpoint, bucket)) == 1
    assert not b.delete(ArtifactRef(sha256="1" * 64, kind="mask", media_type="image/png"))
