"""The paper's three benchmarks (Office-31, ImageCLEF-DA, Office-Home): metadata, layout checks and loaders.

Each :class:`Benchmark` names its domains (with the paper's letters, usable in tasks such as ``A->W``), its
classes in the canonical index order, the expected image count of each domain, the archive it comes in, the
archive's md5 and the URLs it can be downloaded from. It is installed under ``ROOT/NAME`` exactly as the
archive lays it out (a single top-level folder of the archive is unwrapped); each domain lists where it may
be found there, first match wins:

* a folder: class folders ``FOLDER/CLASS/*.jpg``, whose names must equal the registered classes;
* a ``.txt`` file: an image list (``PATH LABEL`` lines), labels indexing the registered classes.

The metadata is plain data: tests build a tiny :class:`Benchmark` and pass it to the same functions
(``verify_benchmark``, ``load_benchmark_domain``, ``srdc.data.download.download_benchmark``).
Sources of every URL and checksum: docs/datasets.md. The image-reading code (:mod:`srdc.data.images`, which needs
torch) is imported by the functions that read images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from srdc.config import SRDCConfig
from srdc.data.base import DATASETS, DatasetSpec, Domain, DomainFacts
from srdc.errors import SRDCInputError

if TYPE_CHECKING:
    from srdc.data.images import Sample


@dataclass(frozen=True)
class BenchmarkDomain:
    """One domain: canonical ``name``, the paper's ``letter``, expected ``count`` of images (``None``: not
    known, only reported) and the candidate ``paths`` under ``ROOT/BENCHMARK`` (folders or ``.txt`` lists)."""

    name: str
    letter: str
    count: int | None
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Benchmark:
    """A downloadable benchmark. ``md5`` is the published md5 of ``archive`` (``None``: no published checksum
    could be confirmed). Without one, ``md5_first_seen`` is the md5 of the archive as first downloaded and
    confirmed by a user (not by the authors; ``None``: none recorded yet): an archive is extracted only when it
    has this md5 and the registered layout, or when the user passes ``--accept-unverified``. Every URL in
    ``urls`` serves the same archive; they are tried in order. ``list_prefix`` rewrites absolute paths inside
    the archive's lists."""

    name: str
    title: str
    classes: tuple[str, ...]
    domains: tuple[BenchmarkDomain, ...]
    archive: str
    md5: str | None
    urls: tuple[str, ...]
    homepage: str
    list_prefix: tuple[str, str] | None = None
    md5_first_seen: str | None = None

    def domain(self, name: str) -> BenchmarkDomain:
        for domain in self.domains:
            if name in (domain.name, domain.letter):
                return domain
        known = ", ".join(f"{d.letter} (= {d.name})" for d in self.domains)
        raise SRDCInputError(f"unknown domain {name!r} for {self.name!r}; known domains: {known}")

    def layout_hint(self, root: Path, domain: BenchmarkDomain) -> str:
        where = " or ".join(str(root / self.name / path) for path in domain.paths)
        what = "an image list 'PATH LABEL'" if domain.paths[0].endswith(".txt") else \
            f"class folders CLASS/*.jpg ({len(self.classes)} classes)"
        count = f", {domain.count} images" if domain.count is not None else ""
        return f"expected layout: {where} holding {what}{count}"


def _gdrive(file_id: str, resource_key: str | None = None) -> tuple[str, str]:
    """Two endpoints of one Google Drive file that skip the virus-scan page of large files."""
    key = f"&resourcekey={resource_key}" if resource_key else ""
    return (
        f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t{key}",
        f"https://drive.google.com/uc?export=download&id={file_id}&confirm=t{key}",
    )


OFFICE31 = Benchmark(
    name="office31",
    title="Office-31 (Saenko et al., ECCV 2010)",
    classes=(
        "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
        "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray",
        "mobile_phone", "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector",
        "punchers", "ring_binder", "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
    ),
    domains=(
        BenchmarkDomain("amazon", "A", 2817, ("amazon/images", "amazon")),
        BenchmarkDomain("dslr", "D", 498, ("dslr/images", "dslr")),
        BenchmarkDomain("webcam", "W", 795, ("webcam/images", "webcam")),
    ),
    archive="domain_adaptation_images.tar.gz",
    md5="1b536d114869a5a8aa4580b89e9758fb",
    urls=_gdrive("0B4IapRTv9pJ1WGZVd1VDMmhwdlE", "0-gNMHVtZfRAyO_t2_WrOunA"),
    homepage="https://faculty.cc.gatech.edu/~judy/domainadapt/",
)

