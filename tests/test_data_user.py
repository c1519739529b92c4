"""Your own data: --dataset imagelist / folder, every mismatch with its message, and ``srdc-train`` on lists."""

import pytest
from data_helpers import TINY_CLASSES, check_summary, make_class_folders, make_jpeg

from srdc.cli import main
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


def test_train_on_image_lists(tmp_path):
    lines = {"src": [], "tgt": []}
    for domain, shade in (("src", 0), ("tgt", 60)):
        for label in range(3):
            for i in range(4):
                path = make_jpeg(tmp_path / "images" / domain / f"class {label}" / f"{i}.jpg", shade + 60 * label + i)
                lines[domain].append(f"../images/{domain}/class {label}/{i}.jpg {label}\n")
    (tmp_path / "lists").mkdir()
    for domain, entries in lines.items():
        (tmp_path / "lists" / f"{domain}.txt").write_text("".join(entries))
    assert path.is_file()
    out = tmp_path / "run"
    code = main(["--dataset", "imagelist", "--source", str(tmp_path / "lists" / "src.txt"),
                 "--target", str(tmp_path / "lists" / "tgt.txt"), "--backbone", "digits_cnn",
                 "--image_size", "16", "--batch_size", "6", "--epochs", "2", "--device", "cpu", "--quiet",
                 "--out", str(out)])
    assert code == 0
    summary = check_summary(out, 2)
    assert summary["config"]["dataset"] == "imagelist" and summary["config"]["image_size"] == 16
