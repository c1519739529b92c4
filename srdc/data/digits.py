"""Digits: MNIST and USPS, 3-channel, resized to one common size, held in memory.

Users download with torchvision::

    python -c "import torchvision as tv; tv.datasets.MNIST('DATA/digits', download=True);
               tv.datasets.USPS('DATA/digits/usps', download=True)"

MNIST is read from its IDX files (``.gz`` or not) in ``DATA/digits/mnist/`` or torchvision's
``DATA/digits/MNIST/raw/``; the training split (60,000) is used when present, else the official test split
(10,000). USPS is read by torchvision's reader from ``DATA/digits/usps/usps.bz2`` (7,291 training images).

``mnist_photo`` (alias ``MM``) is an MNIST-M-style domain built from the same MNIST images by the published
recipe (Ganin et al., JMLR 2016, Section 5.2.2): each digit is binarised (pixel > 0) and difference-blended with a
random patch of a random colour photo, ``|patch - digit|`` per channel. The photos are scikit-learn's two bundled
sample images (``china.jpg``, ``flower.jpg``; Ganin et al. used BSDS500), the patches are drawn from a fixed seed
(:data:`PHOTO_SEED`), so the domain is the same in every run and on every machine; it is built in memory in
about a second and not cached.

A domain's size is told from the files' headers without reading the images (:func:`describe_domain`; torch is
imported by the functions that build tensors).
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from srdc.config import SRDCConfig
from srdc.data.base import DatasetSpec, Domain, DomainFacts, register, tensor_domain
from srdc.data.embedded import blend_with_photos
from srdc.errors import SRDCInputError

if TYPE_CHECKING:
    import torch

CLASSES = [str(d) for d in range(10)]
DEFAULT_SIZE = 28
PHOTO_SEED = 0
USPS_TRAIN_IMAGES = 7291  # USPS's training split (torchvision's USPS(train=True))
DOWNLOAD_HINT = (
    "download it with: python -c \"import torchvision as tv; tv.datasets.MNIST('{root}/digits', download=True); "
    "tv.datasets.USPS('{root}/digits/usps', download=True)\""
)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzip-compressed or not, into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise SRDCInputError(
            f"{path} is not an unsigned-byte IDX file (corrupt download?); delete it and download again"
        )
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise SRDCInputError(f"{path} holds {data.size} values, its header says {shape}: truncated; download again")
    return data.reshape(shape)


def idx_count(path: Path) -> int:
    """The items an IDX file holds (its first dimension), from its header alone."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        header = handle.read(8)
    if len(header) < 8 or header[:3] != b"\x00\x00\x08":
        raise SRDCInputError(
            f"{path} is not an unsigned-byte IDX file (corrupt download?); delete it and download again"
        )
    return int.from_bytes(header[4:8], "big")


def _find_idx(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


_TEST_SPLIT_NOTED: set[Path] = set()  # the folders whose missing training split was noted (once a process)


def mnist_files(root: Path) -> tuple[Path, Path]:
    """MNIST's images and labels files: the training split if present, else the test split."""
    folders = [root / "digits" / "mnist", root / "digits" / "MNIST" / "raw"]
    for prefix in ("train", "t10k"):
        images = _find_idx(folders, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(folders, f"{prefix}-labels-idx1-ubyte")
        if images and labels:
            if prefix == "t10k" and folders[0] not in _TEST_SPLIT_NOTED:
                _TEST_SPLIT_NOTED.add(folders[0])
                print(f"note: MNIST training split not found under {folders[0]}; using the 10,000-image test split",
                      file=sys.stderr)
            return images, labels
    raise SRDCInputError(
        f"MNIST not found: looked for train-/t10k-images-idx3-ubyte[.gz] in {folders[0]} and {folders[1]}; "
        + DOWNLOAD_HINT.format(root=root)
    )


def load_mnist(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (N x 28 x 28 uint8) and labels: the training split if present, else the test split."""
    images, labels = mnist_files(root)
    return read_idx(images), read_idx(labels).astype(np.int64)


def usps_file(root: Path) -> Path:
    """USPS's training file (``usps.bz2``), which must exist."""
    path = root / "digits" / "usps" / "usps.bz2"
    if not path.is_file():
        raise SRDCInputError(f"USPS not found: expected {path}; " + DOWNLOAD_HINT.format(root=root))
    return path


def load_usps(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """USPS training images (7291 x 16 x 16 uint8) and labels, through torchvision's reader."""
    folder = usps_file(root).parent
    import torchvision  # here, not at the top: MNIST and the embedded digits need no torchvision

    dataset = torchvision.datasets.USPS(str(folder), train=True)
    return np.asarray(dataset.data, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64)


def to_tensor_images(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 N x H x W grey images -> float N x 3 x size x size in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()


def mnist_photo_images(images: np.ndarray, size: int, seed: int = PHOTO_SEED) -> torch.Tensor:
    """MNIST-M style (Ganin et al. 2016): uint8 N x H x W digits binarised (> 0), ``|patch - digit|`` with a random
    colour photo patch per digit (:func:`srdc.data.embedded.blend_with_photos`), then resized to ``size``:
    float N x 3 x size x size in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    digits = torch.from_numpy((images > 0).astype(np.float32)).unsqueeze(1)
    x = blend_with_photos(digits, seed)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((x - 0.5) / 0.5).contiguous()


_LOADERS = {"mnist": load_mnist, "usps": load_usps, "mnist_photo": load_mnist}


def describe_domain(domain: str, config: SRDCConfig) -> DomainFacts:
    """A domain's size from MNIST's IDX headers (images and labels must agree), or USPS's file present."""
    root = Path(config.data_root)
    if domain == "usps":
        usps_file(root)
        count = USPS_TRAIN_IMAGES
    else:
        images, labels = mnist_files(root)
        count = idx_count(images)
        if idx_count(labels) != count:
            raise SRDCInputError(f"{images} holds {count} images but {labels} {idx_count(labels)} labels; "
                                 "download MNIST again")
    return DomainFacts(count, len(CLASSES), side=config.image_size or DEFAULT_SIZE)


def load_domain(domain: str, config: SRDCConfig) -> Domain:
    import torch

    images, labels = _LOADERS[domain](Path(config.data_root))
    size = config.image_size or DEFAULT_SIZE
    inputs = mnist_photo_images(images, size) if domain == "mnist_photo" else to_tensor_images(images, size)
    return tensor_domain(domain, CLASSES, inputs, torch.from_numpy(labels))


SPEC = register(
    DatasetSpec(
        name="digits",
        load_domain=load_domain,
        describe_domain=describe_domain,
        domains=("mnist", "usps", "mnist_photo"),
        aliases={"M": "mnist", "U": "usps", "MM": "mnist_photo"},
        default_backbone="digits_cnn",
        description="MNIST, USPS and MNIST-M-style mnist_photo (10 classes), 3-channel 28x28, in memory",
    )
)
