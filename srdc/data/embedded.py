"""The embedded default pair: needs no files, only data shipped inside scikit-learn.

* ``digits``: one stratified quarter of scikit-learn's bundled handwritten digits (1,797 8x8 images), grey.
* ``digits_photo``: another quarter, blended MNIST-M style with patches of scikit-learn's two bundled sample
  photos (``china.jpg``, ``flower.jpg``): ``|patch - digit|`` per colour channel.
* ``digits_color``: another quarter, each digit in a random colour on a random background colour.
* ``digits_inverted``: the last quarter, dark digits on a light background with pixel noise.

The quarters are disjoint, so no image is both a source and a target. Three or four domains give the grid
shapes of Office-31 (A/D/W), ImageCLEF-DA (C/I/P) and Office-Home (Ar/Cl/Pr/Rw) for the studies' ``--smoke-test``.

All are upsampled to 28x28 like MNIST (``image_size`` overrides) and held in memory. The patches are drawn from a fixed
seed, so the pair is the same in every run and on every machine. Torch and scikit-learn are imported by the
functions that build the images: telling a domain's size (:func:`describe_domain`) needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from srdc.config import SRDCConfig
from srdc.data.base import DatasetSpec, Domain, DomainFacts, register, tensor_domain
from srdc.data.splits import stratified_split

if TYPE_CHECKING:
    import torch

CLASSES = [str(d) for d in range(10)]
DEFAULT_SIZE = 28
PAIR_SEED = 0


DOMAINS = ("digits", "digits_photo", "digits_color", "digits_inverted")
# the images of each quarter (scikit-learn's 1,797 digits split by _digit_quarters; tests check them against it)
QUARTER_SIZES = {"digits": 450, "digits_photo": 448, "digits_color": 451, "digits_inverted": 448}


def _digit_quarters() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint stratified quarters of scikit-learn's digits, one per domain: images in [0, 1], labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    halves = stratified_split(labels, seed=PAIR_SEED)
    quarters = [half[part] for half in halves for part in stratified_split(labels[half], seed=PAIR_SEED)]
    return {name: (images[idx], labels[idx]) for name, idx in zip(DOMAINS, quarters, strict=True)}


def _upsample(images: np.ndarray, size: int) -> torch.Tensor:
    """N x H x W (or N x 3 x H x W) in [0, 1] -> N x C x size x size."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)


def photo_patches(count: int, patch: int, seed: int) -> np.ndarray:
    """``count`` random ``patch x patch`` RGB crops of scikit-learn's sample photos, N x 3 x patch x patch in [0, 1]."""
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(img, dtype=np.float32) / 255.0 for img in load_sample_images().images]
    rng = np.random.default_rng(seed)
    crops = np.empty((count, 3, patch, patch), dtype=np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - patch)
        left = rng.integers(photo.shape[1] - patch)
        crops[i] = photo[top : top + patch, left : left + patch].transpose(2, 0, 1)
    return crops


def blend_with_photos(digits: torch.Tensor, seed: int) -> torch.Tensor:
    """MNIST-M style blend: ``|patch - digit|`` per channel; ``digits`` N x 1 x S x S in [0, 1]."""
    import torch

    size = digits.shape[-1]
    patches = torch.from_numpy(photo_patches(len(digits), size, seed))
    return (patches - digits).abs()


def colourise(digits: torch.Tensor, seed: int) -> torch.Tensor:
    """Each digit (N x 1 x S x S in [0, 1]) painted in a random colour over a random background colour."""
    import torch

    rng = np.random.default_rng(seed)
    foreground = torch.from_numpy(rng.uniform(0.0, 1.0, size=(len(digits), 3, 1, 1)).astype(np.float32))
    background = torch.from_numpy(rng.uniform(0.0, 1.0, size=(len(digits), 3, 1, 1)).astype(np.float32))
    return digits * foreground + (1.0 - digits) * background


def invert_with_noise(digits: torch.Tensor, seed: int) -> torch.Tensor:
    """Dark digits on a light background, with Gaussian pixel noise (sigma 0.15), clamped to [0, 1]."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    noise = 0.15 * torch.randn(digits.shape, generator=generator)
    return (1.0 - digits + noise).clamp(0.0, 1.0)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()


def describe_domain(domain: str, config: SRDCConfig) -> DomainFacts:
    """A quarter's size, loading nothing."""
    return DomainFacts(QUARTER_SIZES[domain], len(CLASSES), side=config.image_size or DEFAULT_SIZE)


def load_domain(domain: str, config: SRDCConfig) -> Domain:
    import torch

    size = config.image_size or DEFAULT_SIZE
    images, labels = _digit_quarters()[domain]
    digits = _upsample(images, size)
    styled = {"digits": lambda: digits, "digits_photo": lambda: blend_with_photos(digits, PAIR_SEED),
              "digits_color": lambda: colourise(digits, PAIR_SEED),
              "digits_inverted": lambda: invert_with_noise(digits, PAIR_SEED)}[domain]()
    return tensor_domain(domain, CLASSES, _normalise(styled), torch.from_numpy(labels))


SPEC = register(
    DatasetSpec(
        name="embedded",
        load_domain=load_domain,
        describe_domain=describe_domain,
        domains=DOMAINS,
        default_backbone="digits_cnn",
        description="scikit-learn digits: grey, photo-blended, colourised and inverted quarters (10 classes)",
    )
)
