"""The decoded-image cache (``--image_cache``, srdc/data/decoded.py): built once, the same floats as decoding the
files, rebuilt when stale or damaged, one build for processes starting together, and ``srdc-data cache``."""

import json
import multiprocessing
import os
import pickle
import shutil
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import TINY_CLASSES, make_class_folders
from PIL import Image

import srdc.data.decoded as decoded
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.cli import main
from srdc.data.decoded import DecodedDataset, cache_folder, decoded_image_domain, open_cache
from srdc.data.images import PROFILES, image_domain, resize_geometry, transform_profile
from srdc.errors import SRDCInputError

IMAGENET = PROFILES["imagenet"]
SIZES = ((300, 260), (64, 64), (90, 120), (37, 50), (41, 33))  # wide, square, tall, smaller than 2 x crop


def noise_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A JPEG of random pixels: every crop position and the flip give different floats."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture
def samples(tmp_path):
    return [(noise_image(tmp_path / "images" / f"img {i}.jpg", size, i), i % 2) for i, size in enumerate(SIZES)]


@pytest.fixture
def decodes(monkeypatch):
    """The files the cache decodes (its calls of ``load_rgb``)."""
    calls = []
    original = decoded.load_rgb
    monkeypatch.setattr(decoded, "load_rgb", lambda path: calls.append(path) or original(path))
    return calls


def geometry(profile=IMAGENET, image_size=32):
    return resize_geometry(profile, image_size)


def files_of(folder: Path, suffix: str) -> list[Path]:
    return sorted(folder.glob(f"*{suffix}"))


def test_the_cache_is_built_once_then_opened_without_decoding(tmp_path, samples, decodes, capsys):
    images = open_cache("dom", samples, geometry(), tmp_path / "cache")
    assert len(decodes) == len(samples) and len(images) == len(samples)
    [pixels] = files_of(tmp_path / "cache", ".pixels")
    assert "decoded-image cache: building" in capsys.readouterr().err
    built = pixels.stat().st_mtime_ns
    again = open_cache("dom", samples, geometry(), tmp_path / "cache")
    assert len(decodes) == len(samples) and pixels.stat().st_mtime_ns == built
    assert capsys.readouterr().err == ""
    # the whole resized image is kept (shorter side 37, aspect ratio kept): 300 x 260 -> 42 x 37 (W x H)
    assert again.image(0).shape == (3, 37, 42) and again.image(2).shape == (3, 49, 37)
    assert torch.equal(again.image(4), images.image(4))
    assert pixels.stat().st_size == sum(3 * h * w for h, w in images.shapes.tolist())


@pytest.mark.parametrize("profile, image_size", [(IMAGENET, 32), (PROFILES["digits"], None), (PROFILES["digits"], 20),
                                                 (transform_profile("resnet50", augment="crop"), 24)])
def test_views_are_the_floats_of_decoding_the_files(tmp_path, samples, profile, image_size):
    """The same resize (PIL's), the same crop/flip steps drawing the same random numbers, the same float operations:
    equal tensors, not merely close ones, so a seeded run is the same run with the cache or without it."""
    files = image_domain("d", ["0", "1"], samples, profile, image_size)
    cached = decoded_image_domain("d", ["0", "1"], samples, profile, image_size, tmp_path / "cache")
    for index in range(len(samples)):
        assert torch.equal(cached.eval_set[index][0], files.eval_set[index][0])
        assert cached.eval_set[index][1] == files.eval_set[index][1]
        for seed in range(3):
            torch.manual_seed(seed)
            view = files.train_set[index][0]
            torch.manual_seed(seed)
            assert torch.equal(cached.train_set[index][0], view)
    assert cached.transform == files.transform


