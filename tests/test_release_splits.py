"""The authors' Office-31 half lists as the inductive split (issue 23 D6): fetched from a ``file://`` mirror of the
copy in ``$SRDC_DATA_ROOT/office31_release_splits`` (default ``../shared/data``), checked, and used by
``--setting inductive`` on a generated Office-31 tree holding exactly the listed file names."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from data_helpers import SHARED_DATA, make_jpeg

from srdc.config import SRDCConfig
from srdc.data import check_task, load_task
from srdc.data.base import one_line
from srdc.data.benchmarks import OFFICE31
from srdc.data.cli import main as data_main
from srdc.data.fingerprint import DownloadError, md5_of
from srdc.data.release_splits import (
    LISTS_FOLDER,
    RELEASE_HALVES,
    fetch_release_lists,
    inductive_split,
    list_path,
)
from srdc.errors import SRDCInputError
from srdc.harness.estimate import DataFacts

DATA_ROOT = SHARED_DATA
MIRROR = DATA_ROOT / "office31_release_splits"
needs_lists = pytest.mark.skipif(not (MIRROR / "amazon_half" / "images.txt").is_file(), reason=(
    f"the release's half lists are not under {MIRROR}; set SRDC_DATA_ROOT to a folder with office31_release_splits"))
# the sizes the authors' README and the release's files state: (training half, test half)
RELEASE_SIZES = {"amazon": (1403, 1414), "dslr": (243, 255), "webcam": (390, 405)}


def listed_names(name: str) -> list[str]:
    """The image names of one list of the mirror, as the test reads them (independently of the code under test)."""
    lines = (MIRROR / name / "images.txt").read_text(encoding="utf-8").split()
    return [line[2:] if line.startswith("./") else line for line in lines]


@pytest.fixture(scope="module")
def office31_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROOT/office31`` holding every listed image of the three domains as a tiny JPEG (in the archive's layout
    ``DOMAIN/images/CLASS/FILE``), and no lists yet."""
    root = tmp_path_factory.mktemp("data")
    jpeg = make_jpeg(root / "one.jpg", 7, size=(4, 4)).read_bytes()
    for domain in RELEASE_SIZES:
        for name in listed_names(f"{domain}_half") + listed_names(f"{domain}_half2"):
            path = root / "office31" / domain / "images" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
    return root


@needs_lists
def test_the_registered_sizes_and_md5s_are_the_mirrors():
    for domain, pair in RELEASE_HALVES["office31"].items():
        for half in (pair.train, pair.test):
            assert md5_of(MIRROR / half.name / "images.txt") == half.md5
            assert len(listed_names(half.name)) == half.lines
        assert (pair.train.lines, pair.test.lines) == RELEASE_SIZES[domain]
        assert sum(RELEASE_SIZES[domain]) == OFFICE31.domain(domain).count


@needs_lists
def test_fetching_installs_the_six_lists_and_keeps_them_on_a_second_fetch(tmp_path):
    installed = fetch_release_lists("office31", tmp_path / "office31", MIRROR.as_uri())
    assert [path.read_bytes() for path in installed] == [
        (MIRROR / name / "images.txt").read_bytes()
        for domain in RELEASE_SIZES for name in (f"{domain}_half", f"{domain}_half2")]
    stamps = [path.stat().st_mtime_ns for path in installed]
    assert fetch_release_lists("office31", tmp_path / "office31", "file:///nonexistent") == installed
    assert [path.stat().st_mtime_ns for path in installed] == stamps


