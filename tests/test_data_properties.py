"""Property tests (hypothesis) of the two user-data parsers: image lists and ``.npz`` feature files.

Every valid input parses to exactly what was written; every invalid one raises ``SRDCInputError`` with one line
naming the file (and the line, for image lists), never another exception.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from srdc.data.features import read_features
from srdc.data.images import MAX_LABEL, check_files_exist, parse_path_prefix, read_image_list, write_image_list
from srdc.errors import SRDCInputError

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# any text but line breaks and surrogates (not UTF-8), without leading/trailing whitespace: what a list line holds
path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1,
                    max_size=30).filter(lambda text: text == text.strip())
labels = st.integers(0, MAX_LABEL)
separators = st.text(" \t", min_size=1, max_size=3)
blank_lines = st.text(" \t", max_size=3)


def assert_one_line_naming(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert "\n" not in message and name in message, message


@st.composite
def image_lists(draw) -> tuple[str, list[tuple[str, int]], tuple[str, str] | None]:
    """The text of a valid image list, the (path, label) entries it was written from, and a prefix rewrite."""
    entries = draw(st.lists(st.tuples(path_text, labels), min_size=1, max_size=8))
    prefix = draw(st.none() | st.tuples(st.sampled_from(["/data/old", "C:\\x", "rel/"]), st.sampled_from(["", "/n"])))
    if prefix is not None:
        entries = [(prefix[0] + path if draw(st.booleans()) else path, label) for path, label in entries]
    lines = ["\ufeff" if draw(st.booleans()) else ""]
    for path, label in entries:
        lines.extend(draw(blank_lines) + "\n" for _ in range(draw(st.integers(0, 2))))
        end = draw(st.sampled_from(["\n", "\r\n", " \n"]))
        indent = draw(blank_lines)
        lines.append(f"{indent}{path}{draw(separators)}{label}{end}")
    return "".join(lines), entries, prefix


@PROPERTY
@given(image_lists())
def test_a_valid_image_list_parses_to_what_was_written(case):
    text, entries, prefix = case
    with tempfile.TemporaryDirectory() as folder:
        list_path = Path(folder) / "list.txt"
        list_path.write_text(text, encoding="utf-8", newline="")
        samples = read_image_list(list_path, prefix)
    expected = []
    for path, label in entries:
        if prefix is not None and path.startswith(prefix[0]):
            path = prefix[1] + path[len(prefix[0]):]
        expected.append((Path(folder) / path, label))
    assert samples == expected


bad_labels = st.one_of(
    st.integers(-(10**6), -1).map(str),
    st.integers(MAX_LABEL + 1, 10**30).map(str),
    st.sampled_from(["cat", "+3", "1_0", "\uff13", "3.0", "0x1", "1e3", "٣"]),
    st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=5)
    .filter(lambda text: not text.isascii() or not text.isdigit()),
)


@st.composite
def bad_lines(draw) -> bytes:
    """One invalid line: a bad label, a path without label, or bytes that are not UTF-8."""
    kind = draw(st.sampled_from(["label", "lonely", "encoding"]))
    if kind == "label":
        return f"{draw(path_text)} {draw(bad_labels)}\n".encode()
    if kind == "lonely":
        return f"{draw(st.text('abc./_', min_size=1, max_size=10))}\n".encode()
    return b"img" + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xe2\x82"])) + b".jpg 1\n"


@PROPERTY
@given(st.lists(st.tuples(path_text, labels), max_size=5), st.lists(st.tuples(path_text, labels), max_size=5),
       bad_lines())
def test_an_invalid_line_names_file_and_line(before, after, bad):
    head = "".join(f"{path} {label}\n" for path, label in before).encode()
    tail = "".join(f"{path} {label}\n" for path, label in after).encode()
    with tempfile.TemporaryDirectory() as folder:
        list_path = Path(folder) / "list.txt"
        list_path.write_bytes(head + bad + tail)
        with pytest.raises(SRDCInputError) as error:
            read_image_list(list_path)
    assert_one_line_naming(error, f"{list_path}:{len(before) + 1}:")


@PROPERTY
@given(st.lists(st.text(" \t\r\n", max_size=3), max_size=4).map("".join))
def test_an_empty_list_is_an_error_naming_it(text):
    with tempfile.TemporaryDirectory() as folder:
        list_path = Path(folder) / "list.txt"
        list_path.write_text(text, encoding="utf-8", newline="")
        with pytest.raises(SRDCInputError) as error:
            read_image_list(list_path)
    assert_one_line_naming(error, f"image list {list_path} has no entries")


@PROPERTY
@given(st.lists(st.text("abc xyz_.", min_size=1, max_size=12).filter(lambda t: t == t.strip()), min_size=1,
                max_size=6, unique=True))
def test_missing_files_are_one_error_naming_the_list(names):
    with tempfile.TemporaryDirectory() as folder:
        samples = [(Path(folder) / "imgs" / name, 0) for name in names]
        with pytest.raises(SRDCInputError) as error:
            check_files_exist(samples, f"{folder}/list.txt")
    assert_one_line_naming(error, f"{len(names)} of {len(names)} images listed by {folder}/list.txt do not exist")


@PROPERTY
@given(st.text(max_size=20))
def test_path_prefix_is_split_at_the_first_equals_sign(text):
    old, sep, new = text.partition("=")
    if sep and old:
        assert parse_path_prefix(text) == (old, new)
    else:
        with pytest.raises(SRDCInputError, match="write it as OLD=NEW"):
            parse_path_prefix(text)


@PROPERTY
@given(st.lists(st.tuples(path_text.filter(lambda t: "\x00" not in t), labels), min_size=1, max_size=6))
def test_written_lists_read_back_or_refuse_the_path(entries):
    with tempfile.TemporaryDirectory() as folder:
        samples = [(Path(folder) / "imgs" / path, label) for path, label in entries]
        list_path = Path(folder) / "out" / "list.txt"
        list_path.parent.mkdir()
        try:
            write_image_list(samples, list_path)
        except SRDCInputError as error:
            assert "cannot be written to an image list" in str(error) and "\n" not in str(error)
            return
        back = read_image_list(list_path)
    assert [(canonical(p), label) for p, label in back] == [(canonical(p), label) for p, label in samples]


def canonical(path: str | os.PathLike[str]) -> str:
    """``path`` normalised, its root ``//`` (which POSIX lets an implementation give a meaning, so ``normpath``
    keeps it) read as ``/``, as the file system here reads it."""
    normal = os.path.normpath(path)
    return normal[1:] if normal.startswith("//") and not normal.startswith("///") else normal


# -- .npz feature files ----------------------------------------------------------------------------------------
float_dtypes = st.sampled_from([np.float16, np.float32, np.float64])
int_dtypes = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16])


@st.composite
def feature_files(draw) -> dict[str, np.ndarray]:
    """The arrays of a valid feature file."""
    n, d = draw(st.integers(1, 12)), draw(st.integers(1, 6))
    dtype = draw(float_dtypes)
    bound = 32768.0 if dtype == np.float16 else 2.0**100
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=np.dtype(dtype).itemsize * 8)
    arrays = {"features": draw(hnp.arrays(dtype, (n, d), elements=elements)),
              "labels": draw(hnp.arrays(draw(int_dtypes), n, elements=st.integers(0, 100)))}
    if draw(st.booleans()):
        arrays["classes"] = np.array(draw(st.lists(st.text("abcdef_", min_size=1, max_size=6), min_size=1,
                                                   max_size=5, unique=True)))
    return arrays


@PROPERTY
@given(feature_files())
def test_a_valid_feature_file_reads_back_exactly(arrays):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.npz"
        np.savez(path, **arrays)
        features, labels, classes = read_features(path)
    assert features.dtype == np.float32 and np.array_equal(features, arrays["features"].astype(np.float32))
    assert labels.dtype == np.int64 and np.array_equal(labels, arrays["labels"].astype(np.int64))
    assert classes == (arrays["classes"].tolist() if "classes" in arrays else None)


def _breakage(draw, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    features, labels = arrays["features"].astype(np.float64), arrays["labels"].astype(np.int64)
    kind = draw(st.sampled_from(["nan", "inf", "big", "negative", "huge_label", "length", "missing", "ndim",
                                 "int_features", "float_labels", "empty", "no_columns", "bad_classes"]))
    n = len(labels)
    index = draw(st.integers(0, n - 1))
    if kind in ("nan", "inf", "big"):
        features.flat[draw(st.integers(0, features.size - 1))] = {"nan": np.nan, "inf": -np.inf, "big": 1e300}[kind]
        return {"features": features, "labels": labels}
    if kind in ("negative", "huge_label"):
        labels[index] = -draw(st.integers(1, 5)) if kind == "negative" else MAX_LABEL + draw(st.integers(1, 10**9))
        return {"features": features, "labels": labels}
    broken = {
        "length": lambda: {"features": features, "labels": np.append(labels, 0)},
        "missing": lambda: {draw(st.sampled_from(["features", "labels"])): features},
        "ndim": lambda: {"features": features.reshape(-1), "labels": labels},
        "int_features": lambda: {"features": np.ones(features.shape, dtype=np.int32), "labels": labels},
        "float_labels": lambda: {"features": features, "labels": labels.astype(np.float32)},
        "empty": lambda: {"features": features[:0], "labels": labels[:0]},
        "no_columns": lambda: {"features": features[:, :0], "labels": labels},
        "bad_classes": lambda: {"features": features, "labels": labels,
                                "classes": draw(st.sampled_from([np.array(["a", "a"]), np.array([[b"x"]]),
                                                                 np.arange(3), np.array([], dtype=str)]))},
    }
    return broken[kind]()


@PROPERTY
@given(st.data(), feature_files())
def test_an_invalid_feature_file_is_one_error_naming_it(data, arrays):
    broken = _breakage(data.draw, arrays)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.npz"
        np.savez(path, **broken)
        with pytest.raises(SRDCInputError) as error:
            read_features(path)
    assert_one_line_naming(error, str(path))


@PROPERTY
@given(st.data(), feature_files())
def test_damaged_or_foreign_files_are_one_error_naming_them(data, arrays):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.npz"
        np.savez(path, **arrays)
        whole = path.read_bytes()
        kind = data.draw(st.sampled_from(["cut", "flip", "junk", "npy"]))
        if kind == "cut":
            path.write_bytes(whole[: data.draw(st.integers(0, len(whole) - 1))])
        elif kind == "flip":
            at = data.draw(st.integers(0, len(whole) - 1))
            path.write_bytes(whole[:at] + bytes([whole[at] ^ data.draw(st.integers(1, 255))]) + whole[at + 1:])
        elif kind == "junk":
            path.write_bytes(data.draw(st.binary(max_size=200)))
        else:
            with path.open("wb") as handle:
                np.save(handle, arrays["features"])
        try:
            read_features(path)
        except SRDCInputError as error:
            assert "\n" not in str(error) and str(path) in str(error), str(error)