def test_train_views_crop_at_random_and_the_flip_mirrors(tmp_path, samples):
    torch.manual_seed(0)
    cached = decoded_image_domain("d", ["0", "1"], samples, IMAGENET, 32, tmp_path / "cache")
    views = {tuple(cached.train_set[0][0].flatten()[:50].tolist()) for _ in range(8)}
    assert cached.train_set[0][0].shape == (3, 32, 32) and len(views) > 1
    # crop = resize: a square image is only flipped or not, at random
    flip_only = transform_profile("digits_cnn", augment="flip_crop")
    square = decoded_image_domain("d", ["0", "1"], samples, flip_only, 40, tmp_path / "cache")
    upright = square.eval_set[1][0]
    seen = [square.train_set[1][0] for _ in range(12)]
    mirrored = [torch.equal(view, upright.flip(-1)) for view in seen]
    assert all(mirror or torch.equal(view, upright) for view, mirror in zip(seen, mirrored, strict=True))
    assert 0 < sum(mirrored) < len(seen)
    assert not torch.equal(upright, upright.flip(-1))


def change(samples, capsys, cache: Path, decodes) -> str:
    """Open ``samples`` again; return the reason printed for rebuilding (and check that it rebuilt)."""
    before = len(decodes)
    open_cache("dom", samples, geometry(), cache)
    assert len(decodes) - before == len(samples)
    return capsys.readouterr().err


def test_a_stale_cache_is_rebuilt_saying_why(tmp_path, samples, decodes, capsys):
    cache = tmp_path / "cache"
    open_cache("dom", samples, geometry(), cache)
    capsys.readouterr()
    path = samples[1][0]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert f"1 file(s) changed size or modification time (first: {path})" in change(samples, capsys, cache, decodes)
    stat = path.stat()
    noise_image(path, (70, 64), seed=99)  # new pixels, and a new file size, under the same mtime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "changed size or modification time" in change(samples, capsys, cache, decodes)
    files = image_domain("d", ["0", "1"], samples, IMAGENET, 32)
    assert torch.equal(decoded_image_domain("dom", ["0", "1"], samples, IMAGENET, 32, cache).eval_set[1][0],
                       files.eval_set[1][0])
    added = [*samples, (noise_image(tmp_path / "images" / "new.jpg", (50, 50), 7), 0)]
    assert f"1 file(s) added, 0 removed (first: {added[-1][0]})" in change(added, capsys, cache, decodes)
    assert f"0 file(s) added, 3 removed (first: {samples[3][0]})" in change(samples[:3], capsys, cache, decodes)
    assert "another order" in change(samples[:3][::-1], capsys, cache, decodes)
    assert len(files_of(cache, ".pixels")) == 1  # the same domain's cache, updated


def test_a_damaged_cache_is_rebuilt_not_fatal(tmp_path, samples, decodes, capsys):
    cache = tmp_path / "cache"
    good = open_cache("dom", samples, geometry(), cache).image(3)
    [pixels], [manifest] = files_of(cache, ".pixels"), files_of(cache, ".json")
    pixels.write_bytes(pixels.read_bytes()[:100])
    assert "pixel file holds 100 bytes" in change(samples, capsys, cache, decodes)
    manifest.write_text(manifest.read_text().replace('"bytes": ', '"bytes": 1'))
    assert "shapes do not add up to its size" in change(samples, capsys, cache, decodes)
    manifest.write_text("{not json")
    assert "manifest is unreadable" in change(samples, capsys, cache, decodes)
    pixels.unlink()
    assert "pixel file is missing" in change(samples, capsys, cache, decodes)
    assert torch.equal(open_cache("dom", samples, geometry(), cache).image(3), good)
    assert not list(cache.glob("*.tmp*"))


