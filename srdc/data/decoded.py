"""Decode once: a cache of an image domain's decoded, resized pixels, memory-mapped and shared by every run on a node.

Without it (``--image_cache off``) an image is decoded and resized at every access, by both views in every epoch.
With it (``auto``, the default, or a folder), the first run to need a domain decodes each image once through the
resize step of its transform profile (:func:`srdc.data.images.resize_geometry`: the shorter side to ``resize``, or
exactly ``crop x crop`` for ``augment`` ``none``) and stores the result; every run after that (and every DataLoader
worker, and the other trials of a study on the same node) maps the same file read-only, so the operating system keeps
one copy of its pages in memory. The crop and flip then run on uint8 tensors and the normalisation turns the crop into
floats (:func:`srdc.data.images.resized_tensor_transform`, on the CPU, where the DataLoader runs): the same torchvision
steps drawing the same random numbers from torch's generator, and the same float operations, so a view read from the
cache is the view decoded from the file, float for float, and a seeded run is the same run with the cache or without
it.

A cache is two files in the cache folder, named after the domain, the resize geometry and a hash of both and of the
images' common folder: ``NAME-GEOMETRY-HASH.pixels`` (every resized image as uint8 ``3 x H x W``, one after the other:
the whole image, so random crops reach its margins as they do from the file) and ``NAME-GEOMETRY-HASH.json`` (the
manifest: each source file's path, size, mtime and resized height and width, and the identity of the pixel file it
describes: its inode and mtime). It is rebuilt, with one line saying why, when a source file's size or mtime changed,
files were added, removed or reordered, the cache files are unreadable or truncated, or the manifest does not
describe the pixel file beside it (the two owned by different users: one swapped in by another user of a shared
cache; another pixel file's inode or mtime; shapes that resizing at the geometry cannot give). A manifest is not
signed: whoever may write the cache folder is trusted with the pixels. Builds are atomic (temporary files
``NAME.pixels.tmpPID@HOST``, then rename; the manifest is written last) and a lock file (``.lock``, ``flock``) lets
one process build while others starting at the same time wait for it; a build's temporary files left by a killed
process (same host, no process with that pid) are removed by the next process that opens a cache in the folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from srdc.config import SRDCConfig
from srdc.data.base import Domain
from srdc.data.images import (
    Sample,
    TransformProfile,
    config_profile,
    image_domain,
    load_rgb,
    resize_geometry,
    resize_step,
    resized_tensor_transform,
)
from srdc.errors import SRDCInputError

CACHE_ENV = "SRDC_CACHE_DIR"
CACHE_FOLDER = ".srdc-cache"  # under a benchmark's data root
MANIFEST_FORMAT = 2  # 2: the pixel file's inode and mtime
# a build's temporary file: NAME.pixels.tmpPID@HOST (before the host was named: NAME.pixels.tmpPID, this host's)
TEMPORARY = re.compile(r"\.tmp(\d+)(?:@(.+))?$")
Geometry = tuple[str, int]
FileStat = list[Any]  # [absolute path, size in bytes, mtime in ns]


# -- where --------------------------------------------------------------------------------------------------
def cache_folder(setting: str, data_root: Path | None) -> Path | None:
    """The folder of ``--image_cache`` (``None``: off). ``auto``: ``$SRDC_CACHE_DIR`` if set, else
    ``DATA_ROOT/.srdc-cache`` for a benchmark whose data root this process may write to, else
    ``$XDG_CACHE_HOME/srdc`` (``~/.cache/srdc``: your own image lists and folders, a read-only data root); any other
    value is the folder itself."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if data_root is not None and writable(data_root / CACHE_FOLDER):
        return data_root / CACHE_FOLDER
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srdc"


def writable(folder: Path) -> bool:
    """Whether this process may write in ``folder``, or create it (its nearest existing ancestor is writable)."""
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    return existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def cache_stem(name: str, samples: list[Sample], geometry: Geometry) -> str:
    """``NAME-GEOMETRY-HASH``: one cache per domain (its name and the images' common folder) and resize geometry;
    the files themselves are checked by the manifest, so adding an image updates this cache, not another."""
    common = os.path.commonpath([os.path.abspath(path) for path, _ in samples])
    digest = hashlib.sha256(json.dumps([name, common, list(geometry)]).encode()).hexdigest()[:12]
    label = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem or name)[:40]  # no dot: the suffixes are the files'
    mode, size = geometry
    return f"{label}-{'r' if mode == 'shorter' else 'x'}{size}-{digest}"


