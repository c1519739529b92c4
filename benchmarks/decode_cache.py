"""Decode once (issue 12, item 4): image domains read from the files (decoded at every access) beside the same domains
read from the decoded-image cache (``--image_cache``, ``srdc/data/decoded.py``), in one run. Prints figures; asserts
nothing.

    python benchmarks/decode_cache.py                       # about 2 minutes on a busy CPU
    python benchmarks/decode_cache.py --epoch_224           # also a ResNet epoch on the 224-px images (slower)

Generated in a temporary folder, two domains (source and target lists) of each kind:

* ``32-px list``: ``--list_images`` 32 x 32 PNG digits (a glyph on a random colour per domain), read at image size
  32 with the ImageNet profile (``Resize(37) RandomCrop(32) flip``, as ``--image_size 32``);
* ``224-px Office``: ``--office_images`` JPEGs at Office-31's sizes, a third each amazon-like 300 x 300, webcam-like
  640 x 480 and dslr-like 1000 x 1000, read at the paper's ``Resize(256) RandomCrop(224) flip``.

Figures per kind:

* data passes: one pass of the training view (shuffled batches, ``srdc.batches.endless_batches``) and one of the
  evaluation view (``ordered_batches``) over both domains, what an epoch reads when the model costs nothing (a fast
  GPU); from the files, from the cache, and their ratio;
* decode share: the time ``load_rgb`` + resize take for the images those passes decode (measured alone, per image),
  over the passes' time from the files;
* normalisation share: of the cached passes, the part spent converting to float and normalising (what moving it to
  the GPU could save at most);
* the cache's one-time build, a later open (the staleness check of every file), its size;
* a real SRDC epoch (``Trainer.step``, ``--backbone`` with random weights, one thread) from the files and from the
  cache, with the decode share of the epoch and of its preparation pass (the 32-px list always; 224 px with
  ``--epoch_224``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import srdc.data.images as images_module
from srdc.batches import batches_per_pass, endless_batches, ordered_batches
from srdc.config import SRDCConfig
from srdc.data.base import Domain
from srdc.data.decoded import DecodedDataset, decoded_image_domain, open_cache
from srdc.data.images import (
    PROFILES,
    image_domain,
    load_rgb,
    read_image_list,
    resize_geometry,
    resize_step,
    view_steps,
)
from srdc.trainer import Trainer

OFFICE_SIZES = ((300, 300), (640, 480), (1000, 1000))  # amazon, webcam, dslr (width, height)
CLASSES = 10


@dataclass
class Kind:
    """One kind of image domain: its lists and how runs read it."""

    name: str
    source: Path
    target: Path
    image_size: int


# -- generated data -----------------------------------------------------------------------------------------
def digit_image(label: int, rng: np.random.Generator, dark: bool) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 100, 3) + (0 if dark else 150))
    image = Image.new("RGB", (32, 32), background)
    ImageDraw.Draw(image).text((10 + int(rng.integers(-3, 4)), 8 + int(rng.integers(-3, 4))), str(label),
                               fill=(255, 255, 255) if dark else (0, 0, 0))
    return image


def photo_image(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Smooth colour structure with fine noise, so the JPEG is about as costly to decode as a photo."""
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    noise = rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(coarse) + noise, 0, 255).astype(np.uint8))


def write_list(folder: Path, name: str, count: int, make: Callable[[int], Image.Image], suffix: str) -> Path:
    lines = []
    for index in range(count):
        path = folder / name / f"{index:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        make(index).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
        lines.append(f"{name}/{path.name} {index % CLASSES}\n")
    (folder / f"{name}.txt").write_text("".join(lines))
    return folder / f"{name}.txt"


def generate(folder: Path, list_images: int, office_images: int) -> list[Kind]:
    rng = np.random.default_rng(0)
    lists = [write_list(folder, f"digits_{side}", list_images, lambda i, dark=dark: digit_image(i % CLASSES, rng, dark),
                        ".png") for side, dark in (("source", False), ("target", True))]
    offices = [write_list(folder, f"office_{side}", office_images // 2,
                          lambda i: photo_image(OFFICE_SIZES[i % len(OFFICE_SIZES)], rng), ".jpg")
               for side in ("source", "target")]
    return [Kind("32-px list", *lists, 32), Kind("224-px Office", *offices, 224)]


# -- measurements -------------------------------------------------------------------------------------------
def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def passes(domains: list[Domain], batch_size: int, repeat: int) -> list[float]:
    """Seconds of one training-view pass and one evaluation-view pass over ``domains``, ``repeat`` times."""
    def run() -> None:
        generator = torch.Generator().manual_seed(0)
        for domain in domains:
            for _ in itertools.islice(endless_batches(domain, batch_size, generator),
                                      batches_per_pass(len(domain), batch_size)):
                pass
            for _ in ordered_batches(domain, batch_size):
                pass
    return [timed(run) for _ in range(repeat)]


def uint8_domain(domain: Domain, image_size: int) -> Domain:
    """``domain`` (cached) with views that stop before the float conversion and normalisation."""
    from torchvision import transforms

    def view(train: bool) -> DecodedDataset:
        steps = transforms.Compose(view_steps(PROFILES["imagenet"], image_size, train))
        return DecodedDataset(domain.eval_set.images, domain.eval_set.samples, steps)
    return Domain(domain.name, domain.classes, domain.labels, view(True), view(False))


