"""The authors' fixed half lists of Office-31, the released code's inductive split (paper Table 2).

The release trains on ``DOMAIN_half`` and tests on ``DOMAIN_half2``: two lists of image paths relative to the
domain's folder (``./back_pack/frame_0001.jpg``) that together hold every image of the domain once. They are
fetched like a dataset (``srdc-data download office31`` fetches them after the images) from the authors' repository
at a pinned commit, each checked by its md5 and line count, and installed at
``DATA_ROOT/office31/release_splits/LIST/images.txt``. ``--inductive_split`` chooses between them and the seeded
50/50 split of :func:`srdc.data.splits.stratified_split` (docs/datasets.md, docs/fidelity_notes.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError

RELEASE_REPOSITORY = "Gorilla-Lab-SCUT/SRDC-CVPR2020"
RELEASE_COMMIT = "519332e29864f10aaf4ff7512339148eac57d528"
RELEASE_LISTS_URL = (f"https://raw.githubusercontent.com/{RELEASE_REPOSITORY}/{RELEASE_COMMIT}"
                     "/data/datasets/Office31")
LISTS_FOLDER = "release_splits"


@dataclass(frozen=True)
class HalfList:
    """One released list: its folder ``name`` in the release (``amazon_half``), its line count and md5."""

    name: str
    lines: int
    md5: str


@dataclass(frozen=True)
class ReleaseHalves:
    """A domain's two released halves: ``train`` (the target the run adapts to) and ``test`` (held out)."""

    train: HalfList
    test: HalfList


RELEASE_HALVES: dict[str, dict[str, ReleaseHalves]] = {
    "office31": {
        "amazon": ReleaseHalves(HalfList("amazon_half", 1403, "c54acfc1af6eec684e841e8d55b50485"),
                                HalfList("amazon_half2", 1414, "889b25e79f9227a03711800c9e56f897")),
        "dslr": ReleaseHalves(HalfList("dslr_half", 243, "5c128d2b90c94672fbc3ab3350d111f6"),
                              HalfList("dslr_half2", 255, "df086b1f93e18cd42d414143cf56a78d")),
        "webcam": ReleaseHalves(HalfList("webcam_half", 390, "66091a9d561731e96a573413ce829336"),
                                HalfList("webcam_half2", 405, "cbaf7abe62366bf6ddf1c465b8f33357")),
    },
}


def inductive_split(config: SRDCConfig) -> str:
    """The split ``config``'s inductive run uses: ``release`` or ``seeded`` (``auto``: the release's lists where
    it ships them, else seeded). Asking for the release's lists of a dataset without them is an input error."""
    if config.inductive_split == "auto":
        return "release" if config.dataset in RELEASE_HALVES else "seeded"
    if config.inductive_split == "release" and config.dataset not in RELEASE_HALVES:
        raise SRDCInputError(f"--inductive_split release: the released code ships half lists only for "
                             f"{', '.join(RELEASE_HALVES)}, not {config.dataset}; use --inductive_split seeded")
    return config.inductive_split


def list_path(dataset_dir: Path, half: HalfList) -> Path:
    """Where ``half`` is installed under a dataset's folder."""
    return dataset_dir / LISTS_FOLDER / half.name / "images.txt"


def _all_halves(dataset: str) -> list[HalfList]:
    return [half for pair in RELEASE_HALVES[dataset].values() for half in (pair.train, pair.test)]


def _problem(path: Path, half: HalfList) -> str | None:
    """Why the file at ``path`` is not ``half`` (missing, another md5), or ``None``."""
    from srdc.data.fingerprint import md5_of  # imports the image reader (torch): not at --help

    if not path.is_file():
        return f"{path} is missing"
    got = md5_of(path)
    return None if got == half.md5 else f"{path} has md5 {got}, the release's {half.name} has {half.md5}"


