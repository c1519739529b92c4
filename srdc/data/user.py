"""Your own data: ``--dataset imagelist`` and ``--dataset folder``; a domain is a path.

* ``imagelist``: ``--source SRC.txt --target TGT.txt``, lines ``PATH LABEL`` (paths relative to the list
  file's folder; ``--path_prefix OLD=NEW`` rewrites absolute ones).
* ``folder``: ``--source DIR --target DIR``, class folders ``DIR/CLASS/*.jpg``; both domains must have the
  same class folder names (the sorted names are the labels).

Pre-extracted features (``--dataset features``) are in :mod:`srdc.data.features` and share the class
resolution below. Classes of ``imagelist`` and ``features``: the names in ``--classes_file`` (one per line,
line k is label k) if given; else, for ``features``, the ``classes`` arrays of the files (they must agree);
else the class count is ``max label + 1`` over source and target together and the names are ``"0" .. "K-1"``.
Every class must have at least one source sample (SRDC initialises its cluster centres from the source class
means).

``--backbone auto`` chooses by the images' size (:func:`auto_backbone`): the small digits CNN (trained from scratch,
28 px inputs, no ImageNet weights) when the largest side of the probed images is at most :data:`SMALL_IMAGE_PX`,
else the paper's ResNet-50. Only the images' headers are read, up to :data:`SIZE_PROBES` spread over each domain.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from srdc.config import SRDCConfig
from srdc.data.base import DATASETS, BackboneChoice, DatasetSpec, Domain, DomainFacts, register
from srdc.data.decoded import load_image_domain
from srdc.data.images import (
    Sample,
    check_files_exist,
    class_folders,
    parse_path_prefix,
    read_image_list,
    scan_class_folders,
)
from srdc.errors import SRDCInputError

SMALL_IMAGE_PX = 64
"""``--backbone auto``: images whose larger side is at most this many pixels get the digits CNN, larger ones
ResNet-50 (whose 224 px ImageNet features would see such images blown up 4x or more)."""
SIZE_PROBES = 64
"""How many images of each domain ``--backbone auto`` reads the header of (evenly spread; all of a smaller one)."""


def read_classes_file(path: Path) -> list[str]:
    """Class names, one per non-blank line; line k names label k."""
    if not path.is_file():
        raise SRDCInputError(f"classes file {path} does not exist; write one class name per line (line k = label k)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise SRDCInputError(f"classes file {path} is not UTF-8 text ({error.reason}); save it as UTF-8") from None
    except OSError as error:
        raise SRDCInputError(f"cannot read classes file {path} ({error.strerror or error})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise SRDCInputError(f"classes file {path} names a class twice")
    if not names:
        raise SRDCInputError(f"classes file {path} is empty")
    return names


def _check_source_covers(source_labels: np.ndarray, count: int, origin: str) -> None:
    """Every class ``0 .. count-1`` needs a source sample; the error names the first ten without one."""
    present = set(source_labels.tolist())
    if len(present) == count:
        return
    first = list(itertools.islice((k for k in range(count) if k not in present), 10))
    shown = f"{first}{' ...' if count - len(present) > len(first) else ''}"
    raise SRDCInputError(
        f"no source samples for class(es) {shown} of {count} ({origin}): SRDC needs every class in the "
        "source domain; fix the labels, or pass --classes_file naming only the classes you use"
    )


def resolve_classes(config: SRDCConfig, source_labels: np.ndarray, target_labels: np.ndarray,
                    embedded: list[str] | None = None) -> list[str]:
    """The class names of a user pair (module docstring), checked against the labels of both domains."""
    high = int(max(source_labels.max(), target_labels.max()))
    classes: list[str] | None
    if config.classes_file:
        classes = read_classes_file(Path(config.classes_file))
        origin = f"classes file {config.classes_file}"
    elif embedded is not None:
        classes, origin = embedded, "the 'classes' array of the feature files"
    else:
        classes, origin = None, "max label + 1"
    count = len(classes) if classes is not None else high + 1
    if high >= count:
        raise SRDCInputError(f"label {high} is out of range for {count} classes (from {origin})")
    _check_source_covers(source_labels, count, origin)
    return classes if classes is not None else [str(k) for k in range(count)]


# -- imagelist -----------------------------------------------------------------------------------------------
def _prefix(config: SRDCConfig) -> tuple[str, str] | None:
    return parse_path_prefix(config.path_prefix) if config.path_prefix else None


def _list_labels(path: str, config: SRDCConfig) -> np.ndarray:
    return np.array([label for _, label in read_image_list(Path(path), _prefix(config))], dtype=np.int64)


def imagelist_samples(domain: str, config: SRDCConfig) -> tuple[list[str], list[Sample]]:
    """The classes of the pair and the samples of ``domain``, checked (files present, labels in range)."""
    samples = read_image_list(Path(domain), _prefix(config))
    check_files_exist(samples, domain)
    classes = resolve_classes(config, _list_labels(config.source, config), _list_labels(config.target, config))
    return classes, samples


# -- folder --------------------------------------------------------------------------------------------------
def check_same_class_folders(source: Path, target: Path) -> None:
    """Source and target must hold the same class folder names; the error names the ones that differ."""
    for root in (source, target):
        if not root.is_dir():
            raise SRDCInputError(f"folder {root} does not exist; expected the layout {root}/CLASS/*.jpg")
    source_classes, target_classes = set(class_folders(source)), set(class_folders(target))
    if source_classes != target_classes:
        raise SRDCInputError(
            f"class folders differ between source {source} and target {target}: only in source "
            f"{sorted(source_classes - target_classes) or 'none'}, only in target "
            f"{sorted(target_classes - source_classes) or 'none'}; both need the same class folders "
            "(their sorted names are the labels)"
        )


def folder_samples(domain: str, config: SRDCConfig) -> tuple[list[str], list[Sample]]:
    """The classes and samples of the class folders ``domain``, the pair's class folders checked."""
    check_same_class_folders(Path(config.source), Path(config.target))
    return scan_class_folders(Path(domain))


