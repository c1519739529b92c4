"""``srdc-data fingerprint``: an archive's md5 and members recorded and checked; zip and tar slip refused."""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from data_helpers import make_office_like, make_tar, make_zip, md5_bytes, tiny_benchmark

from srdc.data.benchmarks import BENCHMARKS
from srdc.data.cli import main
from srdc.data.download import DownloadError, download_benchmark
from srdc.data.fingerprint import fingerprint_archive, is_unsafe_name, layout_problems, unwrapped_names


@pytest.fixture
def archive(tmp_path) -> Path:
    make_office_like(tmp_path / "source")
    return make_zip(tmp_path / "source", tmp_path / "tiny.zip")


def one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_fingerprint_prints_the_md5_and_writes_a_manifest(archive, capsys):
    assert main(["fingerprint", str(archive)]) == 0
    md5 = md5_bytes(archive.read_bytes())
    out = capsys.readouterr().out
    assert f"{archive}: md5 {md5}, {archive.stat().st_size} bytes, 14 files" in out
    manifest = json.loads(archive.with_name("tiny.zip.fingerprint.json").read_text())
    assert manifest["archive"] == "tiny.zip" and manifest["md5"] == md5 and len(manifest["members"]) == 14
    assert ["amazon/images/TV/img 0.jpg", (archive.parent / "source/amazon/images/TV/img 0.jpg").stat().st_size] \
        in manifest["members"]


def test_a_recorded_fingerprint_matches_the_same_archive(archive, tmp_path, capsys):
    assert main(["fingerprint", str(archive), "--out", str(tmp_path / "m.json")]) == 0
    assert main(["fingerprint", str(archive), "--check", str(tmp_path / "m.json")]) == 0
    assert f"{archive} matches the fingerprint {tmp_path / 'm.json'}" in capsys.readouterr().out


def test_a_recorded_fingerprint_does_not_match_another_archive(archive, tmp_path, capsys):
    assert main(["fingerprint", str(archive), "--out", str(tmp_path / "m.json")]) == 0
    (tmp_path / "source" / "amazon" / "images" / "TV" / "img 0.jpg").unlink()
    other = make_zip(tmp_path / "source", tmp_path / "other.zip")
    capsys.readouterr()
    assert main(["fingerprint", str(other), "--check", str(tmp_path / "m.json")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"error: {other} does not match the fingerprint {tmp_path / 'm.json'}: md5 " in err
    assert "13 members, recorded 14: 1 missing or changed (first: amazon/images/TV/img 0.jpg), 0 unexpected" in err


def test_fingerprint_checks_a_benchmark_layout(archive, monkeypatch, capsys):
    bench = tiny_benchmark(archive="tiny.zip", md5_first_seen=md5_bytes(archive.read_bytes()))
    monkeypatch.setitem(BENCHMARKS, bench.name, bench)
    assert main(["fingerprint", str(archive), "--benchmark", bench.name]) == 0
    assert f"{archive} verifies as tinybench" in capsys.readouterr().out
    monkeypatch.setitem(BENCHMARKS, bench.name, tiny_benchmark(archive="tiny.zip"))
    assert main(["fingerprint", str(archive), "--benchmark", bench.name]) == 2
    assert "none is recorded as first seen" in one_error_line(capsys.readouterr().err)


def test_layout_reads_wrapped_and_unwrapped_archives(tmp_path):
    make_office_like(tmp_path / "source")
    bench = tiny_benchmark()
    wrapped = make_tar(tmp_path / "source", tmp_path / "w.tar.gz")
    flat = make_tar(tmp_path / "source", tmp_path / "f.tar.gz", wrapper=None)
    for path in (wrapped, flat):
        assert layout_problems(bench, list(fingerprint_archive(path).members)) == []
    assert layout_problems(tiny_benchmark(counts={"amazon": 6, "webcam": 7}), list(fingerprint_archive(flat).members)) \
        == ["domain 'amazon' has 7 images under amazon/images/, 6 expected"]
    assert unwrapped_names(["top/a/x.jpg", "__MACOSX/top/._x", "top/.DS_Store"]) == ["a/x.jpg"]


@pytest.mark.parametrize("name, unsafe", [
    ("a/b.jpg", False), ("../b.jpg", True), ("a/../../b", True), ("/etc/passwd", True), ("C:/x", True),
    ("a\\..\\b", True), ("..b/c", False),
])
def test_unsafe_member_names(name, unsafe):
    assert is_unsafe_name(name) is unsafe


def slip_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as handle:
        handle.writestr("amazon/images/TV/ok.jpg", b"x")
        handle.writestr("../evil.txt", b"owned")
    return path


def slip_tar(path: Path, symlink: bool) -> Path:
    with tarfile.open(path, "w:gz") as handle:
        info = tarfile.TarInfo("amazon/link" if symlink else "../evil.txt")
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, "../../evil.txt"
            handle.addfile(info)
        else:
            info.size = 5
            handle.addfile(info, io.BytesIO(b"owned"))
    return path


@pytest.mark.parametrize("make", [slip_zip, lambda p: slip_tar(p, False), lambda p: slip_tar(p, True)],
                         ids=["zip", "tar", "tar-symlink"])
def test_zip_and_tar_slip_are_refused_by_fingerprint_and_download(tmp_path, capsys, make):
    bad = make(tmp_path / "bad.archive")
    assert main(["fingerprint", str(bad)]) == 2
    assert "outside the extraction folder" in one_error_line(capsys.readouterr().err)
    for bench in (tiny_benchmark(), tiny_benchmark(md5=md5_bytes(bad.read_bytes()))):  # listed, or extracted
        with pytest.raises(DownloadError, match=r"outside the extraction folder .*refusing it \((zip|tar) slip\)"):
            download_benchmark(bench, tmp_path / "root", archive=bad, progress=False, accept_unverified=True)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "root" / "tinybench").exists()
    assert not any(p.name.startswith(".tinybench") for p in (tmp_path / "root").iterdir())
