"""Your own data: --dataset imagelist / folder / features, and every mismatch with its message."""

import numpy as np
import pytest
from test_data_helpers import TINY_CLASSES, make_class_folders, make_jpeg, write_features

from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.errors import SRDCInputError


def lists(tmp_path, source_lines: str, target_lines: str):
    for name in ("x.jpg", "y z.jpg", "w.jpg"):
        make_jpeg(tmp_path / "imgs" / name, 0)
    (tmp_path / "src.txt").write_text(source_lines)
    (tmp_path / "tgt.txt").write_text(target_lines)
    return str(tmp_path / "src.txt"), str(tmp_path / "tgt.txt")


def test_imagelist_pair_loads_with_max_label_classes(tmp_path):
    src, tgt = lists(tmp_path, "imgs/x.jpg 0\nimgs/y z.jpg 1\nimgs/w.jpg 2\n", "imgs/w.jpg 1\n")
    task = load_task(SRDCConfig(dataset="imagelist", source=src, target=tgt, image_size=32))
    assert task.classes == ["0", "1", "2"] and task.default_backbone == "resnet50"
    assert task.source.labels.tolist() == [0, 1, 2] and task.target.labels.tolist() == [1]
    assert task.target.eval_set[0][0].shape == (3, 32, 32)


def test_imagelist_classes_file_names_the_classes(tmp_path):
    src, tgt = lists(tmp_path, "imgs/x.jpg 0\nimgs/y z.jpg 1\n", "imgs/w.jpg 1\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    task = load_task(SRDCConfig(dataset="imagelist", source=src, target=tgt,
                                classes_file=str(tmp_path / "classes.txt")))
    assert task.classes == ["cat", "dog"]


def test_imagelist_label_beyond_the_classes_file_is_an_error(tmp_path):
    src, tgt = lists(tmp_path, "imgs/x.jpg 0\nimgs/y z.jpg 1\n", "imgs/w.jpg 2\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    message = r"label 2 is out of range for 2 classes \(from classes file .*classes\.txt\)"
    with pytest.raises(SRDCInputError, match=message):
        load_task(SRDCConfig(dataset="imagelist", source=src, target=tgt, classes_file=str(tmp_path / "classes.txt")))


def test_imagelist_class_without_source_samples_is_an_error(tmp_path):
    src, tgt = lists(tmp_path, "imgs/x.jpg 0\nimgs/y z.jpg 0\n", "imgs/w.jpg 2\n")
    with pytest.raises(SRDCInputError, match=r"no source samples for class\(es\) \[1, 2\] of 3 \(max label \+ 1\)"):
        load_task(SRDCConfig(dataset="imagelist", source=src, target=tgt))


def test_imagelist_absolute_paths_with_prefix_option(tmp_path):
    src, tgt = lists(tmp_path, "/old/place/x.jpg 0\n/old/place/y z.jpg 1\n", "/old/place/w.jpg 1\n")
    config = SRDCConfig(dataset="imagelist", source=src, target=tgt)
    message = r"2 of 2 images listed by .*src\.txt do not exist .*--path_prefix OLD=NEW"
    with pytest.raises(SRDCInputError, match=message):
        load_task(config)
    task = load_task(SRDCConfig(dataset="imagelist", source=src, target=tgt,
                                path_prefix=f"/old/place={tmp_path / 'imgs'}"))
    assert task.source.train_set.samples[1][0] == tmp_path / "imgs" / "y z.jpg"


def test_folder_pair_loads_and_class_names_are_the_labels(tmp_path):
    make_class_folders(tmp_path / "src", TINY_CLASSES, (1, 2, 1))
    make_class_folders(tmp_path / "tgt", TINY_CLASSES, (2, 1, 1))
    task = load_task(SRDCConfig(dataset="folder", source=str(tmp_path / "src"), target=str(tmp_path / "tgt")))
    assert task.classes == list(TINY_CLASSES)
    assert task.source.labels.tolist() == [0, 1, 1, 2] and task.target.labels.tolist() == [0, 0, 1, 2]


def test_folder_class_mismatch_names_the_differing_classes(tmp_path):
    make_class_folders(tmp_path / "src", ("cat", "dog", "emu"), (1, 1, 1))
    make_class_folders(tmp_path / "tgt", ("cat", "dog", "fox"), (1, 1, 1))
    with pytest.raises(SRDCInputError, match=r"only in source \['emu'\], only in target \['fox'\]"):
        load_task(SRDCConfig(dataset="folder", source=str(tmp_path / "src"), target=str(tmp_path / "tgt")))


def test_folder_missing_target_names_the_path(tmp_path):
    make_class_folders(tmp_path / "src", ("cat",), (1,))
    with pytest.raises(SRDCInputError, match=r"folder .*/nowhere does not exist; expected the layout"):
        load_task(SRDCConfig(dataset="folder", source=str(tmp_path / "src"), target=str(tmp_path / "nowhere")))


def test_features_pair_loads_in_memory_with_identity_backbone(tmp_path):
    src = write_features(tmp_path / "a.npz", 12, 5, 3, seed=0, classes=np.array(["x", "y", "z"]))
    tgt = write_features(tmp_path / "b.npz", 9, 5, 3, seed=1)
    task = load_task(SRDCConfig(dataset="features", source=str(src), target=str(tgt), setting="inductive"))
    assert task.default_backbone == "identity" and task.classes == ["x", "y", "z"]
    assert task.source.in_memory and task.source.train_set.tensors[0].shape == (12, 5)
    assert len(task.target) + len(task.target_test) == 9
    with np.load(src) as data:
        assert np.array_equal(task.source.train_set.tensors[0].numpy(), data["features"])


@pytest.mark.parametrize("change, message", [
    ({"dim": 4}, r"feature dimension mismatch: source .*a\.npz has d=5, target .*b\.npz has d=4"),
    ({"classes": 4}, r"label 3 is out of range for 3 classes \(from the 'classes' array of the feature files\)"),
    ({"labels_key": False}, r"b\.npz has no array 'labels' \(it has: features\)"),
    ({"float": False}, r"'features' must be an N x d float array, got int64"),
    ({"names": ["p", "q", "r"]}, r"the 'classes' arrays of .*a\.npz and .*b\.npz differ"),
])
def test_features_mismatches_are_named(tmp_path, change, message):
    src = write_features(tmp_path / "a.npz", 6, 5, 3, seed=0, classes=np.array(["x", "y", "z"]))
    rng = np.random.default_rng(0)
    arrays = {"features": rng.normal(size=(6, change.get("dim", 5))).astype(np.float32),
              "labels": np.arange(6) % change.get("classes", 3)}
    if not change.get("float", True):
        arrays["features"] = np.ones((6, 5), dtype=np.int64)
    if not change.get("labels_key", True):
        del arrays["labels"]
    if "names" in change:
        arrays["classes"] = np.array(change["names"])
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(SRDCInputError, match=message):
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(tmp_path / "b.npz")))


def test_missing_or_unreadable_features_file(tmp_path):
    src = write_features(tmp_path / "a.npz", 6, 5, 3, seed=0)
    with pytest.raises(SRDCInputError, match=r"features file .*nope\.npz does not exist; make one with: srdc-data"):
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(tmp_path / "nope.npz")))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(SRDCInputError, match=r"junk\.npz is not a readable \.npz file"):
        load_task(SRDCConfig(dataset="features", source=str(src), target=str(tmp_path / "junk.npz")))
