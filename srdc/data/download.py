"""Download, check and install a benchmark so that a partial or corrupt download never looks like a dataset.

1. The archive is fetched to ``ROOT/.downloads/ARCHIVE.part``, resuming an earlier partial file with an HTTP
   ``Range`` request; a response shorter than its ``Content-Length`` is an error, not a finished download.
   Each URL of the benchmark is tried in turn; a page of HTML (a quota or login page) is refused.
2. Its md5 is compared with the registered one; a mismatch deletes the ``.part`` file. Only a matching file is
   renamed to ``ROOT/.downloads/ARCHIVE``. A benchmark without a published md5 (ImageCLEF-DA) is verified by
   its first-seen md5 and the layout of its members instead; an archive that fails either is not extracted
   unless ``accept_unverified`` (``--accept-unverified``) says so.
3. It is extracted into a temporary folder ``ROOT/.NAME.XXXX`` (a single top-level folder is unwrapped),
   whose per-domain image counts and class folders are verified. A member that would land outside that folder
   (zip or tar slip) or a special file refuses the whole archive.
4. Only then is the folder renamed to ``ROOT/NAME``, in one step. The archive is deleted unless kept.

Every failure raises :class:`DownloadError` (one line: what failed and what to do); the CLI exits with status 2.
"""

from __future__ import annotations

import http.client
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import urllib.response
import zipfile
from pathlib import Path

from tqdm import tqdm

from srdc.base import bar_disabled
from srdc.data.base import one_line
from srdc.data.benchmarks import Benchmark, verify_benchmark
from srdc.data.fingerprint import (
    ARCHIVE_ERRORS,
    DownloadError,
    archive_members,
    check_zip_names,
    layout_problems,
    md5_of,
)
from srdc.errors import SRDCInputError

CHUNK = 1 << 20
TIMEOUT_S = 60
DOWNLOADS = ".downloads"


class UnverifiedArchiveError(DownloadError):
    """An archive without a published md5 did not verify (first-seen md5, layout) and was not extracted."""


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
        raise DownloadError(f"{url}: {' '.join(str(getattr(error, 'reason', error)).split())}") from None
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            raise DownloadError(f"{url}: the server sent an HTML page instead of the archive (quota, login or "
                                "confirmation page)")
        resumed = start > 0 and response.status == 206
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with part.open("ab" if resumed else "wb") as out, tqdm(
            total=expected, initial=0, unit="B", unit_scale=True, disable=bar_disabled(progress),
            desc=f"{part.name} (from byte {start})" if resumed else part.name,
        ) as bar:
            try:
                while block := response.read(CHUNK):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as error:
                raise DownloadError(f"{url}: connection lost after {received} bytes ({one_line(error)})") from None
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
    parts = [f"could not download {bench.archive} for {bench.title}: " + "; ".join(failures) + "."]
    if part.exists():
        parts.append(f"The partial file {part} is kept: run the same command again to resume.")
    parts.append(f"Or download {bench.archive} by hand (see {bench.homepage}) and pass --archive FILE.")
    raise DownloadError(" ".join(parts))


def unverified_reasons(bench: Benchmark, archive: Path, md5: str) -> list[str]:
    """Why an archive of a benchmark without a published md5 cannot be verified: no first-seen md5 recorded, a
    different md5, members not in the registered layout or counts. Empty: verified."""
    reasons = []
    if bench.md5_first_seen is None:
        reasons.append(f"no md5 is published for {bench.archive} and none is recorded as first seen")
    elif md5 != bench.md5_first_seen:
        reasons.append(f"its md5 differs from the first-seen md5 {bench.md5_first_seen}")
    reasons.extend(f"layout: {problem}" for problem in layout_problems(bench, archive_members(archive)))
    return reasons


def verification_problems(bench: Benchmark, archive: Path, md5: str) -> list[str]:
    """Why ``archive`` (of md5 ``md5``) is not verified as ``bench``'s: a published md5 that differs, or the
    reasons of :func:`unverified_reasons`. Empty: verified."""
    if bench.md5 is not None:
        return [] if md5 == bench.md5 else [f"md5 {md5} != published {bench.md5}"]
    return unverified_reasons(bench, archive, md5)


def check_archive(bench: Benchmark, archive: Path, accept_unverified: bool = False) -> None:
    """An archive may be extracted: its md5 matches the published one; or, without one, it verifies by the
    first-seen md5 and its layout (:func:`unverified_reasons`), or ``accept_unverified`` says to go on anyway
    (a note with its md5 on stdout). Otherwise :class:`DownloadError` / :class:`UnverifiedArchiveError`."""
    got = md5_of(archive)
    if bench.md5 is not None:
        if got != bench.md5:
            raise DownloadError(f"{archive}: md5 {got} != expected {bench.md5}: corrupt or not {bench.archive}")
        return
    reasons = "; ".join(unverified_reasons(bench, archive, got))
    if not reasons:
        print(f"note: {archive} (md5 {got}) matches the first-seen md5 and layout of {bench.archive}")
        return
    if not accept_unverified:
        raise UnverifiedArchiveError(
            f"refusing to extract {archive} (md5 {got}): it cannot be verified ({reasons}); nothing was extracted. "
            f"Compare its md5 with a trusted copy and re-run with --accept-unverified to extract it anyway"
        )
    print(f"note: extracting unverified archive {archive} (md5 {got}) because of --accept-unverified: {reasons}")


def extract(archive: Path, dest: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``dest``; a damaged archive, or a member that would
    land outside ``dest`` (zip or tar slip) or is a special file, is a DownloadError."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                check_zip_names(archive, handle.namelist())
                handle.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                handle.extractall(dest, filter="data")
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive; delete it and download again")
    except tarfile.FilterError as error:
        raise DownloadError(f"{archive} holds a member outside the extraction folder or a special file "
                            f"({one_line(error)}); refusing it (tar slip). Delete the archive and get it from a "
                            "trusted source") from None
    except DownloadError:
        raise
    except ARCHIVE_ERRORS as error:
        raise DownloadError(f"{archive} is damaged ({one_line(error)}); delete it and download again") from None


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
                       progress: bool = True, accept_unverified: bool = False) -> Path:
    """Install ``bench`` at ``root/NAME`` (module docstring); returns that folder.

    An existing ``root/NAME`` is verified and kept; if it does not verify, nothing is touched and the error
    says to move it away. ``archive`` is a file downloaded by hand (checked, never deleted).
    ``accept_unverified`` extracts an archive that :func:`check_archive` cannot verify.
    """
    if root.exists() and not root.is_dir():
        raise DownloadError(f"--root {root} is a file, not a folder; choose another --root")
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
            raise DownloadError(f"archive {archive} does not exist; give the path of the file you downloaded")
        check_archive(bench, archive, accept_unverified)
        root.mkdir(parents=True, exist_ok=True)
        return install(bench, archive, root)
    root.mkdir(parents=True, exist_ok=True)
    fetched = obtain_archive(bench, root / DOWNLOADS, progress)
    try:
        if bench.md5 is None:
            check_archive(bench, fetched, accept_unverified)
        installed = install(bench, fetched, root)
    except UnverifiedArchiveError:  # kept: a re-run with --accept-unverified uses it without downloading again
        raise
    except SRDCInputError:
        if bench.md5 is None:  # nothing vouches for this file: do not reuse it next time
            fetched.unlink()
        raise
    if not keep_archive:
        fetched.unlink()
    return installed