def source_stats(samples: list[Sample]) -> list[FileStat]:
    """``[path, size, mtime_ns]`` of every sample's file, in order; a file that vanished is an error naming it."""
    stats = []
    for path, _ in samples:
        try:
            info = os.stat(path)
        except OSError as error:
            raise SRDCInputError(f"cannot read image {path} ({error.strerror or error}); restore the file or "
                                 "remove it from the domain") from None
        stats.append([os.path.abspath(path), info.st_size, info.st_mtime_ns])
    return stats


# -- is it current? -----------------------------------------------------------------------------------------
@dataclass
class Manifest:
    """A cache's ``.json``: the source files as they were when it was built, each image's resized ``[H, W]``, the
    pixel file's size and ``[inode, mtime_ns]``, and the resize geometry."""

    files: list[FileStat]
    shapes: np.ndarray
    nbytes: int
    geometry: Geometry
    pixels: list[int]

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """The manifest at ``path``; anything unreadable or inconsistent raises ``ValueError``."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data["format"] != MANIFEST_FORMAT:
                raise ValueError(f"format {data['format']}, not {MANIFEST_FORMAT}")
            files = [entry[:3] for entry in data["files"]]
            shapes = np.array([entry[3:5] for entry in data["files"]], dtype=np.int64).reshape(-1, 2)
            manifest = cls(files, shapes, int(data["bytes"]), (data["geometry"][0], int(data["geometry"][1])),
                           [int(value) for value in data["pixels"]])
        except (OSError, KeyError, TypeError, IndexError) as error:
            raise ValueError(f"{type(error).__name__}: {error}") from None
        if int((3 * shapes[:, 0] * shapes[:, 1]).sum()) != manifest.nbytes or len(files) != len(shapes):
            raise ValueError("its image shapes do not add up to its size")
        return manifest


def _files_problem(recorded: list[FileStat], current: list[FileStat]) -> str | None:
    """Why the manifest's files are not the current ones (added, removed, reordered, changed), or ``None``."""
    was = {entry[0]: entry[1:3] for entry in recorded}
    now = {entry[0]: entry[1:3] for entry in current}
    added = [path for path in now if path not in was]
    removed = [path for path in was if path not in now]
    if added or removed:
        return f"{len(added)} file(s) added, {len(removed)} removed (first: {(added or removed)[0]})"
    if [entry[0] for entry in recorded] != [entry[0] for entry in current]:
        return "the files are in another order"
    changed = [path for path, stat in now.items() if was[path] != stat]
    return f"{len(changed)} file(s) changed size or modification time (first: {changed[0]})" if changed else None


def pixel_identity(path: Path) -> list[int]:
    """``[inode, mtime_ns]`` of the pixel file ``path``: kept by the rename that publishes a build, changed by any
    other file put in its place."""
    info = path.stat()
    return [info.st_ino, info.st_mtime_ns]


def _shapes_problem(shapes: np.ndarray, geometry: Geometry) -> str | None:
    """Why the manifest's image shapes cannot come from resizing at ``geometry`` (``None``: they can)."""
    mode, size = geometry
    fits = (shapes == size).all(axis=1) if mode == "exact" else shapes.min(axis=1) == size
    if not fits.all():
        return f"its image shapes are not those of resize {geometry} (first: {shapes[~fits][0].tolist()})"
    return None


