"""Download end to end against generated archives served from 127.0.0.1 or file:// URLs.

Good archive, wrong md5, dropped connection (then resumed with Range), wrong counts, dead and HTML mirrors,
a hand-downloaded archive, damaged archives, an existing copy that does not verify; nothing half-done is left.
"""

from pathlib import Path

import pytest
from data_helpers import make_office_like, make_tar, make_zip, md5_bytes, serving, tiny_benchmark

from srdc.data.benchmarks import BENCHMARKS
from srdc.data.cli import main
from srdc.data.download import DOWNLOADS, DownloadError, download_benchmark, fetch


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory) -> bytes:
    source = tmp_path_factory.mktemp("source")
    make_office_like(source)
    return make_tar(source, tmp_path_factory.mktemp("archive") / "tiny.tar.gz").read_bytes()


def leftovers(root: Path) -> list[str]:
    """Everything under ``root`` except an installed dataset: staging folders, partial or kept archives."""
    found = [p.name for p in root.iterdir() if p.name != "tinybench"] if root.exists() else []
    if (root / DOWNLOADS).exists():
        found += [f"{DOWNLOADS}/{p.name}" for p in (root / DOWNLOADS).iterdir()]
    return sorted(n for n in found if n != DOWNLOADS)


def run_cli(monkeypatch, bench, *args: str) -> int:
    monkeypatch.setitem(BENCHMARKS, bench.name, bench)
    return main([*args])


def test_good_archive_is_downloaded_verified_and_installed(tmp_path, archive_bytes, monkeypatch, capsys):
    with serving() as server:
        server.files["tiny.tar.gz"] = archive_bytes
        bench = tiny_benchmark(urls=(server.url("tiny.tar.gz"),), md5=md5_bytes(archive_bytes))
        assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(tmp_path), "--quiet") == 0
    assert "tinybench is at" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "tinybench").iterdir()) == ["amazon", "webcam"]  # wrapper unwrapped
    assert len(list((tmp_path / "tinybench" / "amazon" / "images").rglob("*.jpg"))) == 7
    assert leftovers(tmp_path) == []  # no staging folder, archive deleted
    assert run_cli(monkeypatch, bench, "verify", "tinybench", "--root", str(tmp_path)) == 0
    assert " A amazon           7 images, 3 classes: ok" in capsys.readouterr().out


def test_wrong_md5_exits_nonzero_and_installs_nothing(tmp_path, archive_bytes, monkeypatch, capsys):
    with serving() as server:
        server.files["tiny.tar.gz"] = archive_bytes
        bench = tiny_benchmark(urls=(server.url("tiny.tar.gz"),), md5="0" * 32)
        assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(tmp_path), "--quiet") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download tiny.tar.gz")
    assert f"md5 {md5_bytes(archive_bytes)} != expected {'0' * 32} (corrupt or a different file; deleted)" in err
    assert not (tmp_path / "tinybench").exists() and leftovers(tmp_path) == []


def test_a_dropped_connection_fails_then_resumes_with_range(tmp_path, archive_bytes, monkeypatch, capsys):
    cut = len(archive_bytes) // 3
    with serving() as server:
        server.files["tiny.tar.gz"] = archive_bytes
        server.cut_after["tiny.tar.gz"] = cut
        bench = tiny_benchmark(urls=(server.url("tiny.tar.gz"),), md5=md5_bytes(archive_bytes))
        assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(tmp_path), "--quiet") == 2
        err = capsys.readouterr().err
        assert f"the response ended after {cut} of {len(archive_bytes)} bytes" in err
        assert "is kept: run the same command again to resume" in err
        assert not (tmp_path / "tinybench").exists()
        assert (tmp_path / DOWNLOADS / "tiny.tar.gz.part").stat().st_size == cut

        assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(tmp_path), "--quiet") == 0
        assert server.requests == [("tiny.tar.gz", None), ("tiny.tar.gz", f"bytes={cut}-")]
    assert len(list((tmp_path / "tinybench").rglob("*.jpg"))) == 14 and leftovers(tmp_path) == []


