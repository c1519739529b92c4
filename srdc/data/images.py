"""Image domains on disk: the two layouts, the paper's transforms, and the Dataset that reads the files.

Layouts:

* class folders: ``DOMAIN/CLASS/*.jpg``; the class index is the position of the folder name in sorted order
  (Python's ``sorted``, as torchvision's ``ImageFolder``: upper case before lower case). Files are taken
  recursively under each class folder, in sorted path order; hidden files and folders are skipped.
* image lists: one ``PATH LABEL`` per line. The label is the last whitespace-separated token, so paths may
  contain spaces. Relative paths are relative to the list file's folder. A prefix rewrite ``OLD=NEW`` turns
  lists written with absolute paths on another machine into paths here.

Transforms come in a profile per backbone family (:data:`PROFILES`). The ResNets' is the paper's (and the released
code's): train ``Resize(256)`` (shorter side), ``RandomCrop(224)``, ``RandomHorizontalFlip``, ImageNet
normalisation; eval ``Resize(256)``, ``CenterCrop(224)``, normalisation; with ``image_size`` set the crop is
``image_size`` and the resize ``round(image_size * 256 / 224)``. The digits CNN's: resize to exactly
``image_size`` (default 28), no crop, no flip (a mirrored digit is another symbol), mean/std 0.5.
``--augment``/``--normalize`` override a profile's choices.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from srdc.config import SRDCConfig
from srdc.data.base import Domain
from srdc.errors import SRDCInputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_RESIZE = 256
PAPER_CROP = 224
LABEL_PATTERN = re.compile(r"-?[0-9]+")
MAX_LABEL = 2**31 - 1

Sample = tuple[Path, int]


# -- transforms ----------------------------------------------------------------------------------------------
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [0, 1] -> [-1, 1], as the digits datasets (srdc.data.digits)
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
DIGITS_SIZE = 28  # the digits CNN's input when --image_size is not given (as srdc.data.digits)


@dataclass(frozen=True)
class TransformProfile:
    """How images are prepared for a backbone family. ``augment``: ``flip_crop`` (resize the shorter side, random
    crop, horizontal flip: the paper's), ``crop`` (the same without the flip) or ``none`` (resize to exactly the
    crop size); evaluation always resizes and centre-crops (``none``: resizes only). ``normalize``: a key of
    :data:`NORMALIZATIONS`. ``resize_ratio``: resize / crop (the paper's 256 / 224)."""

    name: str
    augment: str
    normalize: str
    resize_ratio: float
    default_size: int

    def sizes(self, image_size: int | None) -> tuple[int, int]:
        """``(resize, crop)`` for ``image_size`` (``None``: the profile's default crop)."""
        crop = image_size or self.default_size
        if crop < 1:
            raise SRDCInputError(f"image_size must be >= 1, got {crop}")
        return (crop if self.augment == "none" else round(crop * self.resize_ratio)), crop

    def describe(self, image_size: int | None) -> str:
        """One line naming every step, e.g. for a run's summary."""
        resize, crop = self.sizes(image_size)
        steps = {"flip_crop": f"Resize({resize}) RandomCrop({crop}) RandomHorizontalFlip",
                 "crop": f"Resize({resize}) RandomCrop({crop})", "none": f"Resize({crop}x{crop})"}[self.augment]
        evaluation = f"Resize({crop}x{crop})" if self.augment == "none" else f"Resize({resize}) CenterCrop({crop})"
        return (f"{self.name}: train {steps}, eval {evaluation}, normalize {self.normalize} "
                f"{NORMALIZATIONS[self.normalize][0]}/{NORMALIZATIONS[self.normalize][1]}")


# backbone family -> profile: ImageNet style for the ResNets (the paper's), digits style for the digits CNN
PROFILES = {
    "imagenet": TransformProfile("imagenet", "flip_crop", "imagenet", PAPER_RESIZE / PAPER_CROP, PAPER_CROP),
    "digits": TransformProfile("digits", "none", "half", 1.0, DIGITS_SIZE),
}


def transform_profile(backbone: str, augment: str = "auto", normalize: str = "auto") -> TransformProfile:
    """The profile of ``backbone``'s family with ``--augment``/``--normalize`` applied (``auto``: the family's)."""
    profile = PROFILES["digits" if backbone.startswith("digits") else "imagenet"]
    changes = {key: value for key, value in (("augment", augment), ("normalize", normalize)) if value != "auto"}
    if not changes:
        return profile
    return dataclasses.replace(profile, name=f"{profile.name}+{'+'.join(changes.values())}", **changes)


def config_profile(config: SRDCConfig, default_backbone: str = "resnet50") -> TransformProfile:
    """The profile of a run: its backbone's (``auto``: the dataset's ``default_backbone``), its overrides."""
    backbone = default_backbone if config.backbone == "auto" else config.backbone
    return transform_profile(backbone, config.augment, config.normalize)


def resize_geometry(profile: TransformProfile, image_size: int | None) -> tuple[str, int]:
    """The resize step of both views: ``("shorter", resize)`` (the shorter side to ``resize``, aspect kept) or, for
    ``augment`` ``none``, ``("exact", crop)`` (to ``crop x crop``). The decoded-image cache stores its output."""
    resize, crop = profile.sizes(image_size)
    return ("exact", crop) if profile.augment == "none" else ("shorter", resize)


def resize_step(geometry: tuple[str, int]) -> Callable:
    """The torchvision ``Resize`` of a :func:`resize_geometry` (on PIL images: PIL's antialiased bilinear)."""
    from torchvision import transforms  # here, not at the top: in-memory datasets need no torchvision

    mode, size = geometry
    return transforms.Resize((size, size) if mode == "exact" else size)


def view_steps(profile: TransformProfile, image_size: int | None, train: bool) -> list[Callable]:
    """The steps of a view after the resize: train random crop (+ flip), eval centre crop (``none``: nothing).
    They take PIL images or uint8 tensors alike and draw the same random numbers from torch's generator."""
    from torchvision import transforms

    crop = profile.sizes(image_size)[1]
    if profile.augment == "none":
        return []
    if not train:
        return [transforms.CenterCrop(crop)]
    flip = [transforms.RandomHorizontalFlip()] if profile.augment == "flip_crop" else []
    return [transforms.RandomCrop(crop), *flip]


def _normalize(profile: TransformProfile) -> Callable:
    from torchvision import transforms

    return transforms.Normalize(*NORMALIZATIONS[profile.normalize])


def _pil_view(profile: TransformProfile, image_size: int | None, train: bool) -> Callable:
    from torchvision import transforms

    return transforms.Compose([resize_step(resize_geometry(profile, image_size)),
                               *view_steps(profile, image_size, train), transforms.ToTensor(), _normalize(profile)])


def train_transform(profile: TransformProfile, image_size: int | None) -> Callable:
    """The training view of a PIL image: see :class:`TransformProfile`."""
    return _pil_view(profile, image_size, train=True)


def eval_transform(profile: TransformProfile, image_size: int | None) -> Callable:
    """The evaluation view of a PIL image: resize and centre crop (``augment`` ``none``: resize to the crop size)."""
    return _pil_view(profile, image_size, train=False)


class ScaleNormalize:
    """A uint8 ``3 x H x W`` tensor to float: ``/ 255`` then ``(x - mean) / std``, the operations of ``ToTensor`` and
    ``Normalize`` in their order (so the same floats), without their checks and constants made at every call."""

    def __init__(self, normalize: str) -> None:
        mean, std = NORMALIZATIONS[normalize]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.to(torch.float32).div_(255).sub_(self.mean).div_(self.std)


def resized_tensor_transform(profile: TransformProfile, image_size: int | None, train: bool) -> Callable:
    """A view of an image already resized by :func:`resize_step`, given as a uint8 ``3 x H x W`` tensor: the same
    crop/flip steps, then :class:`ScaleNormalize`: the same floats as the PIL view."""
    from torchvision import transforms

    return transforms.Compose([*view_steps(profile, image_size, train), ScaleNormalize(profile.normalize)])


# -- reading images ------------------------------------------------------------------------------------------
def load_rgb(path: Path) -> Image.Image:
    """The image at ``path`` as RGB; an unreadable or corrupt file raises ``SRDCInputError`` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise SRDCInputError(
            f"cannot read image {path}: {error}. Replace or remove the file (for a benchmark, "
            f"`srdc-data verify NAME --root DIR` checks the counts; download it again if it was damaged)"
        ) from None


class ImageDataset(Dataset):
    """``(transform(image), label)`` for each ``(path, label)`` sample, in order."""

    def __init__(self, samples: list[Sample], transform: Callable) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label


def image_domain(name: str, classes: list[str], samples: list[Sample], profile: TransformProfile,
                 image_size: int | None) -> Domain:
    """A :class:`Domain` reading ``samples`` from disk through the train and eval views of ``profile``."""
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return Domain(
        name=name,
        classes=classes,
        labels=labels,
        train_set=ImageDataset(samples, train_transform(profile, image_size)),
        eval_set=ImageDataset(samples, eval_transform(profile, image_size)),
        transform=profile.describe(image_size),
    )


# -- class folders -------------------------------------------------------------------------------------------
def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def class_folders(root: Path) -> list[str]:
    """The class folder names directly under ``root``, sorted (the class index order); hidden ones skipped."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found.extend(Path(directory) / f for f in files if is_image_file(Path(f)))
    return sorted(found)


def scan_class_folders(root: Path) -> tuple[list[str], list[Sample]]:
    """Class names (sorted) and ``(path, label)`` samples of a ``root/CLASS/*.jpg`` tree.

    No class folder, or a class folder without images, is an error naming the folder.
    """
    if not root.is_dir():
        raise SRDCInputError(f"folder {root} does not exist; expected the layout {root}/CLASS/*.jpg")
    classes = class_folders(root)
    if not classes:
        raise SRDCInputError(f"{root} holds no class folders; expected the layout {root}/CLASS/*.jpg")
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        images = _images_under(root / name)
        if not images:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise SRDCInputError(f"class folder {root / name} holds no images ({extensions}); add images or remove it")
        samples.extend((path, label) for path in images)
    return classes, samples


# -- image lists ---------------------------------------------------------------------------------------------
def parse_path_prefix(text: str) -> tuple[str, str]:
    """``"OLD=NEW"`` -> ``("OLD", "NEW")`` (split at the first ``=``); ``OLD`` must not be empty."""
    old, sep, new = text.partition("=")
    if not sep or not old:
        raise SRDCInputError(
            f"cannot read path prefix {text!r}: write it as OLD=NEW, "
            "e.g. --path_prefix /data/office31=/home/me/office31"
        )
    return old, new


def parse_list_line(line: str, where: str) -> tuple[str, int]:
    """``"some dir/img 1.jpg 3"`` -> ``("some dir/img 1.jpg", 3)``: the label is the last token, written in
    ASCII digits (no sign, no underscores)."""
    parts = line.strip().rsplit(maxsplit=1)
    if len(parts) != 2:
        raise SRDCInputError(f"{where}: expected 'PATH LABEL', got {line.strip()!r}")
    path, label_text = parts
    if not LABEL_PATTERN.fullmatch(label_text):
        raise SRDCInputError(
            f"{where}: label {label_text!r} is not an integer; each line is 'relative/path label' "
            "(the label is the last token, so paths may contain spaces)"
        )
    label = int(label_text)
    if label < 0:
        raise SRDCInputError(f"{where}: label {label} is negative; labels are class indices 0..K-1")
    if label > MAX_LABEL:
        raise SRDCInputError(f"{where}: label {label} is too large (at most {MAX_LABEL}); labels are class "
                             "indices 0..K-1")
    return path, label


def rewrite_path(raw: str, prefix: tuple[str, str] | None) -> str:
    """Replace the leading ``OLD`` of ``raw`` by ``NEW`` when ``prefix = (OLD, NEW)`` matches."""
    if prefix is not None and raw.startswith(prefix[0]):
        return prefix[1] + raw[len(prefix[0]):]
    return raw


def _read_text(list_path: Path) -> str:
    """The UTF-8 text of a list (a leading byte-order mark dropped); bytes that are not UTF-8 are an error naming
    the line."""
    try:
        data = list_path.read_bytes()
    except OSError as error:
        raise SRDCInputError(f"cannot read image list {list_path} ({error.strerror or error})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = len(re.split(rb"\r\n|\r|\n", data[:error.start]))
        raise SRDCInputError(f"{list_path}:{line}: not UTF-8 text ({error.reason}); save the list as UTF-8") from None


def read_image_list(list_path: Path, prefix: tuple[str, str] | None = None) -> list[Sample]:
    """``(path, label)`` samples of an image-list file (UTF-8, a byte-order mark allowed); relative paths are
    taken from the list's folder.

    Blank lines are skipped. Whether the files exist is checked by :func:`check_files_exist`.
    """
    if not list_path.is_file():
        raise SRDCInputError(f"image list {list_path} does not exist; expected a text file of 'PATH LABEL' lines")
    folder = list_path.parent
    samples: list[Sample] = []
    for number, line in enumerate(io.StringIO(_read_text(list_path), newline=None), start=1):
        if not line.strip():
            continue
        raw, label = parse_list_line(line, f"{list_path}:{number}")
        samples.append((folder / rewrite_path(raw, prefix), label))
    if not samples:
        raise SRDCInputError(f"image list {list_path} has no entries")
    return samples


def check_files_exist(samples: list[Sample], source: str) -> None:
    """Every sample's file must exist; the error names the first missing ones and how to fix absolute paths."""
    missing = [path for path, _ in samples if not path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise SRDCInputError(
            f"{len(missing)} of {len(samples)} images listed by {source} do not exist (first: {shown}). "
            "Relative paths are taken from the list file's folder; for lists written with absolute paths on "
            "another machine, rewrite them with --path_prefix OLD=NEW"
        )


def list_line(path: Path, label: int, folder: Path) -> str:
    """The ``PATH LABEL`` line of a sample, ``PATH`` relative to ``folder``; a path that no list line can hold
    (a line break, leading or trailing whitespace) is an error naming it."""
    relative = os.path.relpath(path, folder)
    if relative != relative.strip() or any(char in relative for char in "\r\n"):
        raise SRDCInputError(f"image path {relative!r} cannot be written to an image list (line break or "
                             "leading/trailing whitespace); rename the file")
    return f"{relative} {label}\n"


def write_image_list(samples: list[Sample], list_path: Path) -> None:
    """Write ``PATH LABEL`` lines, paths relative to the list's folder (atomically: temporary file + rename)."""
    folder = list_path.parent
    lines = "".join(list_line(path, label, folder) for path, label in samples)
    tmp = list_path.with_name(list_path.name + ".tmp")
    tmp.write_text(lines, encoding="utf-8")
    os.replace(tmp, list_path)
