"""Bad input to every ``srdc-data`` subcommand, table-driven: exit 2, one ``error: `` line, no traceback, and
every file that was there before is unchanged (bytes and mtime) and no file is added."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from data_helpers import (
    TINY_CLASSES,
    make_class_folders,
    make_office_like,
    make_tar,
    make_zip,
    tiny_benchmark,
    write_features,
)

from srdc.data.benchmarks import BENCHMARKS
from srdc.data.cli import main


@dataclass(frozen=True)
class Case:
    """``setup(tmp_path)`` writes the files and returns the ``srdc-data`` arguments; ``bench`` builds the tiny
    benchmark registered as ``tinybench`` (from ``tmp_path``); ``error`` is a fragment of the message."""

    name: str
    setup: Callable[[Path], list[str]]
    error: str
    bench: Callable[[Path], object] | None = None


def good_zip(tmp: Path) -> Path:
    make_office_like(tmp / "source")
    return make_zip(tmp / "source", tmp / "tiny.zip")


def download(tmp: Path, archive: Path, *extra: str) -> list[str]:
    return ["download", "tinybench", "--root", str(tmp / "root"), "--archive", str(archive), "--quiet", *extra]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def slip_zip(tmp: Path) -> Path:
    with zipfile.ZipFile(tmp / "slip.zip", "w") as handle:
        handle.writestr("tiny/amazon/images/TV/a.jpg", b"x")
        handle.writestr("tiny/../../evil.txt", b"owned")
    return tmp / "slip.zip"


def slip_tar(tmp: Path) -> Path:
    with tarfile.open(tmp / "slip.tar.gz", "w:gz") as handle:
        info = tarfile.TarInfo("/tmp/evil.txt")
        info.size = 5
        handle.addfile(info, io.BytesIO(b"owned"))
    return tmp / "slip.tar.gz"


def truncated_tar(tmp: Path) -> Path:
    make_office_like(tmp / "source")
    whole = make_tar(tmp / "source", tmp / "whole.tar.gz").read_bytes()
    (tmp / "whole.tar.gz").unlink()
    return write(tmp / "cut.tar.gz", whole[: len(whole) * 2 // 3])


def broken_copy(tmp: Path) -> list[str]:
    make_office_like(tmp / "root" / "tinybench")
    (tmp / "root" / "tinybench" / "amazon" / "images" / "TV" / "img 0.jpg").unlink()
    return download(tmp, good_zip(tmp), "--accept-unverified")


def installed_copy(tmp: Path) -> list[str]:
    make_office_like(tmp / "tinybench")
    return []


def image_list(tmp: Path, text: bytes) -> list[str]:
    make_class_folders(tmp / "imgs", TINY_CLASSES, (1, 1, 1))
    write(tmp / "out" / "train.txt", b"already here 0\n")
    return ["split", "imagelist", "--domain", str(write(tmp / "list.txt", text)), "--out", str(tmp / "out")]


def corrupt_image_folder(tmp: Path) -> list[str]:
    make_class_folders(tmp / "photos", TINY_CLASSES, (2, 2, 2))
    write(tmp / "photos" / "Table" / "img 1.jpg", b"\xff\xd8\xff not really a jpeg")
    write_features(tmp / "feats.npz", 4, 3, 2, seed=0)
    return ["extract-features", "--dataset", "folder", "--domain", str(tmp / "photos"), "--out",
            str(tmp / "feats.npz"), "--backbone", "identity", "--weights", "none", "--image-size", "8",
            "--device", "cpu", "--batch-size", "2", "--quiet"]


def fingerprinted(tmp: Path, manifest: bytes | None) -> list[str]:
    archive = good_zip(tmp)
    if manifest is None:
        assert main(["fingerprint", str(archive), "--out", str(tmp / "m.json")]) == 0
        write(tmp / "source" / "extra" / "x.jpg", b"x")
        archive = make_zip(tmp / "source", tmp / "other.zip")
    else:
        write(tmp / "m.json", manifest)
    return ["fingerprint", str(archive), "--check", str(tmp / "m.json")]


def unverified(tmp: Path) -> object:
    return tiny_benchmark(archive="tiny.zip")


def published(md5: str) -> Callable[[Path], object]:
    return lambda tmp: tiny_benchmark(archive="tiny.zip", md5=md5)


CASES = [
    # list
    Case("list: unknown option", lambda t: ["list", "--rot", str(t)], "unrecognized arguments: --rot"),
    # download
    Case("download: unknown dataset", lambda t: ["download", "office32", "--root", str(t)],
         "invalid choice: 'office32'"),
    Case("download: missing archive", lambda t: download(t, t / "nowhere.zip"), "nowhere.zip does not exist",
         unverified),
    Case("download: not an archive", lambda t: download(t, write(t / "notes.zip", b"just text"),
                                                        "--accept-unverified"),
         "is neither a zip nor a tar archive", unverified),
    Case("download: wrong md5", lambda t: download(t, good_zip(t)), "!= expected 000", published("0" * 32)),
    Case("download: truncated archive", lambda t: download(t, truncated_tar(t), "--accept-unverified"),
         "cut.tar.gz is damaged", unverified),
    Case("download: zip slip", lambda t: download(t, slip_zip(t), "--accept-unverified"), "(zip slip)", unverified),
    Case("download: tar slip", lambda t: download(t, slip_tar(t), "--accept-unverified"), "(tar slip)", unverified),
    Case("download: unverified archive", lambda t: download(t, good_zip(t)), "re-run with --accept-unverified",
         unverified),
    Case("download: wrong counts (layout)", lambda t: download(t, good_zip(t)),
         "layout: domain 'amazon' has 7 images under amazon/images/, 9 expected",
         lambda t: tiny_benchmark(archive="tiny.zip", counts={"amazon": 9, "webcam": 7})),
    Case("download: wrong counts (extracted)", lambda t: download(t, good_zip(t), "--accept-unverified"),
         "does not hold the expected dataset; nothing was installed",
         lambda t: tiny_benchmark(archive="tiny.zip", counts={"amazon": 9, "webcam": 7})),
    Case("download: existing copy does not verify", broken_copy, "exists but does not verify; move it away",
         unverified),
    Case("download: root is a file", lambda t: ["download", "tinybench", "--root", str(write(t / "f", b"x")),
                                                 "--archive", str(good_zip(t)), "--accept-unverified"],
         "is a file, not a folder", unverified),
    Case("download: unknown option", lambda t: ["download", "office31", "--root", str(t), "--acept-unverified"],
         "unrecognized arguments"),
    # verify
    Case("verify: unknown dataset", lambda t: ["verify", "imagenet", "--root", str(t)], "invalid choice"),
    Case("verify: missing root", lambda t: ["verify", "office31", "--root", str(t / "missing")],
         "does not verify as Office-31"),
    Case("verify: wrong counts", lambda t: installed_copy(t) + ["verify", "tinybench", "--root", str(t)],
         "holds 7 images, Tiny benchmark domain 'amazon' has 9",
         lambda t: tiny_benchmark(counts={"amazon": 9, "webcam": 7})),
    # split
    Case("split: unknown dataset", lambda t: ["split", "imagenet", "--domain", "A", "--out", str(t / "o")],
         "unknown dataset"),
    Case("split: unknown domain", lambda t: ["split", "office31", "--domain", "Z", "--root", str(t), "--out",
                                              str(t / "o")], "unknown domain 'Z'"),
    Case("split: missing list", lambda t: ["split", "imagelist", "--domain", str(t / "gone.txt"), "--out",
                                            str(t / "o")], "gone.txt does not exist"),
    Case("split: bad label", lambda t: image_list(t, b"imgs/TV/img 0.jpg 0\nimgs/Table/img 0.jpg one\n"),
         "list.txt:2: label 'one' is not an integer"),
    Case("split: negative label", lambda t: image_list(t, b"imgs/TV/img 0.jpg -3\n"), "list.txt:1: label -3"),
    Case("split: not UTF-8", lambda t: image_list(t, b"imgs/TV/img 0.jpg 0\nimgs/\xff.jpg 1\n"),
         "list.txt:2: not UTF-8 text"),
    Case("split: missing files", lambda t: image_list(t, b"/elsewhere/TV/img 0.jpg 0\n"),
         "1 of 1 images listed by"),
    Case("split: bad --path_prefix", lambda t: image_list(t, b"imgs/TV/img 0.jpg 0\n") + ["--path_prefix", "=x"],
         "cannot read path prefix '=x'"),
    Case("split: negative seed", lambda t: image_list(t, b"imgs/TV/img 0.jpg 0\n") + ["--seed", "-1"],
         "--seed must be >= 0"),
    Case("split: out is a file", lambda t: image_list(t, b"imgs/TV/img 0.jpg 0\n")[:-1]
         + [str(t / "out" / "train.txt")], "is a file, not a folder"),
    # extract-features
    Case("extract-features: corrupt image", corrupt_image_folder, "cannot read image"),
    Case("extract-features: unknown dataset", lambda t: ["extract-features", "--dataset", "imagenet", "--domain",
                                                          "A", "--out", str(t / "f.npz")], "unknown dataset"),
    Case("extract-features: zero batch size", lambda t: corrupt_image_folder(t) + ["--batch-size", "0"],
         "--batch-size must be >= 1"),
    Case("extract-features: out is a folder", lambda t: corrupt_image_folder(t) + ["--out", str(t / "photos")],
         "is a folder; give the path of the .npz file"),
    # fingerprint
    Case("fingerprint: missing archive", lambda t: ["fingerprint", str(t / "gone.zip")], "gone.zip does not exist"),
    Case("fingerprint: not an archive", lambda t: ["fingerprint", str(write(t / "a.zip", b"PK\x03\x04junk"))],
         "is neither a zip nor a tar archive"),
    Case("fingerprint: mismatch", lambda t: fingerprinted(t, None), "does not match the fingerprint"),
    Case("fingerprint: corrupt manifest", lambda t: fingerprinted(t, b"{not json"),
         "is not a manifest of `srdc-data fingerprint`"),
    Case("fingerprint: --out with --check", lambda t: ["fingerprint", "a.zip", "--out", "x", "--check", "y"],
         "not allowed with argument"),
]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and mtime (ns)."""
    return {str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(case, tmp_path, monkeypatch, capsys):
    if case.bench is not None:
        monkeypatch.setitem(BENCHMARKS, "tinybench", case.bench(tmp_path))
    argv = case.setup(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert case.error in err, err
    assert snapshot(tmp_path) == before
    assert not (tmp_path.parent / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_the_sweep_covers_every_subcommand():
    covered = {case.name.split(":")[0] for case in CASES}
    assert covered == {"list", "download", "verify", "split", "extract-features", "fingerprint"}
    assert len(CASES) >= 15


@pytest.mark.integration
def test_a_corrupt_image_read_in_a_worker_process_is_one_error_line(tmp_path, capsys):
    assert main(corrupt_image_folder(tmp_path) + ["--num-workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot read image") and "Traceback" not in err, err