IMAGECLEF = Benchmark(
    name="imageclef",
    title="ImageCLEF-DA (ImageCLEF 2014 domain adaptation challenge; release of Long et al.)",
    classes=("aeroplane", "bike", "bird", "boat", "bottle", "bus", "car", "dog", "horse", "monitor", "motorbike",
             "people"),
    domains=(
        BenchmarkDomain("c", "C", 600, ("c_list.txt", "c")),
        BenchmarkDomain("i", "I", 600, ("i_list.txt", "i")),
        BenchmarkDomain("p", "P", 600, ("p_list.txt", "p")),
        BenchmarkDomain("b", "B", None, ("b_list.txt", "b")),
    ),
    archive="image_CLEF.zip",
    md5=None,  # unverified: no published checksum found for this archive
    # NOT published by the authors: the md5 of the archive as first seen and confirmed by a user (`srdc-data
    # fingerprint image_CLEF.zip`). None: nobody has recorded it yet, as the archive could not be downloaded where
    # this was written; until it is, extracting the archive needs --accept-unverified (docs/datasets.md).
    md5_first_seen=None,
    urls=(
        *_gdrive("0B9kJH0-rJ2uRS3JILThaQXJhQlk"),
        "https://wjdcloud.blob.core.windows.net/dataset/image_CLEF.zip",
    ),
    homepage="https://github.com/thuml/CDAN#image-clef",
    list_prefix=("/data/image-clef/", ""),
)

OFFICEHOME = Benchmark(
    name="officehome",
    title="Office-Home (Venkateswara et al., CVPR 2017)",
    classes=(
        "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator", "Calendar",
        "Candles", "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp", "Drill", "Eraser",
        "Exit_Sign", "Fan", "File_Cabinet", "Flipflops", "Flowers", "Folder", "Fork", "Glasses", "Hammer",
        "Helmet", "Kettle", "Keyboard", "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse",
        "Mug", "Notebook", "Oven", "Pan", "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin",
        "Radio", "Refrigerator", "Ruler", "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda",
        "Speaker", "Spoon", "TV", "Table", "Telephone", "ToothBrush", "Toys", "Trash_Can", "Webcam",
    ),
    domains=(
        BenchmarkDomain("Art", "Ar", 2427, ("Art",)),
        BenchmarkDomain("Clipart", "Cl", 4365, ("Clipart",)),
        BenchmarkDomain("Product", "Pr", 4439, ("Product",)),
        BenchmarkDomain("Real_World", "Rw", 4357, ("Real World", "Real_World")),
    ),
    archive="OfficeHomeDataset_10072016.zip",
    md5="b1c14819770c4448fd5b6d931031c91c",
    urls=(
        *_gdrive("0B81rNlvomiwed0V1YUxQdC1uOTg", "0-2SNWq0CDAuWOBRRBL7ZZsw"),
        *_gdrive("1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC"),
    ),
    homepage="https://www.hemanthdv.org/officeHomeDataset.html",
)

BENCHMARKS: dict[str, Benchmark] = {}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise SRDCInputError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


# -- finding and checking a domain ---------------------------------------------------------------------------
def find_domain_path(bench: Benchmark, dataset_dir: Path, domain: BenchmarkDomain) -> Path | None:
    """The first of the domain's candidate paths that exists under ``dataset_dir``, or ``None``."""
    for relative in domain.paths:
        path = dataset_dir / relative
        if path.is_file() if relative.endswith(".txt") else path.is_dir():
            return path
    return None


def _check_classes(bench: Benchmark, found: list[str], where: Path) -> None:
    if found != list(bench.classes):
        missing = sorted(set(bench.classes) - set(found))
        extra = sorted(set(found) - set(bench.classes))
        raise SRDCInputError(
            f"class folders of {where} do not match {bench.title}: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'} ({len(found)} found, {len(bench.classes)} expected)"
        )


def _check_labels(bench: Benchmark, samples: list[Sample], where: Path) -> None:
    high = max(label for _, label in samples)
    if high >= len(bench.classes):
        raise SRDCInputError(f"{where} has label {high}, but {bench.title} has {len(bench.classes)} classes (0..)")


