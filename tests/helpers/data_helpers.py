"""Generated miniature datasets for the data tests: tiny JPEGs in the real layouts, archives, a local server.

Helpers only (no tests here); the ``test_data_*`` modules and conftest.py import them.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from srdc.base import SELECTIONS
from srdc.data.benchmarks import Benchmark, BenchmarkDomain

# the real data of the real-data tests: $SRDC_DATA_ROOT, default ../shared/data beside the repository
SHARED_DATA = Path(os.environ.get("SRDC_DATA_ROOT", Path(__file__).resolve().parents[3] / "shared" / "data"))
# "TV" < "Table" < "back_pack": the canonical order is Python's sorted(), upper case first
TINY_CLASSES = ("TV", "Table", "back_pack")
TINY_COUNTS = {"amazon": (3, 2, 2), "webcam": (2, 3, 2)}


def make_jpeg(path: Path, value: int, size: tuple[int, int] = (40, 36)) -> Path:
    """A small solid-colour JPEG whose red channel encodes ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value % 256, 80, 160)).save(path, "JPEG")
    return path


def make_class_folders(root: Path, classes: tuple[str, ...], per_class: tuple[int, ...]) -> list[tuple[Path, int]]:
    """``root/CLASS/img N.jpg`` (a space in every name); returns the samples in canonical order."""
    samples = []
    for label, (name, count) in enumerate(zip(classes, per_class, strict=True)):
        for i in range(count):
            samples.append((make_jpeg(root / name / f"img {i}.jpg", 10 * label + i), label))
    return samples


def make_office_like(dataset_dir: Path) -> None:
    """The Office-31 archive layout in miniature: ``DOMAIN/images/CLASS/*.jpg``."""
    for domain, counts in TINY_COUNTS.items():
        make_class_folders(dataset_dir / domain / "images", TINY_CLASSES, counts)


def tiny_benchmark(urls: tuple[str, ...] = (), md5: str | None = None, counts: dict[str, int] | None = None,
                   archive: str = "tiny.tar.gz", name: str = "tinybench",
                   md5_first_seen: str | None = None) -> Benchmark:
    """A two-domain benchmark laid out like Office-31, with injectable URLs, md5 (published or first seen) and
    expected counts."""
    counts = counts or {domain: sum(per) for domain, per in TINY_COUNTS.items()}
    return Benchmark(
        name=name,
        title="Tiny benchmark",
        classes=TINY_CLASSES,
        domains=(
            BenchmarkDomain("amazon", "A", counts["amazon"], ("amazon/images", "amazon")),
            BenchmarkDomain("webcam", "W", counts["webcam"], ("webcam/images", "webcam")),
        ),
        archive=archive,
        md5=md5,
        urls=urls,
        homepage="https://example.invalid/tiny",
        md5_first_seen=md5_first_seen,
    )


def make_tar(source_dir: Path, archive: Path, wrapper: str | None = "tiny_dataset") -> Path:
    """``archive`` (tar.gz) of the contents of ``source_dir``, inside one top-level ``wrapper`` folder."""
    with tarfile.open(archive, "w:gz") as handle:
        for path in sorted(source_dir.rglob("*")):
            relative = path.relative_to(source_dir)
            handle.add(path, arcname=str(Path(wrapper) / relative) if wrapper else str(relative), recursive=False)
    return archive


def make_zip(source_dir: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(source_dir.rglob("*")):
            handle.write(path, arcname=str(path.relative_to(source_dir)))
    return archive


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_features(path: Path, n: int, dim: int, num_classes: int, seed: int, **extra: np.ndarray) -> Path:
    """``features`` (n x dim, class-shifted noise), ``labels`` cycling over the classes, plus ``extra`` arrays."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    features = (rng.normal(size=(n, dim)) + labels[:, None]).astype(np.float32)
    np.savez(path, features=features, labels=labels, **extra)
    return path


def check_summary(out: Path, epochs: int) -> dict:
    """``out/summary.json`` of a finished run: its epoch count and the three accuracies, each in [0, 100]."""
    summary = json.loads((out / "summary.json").read_text())
    metrics = [selection.metric for selection in SELECTIONS.values()]
    assert {*metrics, "best_oracle_epoch", "labelfree_epoch"} <= set(summary)
    assert summary["epochs"] == epochs
    assert all(0.0 <= summary[key] <= 100.0 for key in metrics)
    return summary


class ArchiveServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (name -> bytes), honouring ``Range: bytes=N-``.

    ``cut_after[name] = k`` makes the next response for ``name`` announce the full length but stop after k
    bytes and close the connection (a dropped download). ``requests`` records ``(path, Range header)``.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                html = name.endswith(".html")
                self.send_header("Content-Type", "text/html; charset=utf-8" if html else "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@contextmanager
def serving() -> Iterator[ArchiveServer]:
    server = ArchiveServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
