"""Download, check and install a benchmark so that a partial or corrupt download never looks like a dataset.

1. The archive is fetched to ``ROOT/.downloads/ARCHIVE.part``, resuming an earlier partial file with an HTTP
   ``Range`` request; a response shorter than its ``Content-Length`` is an error, not a finished download.
   Each URL of the benchmark is tried in turn; a page of HTML (a quota or login page) is refused.
2. Its md5 is compared with the registered one; a mismatch deletes the ``.part`` file. Only a matching file is
   renamed to ``ROOT/.downloads/ARCHIVE``.
3. It is extracted into a temporary folder ``ROOT/.NAME.XXXX`` (a single top-level folder is unwrapped),
   whose per-domain image counts and class folders are verified.
4. Only then is the folder renamed to ``ROOT/NAME``, in one step. The archive is deleted unless kept.

Every failure raises :class:`DownloadError` with what failed and what to do; the CLI exits non-zero.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import urllib.response
import zipfile
from pathlib import Path

from tqdm import tqdm

from srdc.data.benchmarks import Benchmark, verify_benchmark
from srdc.errors import SRDCInputError

CHUNK = 1 << 20
TIMEOUT_S = 60
DOWNLOADS = ".downloads"


class DownloadError(SRDCInputError):
    """A download, checksum, extraction or verification step failed; nothing was installed."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int) -> http.client.HTTPResponse | urllib.response.addinfourl:
    """The response to GET ``url`` (http, https or file), asking for the bytes from ``start`` on."""
    request = urllib.request.Request(url, headers={"User-Agent": "srdc-data"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def fetch(url: str, part: Path, progress: bool = True) -> None:
    """Download ``url`` into ``part``, continuing from its current size when the server honours ``Range``.

    Raises :class:`DownloadError` on an HTTP or network error, an HTML page, or a response cut short; the
    bytes received so far stay in ``part`` for the next attempt.
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the range starts at the end: the file is already complete
            return
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{url}: {getattr(error, 'reason', error)}") from None
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise DownloadError(f"{url}: the server sent an HTML page instead of the archive (quota, login or "
                                "confirmation page)")
        resumed = start > 0 and response.status == 206
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with part.open("ab" if resumed else "wb") as out, tqdm(
            total=expected, initial=0, unit="B", unit_scale=True, disable=not progress,
            desc=f"{part.name} (from byte {start})" if resumed else part.name,
        ) as bar:
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(f"{url}: connection lost after {received} bytes ({error})") from None
    if expected is not None and received != expected:
        raise DownloadError(f"{url}: the response ended after {received} of {expected} bytes")


def obtain_archive(bench: Benchmark, downloads: Path, progress: bool = True) -> Path:
    """``downloads/ARCHIVE`` with a matching md5: reused if present, else fetched from the first URL that works."""
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / bench.archive
    if archive.is_file() and (bench.md5 is None or md5_of(archive) == bench.md5):
        return archive
    part = archive.with_name(archive.name + ".part")
    failures: list[str] = []
    for url in bench.urls:
        try:
            fetch(url, part, progress)
        except DownloadError as error:
            failures.append(str(error))
            continue
        if bench.md5 is not None:
            got = md5_of(part)
            if got != bench.md5:
                part.unlink()
                failures.append(f"{url}: md5 {got} != expected {bench.md5} (corrupt or a different file; deleted)")
                continue
        part.replace(archive)
        return archive
    lines = [f"could not download {bench.archive} for {bench.title}:", *(f"  {failure}" for failure in failures)]
    if part.exists():
        lines.append(f"The partial file {part} is kept: run the same command again to resume.")
    lines.append(f"Or download {bench.archive} by hand (see {bench.homepage}) and pass --archive FILE.")
    raise DownloadError("\n".join(lines))


def check_md5(bench: Benchmark, archive: Path) -> None:
    """The md5 of a given archive must match; without a registered md5, print the file's md5 instead."""
    got = md5_of(archive)
    if bench.md5 is None:
        print(f"note: no md5 is registered for {bench.archive} (unverified); it is checked by its image counts "
              f"only. Its md5 is {got}", file=sys.stderr)
    elif got != bench.md5:
        raise DownloadError(f"{archive}: md5 {got} != expected {bench.md5}: corrupt or not {bench.archive}")


def extract(archive: Path, dest: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``dest``; a damaged archive is a DownloadError."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                handle.extractall(dest, filter="data")
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive; delete it and download again")
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise DownloadError(f"{archive} is damaged ({error}); delete it and download again") from None


def unwrap(folder: Path) -> Path:
    """``folder`` itself, or its only visible subfolder when the archive wrapped everything in one folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def install(bench: Benchmark, archive: Path, root: Path) -> Path:
    """Extract ``archive`` to a temporary folder under ``root``, verify it, rename it to ``root/NAME``."""
    final = root / bench.name
    staging = Path(tempfile.mkdtemp(prefix=f".{bench.name}.", dir=root))
    try:
        extract(archive, staging)
        content = unwrap(staging)
        try:
            verify_benchmark(bench, content)
        except SRDCInputError as error:
            raise DownloadError(f"the archive {archive} does not hold the expected dataset; nothing was "
                                f"installed. {error}") from None
        content.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def download_benchmark(bench: Benchmark, root: Path, archive: Path | None = None, keep_archive: bool = False,
                       progress: bool = True) -> Path:
    """Install ``bench`` at ``root/NAME`` (module docstring); returns that folder.

    An existing ``root/NAME`` is verified and kept; if it does not verify, nothing is touched and the error
    says to move it away. ``archive`` is a file downloaded by hand (checked, never deleted).
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / bench.name
    if final.exists():
        try:
            verify_benchmark(bench, final)
        except SRDCInputError as error:
            raise DownloadError(f"{final} exists but does not verify; move it away and run the download again. "
                                f"{error}") from None
        return final
    if archive is not None:
        if not archive.is_file():
            raise DownloadError(f"archive {archive} does not exist")
        check_md5(bench, archive)
        return install(bench, archive, root)
    fetched = obtain_archive(bench, root / DOWNLOADS, progress)
    if bench.md5 is None:
        check_md5(bench, fetched)
    try:
        installed = install(bench, fetched, root)
    except DownloadError:
        if bench.md5 is None:  # nothing vouches for this file: do not reuse it next time
            fetched.unlink()
        raise
    if not keep_archive:
        fetched.unlink()
    return installed