def test_a_swapped_manifest_or_pixel_file_is_rebuilt_not_trusted(tmp_path, samples, decodes, capsys):
    cache = tmp_path / "cache"
    good = open_cache("dom", samples, geometry(), cache).image(0)
    assert good.shape == (3, 37, 42)
    [pixels], [manifest] = files_of(cache, ".pixels"), files_of(cache, ".json")
    capsys.readouterr()
    forged = json.loads(manifest.read_text())
    forged["files"][0][3:5] = [21, 74]  # as many bytes, a shape the resize cannot give: the views would be garbage
    manifest.write_text(json.dumps(forged))
    assert "its image shapes are not those of resize ('shorter', 37) (first: [21, 74])" in change(
        samples, capsys, cache, decodes)
    shutil.copy(pixels, tmp_path / "other.pixels")  # the same bytes in another file: not the one described
    os.replace(tmp_path / "other.pixels", pixels)
    assert "its manifest describes another pixel file" in change(samples, capsys, cache, decodes)
    if os.geteuid() == 0:  # another user's manifest put in place of ours
        os.chown(manifest, 12345, 12345)
        assert "belong to different users (one was replaced)" in change(samples, capsys, cache, decodes)
    assert torch.equal(open_cache("dom", samples, geometry(), cache).image(0), good)