def test_wrong_counts_install_nothing_and_keep_the_checked_archive(tmp_path, archive_bytes):
    with serving() as server:
        server.files["tiny.tar.gz"] = archive_bytes
        bench = tiny_benchmark(urls=(server.url("tiny.tar.gz"),), md5=md5_bytes(archive_bytes),
                               counts={"amazon": 7, "webcam": 8})
        with pytest.raises(DownloadError) as error:
            download_benchmark(bench, tmp_path, progress=False)
    message = str(error.value)
    assert "does not hold the expected dataset; nothing was installed" in message
    assert "W (webcam): " in message and "holds 7 images, Tiny benchmark domain 'webcam' has 8" in message
    assert not (tmp_path / "tinybench").exists()
    assert leftovers(tmp_path) == [f"{DOWNLOADS}/tiny.tar.gz"]  # md5-checked: reused by the next attempt


def test_dead_and_html_mirrors_fall_through_to_a_file_url(tmp_path, archive_bytes):
    local = tmp_path / "mirror" / "tiny.tar.gz"
    local.parent.mkdir()
    local.write_bytes(archive_bytes)
    root = tmp_path / "root"
    with serving() as server:
        server.files["quota.html"] = b"<!DOCTYPE html><html>quota exceeded</html>"
        bench = tiny_benchmark(urls=(server.url("gone.tar.gz"), server.url("quota.html"), local.as_uri()),
                               md5=md5_bytes(archive_bytes))
        installed = download_benchmark(bench, root, progress=False)
        with pytest.raises(DownloadError, match="the server sent an HTML page instead of the archive"):
            fetch(server.url("quota.html"), tmp_path / "page.part", progress=False)
        assert [name for name, _ in server.requests] == ["gone.tar.gz", "quota.html", "quota.html"]
    assert installed == root / "tinybench" and len(list(installed.rglob("*.jpg"))) == 14
    assert not (root / DOWNLOADS / "tiny.tar.gz.part").exists()


def test_every_failed_mirror_is_listed(tmp_path, monkeypatch, capsys):
    with serving() as server:
        bench = tiny_benchmark(urls=(server.url("a.tar.gz"), (tmp_path / "missing.tar.gz").as_uri()), md5="1" * 32)
        assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(tmp_path / "r"), "--quiet") == 2
    err = capsys.readouterr().err
    assert "a.tar.gz: HTTP 404" in err and "missing.tar.gz: " in err
    assert "Or download tiny.tar.gz by hand (see https://example.invalid/tiny) and pass --archive FILE." in err


def unverified_zip(tmp_path) -> tuple[Path, str]:
    source = tmp_path / "source"
    make_office_like(source)
    archive = make_zip(source, tmp_path / "tiny.zip")
    return archive, md5_bytes(archive.read_bytes())


def test_an_unverified_archive_is_refused_without_the_flag(tmp_path, monkeypatch, capsys):
    archive, md5 = unverified_zip(tmp_path)
    root = tmp_path / "root"
    args = ("download", "tinybench", "--root", str(root), "--archive", str(archive))
    assert run_cli(monkeypatch, tiny_benchmark(archive="tiny.zip"), *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: refusing to extract {archive} (md5 {md5}): it cannot "
                                                    "be verified (no md5 is published for tiny.zip")
    assert "--accept-unverified" in err and not root.exists() and archive.is_file()


def test_an_unverified_archive_is_extracted_with_the_flag_and_its_md5_printed(tmp_path, monkeypatch, capsys):
    archive, md5 = unverified_zip(tmp_path)
    root = tmp_path / "root"
    args = ("download", "tinybench", "--root", str(root), "--archive", str(archive), "--accept-unverified")
    assert run_cli(monkeypatch, tiny_benchmark(archive="tiny.zip"), *args) == 0
    assert f"note: extracting unverified archive {archive} (md5 {md5}) because of --accept-unverified" in \
        capsys.readouterr().out
    assert archive.is_file() and len(list((root / "tinybench").rglob("*.jpg"))) == 14


