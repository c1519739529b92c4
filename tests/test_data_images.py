"""Image layouts and transforms: class order, list parsing (spaces, prefixes), shapes, unreadable files."""

import numpy as np
import pytest
import torch
from data_helpers import TINY_CLASSES, make_class_folders, make_jpeg
from PIL import Image

from srdc.config import SRDCConfig
from srdc.data.images import (
    IMAGENET_MEAN,
    PROFILES,
    ImageDataset,
    config_profile,
    eval_transform,
    image_domain,
    parse_path_prefix,
    read_image_list,
    scan_class_folders,
    train_transform,
    transform_profile,
    write_image_list,
)
from srdc.errors import SRDCInputError

IMAGENET = PROFILES["imagenet"]


def test_imagenet_sizes_follow_the_paper_and_scale_with_image_size():
    assert IMAGENET.sizes(None) == (256, 224)
    assert IMAGENET.sizes(32) == (37, 32)  # round(32 * 256 / 224) = round(36.57)
    assert IMAGENET.sizes(112) == (128, 112)


@pytest.mark.parametrize("profile, image_size, expected", [("imagenet", None, 224), ("imagenet", 32, 32),
                                                           ("digits", None, 28), ("digits", 32, 32)])
def test_train_and_eval_views_have_the_crop_size(tmp_path, profile, image_size, expected):
    path = make_jpeg(tmp_path / "a.jpg", 0, size=(300, 260))
    image = Image.open(path).convert("RGB")
    for transform in (train_transform(PROFILES[profile], image_size), eval_transform(PROFILES[profile], image_size)):
        out = transform(image)
        assert out.shape == (3, expected, expected)
        assert out.dtype == torch.float32


def test_eval_view_is_deterministic_and_normalised(tmp_path):
    path = make_jpeg(tmp_path / "grey.jpg", 0, size=(50, 40))
    Image.new("RGB", (50, 40), (124, 116, 104)).save(path)  # about the ImageNet mean
    out = eval_transform(IMAGENET, 32)(Image.open(path).convert("RGB"))
    assert torch.equal(out, eval_transform(IMAGENET, 32)(Image.open(path).convert("RGB")))
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
    domain = image_domain("d", list(TINY_CLASSES), samples, IMAGENET, image_size=32)
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
    dataset = ImageDataset([(path, 0)], eval_transform(IMAGENET, 32))
    with pytest.raises(SRDCInputError, match=r"cannot read image .*bad\.jpg"):
        dataset[0]


# -- transform profiles -----------------------------------------------------------------------------------------
def _asymmetric_digit(path):
    """A 32 x 32 image whose left half is white and right half black: mirroring it changes every pixel pair."""
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[:, :16] = 255
    Image.fromarray(pixels).save(path)
    return Image.open(path).convert("RGB")


@pytest.mark.parametrize("backbone, normalize", [("digits_cnn", "auto"), ("digits_cnn", "imagenet")])
def test_no_digits_profile_mirrors_an_image(tmp_path, backbone, normalize):
    image = _asymmetric_digit(tmp_path / "d.png")
    profile = transform_profile(backbone, normalize=normalize)
    torch.manual_seed(0)
    views = [train_transform(profile, 32)(image) for _ in range(40)]
    reference = eval_transform(profile, 32)(image)
    assert all(torch.equal(view, reference) for view in views)  # no flip, no random crop: one view
    assert reference[:, :, :16].mean() > reference[:, :, 16:].mean()  # white stays on the left


def test_the_imagenet_profile_flips_and_an_override_turns_it_off(tmp_path):
    image = _asymmetric_digit(tmp_path / "d.png")
    torch.manual_seed(0)
    left_brighter = [bool(view[:, :, :16].mean() > view[:, :, 16:].mean())
                     for view in (train_transform(IMAGENET, 32)(image) for _ in range(40))]
    assert 5 < sum(left_brighter) < 35  # about half the views mirrored
    no_flip = transform_profile("resnet50", augment="crop")
    assert no_flip.name == "imagenet+crop" and no_flip.normalize == "imagenet"
    assert all(view[:, :, :14].mean() > view[:, :, 18:].mean() for view in
               (train_transform(no_flip, 32)(image) for _ in range(40)))


def test_digits_profile_normalises_to_minus_one_one_and_resizes_exactly(tmp_path):
    path = tmp_path / "wide.png"
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255
    Image.fromarray(pixels).save(path)
    out = eval_transform(PROFILES["digits"], None)(Image.open(path).convert("RGB"))
    assert out.shape == (3, 28, 28)  # resized to exactly 28 x 28, nothing cropped away
    assert out[0].min().item() == pytest.approx(1.0) and out[1].max().item() == pytest.approx(-1.0)


def test_a_run_resolves_its_profile_from_its_backbone_and_records_it(tmp_path):
    samples = make_class_folders(tmp_path / "dom", TINY_CLASSES, (1, 1, 1))
    auto = config_profile(SRDCConfig(dataset="folder"))
    digits = config_profile(SRDCConfig(dataset="folder", backbone="digits_cnn", normalize="none"))
    assert auto == IMAGENET and (digits.name, digits.augment, digits.normalize) == ("digits+none", "none", "none")
    domain = image_domain("d", list(TINY_CLASSES), samples, digits, image_size=32)
    assert domain.transform.startswith("digits+none: train Resize(32x32), eval Resize(32x32), normalize none")
    assert domain.subset(np.array([0])).transform == domain.transform
