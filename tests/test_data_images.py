"""Image layouts and transforms: class order, list parsing (spaces, prefixes), shapes, unreadable files."""

import numpy as np
import pytest
import torch
from data_helpers import TINY_CLASSES, make_class_folders, make_jpeg
from PIL import Image

from srdc.data.images import (
    IMAGENET_MEAN,
    ImageDataset,
    eval_transform,
    image_domain,
    parse_path_prefix,
    read_image_list,
    scan_class_folders,
    train_transform,
    transform_sizes,
    write_image_list,
)
from srdc.errors import SRDCInputError


def test_transform_sizes_follow_the_paper_and_scale_with_image_size():
    assert transform_sizes(None) == (256, 224)
    assert transform_sizes(32) == (37, 32)  # round(32 * 256 / 224) = round(36.57)
    assert transform_sizes(112) == (128, 112)


@pytest.mark.parametrize("image_size, expected", [(None, 224), (32, 32)])
def test_train_and_eval_views_have_the_crop_size(tmp_path, image_size, expected):
    path = make_jpeg(tmp_path / "a.jpg", 0, size=(300, 260))
    image = Image.open(path).convert("RGB")
    for transform in (train_transform(image_size), eval_transform(image_size)):
        out = transform(image)
        assert out.shape == (3, expected, expected)
        assert out.dtype == torch.float32


def test_eval_view_is_deterministic_and_normalised(tmp_path):
    path = make_jpeg(tmp_path / "grey.jpg", 0, size=(50, 40))
    Image.new("RGB", (50, 40), (124, 116, 104)).save(path)  # about the ImageNet mean
    out = eval_transform(32)(Image.open(path).convert("RGB"))
    assert torch.equal(out, eval_transform(32)(Image.open(path).convert("RGB")))
    expected = [(v / 255 - m) for v, m in zip((124, 116, 104), IMAGENET_MEAN, strict=True)]
    assert out.mean(dim=(1, 2)).tolist() == pytest.approx([e / s for e, s in
                                                           zip(expected, (0.229, 0.224, 0.225), strict=True)], abs=0.03)


def test_class_folders_are_indexed_in_sorted_order_with_files_sorted(tmp_path):
    make_class_folders(tmp_path, ("back_pack", "TV", "Table"), (2, 1, 3))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "TV" / "notes.txt").write_text("not an image")
    classes, samples = scan_class_folders(tmp_path)
    assert classes == ["TV", "Table", "back_pack"]
    assert [label for _, label in samples] == [0, 1, 1, 1, 2, 2]
    assert [p.name for p, _ in samples[1:4]] == ["img 0.jpg", "img 1.jpg", "img 2.jpg"]


def test_class_folder_problems_name_the_folder(tmp_path):
    with pytest.raises(SRDCInputError, match=r"does not exist; expected the layout .*/CLASS/\*\.jpg"):
        scan_class_folders(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    make_jpeg(tmp_path / "flat" / "x.jpg", 0)
    with pytest.raises(SRDCInputError, match="holds no class folders"):
        scan_class_folders(tmp_path / "flat")
    (tmp_path / "cls" / "empty").mkdir(parents=True)
    with pytest.raises(SRDCInputError, match=r"class folder .*cls/empty holds no images"):
        scan_class_folders(tmp_path / "cls")


def test_image_list_paths_may_contain_spaces_and_are_relative_to_the_list(tmp_path):
    make_jpeg(tmp_path / "my images" / "a b.jpg", 1)
    make_jpeg(tmp_path / "my images" / "c.jpg", 2)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "src.txt").write_text("../my images/a b.jpg 4\n\n../my images/c.jpg\t0\r\n")
    samples = read_image_list(lists / "src.txt")
    assert [(p.resolve(), label) for p, label in samples] == [
        ((tmp_path / "my images" / "a b.jpg").resolve(), 4),
        ((tmp_path / "my images" / "c.jpg").resolve(), 0),
    ]


def test_absolute_paths_are_rewritten_by_the_prefix(tmp_path):
    make_jpeg(tmp_path / "office" / "amazon" / "x y.jpg", 0)
    (tmp_path / "list.txt").write_text("/data/office/amazon/x y.jpg 2\n")
    prefix = parse_path_prefix(f"/data/office={tmp_path / 'office'}")
    [(path, label)] = read_image_list(tmp_path / "list.txt", prefix)
    assert path == tmp_path / "office" / "amazon" / "x y.jpg" and path.is_file() and label == 2


@pytest.mark.parametrize("text", ["no_equals_sign", "=/new"])
def test_a_bad_prefix_names_the_format(text):
    with pytest.raises(SRDCInputError, match="write it as OLD=NEW"):
        parse_path_prefix(text)


@pytest.mark.parametrize("line, message", [
    ("lonely_path.jpg\n", r"list.txt:1: expected 'PATH LABEL'"),
    ("a.jpg cat\n", r"list.txt:1: label 'cat' is not an integer"),
    ("a.jpg -1\n", r"list.txt:1: label -1 is negative"),
])
def test_bad_list_lines_name_file_and_line(tmp_path, line, message):
    (tmp_path / "list.txt").write_text(line)
    with pytest.raises(SRDCInputError, match=message):
        read_image_list(tmp_path / "list.txt")


def test_written_lists_read_back_identically(tmp_path):
    samples = make_class_folders(tmp_path / "dom", TINY_CLASSES, (1, 2, 1))
    (tmp_path / "out").mkdir()
    write_image_list(samples, tmp_path / "out" / "all.txt")
    back = read_image_list(tmp_path / "out" / "all.txt")
    assert [(p.resolve(), label) for p, label in back] == [(p.resolve(), label) for p, label in samples]
    assert (tmp_path / "out" / "all.txt").read_text().splitlines()[0] == "../dom/TV/img 0.jpg 0"


def test_image_domain_returns_tensors_and_labels(tmp_path):
    samples = make_class_folders(tmp_path, TINY_CLASSES, (1, 1, 2))
    domain = image_domain("d", list(TINY_CLASSES), samples, image_size=32)
    assert domain.labels.tolist() == [0, 1, 2, 2] and domain.num_classes == 3 and not domain.in_memory
    x, y = domain.train_set[3]
    assert x.shape == (3, 32, 32) and y == 2
    batch = torch.utils.data.DataLoader(domain.eval_set, batch_size=4)
    inputs, labels = next(iter(batch))
    assert inputs.shape == (4, 3, 32, 32) and labels.tolist() == [0, 1, 2, 2]
    assert np.array_equal(domain.subset(np.array([1, 3])).labels, [1, 2])


@pytest.mark.parametrize("content", [b"", b"not a jpeg at all", None])
def test_an_unreadable_image_names_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content is None:  # a truncated JPEG: a real header, half the bytes
        data = make_jpeg(tmp_path / "good.jpg", 0, size=(64, 64)).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    dataset = ImageDataset([(path, 0)], eval_transform(32))
    with pytest.raises(SRDCInputError, match=r"cannot read image .*bad\.jpg"):
        dataset[0]