@needs_lists
def test_a_changed_list_on_the_mirror_is_refused_and_not_installed(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(MIRROR, mirror)
    listed = mirror / "dslr_half2" / "images.txt"
    listed.write_text("".join(f"{line}\n" for line in listed.read_text().splitlines()[:-1]))
    with pytest.raises(DownloadError, match=r"dslr_half2 list .* not the pinned one \(.*has md5"):
        fetch_release_lists("office31", tmp_path / "office31", mirror.as_uri())
    dslr = RELEASE_HALVES["office31"]["dslr"]
    assert list_path(tmp_path / "office31", dslr.train).is_file()  # the lists before it were good and stay
    assert not list_path(tmp_path / "office31", dslr.test).exists()
    assert not list_path(tmp_path / "office31", dslr.test).with_name("images.txt.part").exists()


def test_auto_is_the_release_on_office31_and_seeded_elsewhere():
    assert inductive_split(SRDCConfig(dataset="office31", task="A->W", setting="inductive")) == "release"
    assert inductive_split(SRDCConfig(dataset="digits", task="usps->mnist", setting="inductive")) == "seeded"
    assert inductive_split(SRDCConfig(dataset="office31", task="A->W", inductive_split="seeded")) == "seeded"
    with pytest.raises(SRDCInputError, match="only for office31, not digits; use --inductive_split seeded"):
        inductive_split(SRDCConfig(dataset="digits", task="usps->mnist", inductive_split="release"))


def test_the_dry_run_counts_the_release_halves():
    for domain, (train, test) in RELEASE_SIZES.items():
        config = SRDCConfig(dataset="office31", source="amazon" if domain != "amazon" else "dslr", target=domain,
                            setting="inductive")
        data = DataFacts().run(config)
        assert (data.target, data.target_test) == (train, test)
    seeded = DataFacts().run(SRDCConfig(dataset="office31", task="A->W", setting="inductive",
                                        inductive_split="seeded"))
    assert (seeded.target, seeded.target_test) == (398, 397)


@needs_lists
def test_without_the_lists_the_check_before_launch_names_the_fetch_and_the_alternative(office31_root, tmp_path):
    for domain in RELEASE_SIZES:  # the module's images, without any list installed beside them
        (tmp_path / "office31" / domain).parent.mkdir(exist_ok=True)
        (tmp_path / "office31" / domain).symlink_to(office31_root / "office31" / domain)
    config = SRDCConfig(dataset="office31", task="A->W", setting="inductive", data_root=str(tmp_path),
                        image_cache="off")
    with pytest.raises(SRDCInputError) as caught:
        check_task(config)
    message = one_line(caught.value)
    assert "webcam_half" in message and "is missing" in message
    assert f"srdc-data download office31 --root {tmp_path}" in message
    assert "--inductive_split seeded" in message
    check_task(SRDCConfig(**{**config.to_dict(), "inductive_split": "seeded"}))
    assert not (tmp_path / "office31" / LISTS_FOLDER).exists()


@needs_lists
def test_download_fetches_the_lists_and_inductive_runs_use_them_per_domain(office31_root, capsys):
    assert data_main(["download", "office31", "--root", str(office31_root), "--quiet",
                      "--release-lists-url", MIRROR.as_uri()]) == 0
    assert "the release's 6 inductive half lists (commit 519332e)" in capsys.readouterr().out
    for source, target in (("amazon", "webcam"), ("webcam", "dslr"), ("dslr", "amazon")):
        config = SRDCConfig(dataset="office31", source=source, target=target, setting="inductive",
                            data_root=str(office31_root), image_cache="off")
        check_task(config)
        task = load_task(config)
        assert (len(task.target), len(task.target_test)) == RELEASE_SIZES[target]
        names = ["/".join(Path(path).parts[-2:]) for path, _ in task.target.eval_set.dataset.samples]
        train_rows = np.asarray(task.target.eval_set.indices)
        test_rows = np.asarray(task.target_test.eval_set.indices)
        assert sorted(names[i] for i in train_rows) == sorted(listed_names(f"{target}_half"))
        assert sorted(names[i] for i in test_rows) == sorted(listed_names(f"{target}_half2"))
        classes = OFFICE31.classes
        assert [classes[label] for label in task.target.labels] == [names[i].split("/")[0] for i in train_rows]
        assert len(task.source) == sum(RELEASE_SIZES[source])


@needs_lists
def test_max_samples_keeps_each_kept_image_in_its_release_half(office31_root):
    fetch_release_lists("office31", office31_root / "office31", MIRROR.as_uri())
    config = SRDCConfig(dataset="office31", task="D->W", setting="inductive", data_root=str(office31_root),
                        image_cache="off", max_samples=100)
    task = load_task(config)
    assert 95 <= len(task.target) + len(task.target_test) <= 105  # about max_samples, stratified by class
    whole = task.target.eval_set.dataset.dataset.samples  # the target's rows kept by max_samples, then the half
    kept = np.asarray(task.target.eval_set.dataset.indices)
    train = {"/".join(Path(whole[kept[i]][0]).parts[-2:]) for i in task.target.eval_set.indices}
    test = {"/".join(Path(whole[kept[i]][0]).parts[-2:]) for i in task.target_test.eval_set.indices}
    assert train <= set(listed_names("webcam_half")) and test <= set(listed_names("webcam_half2"))
    assert len(train) > 30 and len(test) > 30
