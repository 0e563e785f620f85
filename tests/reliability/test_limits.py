"""Input limits, checked before anything is decoded: an image's pixels from its header (VITRON_MAX_PIXELS), a video's
frames x pixels from its container (VITRON_MAX_VIDEO_PIXELS), a file's bytes from its size (VITRON_MAX_UPLOAD_BYTES).
A small file that claims a huge picture is refused by its header, naming the size found and the setting, with little
memory; the same limits hold over HTTP."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from memory import ArtifactStore
from memory.inputs import InputLimits, TooLarge
from schemas import VitronSettings
from tests.cli import VITRON, png, vitron


def zeros_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of `width` x `height` black pixels, made in milliseconds and never decoded: one deflate block
    of zero rows, closed by a full flush so that its bytes repeat exactly, stands for every other such block; the
    zlib trailer's Adler-32 of n zero bytes is (n mod 65521) << 16 | 1."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = 1 + 3 * width  # the filter byte (0: none), then the pixels
    rows = max(1, (1 << 20) // row)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(bytes(row * rows)) + deflate.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(height, rows)
    tail = deflate.compress(bytes(row * rest)) + deflate.flush(zlib.Z_FINISH)
    stream = b"\x78\xda" + block * whole + tail + struct.pack(">I", (row * height % 65521) << 16 | 1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def test_the_zeros_png_is_a_real_png():
    image = np.asarray(Image.open(io.BytesIO(zeros_png(333, 517))))
    assert image.shape == (517, 333, 3) and not image.any()


def peak_rss_mb(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `vitron args` from a fresh Python process that reports its children's peak memory: RUSAGE_CHILDREN in
    this process would also count every child an earlier test ran."""
    probe = ("import json, resource, subprocess, sys\n"
             "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps([proc.returncode, proc.stdout, proc.stderr,\n"
             "                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n")
    outer = subprocess.run([sys.executable, "-c", probe, VITRON, *args], capture_output=True, text=True, env=env,
                           timeout=300, check=True)
    code, out, err, kib = json.loads(outer.stdout)
    return subprocess.CompletedProcess(args, code, out, err), kib / 1024


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]