def fetch_release_lists(dataset: str, dataset_dir: Path, base_url: str = RELEASE_LISTS_URL,
                        progress: bool = False) -> list[Path]:
    """Install ``dataset``'s released half lists under ``dataset_dir`` from ``base_url`` (the pinned commit's raw
    files, or a mirror: ``BASE/LIST/images.txt``); lists already installed with their md5 are kept. Each is checked
    (md5, line count) before it is renamed into place; a failure raises :class:`DownloadError` and installs nothing
    of that list."""
    from srdc.data.download import fetch
    from srdc.data.fingerprint import DownloadError

    installed = []
    for half in _all_halves(dataset):
        final = list_path(dataset_dir, half)
        if _problem(final, half) is not None:
            final.parent.mkdir(parents=True, exist_ok=True)
            part = final.with_name(final.name + ".part")
            part.unlink(missing_ok=True)
            fetch(f"{base_url.rstrip('/')}/{half.name}/images.txt", part, progress)
            problem = _problem(part, half)
            lines = len(part.read_text(encoding="utf-8").splitlines())
            if problem is not None or lines != half.lines:
                part.unlink()
                raise DownloadError(f"the release's {half.name} list from {base_url} is not the pinned one "
                                    f"({problem or f'{lines} lines, expected {half.lines}'}); deleted")
            part.replace(final)
        installed.append(final)
    return installed


def read_half(dataset: str, dataset_dir: Path, half: HalfList) -> list[str]:
    """The image names (``CLASS/FILE``) of an installed released list, checked by its md5."""
    problem = _problem(list_path(dataset_dir, half), half)
    if problem is not None:
        raise SRDCInputError(f"the released half list {half.name} cannot be used: {problem}. Fetch the lists with "
                             f"`srdc-data download {dataset} --root {dataset_dir.parent}`, or use "
                             f"--inductive_split seeded")
    lines = list_path(dataset_dir, half).read_text(encoding="utf-8").splitlines()
    return [line.strip().removeprefix("./") for line in lines if line.strip()]


def check_release_lists(config: SRDCConfig, domain: str) -> None:
    """The lists of ``config``'s target ``domain`` are installed and unchanged (a study's check before launch)."""
    pair = RELEASE_HALVES[config.dataset][domain]
    for half in (pair.train, pair.test):
        read_half(config.dataset, Path(config.data_root) / config.dataset, half)


def release_train_mask(config: SRDCConfig, domain: str) -> np.ndarray:
    """For each image of the whole ``domain``, in the order the dataset loads it: whether the release's training
    half holds it (``False``: its test half). The two lists must hold every image of the domain exactly once."""
    from srdc.data.benchmarks import config_samples, get_benchmark

    image_paths = [path for path, _ in config_samples(get_benchmark(config.dataset), domain, config)]
    pair = RELEASE_HALVES[config.dataset][domain]
    dataset_dir = Path(config.data_root) / config.dataset
    train, test = (set(read_half(config.dataset, dataset_dir, half)) for half in (pair.train, pair.test))
    names = ["/".join(Path(path).parts[-2:]) for path in image_paths]
    unknown = set(names) - train - test
    absent = (train | test) - set(names)
    if unknown or absent or train & test:
        raise SRDCInputError(
            f"the release's half lists of {domain} do not partition the images under {dataset_dir}: "
            f"{len(unknown)} images in neither list (e.g. {sorted(unknown)[:2]}), {len(absent)} listed images "
            f"missing (e.g. {sorted(absent)[:2]}), {len(train & test)} in both; a different copy of {config.dataset}? "
            "Use --inductive_split seeded")
    return np.array([name in train for name in names])


def release_half_sizes(config: SRDCConfig, domain: str) -> tuple[int, int]:
    """The training and test half sizes of ``domain`` in the release's lists (``--dry-run``'s counts)."""
    pair = RELEASE_HALVES[config.dataset][domain]
    return pair.train.lines, pair.test.lines