def stale_reason(manifest_path: Path, pixels_path: Path, geometry: Geometry, current: list[FileStat]) -> str | None:
    """Why the cache at these paths cannot be used for ``current`` files at ``geometry`` (``None``: it can)."""
    if not manifest_path.is_file():
        return "not built yet"
    try:
        manifest = Manifest.read(manifest_path)
    except ValueError as error:
        return f"its manifest is unreadable ({error})"
    if manifest.geometry != geometry:
        return f"it was built for another resize {manifest.geometry}"
    if not pixels_path.is_file():
        return "its pixel file is missing"
    if pixels_path.stat().st_size != manifest.nbytes:
        return f"its pixel file holds {pixels_path.stat().st_size} bytes, the manifest says {manifest.nbytes}"
    if manifest_path.stat().st_uid != pixels_path.stat().st_uid:
        return "its manifest and pixel file belong to different users (one was replaced)"
    if pixel_identity(pixels_path) != manifest.pixels:
        return "its manifest describes another pixel file (replaced or copied from elsewhere)"
    return _shapes_problem(manifest.shapes, geometry) or _files_problem(manifest.files, current)


# -- build --------------------------------------------------------------------------------------------------
def _write_pixels(samples: list[Sample], geometry: Geometry, out: Path, progress: bool | None) -> list[list[int]]:
    """Decode and resize every image into ``out`` (uint8 ``3 x H x W`` each, in order); returns their ``[H, W]``."""
    from tqdm import tqdm

    resize = resize_step(geometry)
    shapes = []
    with out.open("wb") as handle:
        for path, _ in tqdm(samples, desc="decoding", unit="image", disable=None if progress is None else not progress):
            pixels = np.asarray(resize(load_rgb(path)), dtype=np.uint8)
            handle.write(np.ascontiguousarray(pixels.transpose(2, 0, 1)).data)
            shapes.append(list(pixels.shape[:2]))
    return shapes


def build_cache(samples: list[Sample], geometry: Geometry, stem: Path, files: list[FileStat],
                progress: bool | None = None) -> None:
    """Write ``stem.pixels`` and then ``stem.json`` for ``samples`` whose files are ``files`` (stat before reading,
    so a file changed while building makes the next open rebuild). The old manifest goes first: an interrupted
    build leaves no manifest, so the next open rebuilds."""
    pixels, manifest = stem.with_suffix(".pixels"), stem.with_suffix(".json")
    manifest.unlink(missing_ok=True)
    suffix = f".tmp{os.getpid()}@{socket.gethostname()}"
    tmp_pixels, tmp_manifest = (path.with_name(f"{path.name}{suffix}") for path in (pixels, manifest))
    try:
        shapes = _write_pixels(samples, geometry, tmp_pixels, progress)
        nbytes = tmp_pixels.stat().st_size
        entries = [[*stat, *shape] for stat, shape in zip(files, shapes, strict=True)]
        tmp_manifest.write_text(json.dumps({"format": MANIFEST_FORMAT, "geometry": list(geometry), "bytes": nbytes,
                                            "pixels": pixel_identity(tmp_pixels), "files": entries}),
                                encoding="utf-8")
        os.replace(tmp_pixels, pixels)
        os.replace(tmp_manifest, manifest)
    except OSError as error:
        raise _unwritable(stem.parent, error) from None
    finally:
        tmp_pixels.unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)


def _unwritable(folder: Path, error: OSError) -> SRDCInputError:
    return SRDCInputError(
        f"cannot write the decoded-image cache in {folder} ({error.strerror or error}); pass --image_cache DIR "
        f"(a writable folder with room), set {CACHE_ENV}, or --image_cache off"
    )