def test_a_20000_by_20000_png_is_refused_from_its_header_with_little_memory(env, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(zeros_png(20000, 20000))  # 1.2 MB that decode to 1.2 GB
    assert big.stat().st_size < 2_000_000
    proc, peak = peak_rss_mb(["invoke", "C", "--image", str(big), "--command", "make it blue"], env)
    line = one_error_line(proc)
    assert "image:" in line and "400,000,000 pixels" in line and "VITRON_MAX_PIXELS" in line, line
    assert peak < 500, f"peak memory {peak:.0f} MB"


@pytest.mark.parametrize("flag", ["--mask", "--scribble"])
def test_a_huge_mask_or_scribble_is_refused_too(env, tmp_path, flag):
    photo = png(tmp_path / "photo.png", np.zeros((20, 30, 3), np.uint8))
    big = tmp_path / "big.png"
    big.write_bytes(zeros_png(12000, 6000))  # 72 MP: within Pillow's own guard, over ours
    args = ["invoke", "C" if flag == "--mask" else "B", "--image", str(photo), flag, str(big)]
    line = one_error_line(vitron(env, *args, *(["--command", "make it blue"] if flag == "--mask" else [])))
    field = flag.removeprefix("--") + ":"
    assert field in line and "12000x6000, 72,000,000 pixels" in line and "VITRON_MAX_PIXELS" in line, line


def test_pillows_guard_follows_the_setting(tmp_path, monkeypatch):
    """Raised past Pillow's own limit (179 MP refused outright), the setting lets such an image's header through;
    Pillow's guard is set to the same number, so a Pillow decode elsewhere in the process agrees."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # put back after the test
    data = zeros_png(20000, 10000)  # 200 MP
    lenient = ArtifactStore(tmp_path / "a", limits=InputLimits(max_pixels=300_000_000))
    assert lenient.check_image(data, name="big.png", field="image") == (20000, 10000)
    assert Image.MAX_IMAGE_PIXELS == 300_000_000
    strict = ArtifactStore(tmp_path / "b", limits=InputLimits(max_pixels=1_000_000))
    with pytest.raises(TooLarge, match=r"200,000,000 pixels.*VITRON_MAX_PIXELS"):
        strict.check_image(data, name="big.png", field="image")
    assert Image.MAX_IMAGE_PIXELS == 1_000_000


def test_an_image_file_over_the_byte_limit_is_refused_by_its_size(tmp_path):
    store = ArtifactStore(tmp_path / "store", limits=InputLimits(max_upload_bytes=1024))
    photo = png(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    with pytest.raises(TooLarge, match=r"over the limit of 1,024.*VITRON_MAX_UPLOAD_BYTES") as info:
        store.import_image(photo)
    assert info.value.field == "image"
    with pytest.raises(TooLarge, match="VITRON_MAX_UPLOAD_BYTES") as info:
        store.import_mask(photo, field="scribble")
    assert info.value.field == "scribble"


def clip(store: ArtifactStore, path: Path, frames: int = 12, size: int = 16, *, lossless: bool = False) -> Path:
    with store.video_writer(10, lossless=lossless) as writer:
        for i in range(frames):
            writer.write(np.full((size, size, 3), i * 20, np.uint8))
    path.write_bytes(store.get_bytes(writer.ref))
    return path


@pytest.mark.parametrize("ending", [".mp4", ".mkv"])  # MP4 says its frame count; Matroska only its duration
def test_a_video_over_its_pixels_in_all_is_refused_from_its_header(tmp_path, ending):
    maker = ArtifactStore(tmp_path / "maker")
    video = clip(maker, tmp_path / f"clip{ending}", lossless=ending == ".mkv")  # 12 frames of 16x16: 3,072 pixels
    store = ArtifactStore(tmp_path / "store", limits=InputLimits(max_video_pixels=2000))
    with av.open(str(video)) as container:  # what the header says, before any packet is read
        stream = container.streams.video[0]
        assert (stream.frames > 0) == (ending == ".mp4")
    with pytest.raises(TooLarge, match=r"its header says 12 frames of 16x16.*VITRON_MAX_VIDEO_PIXELS") as info:
        store.import_video(video)
    assert info.value.field == "video"
    assert ArtifactStore(tmp_path / "roomy", limits=InputLimits(max_video_pixels=3072)).import_video(video).shape == (
        12, 16, 16, 3)


def test_a_video_whose_header_says_nothing_is_stopped_while_its_packets_are_counted(tmp_path, monkeypatch):
    video = clip(ArtifactStore(tmp_path / "maker"), tmp_path / "clip.mp4")
    monkeypatch.setattr("memory.artifacts._declared_frames", lambda container, stream: 0)
    store = ArtifactStore(tmp_path / "store", limits=InputLimits(max_video_pixels=2000))
    with pytest.raises(TooLarge, match=r"more than 7 frames of 16x16.*VITRON_MAX_VIDEO_PIXELS"):
        store.import_video(video)


def test_a_video_of_frames_over_the_pixel_limit_is_refused(tmp_path):
    video = clip(ArtifactStore(tmp_path / "maker"), tmp_path / "clip.mp4", size=32)
    store = ArtifactStore(tmp_path / "store", limits=InputLimits(max_pixels=1000))
    with pytest.raises(TooLarge, match=r"its frames are 32x32, 1,024 pixels.*VITRON_MAX_PIXELS"):
        store.import_video(video)


def test_the_video_limit_through_the_cli(env, tmp_path):
    video = clip(ArtifactStore(tmp_path / "maker"), tmp_path / "clip.mp4")
    line = one_error_line(vitron({**env, "VITRON_MAX_VIDEO_PIXELS": "2000"}, "invoke", "H", "--video", str(video),
                                 "--command", "how long is it?"))
    assert "video:" in line and "12 frames of 16x16" in line and "VITRON_MAX_VIDEO_PIXELS" in line, line


def test_the_server_holds_the_same_limits(tmp_path):
    from agent.server import create_app

    settings = VitronSettings(home=tmp_path / "home", planner="explicit", max_pixels=1_000_000,
                              max_video_pixels=2000)
    video = clip(ArtifactStore(tmp_path / "maker"), tmp_path / "clip.mp4")
    with TestClient(create_app(settings)) as client:
        store = client.app.state.context.store
        assert store.limits == InputLimits.from_settings(settings)
        for body, setting in ((zeros_png(2000, 1000), "VITRON_MAX_PIXELS"),
                              (video.read_bytes(), "VITRON_MAX_VIDEO_PIXELS")):
            response = client.post("/artifacts", content=body)
            error = response.json()["error"]
            assert response.status_code == 413 and error["field"] == "file", error
            assert setting in error["fix"] and str(tmp_path) not in error["problem"], error
