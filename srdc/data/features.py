"""``--dataset features``: pre-extracted features, one ``.npz`` file per domain (``--source A.npz --target B.npz``).

A file holds ``features`` (N x d float) and ``labels`` (N int), optionally ``classes`` (K names), as written by
``srdc-data extract-features`` (:mod:`srdc.extract`). Held in memory; the default backbone is ``identity``, so
only the head (bottleneck + classifier) trains. ``--feature_norm`` preprocesses each domain with statistics of
its own features (:func:`normalize_features`). Class names are resolved as for image lists
(:func:`srdc.data.user.resolve_classes`), the files' ``classes`` arrays standing in for a classes file. Before a
file is loaded, the shapes its arrays declare (their ``.npy`` headers, read without decompressing) are checked
against :data:`MAX_FEATURE_DIM` and :func:`memory_limit`: a compressed file cannot expand past them.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from numpy.lib.npyio import NpzFile

from srdc.config import SRDCConfig
from srdc.data.base import DatasetSpec, Domain, one_line, register, tensor_domain
from srdc.data.images import MAX_LABEL
from srdc.data.splits import kept_rows, stratified_split
from srdc.data.user import resolve_classes
from srdc.errors import SRDCInputError

# the most dimensions a features file's rows may have: ResNet-50's pooled features have 2048, VGG's flattened
# convolutional ones 25088; the bottleneck's weights (d x 256) and every checkpoint grow with d
MAX_FEATURE_DIM = 32768
MEMORY_SHARE = 4  # a features file may declare at most 1/MEMORY_SHARE of the machine's physical memory


def memory_limit() -> int:
    """The most bytes a features file's arrays may declare: a quarter of the machine's physical memory (a run holds
    them, a float32 copy and the normalised copy; the study's trials share the machine)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MEMORY_SHARE


def declared_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype each array of the ``.npz`` (zip) file ``path`` declares in its ``.npy`` header, read
    without decompressing the data (a compressed file's declared size is what loading it would take)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    declared = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version not in readers:
                    raise ValueError(f"array {member.filename} has .npy format version {version}")
                shape, _, dtype = readers[version](stream)
            declared[member.filename.removesuffix(".npy")] = (shape, dtype)
    return declared


def _check_declared_size(path: Path) -> None:
    """Refuse, before loading, a ``.npz`` file whose ``features`` have more than :data:`MAX_FEATURE_DIM` dimensions
    or whose arrays declare more than :func:`memory_limit` bytes (as float32 at least: the run's copy)."""
    if not zipfile.is_zipfile(path):
        return  # a single .npy array or a damaged file: np.load's refusal names it
    try:
        declared = declared_arrays(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise SRDCInputError(f"{path} is not a readable .npz file ({one_line(error)}); write it again with "
                             "srdc-data extract-features or numpy.savez") from None
    shape = declared.get("features", ((), None))[0]
    if len(shape) == 2 and shape[1] > MAX_FEATURE_DIM:
        raise SRDCInputError(f"{path}: 'features' declares {shape[1]} dimensions, more than {MAX_FEATURE_DIM} (the "
                             "bottleneck's weights and every checkpoint grow with them); reduce the features "
                             "(e.g. pool or PCA them) before training")
    size = sum(math.prod(shape) * max(dtype.itemsize, 4) for shape, dtype in declared.values())
    if size > memory_limit():
        raise SRDCInputError(f"{path}: its arrays declare {size / 2**30:.1f} GiB, more than the "
                             f"{memory_limit() / 2**30:.1f} GiB a features file may take (a quarter of this "
                             "machine's memory); use fewer samples or dimensions, or a machine with more memory")


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file; a missing, unreadable, too large or non-``.npz`` file is an
    ``SRDCInputError``."""
    if not path.is_file():
        raise SRDCInputError(
            f"features file {path} does not exist; make one with: srdc-data extract-features --dataset NAME "
            f"--domain X --root DIR --out {path}"
        )
    _check_declared_size(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, NpzFile):
            raise SRDCInputError(f"{path} is a single .npy array, not a .npz file of 'features' and 'labels'; "
                                 "write it with numpy.savez(path, features=..., labels=...)")
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except SRDCInputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise SRDCInputError(f"{path} is not a readable .npz file ({one_line(error)}); write it again with "
                             "srdc-data extract-features or numpy.savez") from None


def _check_arrays(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.floating) or features.shape[1] == 0:
        raise SRDCInputError(f"{path}: 'features' must be an N x d float array, got {features.dtype} "
                             f"{features.shape} (d >= 1)")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SRDCInputError(f"{path}: 'labels' must be a 1-d integer array, got {labels.dtype} {labels.shape}")
    if len(labels) != len(features) or len(labels) == 0:
        raise SRDCInputError(f"{path}: {len(features)} feature rows but {len(labels)} labels (need equal, > 0)")
    if labels.min() < 0:
        raise SRDCInputError(f"{path}: labels must be >= 0, found {int(labels.min())}")
    if labels.max() > MAX_LABEL:
        raise SRDCInputError(f"{path}: label {int(labels.max())} is too large (at most {MAX_LABEL}); labels are "
                             "class indices 0..K-1")
    finite = np.isfinite(features)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise SRDCInputError(f"{path}: 'features' holds NaN or infinite values (first in row {row}); extract the "
                             "features again or drop those rows")
    if features.dtype.itemsize > 4 and np.abs(features).max() > np.finfo(np.float32).max:
        raise SRDCInputError(f"{path}: 'features' holds values beyond the float32 range; rescale them")


def _check_classes(path: Path, classes: np.ndarray) -> list[str]:
    if classes.ndim != 1 or classes.dtype.kind != "U" or len(classes) == 0:
        raise SRDCInputError(f"{path}: 'classes' must be a non-empty 1-d array of names, got {classes.dtype} "
                             f"{classes.shape}")
    names = [str(name) for name in classes.tolist()]
    if len(set(names)) != len(names):
        raise SRDCInputError(f"{path}: 'classes' names a class twice")
    return names


def read_features(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """``features`` (N x d float32), ``labels`` (N int64) and the optional ``classes`` of a ``.npz`` file.

    Every problem (missing file or array, shapes, dtypes, NaN or infinite values, negative labels, bad class
    names) is an ``SRDCInputError`` naming the file.
    """
    arrays = _load_arrays(path)
    for key in ("features", "labels"):
        if key not in arrays:
            raise SRDCInputError(
                f"{path} has no array {key!r} (it has: {', '.join(sorted(arrays)) or 'none'}); expected "
                "'features' (N x d float) and 'labels' (N int)"
            )
    features, labels = arrays["features"], arrays["labels"]
    _check_arrays(path, features, labels)
    classes = _check_classes(path, arrays["classes"]) if "classes" in arrays else None
    return features.astype(np.float32), labels.astype(np.int64), classes


def _embedded_classes(source: tuple, target: tuple, config: SRDCConfig) -> list[str] | None:
    if source[2] is not None and target[2] is not None and source[2] != target[2]:
        raise SRDCInputError(
            f"the 'classes' arrays of {config.source} and {config.target} differ; the two files come from "
            "different label spaces (pass --classes_file to choose the names explicitly)"
        )
    return source[2] if source[2] is not None else target[2]


def normalize_features(features: np.ndarray, how: str, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """One domain's features preprocessed as ``--feature_norm`` says, with statistics of that domain alone
    (of its rows ``fit_rows`` when given): ``none``; ``l2``: each row to unit Euclidean length; ``zscore``: each
    dimension to mean 0, std 1 over the domain; ``l1_zscore``: each row divided by its L1 norm (counts ->
    frequencies, e.g. SURF bag-of-words), then z-scored. A constant dimension (std 0) is only centred; an all-zero
    row stays zero."""
    if how == "none":
        return features
    values = features.astype(np.float64)
    if how in ("l2", "l1_zscore"):
        norms = np.linalg.norm(values, ord=2 if how == "l2" else 1, axis=1, keepdims=True)
        values = values / np.where(norms > 0, norms, 1.0)
    if how in ("zscore", "l1_zscore"):
        fitted = values if fit_rows is None else values[fit_rows]
        std = fitted.std(axis=0)
        values = (values - fitted.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return values.astype(np.float32)


def statistics_rows(labels: np.ndarray, is_target: bool, config: SRDCConfig) -> np.ndarray | None:
    """The rows a domain's z-score statistics come from: the rows the run keeps (``max_samples``), and of the
    target in the inductive setting only its training half, so that no statistic of the held-out half is used."""
    if not (is_target and config.setting == "inductive"):
        return None if config.max_samples is None else kept_rows(labels, config.max_samples, config.split_seed)
    kept = kept_rows(labels, config.max_samples, config.split_seed)
    return kept[stratified_split(labels[kept], config.split_seed)[0]]


def load_features_domain(domain: str, config: SRDCConfig) -> Domain:
    """Domain ``domain`` (the source or the target file) of a features pair, both files checked together."""
    source, target = read_features(Path(config.source)), read_features(Path(config.target))
    if source[0].shape[1] != target[0].shape[1]:
        raise SRDCInputError(
            f"feature dimension mismatch: source {config.source} has d={source[0].shape[1]}, target "
            f"{config.target} has d={target[0].shape[1]}; extract both with the same backbone"
        )
    embedded = None if config.classes_file else _embedded_classes(source, target, config)
    classes = resolve_classes(config, source[1], target[1], embedded)
    features, labels, _ = source if domain == config.source else target
    rows = statistics_rows(labels, domain != config.source, config)
    features = normalize_features(features, config.feature_norm, rows)
    return tensor_domain(domain, classes, torch.from_numpy(features), torch.from_numpy(labels))


FEATURES = register(DatasetSpec(
    name="features", load_domain=load_features_domain, default_backbone="identity",
    description="pre-extracted features: --source A.npz --target B.npz (features N x d, labels N)",
))
