"""Your own data: --dataset imagelist / folder, every mismatch with its message, and ``srdc-train`` on lists."""

import pytest
import torch
from data_helpers import TINY_CLASSES, check_summary, make_class_folders, make_jpeg

from srdc.cli import main
from srdc.config import SRDCConfig
from srdc.data import backbone_choice, load_task
from srdc.data.user import SIZE_PROBES, SMALL_IMAGE_PX, choose_by_size
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
    assert task.classes == ["0", "1", "2"] and task.default_backbone == "digits_cnn"  # 40 x 36 px images
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


# -- --backbone auto, the weights before the cache, and the worked example of docs/datasets.md ---------------------
def sized_folders(root, size: tuple[int, int], per_class: int = 3) -> tuple[str, str]:
    """``root/src`` and ``root/tgt``, class folders of ``size`` images (width, height)."""
    for domain, shade in (("src", 0), ("tgt", 100)):
        for label, name in enumerate(TINY_CLASSES):
            for i in range(per_class):
                make_jpeg(root / domain / name / f"{i}.jpg", shade + 40 * label + i, size)
    return str(root / "src"), str(root / "tgt")


def test_auto_backbone_is_the_digits_cnn_up_to_64_px_and_resnet50_above():
    assert (choose_by_size(SMALL_IMAGE_PX).name, choose_by_size(SMALL_IMAGE_PX + 1).name) == ("digits_cnn", "resnet50")
    assert SMALL_IMAGE_PX == 64 and "the largest probed 16 px" in choose_by_size(16).reason


@pytest.mark.parametrize(("size", "expected", "image"), [((16, 16), "digits_cnn", 28), ((64, 40), "digits_cnn", 28),
                                                        ((40, 80), "resnet50", 224)])
def test_auto_backbone_follows_the_largest_side_of_your_images(tmp_path, size, expected, image):
    source, target = sized_folders(tmp_path, size, per_class=1)
    config = SRDCConfig(dataset="folder", source=source, target=target, image_cache="off")
    choice = backbone_choice(config)
    assert choice.name == expected and choice.reason.startswith("auto: images ") and f"{max(size)} px" in choice.reason
    task = load_task(config)
    assert task.default_backbone == expected and task.source.eval_set[0][0].shape == (3, image, image)
    assert backbone_choice(SRDCConfig(dataset="folder", source=source, target=target, backbone="resnet18")).name \
        == "resnet18"


def test_auto_backbone_sees_a_large_image_in_either_domain_and_probes_a_bounded_number(tmp_path, monkeypatch):
    source, target = sized_folders(tmp_path, (16, 16), per_class=30)
    make_jpeg(tmp_path / "tgt" / TINY_CLASSES[0] / "zz_big.jpg", 0, (300, 200))
    opened = []
    real_open = __import__("PIL.Image", fromlist=["open"]).open
    monkeypatch.setattr("srdc.data.user.Image.open", lambda path: opened.append(path) or real_open(path))
    choice = backbone_choice(SRDCConfig(dataset="folder", source=source, target=target))
    assert choice.name == "resnet50" and "the largest probed 300 px" in choice.reason
    assert len(opened) == 2 * SIZE_PROBES  # 90 and 91 images: 64 headers of each domain, the last one always


def test_a_weights_problem_is_reported_before_any_image_is_decoded(tmp_path, monkeypatch, capsys):
    source, target = sized_folders(tmp_path, (80, 80), per_class=1)
    cache = tmp_path / "cache"
    base = ["--dataset", "folder", "--source", source, "--target", target, "--image_cache", str(cache), "--quiet",
            "--epochs", "1"]
    assert main([*base, "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "a")]) == 2
    assert "weights file" in capsys.readouterr().err and not cache.exists()

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert main([*base, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not available offline" in err and "--weights none" in err and not cache.exists()


def test_small_images_train_offline_with_every_default_but_the_epochs(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    source, target = sized_folders(tmp_path, (16, 16), per_class=4)
    out = tmp_path / "run"
    code = main(["--dataset", "folder", "--source", source, "--target", target, "--epochs", "2", "--batch_size", "6",
                 "--quiet", "--out", str(out)])
    assert code == 0
    first = next(line for line in capsys.readouterr().err.splitlines() if not line.startswith("decoded-image cache"))
    assert first.startswith(f"folder {source}->{target} variant=srdc seed=0 device=cpu backbone=digits_cnn (auto: "
                            "images <= 64 px, the largest probed 16 px")
    summary = check_summary(out, 2)
    assert summary["config"]["backbone"] == "auto" and 0 <= summary["acc_last"] <= 100