def domain_samples(bench: Benchmark, dataset_dir: Path, domain: BenchmarkDomain,
                   prefix: tuple[str, str] | None = None) -> list[Sample]:
    """The samples of ``domain`` under ``dataset_dir``, checked: present, classes, label range, count, files.

    ``prefix`` (``OLD``, ``NEW``) overrides the benchmark's own list-path rewrite.
    """
    from srdc.data.images import check_files_exist, read_image_list, scan_class_folders

    path = find_domain_path(bench, dataset_dir, domain)
    if path is None:
        root = dataset_dir.parent
        raise SRDCInputError(
            f"{bench.title} domain {domain.name!r} not found under {dataset_dir}. Download it with "
            f"`srdc-data download {bench.name} --root {root}`; {bench.layout_hint(root, domain)}"
        )
    if path.is_file():
        samples = read_image_list(path, prefix or bench.list_prefix)
        _check_labels(bench, samples, path)
    else:
        classes, samples = scan_class_folders(path)
        _check_classes(bench, classes, path)
    if domain.count is not None and len(samples) != domain.count:
        raise SRDCInputError(
            f"{path} holds {len(samples)} images, {bench.title} domain {domain.name!r} has {domain.count}: "
            f"incomplete or different copy; move it away and run "
            f"`srdc-data download {bench.name} --root {dataset_dir.parent}`"
        )
    check_files_exist(samples, str(path))
    return samples


def verify_benchmark(bench: Benchmark, dataset_dir: Path) -> dict[str, int]:
    """Image count per domain; every problem of every domain is collected into one ``SRDCInputError``."""
    counts: dict[str, int] = {}
    problems: list[str] = []
    for domain in bench.domains:
        try:
            counts[domain.name] = len(domain_samples(bench, dataset_dir, domain))
        except SRDCInputError as error:
            problems.append(f"{domain.letter} ({domain.name}): {error}")
    if problems:
        raise SRDCInputError(f"{dataset_dir} does not verify as {bench.title}: " + " | ".join(problems))
    return counts


# -- the registered datasets ---------------------------------------------------------------------------------
def config_samples(bench: Benchmark, domain: str, config: SRDCConfig) -> list[Sample]:
    """The checked samples of ``bench``'s ``domain`` under ``config.data_root`` (``--path_prefix`` applies to
    lists)."""
    from srdc.data.images import parse_path_prefix

    prefix = parse_path_prefix(config.path_prefix) if config.path_prefix else None
    return domain_samples(bench, Path(config.data_root) / bench.name, bench.domain(domain), prefix)


def load_benchmark_domain(bench: Benchmark, domain: str, config: SRDCConfig) -> Domain:
    """One whole domain of ``bench`` from ``config.data_root/bench.name`` (``--path_prefix`` applies to lists)."""
    from srdc.data.decoded import load_image_domain

    samples = config_samples(bench, domain, config)
    return load_image_domain(bench.domain(domain).name, list(bench.classes), samples, config, Path(config.data_root))


def describe_benchmark_domain(bench: Benchmark, domain: str, config: SRDCConfig) -> DomainFacts:
    """A domain's size from its files listed and checked (:func:`domain_samples`), no image read."""
    return DomainFacts(len(config_samples(bench, domain, config)), len(bench.classes), in_memory=False)


def benchmark_spec(bench: Benchmark) -> DatasetSpec:
    """The ``--dataset`` entry of ``bench``: domain names plus the paper's letters as aliases."""
    counts = ", ".join(f"{d.letter}={d.name}" for d in bench.domains)
    return DatasetSpec(
        name=bench.name,
        load_domain=functools.partial(load_benchmark_domain, bench),
        describe_domain=functools.partial(describe_benchmark_domain, bench),
        domains=tuple(d.name for d in bench.domains),
        aliases={d.letter: d.name for d in bench.domains},
        default_backbone="resnet50",
        description=f"{bench.title}: {len(bench.classes)} classes, domains {counts}",
    )


def register_benchmark(bench: Benchmark) -> Benchmark:
    """Make ``bench`` known to ``srdc-data`` and to ``--dataset``."""
    BENCHMARKS[bench.name] = bench
    DATASETS[bench.name] = benchmark_spec(bench)
    return bench


for _bench in (OFFICE31, IMAGECLEF, OFFICEHOME):
    register_benchmark(_bench)