def dead_pid() -> int:
    """A process id no process has: above the kernel's largest."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_a_killed_builds_temporary_files_are_removed_by_the_next_open(tmp_path, samples, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    host, dead = socket.gethostname(), dead_pid()
    orphans = [cache / f"other-x32-0123.pixels.tmp{dead}@{host}", cache / f"dom-r37-abc.json.tmp{dead}"]
    kept = [cache / f"live-x32-0123.pixels.tmp{os.getpid()}@{host}",  # a build in progress
            cache / f"far-x32-0123.pixels.tmp{dead}@another-host"]  # another host's: its pid says nothing here
    for path in orphans + kept:
        path.write_bytes(b"partial")
    open_cache("dom", samples, geometry(), cache)
    err = capsys.readouterr().err
    assert sorted(cache.glob("*.tmp*")) == sorted(kept)
    assert all(f"decoded-image cache: removed {path}, left by a killed build" in err for path in orphans)


def build_slowly(samples, cache: Path) -> None:
    """Build the cache, decoding one image a second (to be killed mid-build)."""
    original = decoded.load_rgb

    def slow_load(path):
        time.sleep(1.0)
        return original(path)

    decoded.load_rgb = slow_load
    open_cache("dom", samples, geometry(), cache)


@pytest.mark.integration
def test_a_sigkilled_build_leaves_no_temporary_file_after_the_next_open(tmp_path, samples):
    cache = tmp_path / "cache"
    child = multiprocessing.get_context("fork").Process(target=build_slowly, args=(samples, cache))
    child.start()
    deadline = time.monotonic() + 30
    while not list(cache.glob("*.pixels.tmp*")):
        assert time.monotonic() < deadline and child.is_alive()
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    [leftover] = cache.glob("*.pixels.tmp*")
    assert leftover.name.endswith(f".tmp{child.pid}@{socket.gethostname()}")
    images = open_cache("dom", samples, geometry(), cache)
    assert not list(cache.glob("*.tmp*")) and len(images) == len(samples)


def build_in_child(samples, cache: Path, log: Path, barrier) -> None:
    """Open the cache the moment the other process does; log each build; decode slowly so the two overlap."""
    original_build, original_load = decoded.build_cache, decoded.load_rgb

    def logged_build(*args, **kwargs):
        with log.open("a") as handle:
            handle.write(f"{os.getpid()}\n")
        original_build(*args, **kwargs)

    def slow_load(path):
        import time

        time.sleep(0.05)
        return original_load(path)

    decoded.build_cache, decoded.load_rgb = logged_build, slow_load
    barrier.wait()
    images = open_cache("dom", samples, geometry(), cache)
    np.save(log.with_name(f"pixels-{os.getpid()}.npy"), torch.cat([images.image(i).flatten()
                                                                     for i in range(len(images))]).numpy())


@pytest.mark.integration
def test_processes_starting_together_build_one_cache(tmp_path, samples, decodes):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    log = tmp_path / "builds.log"
    children = [context.Process(target=build_in_child, args=(samples, tmp_path / "cache", log, barrier))
                for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert len(log.read_text().splitlines()) == 1
    first, second = (np.load(path) for path in sorted(tmp_path.glob("pixels-*.npy")))
    assert np.array_equal(first, second)
    open_cache("dom", samples, geometry(), tmp_path / "cache")
    assert decodes == []  # the cache the children left is complete and current


def test_a_worker_copy_maps_the_file_and_refuses_a_rebuilt_one(tmp_path, samples):
    domain = decoded_image_domain("dom", ["0", "1"], samples, IMAGENET, 32, tmp_path / "cache")
    data = pickle.dumps(domain.eval_set)
    assert len(data) < 10_000  # the pixels are mapped, not carried
    assert torch.equal(pickle.loads(data)[2][0], domain.eval_set[2][0])
    before = domain.eval_set[2][0]
    os.utime(samples[0][0], ns=(0, 10**9))
    open_cache("dom", samples, geometry(), tmp_path / "cache")  # another process would rebuild it so
    assert torch.equal(domain.eval_set[2][0], before)  # this process still maps the file it opened
    with pytest.raises(SRDCInputError, match="was rebuilt while this run read it"):
        pickle.loads(data)[2]


def test_where_the_cache_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("SRDC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("off", tmp_path) is None
    assert cache_folder("auto", tmp_path / "data") == tmp_path / "data" / ".srdc-cache"
    assert cache_folder("auto", None) == tmp_path / "xdg" / "srdc"
    assert cache_folder(str(tmp_path / "mine"), tmp_path) == tmp_path / "mine"
    read_only = tmp_path / "read_only"  # a data root this process may not write to: the user's cache instead
    read_only.mkdir()
    read_only.chmod(0o555)
    if not os.access(read_only, os.W_OK):  # root may write anywhere
        assert cache_folder("auto", read_only) == tmp_path / "xdg" / "srdc"
    (tmp_path / "a_file").write_text("")  # a data root that cannot be made
    assert cache_folder("auto", tmp_path / "a_file" / "data") == tmp_path / "xdg" / "srdc"
    monkeypatch.setenv("SRDC_CACHE_DIR", str(tmp_path / "env"))
    assert cache_folder("auto", tmp_path / "data") == tmp_path / "env"


def test_runs_read_the_cache_by_default_and_the_files_when_it_is_off(tmp_path, monkeypatch, decodes):
    for side in ("src", "tgt"):
        make_class_folders(tmp_path / side, TINY_CLASSES, (2, 1, 1))
    monkeypatch.setenv("SRDC_CACHE_DIR", str(tmp_path / "cache"))
    base = {"dataset": "folder", "source": str(tmp_path / "src"), "target": str(tmp_path / "tgt"), "image_size": 32}
    task = load_task(SRDCConfig(**base))
    assert isinstance(task.source.train_set, DecodedDataset) and len(decodes) == 8
    assert task.source.train_set[0][0].shape == (3, 32, 32)
    assert len(files_of(tmp_path / "cache", ".pixels")) == 2
    assert not isinstance(load_task(SRDCConfig(**base, image_cache="off")).source.train_set, DecodedDataset)


def test_an_unwritable_cache_folder_is_one_error_naming_it(tmp_path, samples):
    (tmp_path / "a_file").write_text("")
    message = r"cannot write the decoded-image cache in .*a_file/cache .*SRDC_CACHE_DIR"
    with pytest.raises(SRDCInputError, match=message):
        open_cache("dom", samples, geometry(), tmp_path / "a_file" / "cache")


def test_srdc_data_cache_builds_every_domain_ahead(tiny, tmp_path, monkeypatch, capsys, decodes):
    monkeypatch.delenv("SRDC_CACHE_DIR", raising=False)
    assert main(["cache", tiny.name, "--root", str(tmp_path), "--image-size", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["amazon", "webcam"] and len(decodes) == 14
    assert f"7 images, 0.0 MiB at {tmp_path / '.srdc-cache'}/amazon-r37-" in out[0]
    load_task(SRDCConfig(dataset=tiny.name, task="A->W", data_root=str(tmp_path), image_size=32, image_cache="auto"))
    assert len(decodes) == 14  # the run found both caches current
    assert main(["cache", "folder", "--root", str(tmp_path)]) == 2
    assert "name them with --domain" in capsys.readouterr().err