# -- either layout ------------------------------------------------------------------------------------------
SamplesOf = Callable[[str, SRDCConfig], tuple[list[str], list[Sample]]]  # the classes and samples of a domain


def load_user_domain(samples_of: SamplesOf, domain: str, config: SRDCConfig) -> Domain:
    """One domain of your images as ``samples_of`` lists them, read through the transforms of the run's backbone
    (``auto``: :func:`auto_backbone`)."""
    classes, samples = samples_of(domain, config)
    backbone = DATASETS.lookup(config.dataset).backbone(config).name
    return load_image_domain(domain, classes, samples, config, data_root=None, default_backbone=backbone)


def describe_user_domain(samples_of: SamplesOf, domain: str, config: SRDCConfig) -> DomainFacts:
    """The size of one domain of your images, checked as loading would check it, no image read."""
    classes, samples = samples_of(domain, config)
    return DomainFacts(len(samples), len(classes), in_memory=False)


# -- --backbone auto -----------------------------------------------------------------------------------------
def largest_side(samples: list[Sample]) -> int:
    """The largest width or height among up to :data:`SIZE_PROBES` of ``samples``, evenly spread (headers only)."""
    picked = np.unique(np.linspace(0, len(samples) - 1, min(len(samples), SIZE_PROBES)).round().astype(int))
    sides = []
    for index in picked:
        path = samples[index][0]
        try:
            with Image.open(path) as image:
                sides.append(max(image.size))
        except OSError as error:
            raise SRDCInputError(f"cannot read image {path} ({error}); fix or remove the file") from None
    return max(sides, default=0)


def choose_by_size(side: int) -> BackboneChoice:
    """The digits CNN for images of at most :data:`SMALL_IMAGE_PX` pixels a side, else ResNet-50; the reason says
    which size decided it and how to choose otherwise."""
    if side <= SMALL_IMAGE_PX:
        return BackboneChoice("digits_cnn", f"auto: images <= {SMALL_IMAGE_PX} px, the largest probed {side} px: the "
                              "digits CNN from scratch at 28 px unless --image_size; --backbone resnet50 for "
                              "ImageNet features")
    return BackboneChoice("resnet50", f"auto: images > {SMALL_IMAGE_PX} px, the largest probed {side} px: ResNet-50 "
                          "at 224 px unless --image_size")


def auto_backbone(samples_of: SamplesOf) -> Callable[[SRDCConfig], BackboneChoice]:
    """``--backbone auto`` for a user layout whose samples ``samples_of(domain, config)`` lists: by the size of the
    largest probed image of source and target (:func:`choose_by_size`)."""
    def choose(config: SRDCConfig) -> BackboneChoice:
        domains = (config.source, config.target)
        return choose_by_size(max(largest_side(samples_of(domain, config)[1]) for domain in domains))
    return choose


IMAGELIST = register(DatasetSpec(
    name="imagelist", load_domain=partial(load_user_domain, imagelist_samples),
    describe_domain=partial(describe_user_domain, imagelist_samples),
    default_backbone="resnet50",
    description="your image lists: --source SRC.txt --target TGT.txt ('PATH LABEL' lines)",
    auto_backbone=auto_backbone(imagelist_samples),
))
FOLDER = register(DatasetSpec(
    name="folder", load_domain=partial(load_user_domain, folder_samples),
    describe_domain=partial(describe_user_domain, folder_samples),
    default_backbone="resnet50",
    description="your class folders: --source DIR --target DIR (DIR/CLASS/*.jpg)",
    auto_backbone=auto_backbone(folder_samples),
))