def _pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path) -> list[Path]:
    """Remove the builds' temporary files in ``folder`` whose builder is gone (this host, no process with its
    pid: a killed build); returns them. Another host's, or a live process's, are left."""
    removed = []
    for path in folder.glob("*.tmp*"):
        named = TEMPORARY.search(path.name)
        if named is None or named.group(2) not in (None, socket.gethostname()) or _pid_alive(int(named.group(1))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold ``lock`` exclusively (``flock``): one process checks and builds a cache at a time; the others wait."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as error:
        raise _unwritable(lock.parent, error) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"decoded-image cache: waiting for another process to check or build {lock.with_suffix('')}",
                  file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- read ---------------------------------------------------------------------------------------------------
class DecodedImages:
    """The resized images of a built cache: ``image(i)`` is image ``i`` as a uint8 ``3 x H x W`` tensor. The pixel
    file is mapped read-only; a pickled copy (a DataLoader worker's) maps it again rather than carrying the pixels,
    and refuses a file another process has rebuilt since (the source images changed under the run)."""

    def __init__(self, pixels: Path, shapes: np.ndarray) -> None:
        self.path = pixels
        self.shapes = shapes
        sizes = 3 * shapes[:, 0] * shapes[:, 1]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.inode = pixels.stat().st_ino
        self._mapped: np.ndarray | None = self._map()

    def _map(self) -> np.ndarray:
        with self.path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_ino != self.inode:
                raise SRDCInputError(f"the decoded-image cache {self.path} was rebuilt while this run read it (its "
                                     "source images changed); start the run again")
            return np.memmap(handle, dtype=np.uint8, mode="r", shape=(self.nbytes,))

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1])

    def image(self, index: int) -> torch.Tensor:
        if self._mapped is None:
            self._mapped = self._map()
        height, width = (int(v) for v in self.shapes[index])
        start, stop = self.offsets[index], self.offsets[index + 1]
        return torch.from_numpy(np.array(self._mapped[start:stop])).view(3, height, width)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mapped": None}


def open_cache(name: str, samples: list[Sample], geometry: Geometry, folder: Path,
               progress: bool | None = None) -> DecodedImages:
    """The cache of ``samples`` at ``geometry`` in ``folder``, built first (or rebuilt, saying why) when it is
    missing, stale or damaged. ``progress``: a bar while building (``None``: on a terminal only)."""
    stem = folder / cache_stem(name, samples, geometry)
    pixels, manifest = stem.with_suffix(".pixels"), stem.with_suffix(".json")
    with _locked(stem.with_suffix(".lock")):
        for orphan in remove_orphans(folder):
            print(f"decoded-image cache: removed {orphan}, left by a killed build", file=sys.stderr)
        files = source_stats(samples)
        reason = stale_reason(manifest, pixels, geometry, files)
        if reason is not None:
            start = time.perf_counter()
            print(f"decoded-image cache: building {pixels} for {name}, {len(samples)} images ({reason})",
                  file=sys.stderr)
            build_cache(samples, geometry, stem, files, progress)
            print(f"decoded-image cache: {pixels} built, {pixels.stat().st_size / 2**20:.1f} MiB in "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        return DecodedImages(pixels, Manifest.read(manifest).shapes)


class DecodedDataset(Dataset):
    """``(view(image), label)`` for each sample, the image read from a :class:`DecodedImages` (``samples``, as
    :class:`srdc.data.images.ImageDataset`'s, for the tools that write lists)."""

    def __init__(self, images: DecodedImages, samples: list[Sample], view: Any) -> None:
        self.images = images
        self.samples = samples
        self.view = view

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.view(self.images.image(index)), self.samples[index][1]


def decoded_image_domain(name: str, classes: list[str], samples: list[Sample], profile: TransformProfile,
                         image_size: int | None, folder: Path, progress: bool | None = None) -> Domain:
    """:func:`srdc.data.images.image_domain`, its images read from the cache in ``folder`` (built on first use)."""
    images = open_cache(name, samples, resize_geometry(profile, image_size), folder, progress)
    return Domain(
        name=name,
        classes=classes,
        labels=np.array([label for _, label in samples], dtype=np.int64),
        train_set=DecodedDataset(images, samples, resized_tensor_transform(profile, image_size, train=True)),
        eval_set=DecodedDataset(images, samples, resized_tensor_transform(profile, image_size, train=False)),
        transform=profile.describe(image_size),
    )


def load_image_domain(name: str, classes: list[str], samples: list[Sample], config: SRDCConfig,
                      data_root: Path | None, default_backbone: str = "resnet50") -> Domain:
    """The image domain of a run: read through ``config``'s transform profile (``default_backbone``: what its
    ``auto`` backbone is), from the decoded-image cache when ``config.image_cache`` is not ``off`` (``data_root``: a
    benchmark's, for ``auto``), else from the files."""
    profile = config_profile(config, default_backbone)
    folder = cache_folder(config.image_cache, data_root)
    if folder is None:
        return image_domain(name, classes, samples, profile, config.image_size)
    return decoded_image_domain(name, classes, samples, profile, config.image_size, folder)