def test_the_first_seen_md5_and_layout_verify_an_archive(tmp_path, monkeypatch, capsys):
    archive, md5 = unverified_zip(tmp_path)
    root = tmp_path / "root"
    bench = tiny_benchmark(archive="tiny.zip", md5_first_seen=md5)
    assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(root), "--archive", str(archive)) == 0
    assert "matches the first-seen md5 and layout of tiny.zip" in capsys.readouterr().out
    assert len(list((root / "tinybench").rglob("*.jpg"))) == 14


@pytest.mark.parametrize("first_seen, counts, reason", [
    ("0" * 32, None, f"its md5 differs from the first-seen md5 {'0' * 32}"),
    (None, {"amazon": 7, "webcam": 8}, "layout: domain 'webcam' has 7 images under webcam/images/, 8 expected"),
])
def test_a_different_first_seen_md5_or_layout_is_refused(tmp_path, monkeypatch, capsys, first_seen, counts, reason):
    archive, md5 = unverified_zip(tmp_path)
    bench = tiny_benchmark(archive="tiny.zip", md5_first_seen=first_seen or md5, counts=counts)
    root = tmp_path / "root"
    assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(root), "--archive", str(archive)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and "--accept-unverified" in err and not root.exists()


def test_a_downloaded_unverified_archive_is_kept_for_a_rerun_with_the_flag(tmp_path, monkeypatch, capsys):
    archive, md5 = unverified_zip(tmp_path)
    bench = tiny_benchmark(urls=(archive.as_uri(),), archive="tiny.zip")
    root = tmp_path / "root"
    assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(root), "--quiet") == 2
    assert f"(md5 {md5}): it cannot be verified" in capsys.readouterr().err
    assert leftovers(root) == [f"{DOWNLOADS}/tiny.zip"] and not (root / "tinybench").exists()
    archive.unlink()  # the rerun uses the kept download
    assert run_cli(monkeypatch, bench, "download", "tinybench", "--root", str(root), "--quiet",
                   "--accept-unverified") == 0
    assert leftovers(root) == [] and len(list((root / "tinybench").rglob("*.jpg"))) == 14


def test_a_damaged_unchecked_archive_is_refused_and_not_reused(tmp_path):
    with serving() as server:
        server.files["tiny.tar.gz"] = b"\x1f\x8b garbage that only starts like gzip"
        bench = tiny_benchmark(urls=(server.url("tiny.tar.gz"),))
        with pytest.raises(DownloadError, match=r"tiny\.tar\.gz is neither a zip nor a tar archive"):
            download_benchmark(bench, tmp_path, progress=False)
    assert not (tmp_path / "tinybench").exists() and leftovers(tmp_path) == []


def test_a_truncated_archive_with_the_right_name_fails_its_md5(tmp_path, archive_bytes):
    truncated = tmp_path / "tiny.tar.gz"
    truncated.write_bytes(archive_bytes[: len(archive_bytes) // 2])
    bench = tiny_benchmark(md5=md5_bytes(archive_bytes))
    with pytest.raises(DownloadError, match=r"tiny\.tar\.gz: md5 [0-9a-f]{32} != expected .*corrupt or not tiny"):
        download_benchmark(bench, tmp_path / "root", archive=truncated, progress=False)
    assert not (tmp_path / "root" / "tinybench").exists()


def test_an_existing_copy_that_does_not_verify_is_left_alone(tmp_path, archive_bytes):
    make_office_like(tmp_path / "tinybench")
    (tmp_path / "tinybench" / "webcam" / "images" / "TV" / "img 0.jpg").unlink()
    bench = tiny_benchmark(urls=("http://127.0.0.1:9/never-contacted",), md5=md5_bytes(archive_bytes))
    with pytest.raises(DownloadError, match=r"exists but does not verify; move it away"):
        download_benchmark(bench, tmp_path, progress=False)
    assert len(list((tmp_path / "tinybench").rglob("*.jpg"))) == 13
