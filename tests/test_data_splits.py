"""``srdc-data split``: the written inductive halves equal the in-memory split of training, stratified, seeded."""

from collections import Counter

import numpy as np
import pytest
from data_helpers import TINY_CLASSES, make_class_folders

from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.cli import main
from srdc.data.images import read_image_list


def resolved(samples):
    return [(path.resolve(), label) for path, label in samples]


def subset_samples(domain):
    subset = domain.eval_set
    return [subset.dataset.samples[i] for i in subset.indices]


@pytest.mark.parametrize("seed", [0, 3])
def test_written_split_equals_the_in_memory_inductive_split(tiny, tmp_path, seed, capsys):
    out = tmp_path / "split"
    assert main(["split", tiny.name, "--domain", "W", "--root", str(tmp_path), "--seed", str(seed),
                 "--out", str(out)]) == 0
    assert f"webcam: 4 train / 3 test (seed {seed})" in capsys.readouterr().out
    task = load_task(SRDCConfig(dataset=tiny.name, task="A->W", data_root=str(tmp_path), setting="inductive",
                                split_seed=seed))
    assert resolved(read_image_list(out / "train.txt")) == resolved(subset_samples(task.target))
    assert resolved(read_image_list(out / "test.txt")) == resolved(subset_samples(task.target_test))
    assert (out / "classes.txt").read_text().splitlines() == list(TINY_CLASSES)


def test_split_is_stratified_reproducible_and_seed_dependent(tmp_path):
    make_class_folders(tmp_path / "dom", ("a", "b", "c"), (10, 7, 2))

    def split(seed, name):
        assert main(["split", "folder", "--domain", str(tmp_path / "dom"), "--seed", str(seed),
                     "--out", str(tmp_path / name)]) == 0
        return [(tmp_path / name / part).read_text() for part in ("train.txt", "test.txt")]

    first, again, other = split(0, "s0"), split(0, "s0b"), split(1, "s1")
    assert first == again and first != other
    train, test = (read_image_list(tmp_path / "s0" / part) for part in ("train.txt", "test.txt"))
    assert Counter(label for _, label in train) == {0: 5, 1: 4, 2: 1}  # round(7 / 2) = 4 (banker's: 3.5 -> 4)
    assert Counter(label for _, label in test) == {0: 5, 1: 3, 2: 1}
    assert not {p for p, _ in train} & {p for p, _ in test}


def test_split_lists_load_with_dataset_imagelist(tiny, tmp_path):
    for out, domain in (("src", "amazon"), ("tgt", "webcam")):
        args = ["split", tiny.name, "--domain", domain, "--root", str(tmp_path), "--out", str(tmp_path / out)]
        assert main(args) == 0
    task = load_task(SRDCConfig(dataset="imagelist", source=str(tmp_path / "src" / "train.txt"),
                                target=str(tmp_path / "tgt" / "test.txt"),
                                classes_file=str(tmp_path / "src" / "classes.txt"), image_size=32))
    assert task.classes == list(TINY_CLASSES) and len(task.source) == 4 and len(task.target) == 3
    assert task.target.eval_set[0][0].shape == (3, 32, 32)


def test_split_refuses_in_memory_domains(tmp_path, capsys):
    np.savez(tmp_path / "f.npz", features=np.ones((4, 2), dtype=np.float32), labels=np.array([0, 1, 0, 1]))
    assert main(["split", "features", "--domain", str(tmp_path / "f.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "is held in memory, not in image files: split writes image lists" in capsys.readouterr().err