class DecodeTimer:
    """While installed, the seconds the files' views spend decoding (``load_rgb``) and resizing (the resize step of
    views built meanwhile): what the cache does once instead."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def _timed(self, function: Callable) -> Callable:
        def timed(*args: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.seconds += time.perf_counter() - start
        return timed

    def __enter__(self) -> DecodeTimer:
        images_module.load_rgb = self._timed(load_rgb)
        images_module.resize_step = lambda geometry: self._timed(resize_step(geometry))
        return self

    def __exit__(self, *_: object) -> None:
        images_module.load_rgb, images_module.resize_step = load_rgb, resize_step


def epoch(kind: Kind, cache: str, backbone: str, batch_size: int) -> tuple[dict, float, float, float]:
    """One SRDC epoch after the untrained model's pass: its history row, the seconds it spent decoding, then the
    seconds of one more preparation pass and the seconds that one spent decoding."""
    config = SRDCConfig(dataset="imagelist", source=str(kind.source), target=str(kind.target), epochs=1,
                        image_size=kind.image_size, backbone=backbone, weights="none", device="cpu",
                        batch_size=batch_size, image_cache=cache)
    with DecodeTimer() as timer:
        trainer = Trainer(config)
        trainer.initialise()
        timer.seconds = 0.0
        row = trainer.step()
        decode, timer.seconds = timer.seconds, 0.0
        prepare = timed(trainer.prepare)
    return row, decode, prepare, timer.seconds


# -- report -------------------------------------------------------------------------------------------------
def data_row(kind: Kind, cache_dir: Path, batch_size: int, repeat: int) -> str:
    """The data-pass figures of ``kind``: the fastest of ``repeat`` passes each (the decode share over them all)."""
    imagenet = PROFILES["imagenet"]
    samples = {side: read_image_list(path) for side, path in (("source", kind.source), ("target", kind.target))}
    geometry = resize_geometry(imagenet, kind.image_size)
    build = sum(timed(lambda s=s, side=side: open_cache(side, s, geometry, cache_dir, progress=False))
                for side, s in samples.items())
    check = sum(timed(lambda s=s, side=side: open_cache(side, s, geometry, cache_dir)) for side, s in samples.items())
    cached = [decoded_image_domain(side, [str(c) for c in range(CLASSES)], s, imagenet, kind.image_size, cache_dir)
              for side, s in samples.items()]
    size = sum(domain.eval_set.images.nbytes for domain in cached) / 2**20
    from_cache = min(passes(cached, batch_size, repeat))
    as_uint8 = min(passes([uint8_domain(domain, kind.image_size) for domain in cached], batch_size, repeat))
    every = [sample for side in samples.values() for sample in side]
    with DecodeTimer() as timer:
        files = [image_domain(side, [str(c) for c in range(CLASSES)], s, imagenet, kind.image_size)
                 for side, s in samples.items()]
        times = passes(files, batch_size, repeat)
    from_files, decode = min(times), timer.seconds / sum(times) * min(times)
    return (f"{kind.name:<15}{len(every):>7}{from_files:>10.2f}{from_cache:>10.2f}{from_files / from_cache:>9.1f}x"
            f"{decode / from_files:>9.0%}{1 - as_uint8 / from_cache:>9.0%}{build:>9.2f}{check:>9.3f}{size:>9.1f}")


def epoch_row(kind: Kind, cache_dir: Path, backbone: str, batch_size: int) -> str:
    files, decode, prepare, prepare_decode = epoch(kind, "off", backbone, batch_size)
    cached, *_ = epoch(kind, str(cache_dir), backbone, batch_size)
    share, prepare_share = decode / files["wall_s_epoch"], prepare_decode / prepare
    return (f"{kind.name:<15}{backbone:>10}{files['wall_s_epoch']:>10.2f}{cached['wall_s_epoch']:>10.2f}"
            f"{files['wall_s_epoch'] / cached['wall_s_epoch']:>9.2f}x{share:>9.0%}{files['time_prepare_s']:>10.2f}"
            f"{cached['time_prepare_s']:>10.2f}{prepare_share:>9.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list_images", type=int, default=1000, help="32-px images per domain (default 1000)")
    parser.add_argument("--office_images", type=int, default=300, help="224-px images, both domains (default 300)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet18", help="the epochs' backbone, random weights")
    parser.add_argument("--epoch_224", action="store_true", help="also a real epoch on the 224-px images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="data passes: the fastest of this many")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s), "
          f"load average {os.getloadavg()[0]:.1f}; num_workers 0, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = generate(folder / "data", args.list_images, args.office_images)
        print("\ndata passes (train view + eval view, both domains)")
        print(f"{'kind':<15}{'images':>7}{'files s':>10}{'cache s':>10}{'speed-up':>10}{'decode':>9}{'normal.':>9}"
              f"{'build s':>9}{'check s':>9}{'MiB':>9}")
        for kind in kinds:
            print(data_row(kind, folder / f"cache-{kind.image_size}", args.batch_size, args.repeat), flush=True)
        print("\none SRDC epoch (Trainer.step: training iterations + preparation pass)")
        print(f"{'kind':<15}{'backbone':>10}{'files s':>10}{'cache s':>10}{'ratio':>10}{'decode':>9}{'prep f s':>10}"
              f"{'prep c s':>10}{'decode':>9}")
        for kind in kinds if args.epoch_224 else kinds[:1]:
            print(epoch_row(kind, folder / f"cache-{kind.image_size}", args.backbone, args.batch_size), flush=True)


if __name__ == "__main__":
    main()
